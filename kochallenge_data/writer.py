"""Atomic writes: a crash or Ctrl-C leaves either the old file or the new one, never half of one."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Mapping
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
