"""Everything the merge can refuse from files alone, before torch loads or OUT is touched: the base is a sound
model folder matching the fingerprint recorded at training, the adapter is a LoRA this merge can fold and
fits the base, and the edits, tokenizer and tensor layout are planned."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..doctor import Inspection, ModelDirError, as_int, inspect_dir
from ..fingerprint import base_fingerprint, compare_fingerprints
from .adapter import (
    INPUT_EMBEDDING,
    TRAIN_CONFIG,
    AdapterInfo,
    AdapterSource,
    adapter_mismatches,
    locate_adapter,
    read_adapter,
    unsupported_features,
)
from .edits import TensorEdit, plan_edits
from .errors import MergeError
from .tensors import OutputTensor, parse_size, plan_layout
from .tokenizer import TokenizerPlan, plan_tokenizer

INSTALL_HINT = "pip install torch==2.13.0 -e '.[train]'"


@dataclass(frozen=True)
class MergeInputs:
    """Everything merge decided before loading torch: what to read, what to change, what to write."""

    source: AdapterSource
    adapter: AdapterInfo
    base: Inspection
    base_check: dict[str, Any]
    edits: dict[str, TensorEdit]
    plan: TokenizerPlan
    layout: list[OutputTensor]
    shard_bytes: int


def check_inputs(
    base_path: Path,
    given: Path,
    out: Path,
    force: bool,
    allow_base_mismatch: bool,
    max_shard_size: str | int,
    say: Callable[[str], None],
) -> MergeInputs:
    """Everything that can be refused from files alone, before torch loads or OUT is touched."""
    try:
        shard_bytes = parse_size(max_shard_size)
    except ValueError as exc:
        raise MergeError(f"max shard size: {exc}") from None
    if out.exists() and not force:
        raise ModelDirError(f"{out} exists; pass --force to replace it (it is replaced only after the merge verifies)")
    source = locate_adapter(given)
    if out.resolve() in (base_path.resolve(), source.adapter_dir.resolve(), given.resolve()):
        raise ModelDirError("--out must be a new directory, not the base or the adapter")
    adapter = read_adapter(source.adapter_dir)
    if source.run_dir_given:
        say(f"using the adapter in {source.adapter_dir} (the train output folder {given} was given)")
    if str(adapter.config.get("peft_type", "")).upper() != "LORA":
        raise MergeError(f"only LoRA adapters are merged; this one is {adapter.config.get('peft_type')!r}")
    unsupported = unsupported_features(adapter)
    if unsupported:
        raise MergeError(
            "the adapter uses what this merge cannot fold into plain weights: " + "; ".join(unsupported) + ". "
            "Serve it unmerged (vllm serve BASE --enable-lora) or merge it with peft's merge_and_unload"
        )
    base = sound_base(base_path)
    base_check = check_base(
        base_path, recorded_fingerprint(source.train_config), source.train_config, allow_mismatch=allow_base_mismatch
    )
    base_check["note"] = base_note(base_check)
    say(base_check["note"])
    problems = adapter_mismatches(adapter, base.weights.tensors)
    if problems:
        recorded = adapter.config.get("base_model_name_or_path")
        raise MergeError(
            f"the adapter does not belong to {base_path} (it was trained on {recorded!r}): "
            + "; ".join(problems[:3])
            + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        )
    edits = plan_edits(adapter)
    rows_name = next((n for n in base.weights.tensors if INPUT_EMBEDDING.search(n)), None)
    base_rows = base.weights.tensors[rows_name].shape[0] if rows_name else as_int(base.text.get("vocab_size")) or 0
    plan = plan_tokenizer(base, source.adapter_dir, adapter, base_rows)
    layout = plan_layout(base, adapter, edits, plan.rows)
    return MergeInputs(source, adapter, base, base_check, edits, plan, layout, shard_bytes)


def sound_base(base_path: Path) -> Inspection:
    base = inspect_dir(base_path)
    fatal = [f for f in base.findings if f.severity == "error"]
    if fatal or base.config is None:
        first = fatal[0] if fatal else None
        raise ModelDirError(
            f"the base {base_path} is not a sound model directory"
            + (f": {first.code}: {first.message}" if first else "")
            + f" (run: python -m kochallenge_data doctor {base_path})"
        )
    if not base.weights.files:
        raise ModelDirError(
            f"the base {base_path} has no safetensors weights; merge reads safetensors only "
            "(re-save the base with model.save_pretrained(dir))"
        )
    return base


def recorded_fingerprint(train_config: Path | None) -> dict[str, Any] | None:
    """The ``base_fingerprint`` that train wrote into ``train_config.json`` (None when there is none)."""
    if train_config is None:
        return None
    try:
        doc = json.loads(train_config.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise ModelDirError(f"{train_config} is not readable JSON: {exc}") from None
    recorded = doc.get("base_fingerprint") if isinstance(doc, dict) else None
    if recorded is not None and not isinstance(recorded, dict):
        raise MergeError(f"{train_config}: base_fingerprint is not a JSON object; re-run train or remove the key")
    return recorded


def check_base(
    base_path: Path, recorded: Mapping[str, Any] | None, source: Path | None, *, allow_mismatch: bool
) -> dict[str, Any]:
    """Compare the base with the recorded fingerprint; raise :class:`MergeError` on a difference unless allowed."""
    if recorded is None:
        where = f"{source} has no base_fingerprint" if source else f"no {TRAIN_CONFIG} beside the adapter"
        return {"status": "not_verified", "reason": f"{where} (an adapter from elsewhere?)"}
    differences = compare_fingerprints(recorded, base_fingerprint(base_path))
    if not differences:
        return {"status": "verified", "recorded_in": str(source)}
    if not allow_mismatch:
        listed = "; ".join(differences[:4]) + (f"; and {len(differences) - 4} more" if len(differences) > 4 else "")
        raise MergeError(
            f"{base_path} is not the base the adapter was trained on (fingerprint in {source}): {listed}. "
            "Pass the training base, or --allow-base-mismatch to merge anyway"
        )
    return {"status": "mismatch_allowed", "recorded_in": str(source), "differences": differences}


def base_note(base_check: Mapping[str, Any]) -> str:
    status = base_check["status"]
    if status == "verified":
        return f"base verified: it matches the fingerprint in {base_check['recorded_in']}"
    if status == "mismatch_allowed":
        differences = base_check["differences"]
        return (
            f"base MISMATCH allowed (--allow-base-mismatch): {len(differences)} differences from the fingerprint "
            f"in {base_check['recorded_in']}, e.g. {differences[0]}"
        )
    return f"base not verified: {base_check['reason']}"


def require_train_extra() -> None:
    missing = []
    for module in ("torch", "transformers", "peft", "safetensors"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ModelDirError(f"merge needs the train extra ({', '.join(missing)} missing): {INSTALL_HINT}")
