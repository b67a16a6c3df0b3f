"""LoRA fine-tuning on a dataset file, with the prompt layout that serving uses.

Each record becomes ``tokens(render_prompt(instruction, input)) + tokens(output) + [eos]``; the
prompt is tokenized on its own, exactly as a server tokenizes the prompt it sends, and its tokens
are masked out of the loss so the model learns the completion only. The eos is appended to every
completion because a model that never saw it never stops.

Before any weight is loaded the lengths are audited with the base tokenizer: a record whose
completion or eos would not fit in ``max_length`` is refused (or dropped and reported), never cut.
Nothing here changes the base tokenizer or config: when the base has no pad token, eos pads the
batch inside :class:`CompletionCollator` only (masked from attention and loss), and only the
adapter is saved, so the merged model's configs stay the base's.

torch, transformers and peft are imported inside the functions that need them (the ``train`` extra).
"""

from __future__ import annotations

import math
import random
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..checks.record import RecordChecker, infer_task
from ..errors import FormatError, KochallengeError
from ..formats import parse_recommendation
from ..models import Record, Task
from ..prompt import PromptLayout, load_prompt_layout
from ..writer import json_bytes, sha256_file, write_atomic

IGNORE_INDEX = -100
"""The label value transformers' loss skips: prompt tokens and padding."""

ADAPTER_DIR = "adapter"
CONFIG_FILE = "train_config.json"
REPORT_FILE = "training_report.json"
CURVES_PNG = "loss_curves.png"
PROMPT_FILE = "prompt.j2"
CHECKPOINTS_DIR = "checkpoints"

# Per-device batch sizes by free accelerator memory (GiB), for a 1-8B base with LoRA and
# sequences up to ~1k tokens: what fitted for the team. CPU runs use the smallest.
BATCH_BY_MEMORY: tuple[tuple[float, int], ...] = ((70.0, 16), (40.0, 8), (20.0, 4), (10.0, 2))
CPU_BATCH = 2

ProgressFn = Callable[[str], None]


class TrainOptions(BaseModel):
    """Everything that shapes a training run; saved as ``train_config.json`` beside the adapter."""

    model_config = ConfigDict(extra="forbid")

    data: Path
    base: Path
    out: Path
    epochs: float = Field(default=5.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1)
    learning_rate: float = Field(default=5e-5, ge=0)
    batch_size: int | None = Field(default=None, ge=1, description="per device; None picks it by memory")
    effective_batch_size: int = Field(default=16, ge=1)
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    validation_share: float = Field(default=0.05, gt=0, lt=1)
    max_length: int = Field(default=1024, ge=8)
    drop_truncated: bool = False
    eval_steps: int | None = Field(default=None, ge=1)
    early_stopping_patience: int = Field(default=3, ge=1)
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: int = Field(default=32, ge=1)
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    lora_target_modules: list[str] | None = None
    seed: int = 42
    samples: int = Field(default=3, ge=0)
    sample_max_new_tokens: int = Field(default=256, ge=1)
    expected_challenges: int = Field(default=3, ge=1)
    prompt_template: Path | None = None
    keep_checkpoints: bool = False
    show_progress: bool = True


@dataclass(frozen=True)
class TokenizedExample:
    """One record as the model sees it; ``labels`` is IGNORE_INDEX over the prompt."""

    index: int
    input_ids: list[int]
    labels: list[int]
    prompt_length: int

    @property
    def length(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True)
class LengthAudit:
    """Which examples fit in ``max_length`` and which would lose completion tokens or the eos."""

    max_length: int
    kept: list[TokenizedExample]
    truncated: list[TokenizedExample]

    def describe(self, limit: int = 5) -> str:
        shown = ", ".join(f"#{e.index} ({e.length} tokens)" for e in self.truncated[:limit])
        more = f" and {len(self.truncated) - limit} more" if len(self.truncated) > limit else ""
        return f"{shown}{more}"


@dataclass
class TrainResult:
    """Where the run wrote its files, and the report it wrote."""

    out: Path
    adapter_dir: Path
    report: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)


FLAG_NAMES = {"early_stopping_patience": "--patience", "base": "--base", "prompt_template": "--prompt-template"}
"""Option fields whose command-line flag is not simply the field name with dashes."""


def make_train_options(**values: Any) -> TrainOptions:
    """Validate options, turning a bad value into an error that names the flag."""
    try:
        return TrainOptions.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field_name = ".".join(str(p) for p in first["loc"])
        name = FLAG_NAMES.get(field_name, "--" + field_name.replace("_", "-"))
        raise KochallengeError(f"{name}: {first['msg']} (got {first.get('input')!r})") from exc


# --------------------------------------------------------------------------------------------
# pure steps


def load_training_records(path: Path) -> list[Record]:
    """Read a JSON array or JSONL dataset; every row must be an instruction/input/output record."""
    from ..validate import read_dataset

    records = []
    for index, row in enumerate(read_dataset(path)):
        try:
            records.append(Record.model_validate(row))
        except ValidationError as exc:
            first = exc.errors()[0]
            place = ".".join(str(p) for p in first["loc"]) or "record"
            raise KochallengeError(
                f"{path}: record {index}: {place}: {first['msg']}; run `python -m kochallenge_data validate {path}`"
            ) from exc
    if len(records) < 2:
        raise KochallengeError(f"{path}: {len(records)} records; training needs at least 2 (one for validation)")
    return records


def tokenize_record(
    tokenizer: Any, layout: PromptLayout, record: Record, eos_id: int, index: int = 0
) -> TokenizedExample:
    """Prompt tokens as serving sends them, then the output and one eos; the loss sees the last two only."""
    prompt = layout.render(record.instruction, record.input)
    prompt_ids: list[int] = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    if prompt_ids and prompt_ids[-1] == eos_id:
        raise KochallengeError(
            "the base tokenizer appends eos to every text, so the prompt would end the answer before it starts; "
            "use a base whose tokenizer adds only a bos (most decoder-only models)"
        )
    completion_ids: list[int] = [*tokenizer(record.output, add_special_tokens=False)["input_ids"], eos_id]
    return TokenizedExample(
        index=index,
        input_ids=prompt_ids + completion_ids,
        labels=[IGNORE_INDEX] * len(prompt_ids) + completion_ids,
        prompt_length=len(prompt_ids),
    )


def audit_lengths(examples: Sequence[TokenizedExample], max_length: int) -> LengthAudit:
    """Split examples into those that fit whole and those a ``max_length`` cut would damage."""
    kept = [e for e in examples if e.length <= max_length]
    truncated = [e for e in examples if e.length > max_length]
    return LengthAudit(max_length=max_length, kept=kept, truncated=truncated)


def split_validation(count: int, share: float, seed: int) -> tuple[list[int], list[int]]:
    """Shuffle indices with ``seed`` and hold out ``share`` of them (at least one) for validation."""
    if count < 2:
        raise KochallengeError(f"{count} usable records; training needs at least 2 (one for validation)")
    order = list(range(count))
    random.Random(seed).shuffle(order)
    held_out = min(count - 1, max(1, round(count * share)))
    return sorted(order[held_out:]), sorted(order[:held_out])


def plan_batches(effective_batch_size: int, memory_gib: float | None, batch_size: int | None) -> tuple[int, int]:
    """Per-device batch size (given, or by free memory) and the accumulation that reaches the effective size."""
    if batch_size is None:
        batch_size = CPU_BATCH
        if memory_gib is not None:
            batch_size = next((size for floor, size in BATCH_BY_MEMORY if memory_gib >= floor), 1)
    per_device = min(batch_size, effective_batch_size)
    return per_device, max(1, math.ceil(effective_batch_size / per_device))


def default_eval_steps(train_count: int, per_device: int, accumulation: int) -> int:
    """Evaluate twice per epoch, so early stopping reacts within half an epoch."""
    steps_per_epoch = max(1, math.ceil(train_count / (per_device * accumulation)))
    return max(1, steps_per_epoch // 2)


def pad_examples(examples: Sequence[Mapping[str, list[int]]], pad_id: int) -> dict[str, list[list[int]]]:
    """Right-pad a batch: padding is masked from attention and from the loss."""
    width = max(len(e["input_ids"]) for e in examples)
    batch: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": [], "labels": []}
    for example in examples:
        missing = width - len(example["input_ids"])
        batch["input_ids"].append(example["input_ids"] + [pad_id] * missing)
        batch["attention_mask"].append([1] * len(example["input_ids"]) + [0] * missing)
        batch["labels"].append(example["labels"] + [IGNORE_INDEX] * missing)
    return batch


@dataclass(frozen=True)
class CompletionCollator:
    """Pads with ``pad_id`` (the base's pad, or eos when it has none) without touching the tokenizer."""

    pad_id: int

    def __call__(self, examples: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        return {k: torch.tensor(v, dtype=torch.long) for k, v in pad_examples(examples, self.pad_id).items()}


def loss_curves(log_history: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, float]]]:
    """Training and validation loss by step, from the trainer's log history."""
    curves: dict[str, list[dict[str, float]]] = {"train": [], "validation": []}
    for entry in log_history:
        step = float(entry.get("step", 0))
        if "loss" in entry:
            curves["train"].append({"step": step, "loss": float(entry["loss"])})
        point = {"step": step, "loss": float(entry.get("eval_loss", 0.0))}
        # The closing evaluate() of the best model repeats the last point when the best is the last.
        if "eval_loss" in entry and point not in curves["validation"][-1:]:
            curves["validation"].append(point)
    return curves


def plot_curves(curves: Mapping[str, Sequence[Mapping[str, float]]], path: Path) -> bool:
    """Write the loss curves as PNG when matplotlib is installed; False (JSON only) when it is not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(figsize=(7, 4))
    for name, points in curves.items():
        if points:
            axes.plot([p["step"] for p in points], [p["loss"] for p in points], marker=".", label=name)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title("LoRA fine-tuning loss")
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def judge_sample(record: Record, task: Task, text: str, expected_challenges: int) -> dict[str, Any]:
    """Parse a generated answer the way the service does: the shared parser, or the feedback checks."""
    problem: str | None = None
    if task == "feedback":
        candidate = {"instruction": record.instruction, "input": record.input, "output": text}
        findings = RecordChecker(check_spacing=False).check(0, candidate, "feedback")
        problem = "; ".join(f"{f.code}: {f.message}" for f in findings) or None
    else:
        try:
            parse_recommendation(text, expected_challenges)
        except FormatError as exc:
            problem = str(exc)
    return {"task": task, "input": record.input, "output": text, "parsed": problem is None, "problem": problem}


# --------------------------------------------------------------------------------------------
# the run


def _require_train_extra() -> None:
    try:
        import peft  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise KochallengeError(
            f"train needs the train extra ({exc.name} is missing): pip install torch==2.13.0 -e '.[train]'"
        ) from None


def load_base_tokenizer(base: Path) -> Any:
    from transformers import AutoTokenizer

    if not (base / "config.json").is_file():
        raise KochallengeError(f"{base}: no config.json; pass the base model directory with --base")
    try:
        return AutoTokenizer.from_pretrained(str(base))
    except Exception as exc:  # loader errors are the user's model files
        raise KochallengeError(
            f"{base}: the tokenizer does not load ({type(exc).__name__}: {exc}); "
            f"run `python -m kochallenge_data doctor {base}`"
        ) from exc


def eos_and_pad(tokenizer: Any) -> tuple[int, int, str]:
    """The eos id, the id that pads batches, and a sentence saying where the pad came from."""
    eos_id = tokenizer.eos_token_id
    if not isinstance(eos_id, int):
        raise KochallengeError(
            "the base tokenizer has no eos token, so the model could never learn to stop; "
            "set eos_token in the base tokenizer_config.json (run doctor on the base)"
        )
    pad_id = tokenizer.pad_token_id
    if isinstance(pad_id, int):
        return eos_id, pad_id, f"the base pad token {tokenizer.pad_token!r} (id {pad_id})"
    return (
        eos_id,
        eos_id,
        (
            f"the base has no pad token: eos {tokenizer.eos_token!r} (id {eos_id}) pads batches inside the collator "
            "only, masked from attention and loss; no config or tokenizer file is changed"
        ),
    )


def model_length_limit(base: Path, tokenizer: Any) -> int | None:
    """The base's positions (config.json), or the tokenizer's model_max_length when it is a real number."""
    import orjson

    try:
        config = orjson.loads((base / "config.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        config = {}
    text = config.get("text_config", config) if isinstance(config, dict) else {}
    positions = text.get("max_position_embeddings") if isinstance(text, dict) else None
    limits = [v for v in (positions, getattr(tokenizer, "model_max_length", None)) if isinstance(v, int) and v < 10**7]
    return min(limits) if limits else None


def accelerator_memory_gib() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info()
    return free / 2**30


def train(options: TrainOptions, progress: ProgressFn = print) -> TrainResult:
    """Audit, fine-tune with LoRA, save the adapter, prompt template, config and report under ``options.out``."""
    _require_train_extra()
    import torch

    started = time.perf_counter()
    layout = load_prompt_layout(options.prompt_template)
    records = load_training_records(options.data)
    tokenizer = load_base_tokenizer(options.base)
    eos_id, pad_id, pad_note = eos_and_pad(tokenizer)
    limit = model_length_limit(options.base, tokenizer)
    max_length = min(options.max_length, limit) if limit else options.max_length

    examples = [tokenize_record(tokenizer, layout, r, eos_id, i) for i, r in enumerate(records)]
    audit = audit_lengths(examples, max_length)
    if audit.truncated and not options.drop_truncated:
        raise KochallengeError(
            f"{options.data}: {len(audit.truncated)} of {len(examples)} records would lose completion tokens or "
            f"the eos at max length {max_length}: {audit.describe()}; raise --max-length"
            + (f" (the base allows {limit})" if limit else "")
            + " or pass --drop-truncated to drop them and list them in the report"
        )
    if audit.truncated:
        progress(f"dropped {len(audit.truncated)} records that do not fit in {max_length} tokens: {audit.describe()}")
    train_ids, validation_ids = split_validation(len(audit.kept), options.validation_share, options.seed)
    train_set = [audit.kept[i] for i in train_ids]
    validation_set = [audit.kept[i] for i in validation_ids]

    memory = accelerator_memory_gib()
    per_device, accumulation = plan_batches(options.effective_batch_size, memory, options.batch_size)
    eval_steps = options.eval_steps or default_eval_steps(len(train_set), per_device, accumulation)
    device = "cuda" if memory is not None else "cpu"
    progress(
        f"training on {device}: {len(train_set)} train / {len(validation_set)} validation records, batch "
        f"{per_device} x {accumulation} accumulation, max length {max_length}; pad: {pad_note}"
    )

    options.out.mkdir(parents=True, exist_ok=True)
    model = _load_lora_model(options, device)
    trainer = _make_trainer(options, model, train_set, validation_set, pad_id, per_device, accumulation, eval_steps)
    train_started = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - train_started
    final = trainer.evaluate()
    state = trainer.state

    adapter_dir = options.out / ADAPTER_DIR
    model.save_pretrained(str(adapter_dir))
    write_atomic(options.out / PROMPT_FILE, layout.source.encode("utf-8"))
    by_index = {e.index: records[e.index] for e in validation_set}
    samples = _generate_samples(model, tokenizer, layout, [by_index[e.index] for e in validation_set], options, pad_id)
    curves = loss_curves(state.log_history)
    report: dict[str, Any] = {
        "records": {
            "total": len(records),
            "train": len(train_set),
            "validation": len(validation_set),
            "dropped_truncated": [{"index": e.index, "tokens": e.length} for e in audit.truncated],
        },
        "max_length": max_length,
        "device": device,
        "pad": pad_note,
        "eos_token_id": eos_id,
        "steps": state.global_step,
        "planned_steps": state.max_steps,
        "stopped_early": state.global_step < state.max_steps,
        "best_step": state.best_global_step,
        "best_validation_loss": state.best_metric,
        "final_validation_loss": final.get("eval_loss"),
        "train_seconds": round(train_seconds, 3),
        "steps_per_second": round(state.global_step / train_seconds, 3) if train_seconds > 0 else None,
        "loss_curves": curves,
        "samples": samples,
        "samples_parsed": sum(1 for s in samples if s["parsed"]),
        "seconds": round(time.perf_counter() - started, 3),
    }
    files = {"adapter": adapter_dir, "prompt": options.out / PROMPT_FILE}
    if plot_curves(curves, options.out / CURVES_PNG):
        files["curves_png"] = options.out / CURVES_PNG
    config = _run_config(options, layout, per_device, accumulation, eval_steps, max_length, device, torch.__version__)
    write_atomic(options.out / CONFIG_FILE, json_bytes(config))
    write_atomic(options.out / REPORT_FILE, json_bytes(report))
    files.update(config=options.out / CONFIG_FILE, report=options.out / REPORT_FILE)
    if not options.keep_checkpoints:
        shutil.rmtree(options.out / CHECKPOINTS_DIR, ignore_errors=True)
    return TrainResult(out=options.out, adapter_dir=adapter_dir, report=report, files=files)


def _load_lora_model(options: TrainOptions, device: str) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    use_bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    try:
        base = AutoModelForCausalLM.from_pretrained(
            str(options.base), dtype=torch.bfloat16 if use_bf16 else torch.float32
        )
    except Exception as exc:  # loader errors are the user's model files
        raise KochallengeError(
            f"{options.base}: the model does not load ({type(exc).__name__}: {exc}); "
            f"run `python -m kochallenge_data doctor {options.base}`"
        ) from exc
    lora = LoraConfig(
        task_type="CAUSAL_LM",
        r=options.lora_r,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules=options.lora_target_modules or "all-linear",
    )
    return get_peft_model(base, lora)


def _make_trainer(
    options: TrainOptions,
    model: Any,
    train_set: Sequence[TokenizedExample],
    validation_set: Sequence[TokenizedExample],
    pad_id: int,
    per_device: int,
    accumulation: int,
    eval_steps: int,
) -> Any:
    import torch
    from transformers import EarlyStoppingCallback, Trainer, TrainingArguments

    cuda = torch.cuda.is_available()
    arguments = TrainingArguments(
        output_dir=str(options.out / CHECKPOINTS_DIR),
        num_train_epochs=options.epochs,
        max_steps=options.max_steps or -1,
        learning_rate=options.learning_rate,
        per_device_train_batch_size=per_device,
        per_device_eval_batch_size=per_device,
        gradient_accumulation_steps=accumulation,
        warmup_steps=options.warmup_ratio,
        weight_decay=options.weight_decay,
        lr_scheduler_type="cosine",
        eval_strategy="steps",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=eval_steps,
        save_total_limit=2,
        save_only_model=True,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_strategy="steps",
        logging_steps=max(1, min(10, eval_steps)),
        bf16=cuda and torch.cuda.is_bf16_supported(),
        use_cpu=not cuda,
        dataloader_pin_memory=cuda,
        remove_unused_columns=False,
        report_to="none",
        disable_tqdm=not options.show_progress,
        seed=options.seed,
        data_seed=options.seed,
    )
    return Trainer(
        model=model,
        args=arguments,
        data_collator=CompletionCollator(pad_id),
        train_dataset=[_features(e) for e in train_set],
        eval_dataset=[_features(e) for e in validation_set],
        callbacks=[EarlyStoppingCallback(early_stopping_patience=options.early_stopping_patience)],
    )


def _features(example: TokenizedExample) -> dict[str, list[int]]:
    return {"input_ids": example.input_ids, "labels": example.labels}


def _generate_samples(
    model: Any, tokenizer: Any, layout: PromptLayout, records: Sequence[Record], options: TrainOptions, pad_id: int
) -> list[dict[str, Any]]:
    """Greedy answers to the first validation prompts, judged by the shared parser."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    samples = []
    for record in records[: options.samples]:
        prompt = layout.render(record.instruction, record.input)
        encoded = tokenizer(prompt, add_special_tokens=True, return_tensors="pt").to(device)
        with torch.no_grad():
            generated = model.generate(
                **encoded,
                max_new_tokens=options.sample_max_new_tokens,
                do_sample=False,
                pad_token_id=pad_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        text = tokenizer.decode(generated[0, encoded["input_ids"].shape[1] :], skip_special_tokens=True).strip()
        samples.append(judge_sample(record, infer_task(record.model_dump()), text, options.expected_challenges))
    return samples


def _run_config(
    options: TrainOptions,
    layout: PromptLayout,
    per_device: int,
    accumulation: int,
    eval_steps: int,
    max_length: int,
    device: str,
    torch_version: str,
) -> dict[str, Any]:
    import peft
    import transformers

    return {
        "options": options.model_dump(mode="json"),
        "resolved": {
            "per_device_batch_size": per_device,
            "gradient_accumulation_steps": accumulation,
            "eval_steps": eval_steps,
            "max_length": max_length,
            "device": device,
        },
        "data_sha256": sha256_file(options.data),
        "prompt_template": {"file": PROMPT_FILE, "source": str(layout.path)},
        "versions": {"torch": torch_version, "transformers": transformers.__version__, "peft": peft.__version__},
    }
