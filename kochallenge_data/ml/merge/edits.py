"""What the adapter does to each base tensor: LoRA deltas with PEFT's scaling, DoRA magnitudes, trainable
token rows, saved (replacement) modules and LoRA biases, grouped by the base tensor they change."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..doctor import short
from .adapter import AdapterInfo, AdapterTensor, classify_key
from .errors import MergeError


@dataclass(frozen=True)
class LoraDelta:
    """``scaling * B @ A`` for one weight (transposed for embeddings and Conv1D), DoRA-rescaled with a magnitude."""

    a_key: str
    b_key: str
    scaling: float
    transpose: bool
    magnitude_key: str | None = None


@dataclass
class TensorEdit:
    """Everything the adapter does to one base tensor, applied in this order."""

    replacement: str | None = None
    token_key: str | None = None
    token_rows: tuple[int, ...] = ()
    lora: LoraDelta | None = None
    bias: tuple[str, float] | None = None


def plan_edits(adapter: AdapterInfo) -> dict[str, TensorEdit]:
    """Group the adapter's tensors by the base tensor they change; raise :class:`MergeError` on a broken set."""
    by_module: dict[str, dict[str, AdapterTensor]] = {}
    edits: dict[str, TensorEdit] = {}
    for key in adapter.tensors:
        tensor = classify_key(key)
        if tensor.kind in ("full", "token_rows"):
            edit = edits.setdefault(tensor.target, TensorEdit())
            if tensor.kind == "full":
                if edit.replacement is not None:
                    raise MergeError(f"the adapter saves {tensor.target} twice ({edit.replacement!r} and {key!r})")
                edit.replacement = key
            else:
                edit.token_key = key
                edit.token_rows = token_indices(adapter.config, tensor.module, adapter.tensors[key].shape[0])
            continue
        by_module.setdefault(tensor.module, {})[tensor.kind] = tensor
    fan_in_fan_out = bool(adapter.config.get("fan_in_fan_out"))
    for module, parts in by_module.items():
        embedding = "lora_embedding_A" in parts or "lora_embedding_B" in parts
        prefix = "lora_embedding_" if embedding else "lora_"
        a, b = parts.get(prefix + "A"), parts.get(prefix + "B")
        if a is None or b is None:
            raise MergeError(f"the adapter has half a LoRA pair for {module}: {sorted(parts)} (a damaged adapter)")
        rank = adapter.tensors[a.key].shape[0]
        scaling = lora_scaling(adapter.config, module, rank)
        magnitude = parts.get("magnitude")
        if magnitude is not None and (embedding or fan_in_fan_out):
            raise MergeError(f"{module}: DoRA is merged for linear layers only (this one is an embedding or Conv1D)")
        edit = edits.setdefault(module + ".weight", TensorEdit())
        edit.lora = LoraDelta(
            a_key=a.key,
            b_key=b.key,
            scaling=scaling,
            transpose=embedding or fan_in_fan_out,
            magnitude_key=magnitude.key if magnitude else None,
        )
        if "lora_B_bias" in parts:
            edits.setdefault(module + ".bias", TensorEdit()).bias = (parts["lora_B_bias"].key, scaling)
    return edits


def lora_scaling(config: Mapping[str, Any], module: str, rank: int) -> float:
    """PEFT's scale of ``B @ A``: ``alpha / r`` (``alpha / sqrt(r)`` with rsLoRA); ``alpha_pattern`` may override alpha.

    ``rank`` is read from the saved ``lora_A`` (what ``rank_pattern`` made it); patterns match a module
    name's tail as PEFT's ``get_pattern_key`` does.
    """
    alpha = config.get("lora_alpha", 8)
    patterns = config.get("alpha_pattern") or {}
    for pattern, value in patterns.items():
        if re.match(rf"(.*\.)?({pattern})$", module):
            alpha = value
            break
    if not isinstance(alpha, int | float) or rank <= 0:
        raise MergeError(f"adapter_config.json: lora_alpha {alpha!r} or rank {rank} cannot scale {module}")
    return float(alpha) / (math.sqrt(rank) if config.get("use_rslora") else rank)


def token_indices(config: Mapping[str, Any], module: str, rows: int) -> tuple[int, ...]:
    """The vocabulary rows a ``trainable_tokens_delta`` of ``module`` replaces, from ``trainable_token_indices``.

    A list applies to the input embedding (the only delta PEFT saves then); a dict maps a module name
    tail to its list (PEFT matches with ``endswith``; the longest matching key wins here).
    """
    spec = config.get("trainable_token_indices")
    chosen: object = spec
    if isinstance(spec, dict):
        keys = sorted((k for k in spec if module.endswith(k)), key=len)
        chosen = spec[keys[-1]] if keys else None
    if not isinstance(chosen, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in chosen):
        raise MergeError(
            f"the adapter has trainable token rows for {module} but adapter_config.json gives no "
            f"trainable_token_indices for it ({short(json.dumps(spec), 60)})"
        )
    if len(chosen) != rows or len(set(chosen)) != len(chosen) or min(chosen, default=0) < 0:
        raise MergeError(
            f"{module}: trainable_token_indices lists {len(chosen)} ids (distinct and >= 0 needed) for "
            f"{rows} saved rows"
        )
    return tuple(chosen)
