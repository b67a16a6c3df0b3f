"""The ``--load`` checks: load the tokenizer and model with transformers, round-trip :data:`PROBE`, one forward pass.

The only part of the doctor that needs the ``train`` extra; transformers and torch are imported inside the function.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .model_dir import ModelDirError
from .report import Finding, Severity
from .values import short, show_chars

PROBE = "안녕하세요! 오늘의 챌린지 🌱♻️\n둘째 줄: 텀블러 쓰기 👍🏽 뷁 읊"
"""Korean, emoji (with a skin-tone modifier), a newline and rare Hangul: what the datasets contain."""


def load_checks(
    model_dir: Path, facts: Mapping[str, Any], *, base: Path | None = None, weights: bool = True
) -> list[Finding]:
    """Load the tokenizer as vLLM does, round-trip :data:`PROBE`, run one CPU forward pass (``weights=False``:
    the tokenizer only, for a folder without weights)."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ModelDirError(
            f"--load needs the train extra ({exc.name} is missing): pip install torch==2.13.0 -e '.[train]'"
        ) from None
    findings: list[Finding] = []

    def add(code: str, severity: Severity, file: str, message: str, fix: str = "") -> None:
        findings.append(Finding(code, severity, file, message, fix))

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    except Exception as exc:  # any loader failure is the finding
        add(
            "load_failed",
            "error",
            "tokenizer",
            f"AutoTokenizer.from_pretrained failed: {_first_line(exc)}",
            "fix the tokenizer findings above",
        )
        return findings
    vocab = facts.get("embedding_rows") or facts.get("vocab_size")
    ids: list[int] = list(tokenizer.encode(PROBE, add_special_tokens=False))
    raw_decoded = tokenizer.decode(ids, skip_special_tokens=True)
    decoded = raw_decoded if isinstance(raw_decoded, str) else "".join(raw_decoded)
    if decoded != PROBE and decoded.lstrip(" ") != PROBE:
        lost = sorted(set(PROBE) - set(decoded))
        unk = getattr(tokenizer, "unk_token_id", None)
        if "\n" in lost:
            add(
                "newline_normalized",
                "error",
                "tokenizer",
                "the probe's newline does not survive encode/decode",
                "retrain the tokenizer with identity normalization",
            )
        if [c for c in lost if c != "\n"] or not lost:
            special_ids = set(getattr(tokenizer, "all_special_ids", None) or [])
            swallowed = sorted(special_ids & set(ids))
            add(
                "roundtrip_failed",
                "error",
                "tokenizer",
                f"the probe decodes to {short(decoded, 80)!r}"
                + (f"; lost {show_chars([c for c in lost if c != chr(10)])}" if lost else "")
                + ("; unk tokens present" if unk is not None and unk in ids else "")
                + (f"; ordinary text encoded to special token ids {swallowed}" if swallowed else ""),
                "restore the base special tokens (a special token matches ordinary text)"
                if swallowed
                else "use a tokenizer with byte_fallback (or byte-level BPE) so every character survives",
            )
    special = [i for i in (tokenizer.eos_token_id, tokenizer.bos_token_id) if isinstance(i, int)]
    if isinstance(vocab, int):
        beyond = sorted({i for i in ids + special if i >= vocab})
        if beyond:
            add(
                "token_id_out_of_range",
                "error",
                "tokenizer",
                f"after loading, ids {beyond[:5]} are >= the {vocab} embedding rows (eos id {tokenizer.eos_token_id})",
                "restore the base tokenizer or resize the embeddings",
            )
    if base is not None:
        try:
            base_tok = AutoTokenizer.from_pretrained(str(base))
            base_ids = list(base_tok.encode(PROBE, add_special_tokens=False))
            if base_ids != ids:
                add(
                    "base_diff_not_allowed",
                    "error",
                    "tokenizer",
                    "the probe encodes to other ids than with the base tokenizer",
                    "restore the base tokenizer files",
                )
        except Exception as exc:  # the base is only a reference here
            add("base_unreadable", "warning", "tokenizer", f"the base tokenizer does not load: {_first_line(exc)}")
    if not weights:
        return findings
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype="auto")
    except Exception as exc:  # any loader failure is the finding
        add(
            "load_failed",
            "error",
            "model",
            f"AutoModelForCausalLM.from_pretrained failed: {_first_line(exc)}",
            "fix the weight findings above",
        )
        return findings
    rows = int(model.get_input_embeddings().weight.shape[0])
    probe_ids = ([tokenizer.bos_token_id] if isinstance(tokenizer.bos_token_id, int) else []) + ids[:16] + special[:1]
    too_big = sorted({i for i in probe_ids if i >= rows})
    if too_big:
        add(
            "forward_failed",
            "error",
            "model",
            f"token ids {too_big} are >= the {rows} embedding rows: the forward pass raises IndexError on CPU and "
            "'CUDA error: device-side assert triggered' on GPU",
            "restore the base tokenizer (eos/added tokens) or resize the embeddings",
        )
        return findings
    try:
        with torch.no_grad():
            logits = model(torch.tensor([probe_ids])).logits
        if not bool(torch.isfinite(logits).all()):
            add(
                "forward_failed",
                "error",
                "model",
                "the forward pass produced NaN or inf logits",
                "check the dtype (float16 overflow?) and the merge",
            )
    except Exception as exc:  # the failure is the finding
        add("forward_failed", "error", "model", f"the forward pass failed: {_first_line(exc)}")
    return findings


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {short(text[0], 200) if text else ''}"
