"""The entry points: :func:`inspect_dir` runs every file-level check, :func:`doctor` builds the report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..safetensors_header import TORCH_DTYPE_NAMES
from .base_compare import compare_with_base
from .config_checks import (
    check_context,
    check_dtype,
    check_generation,
    check_layout,
    check_structure,
    check_trainer_leftovers,
    check_weights,
    derived_max_len,
    embedding_rows,
)
from .inspection import Inspection
from .load import load_checks
from .report import FATAL_CODES, DoctorReport, Finding
from .tokenizer_checks import (
    check_char_coverage,
    check_eos,
    check_newlines,
    check_token_ids,
    check_tokenizer_files,
    eos_ids,
)
from .values import config_dtype

WEIGHT_FACTS = ("embedding_rows", "weights_dtype", "parameters", "shards")
"""Facts read from the weight files: None (unknown, not zero) when the weights were not read."""


def collect_facts(ins: Inspection) -> dict[str, Any]:
    cfg = ins.text
    eos, eos_id, cfg_ids, gen_ids = eos_ids(ins)
    facts = {
        "model_type": (ins.config or {}).get("model_type"),
        "architectures": (ins.config or {}).get("architectures"),
        "vocab_size": cfg.get("vocab_size"),
        "embedding_rows": embedding_rows(ins),
        "tokenizer_size": ins.tok.size if ins.tok.token_to_id else None,
        "tokenizer_source": ins.tok.source or None,
        "hidden_size": cfg.get("hidden_size"),
        "num_hidden_layers": cfg.get("num_hidden_layers"),
        "dtype": config_dtype(ins.config or {}),
        "weights_dtype": {TORCH_DTYPE_NAMES.get(k, k): v for k, v in ins.weights.dtypes().items()},
        "parameters": sum(t.numel for t in ins.weights.tensors.values()),
        "shards": ins.weights.files,
        "eos_token": eos,
        "eos_token_id": eos_id,
        "config_eos_token_id": cfg_ids,
        "generation_eos_token_id": gen_ids,
        "max_model_len": derived_max_len(cfg),
    }
    if not ins.weights_read:
        facts.update(dict.fromkeys(WEIGHT_FACTS))
    return facts


def inspect_dir(path: Path, *, max_model_len: int | None = None, label: str = "", weights: bool = True) -> Inspection:
    """Run every file-level check on one directory; ``weights=False`` leaves out the weight files (their
    presence, headers, shapes and dtype) and keeps every config and tokenizer check."""
    ins = Inspection(path, label, weights=weights)
    if not check_structure(ins):
        return ins
    if weights:
        check_weights(ins)
        check_dtype(ins)
    check_tokenizer_files(ins)
    check_token_ids(ins)
    check_eos(ins)
    check_char_coverage(ins)
    check_newlines(ins)
    check_generation(ins)
    check_context(ins, max_model_len)
    check_layout(ins)
    check_trainer_leftovers(ins)
    return ins


def doctor(
    model_dir: Path | str,
    *,
    base: Path | str | None = None,
    max_model_len: int | None = None,
    load: bool = False,
    weights: bool = True,
) -> DoctorReport:
    """Check ``model_dir`` (and compare it with ``base``). ``load`` needs the train extra.

    ``weights=False`` is for a host that only renders prompts (the router in front of vLLM): config.json,
    generation_config.json and the tokenizer files are checked as usual, the weights are not (vLLM's host
    checks them), in ``model_dir``, in ``base`` and, with ``load``, by loading the tokenizer only.
    """
    start = time.perf_counter()
    path = Path(model_dir)
    ins = inspect_dir(path, max_model_len=max_model_len, weights=weights)
    report = DoctorReport(
        model_dir=str(path), base_dir=str(base) if base is not None else None, weights_checked=weights
    )
    findings = list(ins.findings)
    fatal = any(f.code in FATAL_CODES for f in findings)
    if not fatal:
        report.facts = collect_facts(ins)
    if base is not None and not fatal:
        base_ins = inspect_dir(Path(base), label="base:", weights=weights)
        base_fatal = [f for f in base_ins.findings if f.code in FATAL_CODES]
        if base_fatal:
            findings.append(
                Finding(
                    "base_unreadable",
                    "error",
                    str(base),
                    f"the base cannot be inspected: {base_fatal[0].message}",
                    "pass the base model directory (the one with config.json)",
                )
            )
        else:
            before = len(ins.findings)
            compare_with_base(ins, base_ins)
            findings.extend(ins.findings[before:])
    if load and not fatal:
        findings.extend(load_checks(path, report.facts, base=Path(base) if base is not None else None, weights=weights))
    order = {"error": 0, "warning": 1, "info": 2}
    report.findings = sorted(findings, key=lambda f: order[f.severity])
    report.seconds = time.perf_counter() - start
    return report
