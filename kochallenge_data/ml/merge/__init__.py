"""``merge``: fold a LoRA adapter into its base model so that the result is safe to serve.

What it guarantees, in order (the module that does it in brackets):

1. the adapter is found (the adapter folder, or the ``train --out`` folder that holds it in ``adapter/``)
   and belongs to the base: the base matches the fingerprint recorded in ``train_config.json``
   (:mod:`~kochallenge_data.ml.fingerprint`; a mismatch is refused unless allowed, a missing record is
   noted as "base not verified"), and every LoRA, token and saved tensor fits a base tensor, from the
   safetensors headers, before anything is loaded (:mod:`.adapter`, :mod:`.edits`, :mod:`.preflight`);
2. the tokenizer: unchanged -> the base tokenizer files are copied byte for byte; grown -> the
   adapter's tokenizer and its resized embeddings are used; eos or bos changed -> refused (:mod:`.tokenizer`);
3. the merge streams tensor by tensor from the base safetensors: each tensor the adapter changes is
   computed in float32 (``W + scale * B @ A``, DoRA's rescaling, trainable token rows, saved modules)
   and cast back to its own dtype; every other tensor is copied byte for byte. Shards are written one
   tensor at a time, so memory holds one tensor, never the model (``max_shard_size`` splits the files)
   (:mod:`.tensors`);
4. metadata from the base: config.json byte-identical unless the weights need another vocab_size
   (then only that key changes), generation_config.json byte-identical; no trainer leftovers; the train
   run's ``prompt.j2`` copied byte for byte, so serving renders the prompt the model learned (:mod:`.output`);
5. verification: the unmerged model (base + adapter through peft) and then the reloaded merged
   directory run a probe in the base dtype, one model in memory at a time (on CUDA, layers that do
   not fit the GPU stay on the CPU), and their logits must agree (:mod:`.verify`); then
   :func:`~kochallenge_data.ml.doctor.doctor` must pass;
6. ``merge_report.json`` and the ``vllm serve`` command. OUT is written beside itself and renamed
   into place at the end; an existing OUT is replaced only with ``force``.

torch, transformers and peft are imported inside the functions (the ``train`` extra).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..doctor import DoctorReport, derived_max_len, doctor
from .adapter import (
    ADAPTER_SUBDIR,
    PROMPT_FILE,
    TRAIN_CONFIG,
    AdapterInfo,
    AdapterSource,
    AdapterTensor,
    adapter_mismatches,
    classify_key,
    locate_adapter,
    module_name,
    read_adapter,
    unsupported_features,
)
from .edits import LoraDelta, TensorEdit, lora_scaling, plan_edits, token_indices
from .errors import MergeError
from .output import (
    adapter_summary,
    copy_trained_prompt,
    file_sha256,
    move_into_place,
    peak_rss_mib,
    serving_dtype,
    versions,
    write_metadata,
)
from .preflight import check_base, check_inputs, recorded_fingerprint, require_train_extra
from .tensors import (
    DEFAULT_MAX_SHARD_SIZE,
    OutputTensor,
    default_device,
    parse_size,
    plan_layout,
    plan_shards,
    shard_names,
    write_merged_weights,
)
from .tokenizer import TokenizerPlan, plan_tokenizer
from .verify import verify_merge

__all__ = [
    "ADAPTER_SUBDIR",
    "DEFAULT_MAX_SHARD_SIZE",
    "PROMPT_FILE",
    "TRAIN_CONFIG",
    "AdapterInfo",
    "AdapterSource",
    "AdapterTensor",
    "LoraDelta",
    "MergeError",
    "MergeResult",
    "OutputTensor",
    "TensorEdit",
    "TokenizerPlan",
    "adapter_mismatches",
    "check_base",
    "classify_key",
    "locate_adapter",
    "lora_scaling",
    "merge_adapter",
    "module_name",
    "parse_size",
    "plan_edits",
    "plan_layout",
    "plan_shards",
    "plan_tokenizer",
    "read_adapter",
    "recorded_fingerprint",
    "shard_names",
    "token_indices",
    "unsupported_features",
    "write_merged_weights",
]


@dataclass
class MergeResult:
    out: Path
    report: dict[str, Any]
    doctor: DoctorReport
    vllm_command: str
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    base_note: str = ""
    """Whether the base matched the fingerprint recorded at training, in one line for the user."""


def merge_adapter(
    base_dir: Path | str,
    adapter_dir: Path | str,
    out_dir: Path | str,
    *,
    force: bool = False,
    device: str | None = None,
    max_model_len: int | None = None,
    allow_base_mismatch: bool = False,
    max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE,
    log: Callable[[str], None] | None = None,
) -> MergeResult:
    """Merge the adapter (its folder, or the ``train --out`` folder) into ``base_dir``; write a verified model."""
    start = time.perf_counter()
    say = log or (lambda message: print(message, file=sys.stderr))
    base_path, out = Path(base_dir), Path(out_dir)
    inputs = check_inputs(base_path, Path(adapter_dir), out, force, allow_base_mismatch, max_shard_size, say)
    adapter_path, plan = inputs.source.adapter_dir, inputs.plan
    require_train_extra()
    for note in plan.notes:
        say(note)

    tmp = out.parent / f".{out.name}.merging-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        device_used = device or default_device()
        saved_dtype = serving_dtype(inputs.base)
        say(f"merging {len(inputs.edits)} tensors in float32 on {device_used}, streaming the base shard by shard")
        shards = write_merged_weights(inputs.base, inputs.adapter, inputs.layout, tmp, inputs.shard_bytes, device_used)
        # before the base's files: a prompt.j2 the base happens to have must not stand in for the trained one
        prompt = copy_trained_prompt(inputs.source.prompt, tmp)
        if prompt is not None:
            say(f"copying the prompt template training used: {prompt['from']}")
        files = write_metadata(base_path, adapter_path, tmp, plan, inputs.base)
        files["from_train_run"] = [PROMPT_FILE] if prompt is not None else []
        if inputs.source.train_config is not None:
            # serve reads resolved.max_new_tokens from it: the answer budget the trained data needs
            shutil.copyfile(inputs.source.train_config, tmp / TRAIN_CONFIG)
            files["from_train_run"].append(TRAIN_CONFIG)
        say(f"verifying: the unmerged and the reloaded merged model run a probe in {saved_dtype}")
        verification = verify_merge(base_path, adapter_path, tmp, plan, saved_dtype, device_used)
        say("checking the merged directory with doctor")
        report = doctor(tmp, base=base_path, max_model_len=max_model_len)
        errors = report.errors
        if errors:
            listed = "; ".join(f"{f.code}: {f.message}" for f in errors[:3])
            raise MergeError(f"the merged model fails the doctor ({len(errors)} errors): {listed}")
        length = max_model_len or derived_max_len(inputs.base.text) or 0
        command = f"vllm serve {out.resolve()} --dtype {saved_dtype}" + (f" --max-model-len {length}" if length else "")
        merge_report = {
            "tool": "kochallenge_data merge",
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "base": {"path": str(base_path.resolve()), "config_sha256": file_sha256(base_path / "config.json")},
            "base_check": inputs.base_check,
            "adapter": adapter_summary(inputs.source, inputs.adapter, Path(adapter_dir)),
            "out": str(out.resolve()),
            "device": device_used,
            "merge_dtype": "float32",
            "saved_dtype": saved_dtype,
            "tensors_changed": sorted(inputs.edits),
            "max_shard_size": inputs.shard_bytes,
            "shards": shards,
            "tokenizer_changed": plan.changed,
            "embedding_rows": plan.rows,
            "files": files,
            "prompt_template": prompt,
            "verification": verification,
            "doctor": {
                "exit_code": report.exit_code(),
                "warnings": [f"{f.code}: {f.file}: {f.message}" for f in report.warnings],
            },
            "versions": versions(),
            "peak_rss_mib": peak_rss_mib(),
            "seconds": round(time.perf_counter() - start, 2),
            "vllm_command": command,
        }
        (tmp / "merge_report.json").write_text(
            json.dumps(merge_report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        move_into_place(tmp, out, force=force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.model_dir = str(out)
    return MergeResult(
        out=out,
        report=merge_report,
        doctor=report,
        vllm_command=command,
        seconds=time.perf_counter() - start,
        notes=list(plan.notes),
        base_note=inputs.base_check["note"],
    )
