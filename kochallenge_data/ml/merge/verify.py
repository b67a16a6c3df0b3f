"""Verification: the probe's logits through base + adapter (peft, unmerged) must match the reloaded merged
folder's, in the base dtype, one model in memory at a time. torch, transformers and peft load inside."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

from ..doctor import PROBE
from .errors import MergeError
from .tokenizer import TokenizerPlan


def _probe_ids(tokenizer: Any) -> list[int]:
    ids: list[int] = list(tokenizer.encode(PROBE, add_special_tokens=True))
    return ids[:32]


def _load_model(path: Path, dtype: str, device: str) -> Any:
    """A model in ``dtype``; on CUDA what does not fit the GPU stays on the CPU (device_map="auto")."""
    import torch
    from transformers import AutoModelForCausalLM

    extra: dict[str, Any] = {"device_map": "auto"} if device == "cuda" else {}
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=getattr(torch, dtype), **extra)


def _release() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _logits(model: Any, ids: list[int]) -> Any:
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids], device=model.device)).logits.float().cpu()


def verify_merge(
    base_path: Path, adapter_path: Path, tmp: Path, plan: TokenizerPlan, dtype: str, device: str
) -> dict[str, Any]:
    """Run the probe through base + adapter (peft, unmerged), then through the reloaded OUT, one model at a time."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    ids = _probe_ids(AutoTokenizer.from_pretrained(str(adapter_path if plan.changed else base_path)))
    if not ids or max(ids) >= plan.rows:
        raise MergeError(f"the probe encodes to ids {ids[:8]} that do not fit {plan.rows} embedding rows")
    if _probe_ids(AutoTokenizer.from_pretrained(str(tmp))) != ids:
        raise MergeError("the merged directory's tokenizer encodes the probe differently from the training tokenizer")
    model = _load_model(base_path, dtype, device)
    if int(model.get_input_embeddings().weight.shape[0]) != plan.rows:
        model.resize_token_embeddings(plan.rows, mean_resizing=False)
    base_logits = _logits(model, ids)
    unmerged = PeftModel.from_pretrained(model, str(adapter_path))
    unmerged.train(False)
    reference = _logits(unmerged, ids)
    del model, unmerged
    _release()  # one model in memory at a time
    reloaded = _load_model(tmp, dtype, device)
    got = _logits(reloaded, ids)
    del reloaded
    _release()
    diff = float((got - reference).abs().max())
    scale = float(reference.abs().max())
    tolerance = (2e-2 + 5e-2 * scale) if dtype != "float32" else (1e-4 + 1e-3 * scale)
    agreement = float((got.argmax(-1) == reference.argmax(-1)).float().mean())
    verification = {
        "dtype": dtype,
        "probe_tokens": len(ids),
        "max_abs_logit_diff": round(diff, 6),
        "tolerance": round(tolerance, 6),
        "top1_agreement": round(agreement, 4),
        "max_abs_change_vs_base": round(float((reference - base_logits).abs().max()), 6),
    }
    if not diff <= tolerance:  # also catches NaN
        raise MergeError(
            f"the reloaded merge does not reproduce the adapter: max logit difference {diff:.4g} > {tolerance:.4g} "
            "(a quantized base, or a LoRA variant this merge does not know)"
        )
    return verification
