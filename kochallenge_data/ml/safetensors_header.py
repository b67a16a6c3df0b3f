"""Read a safetensors header with the standard library only, safely on hostile input.

A safetensors file is an 8-byte little-endian header length ``N``, ``N`` bytes of UTF-8 JSON
(``{"name": {"dtype": "BF16", "shape": [..], "data_offsets": [start, end]}, "__metadata__": {..}}``)
and then the tensor bytes. Nothing here reads the tensor bytes, so a 7B checkpoint is inspected in
milliseconds. Every problem raises :class:`HeaderError` with a readable message; nothing hangs:
the declared length is capped and checked against the file size before anything is read.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import stat
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

MAX_HEADER_BYTES = 100 * 1024 * 1024
"""The largest header accepted (the reference implementation uses the same limit)."""

DTYPE_BITS: Mapping[str, int] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}
"""Bits per element of each safetensors dtype; an unknown dtype is accepted without a size check."""

TORCH_DTYPE_NAMES: Mapping[str, str] = {
    "F32": "float32",
    "BF16": "bfloat16",
    "F16": "float16",
    "F64": "float64",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
}
"""The config.json ``dtype`` name of the floating dtypes."""


class HeaderError(ValueError):
    """The file is not a readable safetensors file; the message says why."""


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's entry in the header."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class SafetensorsHeader:
    """The parsed header of one file."""

    path: Path
    file_size: int
    header_size: int
    tensors: Mapping[str, TensorInfo]
    metadata: Mapping[str, str] = field(default_factory=dict)


def read_header(path: Path, *, max_header_bytes: int = MAX_HEADER_BYTES) -> SafetensorsHeader:
    """Parse and validate the header of ``path``; raise :class:`HeaderError` when it is not sound."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise HeaderError(f"cannot stat the file: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise HeaderError("not a regular file")
    file_size = info.st_size
    if file_size < 8:
        raise HeaderError(f"truncated: the file has {file_size} bytes, fewer than the 8-byte header length")
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length == 0:
                raise HeaderError("the header length is 0")
            if length > max_header_bytes:
                raise HeaderError(
                    f"the header claims {length:,} bytes, more than the {max_header_bytes:,}-byte limit "
                    "(corrupt or not a safetensors file)"
                )
            if 8 + length > file_size:
                raise HeaderError(f"truncated: the header claims {length:,} bytes but the file has only {file_size:,}")
            raw = handle.read(length)
    except OSError as exc:
        raise HeaderError(f"cannot read the file: {exc.strerror or exc}") from None
    if len(raw) != length:
        raise HeaderError("truncated while reading the header")
    return parse_header(raw, file_size=file_size, path=path)


def parse_header(raw: bytes, *, file_size: int, path: Path) -> SafetensorsHeader:
    """Validate the JSON header bytes of a file of ``file_size`` bytes."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HeaderError("the header is not UTF-8 (corrupt or not a safetensors file)") from None
    if not text.lstrip().startswith("{"):
        raise HeaderError("the header is not a JSON object (corrupt or not a safetensors file)")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise HeaderError(f"the header is not valid JSON: {str(exc)[:120]}") from None
    if not isinstance(doc, dict):
        raise HeaderError("the header is not a JSON object")
    data_size = file_size - 8 - len(raw)
    metadata: dict[str, str] = {}
    tensors: dict[str, TensorInfo] = {}
    for name, entry in doc.items():
        if name == "__metadata__":
            metadata = _metadata(entry)
            continue
        tensors[name] = _tensor(name, entry, data_size)
    _check_overlaps(tensors)
    return SafetensorsHeader(path=path, file_size=file_size, header_size=len(raw), tensors=tensors, metadata=metadata)


def _metadata(entry: object) -> dict[str, str]:
    if entry is None:
        return {}
    if not isinstance(entry, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in entry.items()):
        raise HeaderError("__metadata__ must map strings to strings")
    return dict(entry)


def _tensor(name: str, entry: object, data_size: int) -> TensorInfo:
    shown = name if len(name) <= 80 else name[:77] + "..."
    if not isinstance(entry, dict):
        raise HeaderError(f"tensor {shown!r}: the entry is not an object")
    dtype = entry.get("dtype")
    shape = entry.get("shape")
    offsets = entry.get("data_offsets")
    if not isinstance(dtype, str):
        raise HeaderError(f"tensor {shown!r}: dtype is missing")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise HeaderError(f"tensor {shown!r}: shape must be a list of non-negative integers")
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(_is_count(o) for o in offsets)
        and offsets[0] <= offsets[1]
    ):
        raise HeaderError(f"tensor {shown!r}: data_offsets must be [start, end] with start <= end")
    start, end = int(offsets[0]), int(offsets[1])
    if end > data_size:
        raise HeaderError(
            f"tensor {shown!r}: its data ends at byte {end:,} of a {data_size:,}-byte data section "
            "(the file is truncated)"
        )
    dims = tuple(int(d) for d in shape)
    bits = DTYPE_BITS.get(dtype)
    if bits is not None:
        expected = (math.prod(dims) * bits + 7) // 8
        if expected != end - start:
            raise HeaderError(
                f"tensor {shown!r}: shape {list(dims)} of {dtype} needs {expected:,} bytes, "
                f"the offsets give {end - start:,}"
            )
    return TensorInfo(name=name, dtype=dtype, shape=dims, start=start, end=end)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_overlaps(tensors: Mapping[str, TensorInfo]) -> None:
    spans = sorted((t.start, t.end, t.name) for t in tensors.values() if t.end > t.start)
    for (_, prev_end, prev_name), (start, _, name) in itertools.pairwise(spans):
        if start < prev_end:
            raise HeaderError(f"tensors {prev_name!r} and {name!r} overlap in the data section")
