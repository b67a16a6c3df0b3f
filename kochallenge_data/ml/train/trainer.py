"""The model and TRL's trainer: precision, QLoRA, LoRA, checkpoints, and saving the adapter once.

The examples reach TRL pre-tokenized (``input_ids`` and ``labels``) because the prompt must be tokenized
exactly as serving tokenizes it, on its own (see :mod:`.examples`); TRL's own tokenization of prompt
and completion together can merge tokens across the boundary. TRL owns the rest: the collator, the
completion-only loss, gradient checkpointing with LoRA, QLoRA's adapter dtype, saving under FSDP and
DeepSpeed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...errors import KochallengeError
from .examples import TokenizedExample
from .options import TrainOptions
from .plan import BatchPlan

CHECKPOINTS_DIR = "checkpoints"
ADAPTER_DIR = "adapter"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
"""What the adapter folder keeps of ``save_model``'s output: not the tokenizer copy, which is the base's."""


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _torch_dtype(precision: str) -> Any:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def load_model(options: TrainOptions, precision: str) -> Any:
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": _torch_dtype(precision), "trust_remote_code": options.trust_remote_code}
    if options.quantization == "4bit":
        from transformers import BitsAndBytesConfig

        quantized: Any = BitsAndBytesConfig  # untyped in transformers
        kwargs["quantization_config"] = quantized(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=_torch_dtype(precision),
        )
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    try:
        model = AutoModelForCausalLM.from_pretrained(str(options.base), **kwargs)
    except Exception as exc:  # loader errors are the user's model files
        raise KochallengeError(
            f"{options.base}: the model does not load ({type(exc).__name__}: {exc}); "
            f"run `python -m kochallenge_data doctor {options.base}`"
        ) from exc
    if options.quantization == "4bit":
        from peft import prepare_model_for_kbit_training

        prepare_kbit: Any = prepare_model_for_kbit_training  # untyped in peft
        model = prepare_kbit(model, use_gradient_checkpointing=False)
    return model


def lora_config(options: TrainOptions) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        task_type="CAUSAL_LM",
        r=options.lora_r,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules=options.target_modules or "all-linear",
    )


def make_trainer(
    options: TrainOptions,
    model: Any,
    tokenizer: Any,
    train_set: Sequence[TokenizedExample],
    validation_set: Sequence[TokenizedExample],
    pad_id: int,
    plan: BatchPlan,
    eval_steps: int,
    precision: str,
    checkpointing: bool,
    callbacks: Sequence[Any],
) -> Any:
    from datasets import Dataset
    from transformers import EarlyStoppingCallback, PrinterCallback
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling, SFTTrainer

    _check_tracker(options.report_to)
    arguments = SFTConfig(
        output_dir=str(options.out / CHECKPOINTS_DIR),
        num_train_epochs=options.epochs,
        max_steps=options.max_steps or -1,
        learning_rate=options.learning_rate,
        lr_scheduler_type=options.scheduler,
        lr_scheduler_kwargs={"min_lr_rate": 0.1} if options.scheduler == "cosine_with_min_lr" else {},
        warmup_steps=options.warmup_ratio,
        weight_decay=options.weight_decay,
        max_grad_norm=options.max_grad_norm,
        per_device_train_batch_size=plan.per_device,
        per_device_eval_batch_size=plan.per_device,
        gradient_accumulation_steps=plan.accumulation,
        activation_checkpointing=checkpointing,  # transformers 5's name for gradient checkpointing
        activation_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not has_cuda(),
        eval_strategy="steps",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=options.save_steps or eval_steps,
        save_total_limit=options.save_total_limit,
        save_only_model=False,  # optimizer, scheduler and RNG states too: a preempted run resumes
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_strategy="steps",
        logging_steps=max(1, min(10, eval_steps)),
        report_to=[] if options.report_to == "none" else [options.report_to],
        disable_tqdm=not options.show_progress or not is_main_process(),
        dataloader_pin_memory=has_cuda(),
        seed=options.seed,
        data_seed=options.seed,
        # The rows are already tokenized and audited: TRL must neither cut nor re-tokenize them.
        max_length=None,
        completion_only_loss=True,
        trust_remote_code=options.trust_remote_code,
    )
    trainer = SFTTrainer(
        model=model,
        args=arguments,
        train_dataset=Dataset.from_list(_rows(train_set)),
        eval_dataset=Dataset.from_list(_rows(validation_set)),
        processing_class=tokenizer,
        peft_config=lora_config(options),
        # Our collator instance keeps TRL from setting the tokenizer's pad token in place.
        data_collator=DataCollatorForLanguageModeling(pad_token_id=pad_id),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=options.early_stopping_patience), *callbacks],
    )
    if not options.show_progress:
        trainer.remove_callback(PrinterCallback)  # without a bar the trainer prints every log dict instead
    return trainer


def has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _rows(examples: Sequence[TokenizedExample]) -> list[dict[str, list[int]]]:
    return [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]


def _check_tracker(report_to: str) -> None:
    module = {"tensorboard": "tensorboard", "wandb": "wandb"}.get(report_to)
    if module is None:
        return
    try:
        __import__(module)
    except ImportError:
        raise KochallengeError(f"--report-to {report_to} needs the {module} package: pip install {module}") from None


def check_world(trainer: Any, plan: BatchPlan) -> None:
    """The trainer's view of the processes must be the plan's, or the recorded batch would be wrong."""
    actual = int(trainer.args.world_size)
    if actual != plan.world_size:
        raise KochallengeError(
            f"the trainer runs {actual} processes but WORLD_SIZE says {plan.world_size}; launch with "
            "`accelerate launch` or `torchrun`, not by starting processes by hand"
        )


def save_adapter(trainer: Any, out: Path, main: bool) -> Path:
    """Save through the trainer (every process takes part, so FSDP/ZeRO-3 shards are gathered), then keep only
    the adapter files on the main process."""
    staging = out / ".adapter-staging"
    trainer.save_model(str(staging))
    trainer.accelerator.wait_for_everyone()
    adapter_dir = out / ADAPTER_DIR
    if main:
        shutil.rmtree(adapter_dir, ignore_errors=True)
        adapter_dir.mkdir(parents=True)
        for name in ADAPTER_FILES:
            if (staging / name).is_file():
                shutil.move(str(staging / name), adapter_dir / name)
        shutil.rmtree(staging, ignore_errors=True)
        if not (adapter_dir / "adapter_config.json").is_file():
            raise KochallengeError(f"{adapter_dir}: the trainer saved no adapter_config.json")
    return adapter_dir
