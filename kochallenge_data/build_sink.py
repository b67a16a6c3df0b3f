"""Where accepted records go while a build runs: memory for the library, a spill file for the command.

The gate fills slots out of order (a rejected slot is drawn again after every other slot), but the
dataset lists records in slot order. The in-memory sink simply keeps them. The spill sink appends each
accepted record and its metadata to a temporary file as it comes and remembers only where each slot's
bytes start (two int64 per slot), then writes the dataset and the metadata sidecar in slot order at the
end, hashing as it goes. Memory stays flat however large the build; the bytes are the same as writing
the in-memory result (tests/test_build.py checks it).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson

from .errors import KochallengeError
from .generate import Candidate
from .writer import TEMP_SUFFIX, file_mode, remove_stale_temps, temp_prefix


def record_item_bytes(record: Mapping[str, str]) -> bytes:
    """One record as it sits inside the dataset's JSON array (``dataset_bytes``): indented two more spaces."""
    row = {"instruction": record["instruction"], "input": record["input"], "output": record["output"]}
    return b"  " + orjson.dumps(row, option=orjson.OPT_INDENT_2).replace(b"\n", b"\n  ")


def meta_line_bytes(meta: Mapping[str, Any], index: int) -> bytes:
    return orjson.dumps(dict(meta, index=index)) + b"\n"


@dataclass
class MemorySink:
    """Keeps every accepted candidate by slot: what :func:`build_dataset` returns."""

    slots: int
    filled: list[Candidate | None] = field(init=False)

    def __post_init__(self) -> None:
        self.filled = [None] * self.slots

    def accept(self, slot: int, candidate: Candidate) -> None:
        self.filled[slot] = candidate

    def candidates(self) -> list[Candidate]:
        return [c for c in self.filled if c is not None]


@dataclass
class SpillSink:
    """Accepted records on disk beside the output, in arrival order; an index says where each slot starts."""

    slots: int
    folder: Path
    _file: BinaryIO = field(init=False)
    _path: Path = field(init=False)
    _record_at: np.ndarray = field(init=False)
    _meta_at: np.ndarray = field(init=False)
    _end: int = 0

    def __post_init__(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(self.folder / "build-spill")
            handle, name = tempfile.mkstemp(
                prefix=temp_prefix(self.folder / "build-spill"), suffix=TEMP_SUFFIX, dir=self.folder
            )
        except OSError as exc:
            raise KochallengeError(f"{self.folder}: cannot write the build's temporary file ({exc.strerror})") from exc
        self._path = Path(name)
        self._file = os.fdopen(handle, "w+b")
        self._record_at = np.full(self.slots, -1, dtype=np.int64)
        self._meta_at = np.full(self.slots, -1, dtype=np.int64)

    def accept(self, slot: int, candidate: Candidate) -> None:
        record = record_item_bytes(candidate.model_record())
        meta = orjson.dumps(candidate.meta)
        self._record_at[slot] = self._end
        self._meta_at[slot] = self._end + len(record)
        self._file.write(record + meta)
        self._end += len(record) + len(meta)

    def in_order(self) -> Iterator[tuple[bytes, bytes]]:
        """(array item, metadata JSON) for every slot in order; the spill is read front to back in runs."""
        self._file.flush()
        starts = np.append(self._record_at, -1)
        ends = self._next_starts()
        for slot in range(self.slots):
            if starts[slot] < 0:
                raise KochallengeError(f"build: slot {slot} was never filled (a bug)")
            self._file.seek(int(starts[slot]))
            chunk = self._file.read(int(ends[slot] - starts[slot]))
            split = int(self._meta_at[slot] - starts[slot])
            yield chunk[:split], chunk[split:]

    def _next_starts(self) -> np.ndarray:
        """Where each slot's bytes end: the next start in file order, or the end of the spill."""
        order = np.argsort(self._record_at, kind="stable")
        ends = np.empty(self.slots, dtype=np.int64)
        sorted_starts = self._record_at[order]
        ends[order] = np.append(sorted_starts[1:], self._end)
        return ends

    def close(self) -> None:
        self._file.close()
        self._path.unlink(missing_ok=True)


@dataclass
class StreamedFile:
    """A file written through a temporary name in its folder and renamed into place only when complete."""

    path: Path
    digest: Any = field(default_factory=hashlib.sha256)
    _handle: BinaryIO = field(init=False)
    _temp: Path = field(init=False)

    def __post_init__(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(self.path)
            handle, name = tempfile.mkstemp(prefix=temp_prefix(self.path), suffix=TEMP_SUFFIX, dir=self.path.parent)
        except OSError as exc:
            raise KochallengeError(f"{self.path}: cannot write here ({exc.strerror})") from exc
        self._temp = Path(name)
        self._handle = os.fdopen(handle, "wb", buffering=1 << 20)

    def write(self, data: bytes) -> None:
        self._handle.write(data)
        self.digest.update(data)

    def commit(self) -> str:
        """Flush to disk, rename into place, and return the SHA-256 of what was written."""
        self._handle.flush()
        os.fchmod(self._handle.fileno(), file_mode())
        os.fsync(self._handle.fileno())
        self._handle.close()
        os.replace(self._temp, self.path)
        return str(self.digest.hexdigest())

    def discard(self) -> None:
        self._handle.close()
        self._temp.unlink(missing_ok=True)
