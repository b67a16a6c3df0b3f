"""Where accepted records go while a build runs: memory for the library, the output files for the command.

Records are listed in the order the gate accepts them. That order is decided by the draws alone (every slot in
order, then each rejected slot again after every other), never by how the checks were spread over processes,
so both sinks see the same records in the same order and give the same bytes (tests/test_build.py checks it).
The file sink writes each record to the dataset and its metadata line to the sidecar the moment it is accepted:
memory stays flat however large the build, and nothing is left to write once the last record is checked.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

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
    """Keeps every accepted candidate, in the order accepted: what :func:`build_dataset` returns."""

    accepted: list[Candidate] = field(default_factory=list)

    def accept(self, candidate: Candidate) -> None:
        self.accepted.append(candidate)


@dataclass
class FileSink:
    """Streams each accepted record into the dataset's JSON array and its metadata into the sidecar, and shows
    it to ``on_accept`` (the diversity sample)."""

    dataset: StreamedFile
    meta: StreamedFile
    on_accept: Callable[[Candidate], None] | None = None
    count: int = 0

    def accept(self, candidate: Candidate) -> None:
        item = record_item_bytes(candidate.model_record())
        self.dataset.write(b"[\n" + item if self.count == 0 else b",\n" + item)
        self.meta.write(meta_line_bytes(candidate.meta, self.count))
        self.count += 1
        if self.on_accept is not None:
            self.on_accept(candidate)

    def finish(self) -> None:
        """Close the array (``dataset_bytes`` of no records is ``[]``)."""
        self.dataset.write(b"\n]\n" if self.count else b"[]\n")


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
