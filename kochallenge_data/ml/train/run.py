"""One training run: audit, LoRA fine-tune on TRL's SFTTrainer, save once, evaluate the real answers.

Distributed runs (``accelerate launch -m kochallenge_data train …`` or ``torchrun … -m kochallenge_data
train …``) run this same function in every process. Every process tokenizes and trains; the adapter
is saved through the trainer (so FSDP and DeepSpeed ZeRO-3 gather it); only the main process writes
the run's files, prints and generates. The batch plan counts every process, and the effective batch
recorded is the one the optimizer saw.

Nothing here changes the base's tokenizer or config files: the pad used for batches lives in the
collator only, and only the adapter is saved.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ...errors import KochallengeError
from ...models import Record
from ...prompt import PromptLayout, load_prompt_layout
from ...writer import json_bytes, sha256_file, write_atomic
from .base import (
    accelerator_memory_gib,
    eos_and_pad,
    load_base_tokenizer,
    model_length_limit,
    require_train_extra,
    stop_ids,
)
from .examples import (
    LengthAudit,
    TokenizedExample,
    audit_lengths,
    chat_prompt_layout,
    grouped_validation,
    load_training_records,
    split_validation,
    tokenize_chat_record,
    tokenize_record,
)
from .memory import ModelShape, estimate_memory, largest_fitting_batch
from .options import TrainOptions
from .plan import (
    BatchPlan,
    check_quantization,
    choose_precision,
    count_parameters,
    default_eval_steps,
    plan_batches,
    use_gradient_checkpointing,
)
from .report import find_resume_checkpoint, loss_curves, plot_curves, resume_mismatches
from .trainer import (
    CHECKPOINTS_DIR,
    check_world,
    is_main_process,
    load_model,
    make_trainer,
    save_adapter,
)

CONFIG_FILE = "train_config.json"
REPORT_FILE = "training_report.json"
CURVES_PNG = "loss_curves.png"
PROMPT_FILE = "prompt.j2"
EVALUATION_DIR = "evaluation"
RUN_FILE = "run.json"
"""Written into the checkpoints folder when a run starts, so ``--resume`` can refuse a different run."""

ProgressFn = Callable[[str], None]


@dataclass
class TrainResult:
    """Where the run wrote its files, and the report it wrote (empty on processes other than the main one)."""

    out: Path
    adapter_dir: Path
    report: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class Prepared:
    """Everything known before a weight loads."""

    layout: PromptLayout
    system_role: bool | None
    records: list[Record]
    validation_records: list[Record]
    train_set: list[TokenizedExample]
    validation_set: list[TokenizedExample]
    dropped: list[TokenizedExample]
    validation_source: str
    max_length: int
    longest_completion: int
    eos_id: int
    pad_id: int
    pad_note: str


def world_size() -> int:
    """Processes in this run, from the variables torchrun and accelerate launch set."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def train(options: TrainOptions, progress: ProgressFn = print, callbacks: Sequence[Any] = ()) -> TrainResult:
    """Audit, fine-tune with LoRA, save the adapter, prompt template, config, report and evaluation under ``out``.

    ``callbacks`` are extra ``transformers.TrainerCallback`` objects (a tracker, a test's interruption).
    """
    require_train_extra()
    import torch

    started = time.perf_counter()
    main = is_main_process()
    say = progress if main else _quiet
    cuda = torch.cuda.is_available()
    check_quantization(options.quantization, cuda)
    precision = choose_precision(options.precision, cuda, cuda and torch.cuda.is_bf16_supported(), options.quantization)
    tokenizer = load_base_tokenizer(options.base, options.trust_remote_code)
    prepared = prepare(options, tokenizer, say)
    fingerprint = _base_fingerprint(options.base, say)

    free_gib = accelerator_memory_gib()
    parameters = count_parameters(options.base)
    checkpointing = use_gradient_checkpointing(options.gradient_checkpointing, parameters)
    fitted = options.batch_size or _fitted_batch(options, prepared, free_gib, parameters, precision, checkpointing, say)
    plan = plan_batches(options.effective_batch_size, free_gib, fitted, world_size())
    if plan.effective != options.effective_batch_size:
        wanted = options.effective_batch_size
        say(f"effective batch {wanted} rounds to {plan.effective} over {plan.world_size} processes")
    eval_steps = options.eval_steps or default_eval_steps(len(prepared.train_set), plan)
    device = "cuda" if cuda else "cpu"
    say(
        f"training on {plan.world_size} x {device} ({precision}"
        + (", 4-bit base" if options.quantization == "4bit" else "")
        + (", gradient checkpointing" if checkpointing else "")
        + f"): {len(prepared.train_set)} train / {len(prepared.validation_set)} validation records, batch "
        f"{plan.per_device} x {plan.accumulation} accumulation x {plan.world_size} processes = {plan.effective}, "
        f"max length {prepared.max_length}; pad: {prepared.pad_note}"
    )

    checkpoints = options.out / CHECKPOINTS_DIR
    resume_from = _resume_point(options, checkpoints, main) if options.resume else None
    options.out.mkdir(parents=True, exist_ok=True)
    if main and resume_from is None:
        checkpoints.mkdir(parents=True, exist_ok=True)
        write_atomic(checkpoints / RUN_FILE, json_bytes(_resume_record(options)))

    model = load_model(options, precision)
    trainer = make_trainer(
        options,
        model,
        tokenizer,
        prepared.train_set,
        prepared.validation_set,
        prepared.pad_id,
        plan,
        eval_steps,
        precision,
        checkpointing,
        callbacks,
    )
    check_world(trainer, plan)
    train_started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    train_seconds = time.perf_counter() - train_started
    final = trainer.evaluate()
    adapter_dir = save_adapter(trainer, options.out, main)
    if not main:
        return TrainResult(out=options.out, adapter_dir=adapter_dir, report={})

    state = trainer.state
    max_new_tokens = options.max_new_tokens or completion_budget(prepared.longest_completion)
    write_atomic(options.out / PROMPT_FILE, prepared.layout.source.encode("utf-8"))
    evaluation = _evaluate(trainer, tokenizer, prepared, options, max_new_tokens, say)
    curves = loss_curves(state.log_history)
    report: dict[str, Any] = {
        "records": {
            "total": len(prepared.records),
            "train": len(prepared.train_set),
            "validation": len(prepared.validation_set),
            "validation_source": prepared.validation_source,
            "dropped_truncated": [{"index": e.index, "tokens": e.length} for e in prepared.dropped],
        },
        "max_length": prepared.max_length,
        "longest_completion_tokens": prepared.longest_completion,
        "device": device,
        "world_size": plan.world_size,
        "effective_batch_size": plan.effective,
        "precision": precision,
        "gradient_checkpointing": checkpointing,
        "pad": prepared.pad_note,
        "eos_token_id": prepared.eos_id,
        "resumed_from": str(resume_from) if resume_from else None,
        "steps": state.global_step,
        "epochs": round(float(state.epoch or 0.0), 4),
        "planned_steps": state.max_steps,
        "stopped_early": state.global_step < state.max_steps,
        "best_step": state.best_global_step,
        "best_validation_loss": state.best_metric,
        "final_validation_loss": final.get("eval_loss"),
        "train_seconds": round(train_seconds, 3),
        "seconds_per_step": round(train_seconds / state.global_step, 3) if state.global_step else None,
        "loss_curves": curves,
        "evaluation": evaluation,
        "seconds": round(time.perf_counter() - started, 3),
    }
    files = {"adapter": adapter_dir, "prompt": options.out / PROMPT_FILE}
    if plot_curves(curves, options.out / CURVES_PNG):
        files["curves_png"] = options.out / CURVES_PNG
    config = run_config(options, prepared, plan, eval_steps, precision, checkpointing, parameters, max_new_tokens)
    config["base_fingerprint"] = fingerprint
    write_atomic(options.out / CONFIG_FILE, json_bytes(config))
    write_atomic(options.out / REPORT_FILE, json_bytes(report))
    files.update(config=options.out / CONFIG_FILE, report=options.out / REPORT_FILE)
    if evaluation.get("files"):
        files.update({f"evaluation_{k}": Path(v) for k, v in evaluation["files"].items()})
    if not options.keep_checkpoints:
        shutil.rmtree(checkpoints, ignore_errors=True)
    return TrainResult(out=options.out, adapter_dir=adapter_dir, report=report, files=files)


def _fitted_batch(
    options: TrainOptions,
    prepared: Prepared,
    free_gib: float | None,
    parameters: int | None,
    precision: str,
    checkpointing: bool,
    say: ProgressFn,
) -> int | None:
    """The per-device batch the memory estimate fits in free GPU memory, for the longest example; None (the
    memory table decides) on CPU or when the base's shape is unreadable."""
    if free_gib is None:
        return None
    try:
        config = orjson.loads((options.base / "config.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    shape = ModelShape.from_config(config, parameters) if isinstance(config, dict) else None
    if shape is None:
        return None
    settings: dict[str, Any] = {
        "precision": precision,
        "quantization": options.quantization,
        "checkpointing": checkpointing,
        "sequence": max(e.length for e in [*prepared.train_set, *prepared.validation_set]),
        "lora_rank": options.lora_r,
    }
    batch = largest_fitting_batch(shape, free_gib, **settings)
    if batch is None:
        need = estimate_memory(shape, batch=1, **settings).total
        say(
            f"warning: one sequence is estimated at {need:.1f} GiB and {free_gib:.1f} GiB is free; if it runs out of "
            "memory, try --gradient-checkpointing on, --quantization 4bit, a shorter --max-length or FSDP "
            "(docs/accelerate/fsdp.yaml)"
        )
        return 1
    return batch


def _base_fingerprint(base: Path, say: ProgressFn) -> dict[str, Any] | None:
    """What `merge` checks the base against, taken before training so a bad base fails in seconds, not after."""
    from ..fingerprint import FingerprintError, base_fingerprint

    try:
        return base_fingerprint(base)
    except FingerprintError as exc:
        say(f"warning: the base cannot be fingerprinted ({exc}); merge will not be able to verify it")
        return None


def _quiet(_: str) -> None:
    """Progress for processes other than the main one: one voice per run."""


def completion_budget(longest_completion: int) -> int:
    """Tokens to let the model generate: the longest trained completion plus a quarter, so a slightly longer answer
    still ends in its own eos instead of a length stop."""
    return longest_completion + max(16, longest_completion // 4)


# --------------------------------------------------------------------------------------------
# before any weight loads


def prepare(options: TrainOptions, tokenizer: Any, say: ProgressFn) -> Prepared:
    """Records, the prompt layout, tokenized examples, the length audit and the validation split."""
    records = load_training_records(options.data, minimum=1 if options.validation else 2)
    validation_records = load_training_records(options.validation, minimum=1) if options.validation else []
    eos_id, pad_id, pad_note = eos_and_pad(tokenizer)
    limit = model_length_limit(options.base, tokenizer)
    max_length = min(options.max_length, limit) if limit else options.max_length
    system_role: bool | None = None
    if options.prompt_mode == "chat-template":
        layout, system_role = chat_prompt_layout(tokenizer, [*records, *validation_records])
        stops = stop_ids(options.base, eos_id)

        def tokenize(record: Record, index: int) -> TokenizedExample:
            return tokenize_chat_record(tokenizer, layout, record, bool(system_role), stops, index)

    else:
        layout = load_prompt_layout(options.prompt_template)

        def tokenize(record: Record, index: int) -> TokenizedExample:
            return tokenize_record(tokenizer, layout, record, eos_id, index)

    audit = _audited([tokenize(r, i) for i, r in enumerate(records)], max_length, options, options.data, limit)
    validation_source = str(options.validation)
    if options.validation:
        held = _audited(
            [tokenize(r, i) for i, r in enumerate(validation_records)], max_length, options, options.validation, limit
        )
        train_set, validation_set, dropped = audit.kept, held.kept, audit.truncated + held.truncated
        if not train_set or not validation_set:
            raise KochallengeError("no training or validation record fits in --max-length; raise it")
    else:
        fitting = [e.index for e in audit.kept]
        grouped = grouped_validation(options.data, records, fitting, options.validation_share, options.seed)
        train_ids, validation_ids = grouped or split_validation(len(fitting), options.validation_share, options.seed)
        validation_source = f"{options.validation_share:g} share, " + (
            "whole pool items held out" if grouped else "random records (too few items to group)"
        )
        train_set = [audit.kept[i] for i in train_ids]
        validation_set = [audit.kept[i] for i in validation_ids]
        dropped = audit.truncated
        validation_records = [records[e.index] for e in validation_set]
    if dropped:
        say(f"dropped {len(dropped)} records that do not fit in {max_length} tokens: {audit.describe()}")
    kept = [*train_set, *validation_set]
    return Prepared(
        layout=layout,
        system_role=system_role,
        records=records,
        validation_records=validation_records,
        train_set=train_set,
        validation_set=validation_set,
        dropped=dropped,
        validation_source=validation_source,
        max_length=max_length,
        longest_completion=max(e.completion_length for e in kept),
        eos_id=eos_id,
        pad_id=pad_id,
        pad_note=pad_note,
    )


def _audited(
    examples: list[TokenizedExample], max_length: int, options: TrainOptions, path: Path, limit: int | None
) -> LengthAudit:
    audit = audit_lengths(examples, max_length)
    if audit.truncated and not options.drop_truncated:
        raise KochallengeError(
            f"{path}: {len(audit.truncated)} of {len(examples)} records would lose completion tokens or "
            f"the eos at max length {max_length}: {audit.describe()}; raise --max-length"
            + (f" (the base allows {limit})" if limit else "")
            + " or pass --drop-truncated to drop them and list them in the report"
        )
    return audit


def _resume_record(options: TrainOptions) -> dict[str, Any]:
    record = options.model_dump(mode="json")
    record["data_sha256"] = sha256_file(options.data)
    return record


def _resume_point(options: TrainOptions, checkpoints: Path, main: bool) -> Path:
    assert options.resume is not None
    point = find_resume_checkpoint(options.resume, checkpoints)
    try:
        recorded = orjson.loads((checkpoints / RUN_FILE).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        recorded = None
    if isinstance(recorded, dict):
        differences = resume_mismatches(recorded, _resume_record(options))
        if differences:
            raise KochallengeError(
                f"--resume: {point} belongs to a run with other options ({'; '.join(differences)}); "
                "resume with the same data, base and LoRA shape, or start a new --out"
            )
    if main:
        print(f"resuming from {point}")
    return point


def _evaluate(
    trainer: Any, tokenizer: Any, prepared: Prepared, options: TrainOptions, max_new_tokens: int, say: ProgressFn
) -> dict[str, Any]:
    """Answer a sample of the validation inputs with the trained model and score them as `validate` would."""
    if options.evaluate_limit == 0:
        return {"skipped": "--evaluate-limit 0"}
    if trainer.is_fsdp_enabled or getattr(trainer, "is_deepspeed_enabled", False):
        command = f"python -m kochallenge_data evaluate --model {options.out} --data <validation file> --out <dir>"
        say(f"the model is sharded across processes, so it is evaluated after the run: {command}")
        return {"skipped": "sharded model (FSDP/DeepSpeed)", "command": command}
    from ...pools import load_pools
    from ..evaluate import generate_with_model, score_answers, write_evaluation

    records = prepared.validation_records[: options.evaluate_limit]
    prompts = [prepared.layout.render(r.instruction, r.input) for r in records]
    say(f"answering {len(records)} validation inputs with the trained model (up to {max_new_tokens} new tokens)")
    model = trainer.model
    model.eval()
    generations = generate_with_model(
        model, tokenizer, prompts, batch_size=max(1, trainer.args.per_device_eval_batch_size * 4),
        max_new_tokens=max_new_tokens,
    )  # fmt: skip
    evaluation = score_answers(
        records, generations, pools=load_pools(), expected_challenges=options.expected_challenges
    )
    written = write_evaluation(evaluation, options.out / EVALUATION_DIR)
    summary: dict[str, Any] = dict(evaluation.summary)
    summary["files"] = {k: str(v) for k, v in written.items()}
    return summary


def run_config(
    options: TrainOptions,
    prepared: Prepared,
    plan: BatchPlan,
    eval_steps: int,
    precision: str,
    checkpointing: bool,
    parameters: int | None,
    max_new_tokens: int,
) -> dict[str, Any]:
    import peft
    import torch
    import transformers
    import trl

    return {
        "options": options.model_dump(mode="json"),
        "resolved": {
            "world_size": plan.world_size,
            "per_device_batch_size": plan.per_device,
            "gradient_accumulation_steps": plan.accumulation,
            "effective_batch_size": plan.effective,
            "eval_steps": eval_steps,
            "max_length": prepared.max_length,
            "max_new_tokens": max_new_tokens,
            "longest_completion_tokens": prepared.longest_completion,
            "precision": precision,
            "gradient_checkpointing": checkpointing,
            "base_parameters": parameters,
            "prompt_mode": options.prompt_mode,
            "chat_system_role": prepared.system_role,
        },
        "data_sha256": sha256_file(options.data),
        "prompt_template": {"file": PROMPT_FILE, "source": str(prepared.layout.path)},
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "trl": trl.__version__,
        },
    }
