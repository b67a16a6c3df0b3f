"""A fingerprint of a base model directory, so that ``merge`` can tell the base an adapter was trained on.

Two bases of the same architecture have the same shapes, so a LoRA adapter fits both and merges
silently into the wrong one (issue 11: top-1 agreement 0.97, nothing refused). The train command
records :func:`base_fingerprint` in ``RUN/train_config.json``; ``merge`` computes it again for the
base it is given and refuses when :func:`compare_fingerprints` finds a difference.

The fingerprint needs no torch and reads little: config.json, the safetensors headers, and at most
:data:`SAMPLE_BYTES` of raw bytes from each of a few tensors (the input embedding, one tensor of a
middle layer, the last norm, the output head), so a 7B base fingerprints in milliseconds. What it
holds:

- ``config``: config.json normalised (:func:`normalise_config`) and ``config_sha256``, its digest;
- ``tensor_count`` and ``layout_sha256``: every tensor's name, dtype and shape;
- ``tensors``: for each sampled tensor its dtype, shape, the bytes hashed and their sha256.

Raw bytes, not values: a base cast to another dtype is a different base here (the message says so).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import KochallengeError
from .safetensors_header import HeaderError, SafetensorsHeader, TensorInfo, read_header

FINGERPRINT_VERSION = 1
"""Bumped whenever what is hashed changes; fingerprints of different versions are not compared."""

IGNORED_CONFIG_KEYS = frozenset(
    {
        # where and by what the file was written, not what the weights compute
        "_name_or_path",
        "_commit_hash",
        "transformers_version",
        # the storage dtype: the sampled tensor bytes already tell a cast copy apart, with a clearer message
        "torch_dtype",
        "dtype",
        # runtime switches: trainers turn the KV cache off for gradient checkpointing; attention kernels and
        # output flags change how the forward pass runs, not its result
        "use_cache",
        "attn_implementation",
        "_attn_implementation",
        "_attn_implementation_autoset",
        "output_attentions",
        "output_hidden_states",
        "return_dict",
        # trainers set pad = eos; padding never reaches the weights (bos/eos are kept: a changed stop token matters)
        "pad_token_id",
    }
)
"""Keys of config.json (at any depth) left out of the fingerprint, and why."""

SAMPLE_BYTES = 3 * 256 * 1024
"""Bytes hashed per sampled tensor at most: its first, middle and last 256 KiB."""

EMBEDDING = re.compile(r"(^|\.)(embed_tokens|wte|word_embeddings|tok_embeddings)\.weight$")
OUTPUT_HEAD = re.compile(r"(^|\.)(lm_head|embed_out)\.weight$")
LAYER = re.compile(r"(^|\.)(layers|h|blocks|layer)\.(\d+)\.")
NORM = re.compile(r"(norm|ln_f)[^.]*\.weight$")


class FingerprintError(KochallengeError):
    """A base directory that cannot be fingerprinted (no config.json or no safetensors weights)."""

    exit_code = 2


def base_fingerprint(model_dir: Path) -> dict[str, Any]:
    """What identifies the weights in ``model_dir``: its config and a few tensors' bytes (JSON-ready)."""
    model_dir = Path(model_dir)
    config = normalise_config(_read_config(model_dir))
    located = locate_tensors(model_dir)
    tensors = {name: info for name, (_, info) in located.items()}
    sampled: dict[str, Any] = {}
    for name in pick_sample(tensors):
        header, info = located[name]
        digest, hashed = _sample_digest(header, info)
        sampled[name] = {"dtype": info.dtype, "shape": list(info.shape), "bytes_hashed": hashed, "sha256": digest}
    return {
        "version": FINGERPRINT_VERSION,
        "config_sha256": _digest_json(config),
        "config": config,
        "tensor_count": len(tensors),
        "layout_sha256": _digest_json(sorted([name, info.dtype, list(info.shape)] for name, info in tensors.items())),
        "tensors": sampled,
    }


def normalise_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """config.json with sorted keys, without :data:`IGNORED_CONFIG_KEYS` and nulls, at every depth."""
    return {
        key: _normalise_value(value)
        for key, value in sorted(config.items())
        if key not in IGNORED_CONFIG_KEYS and value is not None
    }


def _normalise_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return normalise_config(value)
    if isinstance(value, list):
        return [_normalise_value(item) for item in value]
    return value


def compare_fingerprints(recorded: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    """Every difference between the fingerprint recorded at training and this base's, for a person to read."""
    if recorded.get("version") != actual.get("version"):
        return [
            f"the recorded fingerprint has version {recorded.get('version')!r}, this tool makes version "
            f"{actual.get('version')!r}: they cannot be compared"
        ]
    differences: list[str] = []
    if recorded.get("config_sha256") != actual.get("config_sha256"):
        differences.extend(_config_differences(recorded.get("config"), actual.get("config")))
    if recorded.get("layout_sha256") != actual.get("layout_sha256"):
        counts = (recorded.get("tensor_count"), actual.get("tensor_count"))
        differences.append(
            f"the tensors differ in names, dtypes or shapes ({counts[0]} tensors recorded, {counts[1]} in this base)"
            if counts[0] != counts[1]
            else "the tensors differ in names, dtypes or shapes"
        )
    mine = actual.get("tensors") or {}
    for name, theirs in (recorded.get("tensors") or {}).items():
        differences.extend(_tensor_differences(name, theirs, mine.get(name)))
    return differences


def _config_differences(recorded: object, actual: object) -> list[str]:
    if not isinstance(recorded, Mapping) or not isinstance(actual, Mapping):
        return ["config.json differs"]
    old, new = _flatten(recorded), _flatten(actual)
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k, _ABSENT) != new.get(k, _ABSENT))
    shown = [
        f"config.json {k}: {_show(old.get(k, _ABSENT))} when trained, {_show(new.get(k, _ABSENT))} here" for k in keys
    ]
    if len(shown) > 5:
        shown = [*shown[:5], f"config.json: {len(shown) - 5} more keys differ"]
    return shown or ["config.json differs"]


def _tensor_differences(name: str, recorded: Mapping[str, Any], actual: Mapping[str, Any] | None) -> list[str]:
    if actual is None:
        return [f"tensor {name} (sampled when trained) is not sampled in this base: another architecture or layout"]
    if recorded.get("dtype") != actual.get("dtype"):
        return [
            f"tensor {name} is {actual.get('dtype')} here, {recorded.get('dtype')} when trained "
            "(a copy of the base cast to another dtype?)"
        ]
    if recorded.get("shape") != actual.get("shape"):
        return [f"tensor {name} has shape {actual.get('shape')} here, {recorded.get('shape')} when trained"]
    if recorded.get("sha256") != actual.get("sha256"):
        return [
            f"tensor {name} has other values (sha256 of its sampled bytes {str(actual.get('sha256'))[:12]} here, "
            f"{str(recorded.get('sha256'))[:12]} when trained)"
        ]
    return []


class _Absent:
    def __repr__(self) -> str:
        return "absent"


_ABSENT = _Absent()


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _show(value: object) -> str:
    text = repr(value) if isinstance(value, _Absent) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


# --- which tensors, and which of their bytes -----------------------------------------------------


def pick_sample(tensors: Mapping[str, TensorInfo]) -> list[str]:
    """The tensors to hash: the input embedding, the first matrix of the middle layer, the last norm and the head.

    Chosen from names and shapes only, so the same architecture always samples the same tensors; an
    unknown layout falls back to the first, middle and last tensor by name.
    """
    names = sorted(tensors)
    layers = sorted({int(m.group(3)) for n in names if (m := LAYER.search(n))})
    picked = [_first(n for n in names if EMBEDDING.search(n))]
    if layers:
        middle = layers[len(layers) // 2]
        in_middle = [n for n in names if (m := LAYER.search(n)) and int(m.group(3)) == middle]
        picked.append(_first(n for n in in_middle if len(tensors[n].shape) >= 2) or _first(in_middle))
    outside = [n for n in names if not LAYER.search(n)]
    norms = [n for n in outside if NORM.search(n)]
    picked.append(norms[-1] if norms else None)
    picked.append(_first(n for n in names if OUTPUT_HEAD.search(n)))
    chosen = list(dict.fromkeys(n for n in picked if n is not None))
    if len(chosen) < 2 and names:
        chosen = list(dict.fromkeys([*chosen, names[0], names[len(names) // 2], names[-1]]))
    return chosen


def _first(names: Iterable[str]) -> str | None:
    return next(iter(names), None)


def sample_spans(size: int, limit: int = SAMPLE_BYTES) -> list[tuple[int, int]]:
    """``(start, length)`` of the bytes hashed from a tensor of ``size`` bytes: all of it, or its ends and middle."""
    if size <= limit:
        return [(0, size)]
    part = limit // 3
    return [(0, part), ((size - part) // 2, part), (size - part, part)]


def _sample_digest(header: SafetensorsHeader, info: TensorInfo) -> tuple[str, int]:
    digest = hashlib.sha256()
    hashed = 0
    base = data_offset(header, info)
    try:
        with open(header.path, "rb") as handle:
            for start, length in sample_spans(info.end - info.start):
                handle.seek(base + start)
                chunk = handle.read(length)
                if len(chunk) != length:
                    raise FingerprintError(f"{header.path}: truncated while reading tensor {info.name}")
                digest.update(chunk)
                hashed += length
    except OSError as exc:
        raise FingerprintError(f"{header.path}: cannot read tensor {info.name}: {exc.strerror or exc}") from None
    return digest.hexdigest(), hashed


def data_offset(header: SafetensorsHeader, info: TensorInfo) -> int:
    """Where ``info``'s bytes start in its file: after the 8-byte length and the JSON header."""
    return 8 + header.header_size + info.start


# --- reading the directory -------------------------------------------------------------------


def _read_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    if not path.is_file():
        raise FingerprintError(f"{model_dir} has no config.json: not a model directory")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise FingerprintError(f"{path} is not readable JSON: {exc}") from None
    if not isinstance(config, dict):
        raise FingerprintError(f"{path} is not a JSON object")
    return config


def locate_tensors(model_dir: Path) -> dict[str, tuple[SafetensorsHeader, TensorInfo]]:
    """Every tensor of the safetensors weights (sharded or not) with the header of the file that holds it."""
    shards = _weight_files(model_dir)
    if not shards:
        raise FingerprintError(
            f"{model_dir} has no safetensors weights (model.safetensors or an index): re-save the base with "
            "model.save_pretrained(dir)"
        )
    located: dict[str, tuple[SafetensorsHeader, TensorInfo]] = {}
    for shard in shards:
        try:
            header = read_header(shard)
        except HeaderError as exc:
            raise FingerprintError(f"{shard}: {exc}") from None
        for name, info in header.tensors.items():
            located.setdefault(name, (header, info))
    return located


def _weight_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
        except (OSError, ValueError, AttributeError) as exc:
            raise FingerprintError(f"{index} is not a readable index: {exc}") from None
        if not isinstance(weight_map, dict):
            raise FingerprintError(f"{index} has no weight_map object")
        names = sorted({str(s) for s in weight_map.values()})
        bad = [n for n in names if "/" in n or "\\" in n or not (model_dir / n).is_file()]
        if bad:
            raise FingerprintError(f"{index} names {bad[0]!r}, which is not a file in {model_dir}")
        return [model_dir / n for n in names]
    return sorted(p for p in model_dir.glob("*.safetensors") if p.is_file() and not p.name.startswith("adapter_model"))


def _digest_json(value: object) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
