"""Atomic writes: a crash or Ctrl-C leaves either the old file or the new one, never half of one.

Folders of several files (an export, a split) are written whole into a staging folder beside the target and
swapped in with one rename, so a kill at any moment leaves the old folder or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from .errors import KochallengeError


def file_mode() -> int:
    """The mode a plain ``open()`` would give a new file: 0o666 less the umask. mkstemp's 0o600 would lock
    out the trainer or the vLLM container that runs as another user."""
    current = os.umask(0)
    os.umask(current)
    return 0o666 & ~current


TEMP_SUFFIX = ".tmp"


def temp_prefix(path: Path) -> str:
    """``.data.json.<pid>.``: the pid lets the next run tell a killed run's leftovers from a live run's files."""
    return f".{path.name}.{os.getpid()}."


def remove_stale_temps(path: Path) -> list[Path]:
    """Delete temp files that a killed run left beside ``path`` (their process is gone); return what was removed."""
    removed: list[Path] = []
    try:
        entries = list(path.parent.glob(f".{glob_escape(path.name)}.*{TEMP_SUFFIX}"))
    except OSError:
        return removed
    for entry in entries:
        parts = entry.name[len(path.name) + 2 :].split(".", 1)
        if parts[0].isdigit() and not _alive(int(parts[0])) and entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, flush it to disk, then rename over ``path``."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
        handle, temp_name = tempfile.mkstemp(prefix=temp_prefix(path), suffix=TEMP_SUFFIX, dir=folder)
    except OSError as exc:
        raise KochallengeError(f"{path}: cannot write here ({exc.strerror})") from exc
    try:
        with os.fdopen(handle, "wb") as temp:
            temp.write(data)
            temp.flush()
            os.fchmod(temp.fileno(), file_mode())
            os.fsync(temp.fileno())
        os.replace(temp_name, path)
    except BaseException:
        # Includes KeyboardInterrupt: remove the partial temp file, keep whatever was there before.
        Path(temp_name).unlink(missing_ok=True)
        raise


# --- folders swapped in whole ------------------------------------------------------------------

STAGING_SUFFIX = ".tmp"
RETIRED_SUFFIX = ".old"
_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def folder_mode() -> int:
    """The mode a plain ``mkdir()`` would give a new folder: 0o777 less the umask (mkdtemp gives 0o700)."""
    current = os.umask(0)
    os.umask(current)
    return 0o777 & ~current


def staging_prefix(target: Path, kind: str) -> str:
    """``.out.export-<pid>.``: recognisable beside ``out``; the pid tells a killed run's folder from a live one's."""
    return f".{target.name}.{kind}-{os.getpid()}."


def remove_stale_staging(target: Path, kind: str) -> list[Path]:
    """Delete the staging folders a killed run left beside ``target`` (their process is gone); return them.

    A run killed between the two renames of the fallback swap left ``target`` missing and the old folder
    retired beside it: that one is put back, so ``target`` is the old folder again, whole. Call this before
    checking what ``target`` holds.
    """
    try:
        target = target.resolve()
        head = f".{target.name}.{kind}-"
        entries = sorted(target.parent.glob(f"{glob_escape(head)}*"))
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop, reported by the caller's own check
        return []
    removed: list[Path] = []
    for entry in entries:
        pid = entry.name[len(head) :].split(".", 1)[0]
        if not pid.isdigit() or _alive(int(pid)) or entry.is_symlink() or not entry.is_dir():
            continue
        if entry.name.endswith(RETIRED_SUFFIX) and not target.exists() and not target.is_symlink():
            with contextlib.suppress(OSError):  # left for the next run; the new folder is swapped in regardless
                os.rename(entry, target)
        elif entry.name.endswith((STAGING_SUFFIX, RETIRED_SUFFIX)):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2`` with ``RENAME_EXCHANGE``); False where that is not
    available (another system, an old kernel, a file system without it), so the caller falls back."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def swap_in(staging: Path, target: Path) -> None:
    """Put the complete folder ``staging`` at ``target``; whatever was at ``target`` is removed."""
    if not target.exists():
        os.rename(staging, target)
        return
    if _exchange(staging, target):  # staging now holds the old folder
        shutil.rmtree(staging, ignore_errors=True)
        return
    # Two renames: a kill between them leaves the old folder retired, which the next run puts back.
    retired = staging.with_name(staging.name.removesuffix(STAGING_SUFFIX) + RETIRED_SUFFIX)
    os.rename(target, retired)
    try:
        os.rename(staging, target)
    except OSError:
        os.rename(retired, target)
        raise
    shutil.rmtree(retired, ignore_errors=True)


@contextlib.contextmanager
def staged_folder(target: Path, kind: str) -> Iterator[Path]:
    """A new, empty folder beside ``target`` to write into; it replaces ``target`` whole when the block ends,
    and is removed when the block raises. ``kind`` names it (``.out.<kind>-<pid>.<random>.tmp``).

    A symlinked ``target`` keeps its link: the folder it points to is the one replaced.
    """
    try:
        real = target.resolve()
        real.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(real, kind)
        staging = Path(tempfile.mkdtemp(prefix=staging_prefix(real, kind), suffix=STAGING_SUFFIX, dir=real.parent))
        os.chmod(staging, folder_mode())
    except RuntimeError as exc:  # what resolve() raises on a symlink loop
        raise KochallengeError(f"{target}: {exc}; give a real folder") from exc
    except OSError as exc:
        raise KochallengeError(
            f"{target}: cannot make a folder beside it to swap in ({exc.strerror}); its parent must be writable"
        ) from exc
    try:
        yield staging
        try:
            swap_in(staging, real)
        except OSError as exc:
            raise KochallengeError(f"{target}: cannot replace this folder ({exc.strerror})") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def dataset_bytes(records: Iterable[Mapping[str, str]]) -> bytes:
    """The dataset file: a UTF-8 JSON array, Korean unescaped, two-space indent, trailing newline."""
    rows = [{"instruction": r["instruction"], "input": r["input"], "output": r["output"]} for r in records]
    return orjson.dumps(rows, option=orjson.OPT_INDENT_2) + b"\n"


def jsonl_bytes(rows: Iterable[Any]) -> bytes:
    return b"".join(orjson.dumps(row) + b"\n" for row in rows)


def json_bytes(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    return sha256_bytes(path.read_bytes())


def sidecar(path: Path, kind: str) -> Path:
    """``data.json`` -> ``data.<kind>``: sidecars sit beside the dataset and share its stem."""
    return path.with_name(f"{path.stem}.{kind}")
