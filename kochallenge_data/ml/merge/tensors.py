"""The streaming merge: the merged safetensors are written tensor by tensor from the base's files.

Each tensor the adapter changes is read, computed in float32 on the merge device and cast back to its own
dtype; every other tensor is copied byte for byte. Shard headers are planned in advance, so memory holds one
tensor, never the model. torch and safetensors are imported inside the functions.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..doctor import Inspection
from ..fingerprint import data_offset
from ..safetensors_header import DTYPE_BITS, TORCH_DTYPE_NAMES, TensorInfo
from .adapter import VOCAB_TENSOR, AdapterInfo
from .edits import TensorEdit
from .errors import MergeError

DEFAULT_MAX_SHARD_SIZE = "5GB"
"""This tool's default since its first version; transformers 5's save_pretrained defaults to 50GB."""

FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")
COPY_BLOCK = 16 * 1024 * 1024

# --- sizes and shards --------------------------------------------------------------------------

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS.update({"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40})


def parse_size(text: str | int) -> int:
    """``"5GB"`` -> 5_000_000_000, ``"500MiB"`` -> 524_288_000, ``"1024"`` -> 1024 (bytes); ValueError otherwise.

    Units as transformers reads them (KB/MB/GB decimal, KiB/MiB/GiB binary) but case-insensitive:
    transformers' lowercase ``b`` meaning bits is not copied.
    """
    if isinstance(text, int):
        value = text
    else:
        match = _SIZE.match(text)
        if not match:
            raise ValueError(f"{text!r} is not a size: use bytes or a number with a unit, e.g. 5GB, 500MB, 2GiB")
        value = int(float(match.group(1)) * _UNITS[(match.group(2) or "b").lower()])
    if value <= 0:
        raise ValueError(f"{text!r} is not a positive size")
    return value


def plan_shards(sizes: Iterable[int], max_bytes: int) -> list[list[int]]:
    """Indices of tensors per shard, in order: a new shard starts when the next tensor would pass ``max_bytes``.

    A tensor larger than ``max_bytes`` gets a shard of its own (as transformers does).
    """
    shards: list[list[int]] = []
    current: list[int] = []
    used = 0
    for index, size in enumerate(sizes):
        if current and used + size > max_bytes:
            shards.append(current)
            current, used = [], 0
        current.append(index)
        used += size
    if current or not shards:
        shards.append(current)
    return shards


def shard_names(count: int) -> list[str]:
    if count == 1:
        return ["model.safetensors"]
    return [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]


# --- the merged tensors ------------------------------------------------------------------------


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class OutputTensor:
    """One tensor of the merged weights: where its base bytes are, and what it becomes."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    base: TensorInfo
    shard: str
    edit: TensorEdit | None

    @property
    def nbytes(self) -> int:
        return (math.prod(self.shape) * DTYPE_BITS[self.dtype] + 7) // 8


def plan_layout(
    base: Inspection, adapter: AdapterInfo, edits: Mapping[str, TensorEdit], rows: int
) -> list[OutputTensor]:
    """The merged model's tensors in the base's order; raise :class:`MergeError` where a merge cannot be done."""
    layout: list[OutputTensor] = []
    for shard in base.weights.files:
        in_shard = [n for n, s in base.weights.shard_of.items() if s == shard]
        for name in sorted(in_shard, key=lambda n: base.weights.tensors[n].start):
            info = base.weights.tensors[name]
            edit = edits.get(name)
            shape = info.shape
            if edit is not None:
                if info.dtype not in FLOAT_DTYPES:
                    raise MergeError(
                        f"{name} is {info.dtype} in the base: merge folds adapters into floating-point weights only "
                        "(a quantized base? merge into the unquantized one)"
                    )
                if edit.replacement is not None:
                    shape = adapter.tensors[edit.replacement].shape
            if VOCAB_TENSOR.search(name) and shape[0] != rows:
                raise MergeError(
                    f"{name} would have {shape[0]} rows but the vocabulary has {rows}: the adapter resized "
                    "the embeddings without saving this one (save with save_embedding_layers=True)"
                )
            if edit is not None and edit.token_rows and max(edit.token_rows) >= shape[0]:
                raise MergeError(
                    f"{name}: trainable_token_indices go up to {max(edit.token_rows)}, past its {shape[0]} rows"
                )
            if info.dtype not in DTYPE_BITS:
                raise MergeError(f"{name} has dtype {info.dtype!r}, which this merge cannot size")
            layout.append(OutputTensor(name, info.dtype, shape, info, shard, edit))
    missing = sorted(set(edits) - {t.name for t in layout})
    if missing:
        raise MergeError(f"the adapter changes {missing[0]}, which is not in the base's weight files")
    return layout


def write_merged_weights(
    base: Inspection,
    adapter: AdapterInfo,
    layout: list[OutputTensor],
    out: Path,
    max_shard_bytes: int,
    device: str,
) -> list[str]:
    """Write the merged safetensors (and the index when there are several shards); return the shard names."""
    from safetensors import safe_open

    groups = plan_shards((t.nbytes for t in layout), max_shard_bytes)
    names = shard_names(len(groups))
    headers = {shard: base.dir.header(shard) for shard in base.weights.files}
    with safe_open(str(adapter.weights_file), framework="pt", device="cpu") as saved:
        for shard_name, group in zip(names, groups, strict=True):
            tensors = [layout[i] for i in group]
            with open(out / shard_name, "wb") as handle:
                _write_header(handle, tensors)
                for tensor in tensors:
                    header = headers[tensor.shard]
                    if header is None:
                        raise MergeError(f"{tensor.shard}: the safetensors header became unreadable")
                    source = header.path
                    offset = data_offset(header, tensor.base)
                    before = handle.tell()
                    if tensor.edit is None:
                        _copy_bytes(source, offset, tensor.nbytes, handle)
                    else:
                        merged = _merged_tensor(tensor, source, offset, saved, device)
                        handle.write(memoryview(merged.reshape(-1).view(_torch_uint8()).numpy()))
                    if handle.tell() - before != tensor.nbytes:
                        raise RuntimeError(
                            f"{tensor.name}: wrote {handle.tell() - before} bytes, declared {tensor.nbytes}"
                        )
    if len(names) > 1:
        index = {
            "metadata": {
                "total_size": sum(t.nbytes for t in layout),
                "total_parameters": sum(math.prod(t.shape) for t in layout),
            },
            "weight_map": {layout[i].name: name for name, group in zip(names, groups, strict=True) for i in group},
        }
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return names


def _write_header(handle: IO[bytes], tensors: list[OutputTensor]) -> None:
    """The safetensors header: 8-byte length, JSON padded with spaces to 8 bytes (as the reference writer does)."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for tensor in tensors:
        header[tensor.name] = {
            "dtype": tensor.dtype,
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + tensor.nbytes],
        }
        offset += tensor.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    handle.write(struct.pack("<Q", len(raw)) + raw)


def _copy_bytes(source: Path, offset: int, length: int, handle: IO[bytes]) -> None:
    with open(source, "rb") as src:
        src.seek(offset)
        left = length
        while left:
            block = src.read(min(COPY_BLOCK, left))
            if not block:
                raise MergeError(f"{source} is truncated")
            handle.write(block)
            left -= len(block)


def _torch_uint8() -> Any:
    import torch

    return torch.uint8


def _read_base_tensor(tensor: OutputTensor, source: Path, offset: int) -> Any:
    import torch

    dtype = getattr(torch, TORCH_DTYPE_NAMES[tensor.dtype])
    length = tensor.base.end - tensor.base.start
    if length == 0:
        return torch.empty(tensor.base.shape, dtype=dtype)
    buffer = bytearray(length)
    with open(source, "rb") as src:
        src.seek(offset)
        if src.readinto(buffer) != length:
            raise MergeError(f"{source} is truncated in {tensor.name}")
    return torch.frombuffer(buffer, dtype=dtype).reshape(tensor.base.shape)


def _merged_tensor(tensor: OutputTensor, source: Path, offset: int, saved: Any, device: str) -> Any:
    """One changed tensor: base (or its saved replacement) -> token rows -> LoRA (DoRA) -> bias, in float32."""
    import torch

    edit = tensor.edit
    assert edit is not None
    target_dtype = getattr(torch, TORCH_DTYPE_NAMES[tensor.dtype])

    def adapter_tensor(key: str) -> Any:
        return saved.get_tensor(key).to(device=device, dtype=torch.float32)

    if edit.replacement is not None:
        weight = adapter_tensor(edit.replacement)
    else:
        weight = _read_base_tensor(tensor, source, offset).to(device=device, dtype=torch.float32)
    if edit.token_key is not None:
        index = torch.tensor(edit.token_rows, device=device)
        weight.index_copy_(0, index, adapter_tensor(edit.token_key))
    if edit.lora is not None:
        lora = edit.lora
        delta = adapter_tensor(lora.b_key) @ adapter_tensor(lora.a_key)
        if lora.transpose:
            delta = delta.T
        combined = weight + lora.scaling * delta
        if lora.magnitude_key is not None:
            # DoRA: rows rescaled to the trained magnitude, the norm taken of the merged weight (as PEFT does)
            norm = torch.linalg.norm(combined, dim=1)
            combined = (adapter_tensor(lora.magnitude_key) / norm).view(-1, 1) * combined
        weight = combined
    if edit.bias is not None:
        key, scaling = edit.bias
        weight = weight + scaling * adapter_tensor(key)
    if not bool(torch.isfinite(weight).all()):
        raise MergeError(f"merging {tensor.name} gives NaN or inf: the adapter is broken")
    return weight.to(dtype=target_dtype).cpu().contiguous()
