"""Reading files a user handed us: regular files only, inside their folder, of a sane size.

Pools, templates, allowlists and config files are untrusted input. A FIFO would block ``read()``
forever, a device or a huge file would exhaust memory, a directory gives a confusing traceback, and a
symlink out of the pools folder would let a pool file read anything. Each of these becomes one clear
error naming the path.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from .errors import ConfigError, KochallengeError

MAX_INPUT_BYTES = 64 * 2**20
"""A pool, template or config file larger than this is not one a person wrote."""


class UnsafeFileError(KochallengeError):
    """The path is not a regular file we may read."""


def read_user_bytes(path: Path, *, inside: Path | None = None, limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a regular file, refusing FIFOs, devices, directories, oversize files and (with ``inside``)
    anything whose real location is outside that folder."""
    if inside is not None:
        check_inside(path, inside)
    try:
        # O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever; regular files ignore it.
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UnsafeFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UnsafeFileError(f"{path}: is a folder, not a file") from None
    except OSError as exc:
        raise UnsafeFileError(f"{path}: cannot open ({exc.strerror})") from None
    try:
        info = os.fstat(handle)
        if stat.S_ISDIR(info.st_mode):
            raise UnsafeFileError(f"{path}: is a folder, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFileError(f"{path}: not a regular file (a pipe, socket or device); refusing to read it")
        if info.st_size > limit:
            raise UnsafeFileError(f"{path}: {info.st_size:,} bytes; files here are at most {limit:,}")
        chunks, total = [], 0
        while chunk := os.read(handle, 1 << 20):
            total += len(chunk)
            if total > limit:  # it grew while we read
                raise UnsafeFileError(f"{path}: more than {limit:,} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(handle)


def read_user_text(path: Path, *, inside: Path | None = None, limit: int = MAX_INPUT_BYTES) -> str:
    data = read_user_bytes(path, inside=inside, limit=limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsafeFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def check_inside(path: Path, folder: Path) -> None:
    """Refuse a path whose real location (symlinks followed) leaves ``folder``; a symlink loop is refused too."""
    try:
        real = path.resolve(strict=True)
        root = folder.resolve(strict=True)
    except FileNotFoundError:
        raise UnsafeFileError(f"{path}: no such file") from None
    except (RuntimeError, OSError) as exc:  # RuntimeError: a symlink loop (Python 3.11)
        raise UnsafeFileError(f"{path}: cannot be resolved ({exc})") from None
    if real != root and root not in real.parents:
        raise UnsafeFileError(f"{path}: points outside {folder} (to {real}); refusing to read it")


def read_options_file(path: Path, what: str) -> dict[str, Any]:
    """A ``--config`` file: TOML, or JSON by its suffix, holding one table of options (``what`` names them)."""
    import tomllib

    import orjson

    try:
        raw = read_user_bytes(path)
    except UnsafeFileError as exc:
        raise ConfigError(f"config: {exc}") from None
    kind = "JSON" if path.suffix == ".json" else "TOML"
    try:
        data = orjson.loads(raw) if kind == "JSON" else tomllib.loads(raw.decode("utf-8"))
    except (orjson.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a table of {what}")
    return data
