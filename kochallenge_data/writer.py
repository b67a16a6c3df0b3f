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


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, flush it to disk, then rename over ``path``."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise KochallengeError(f"{path}: cannot write here ({exc.strerror})") from exc
    try:
        with os.fdopen(handle, "wb") as temp:
            temp.write(data)
            temp.flush()
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
