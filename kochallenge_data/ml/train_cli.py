"""The ``train`` subcommand: a thin layer over :func:`kochallenge_data.ml.train.train`.

Every flag defaults to "not given", so a ``--config`` file supplies what the command line leaves out
and the command line wins where both speak. The main CLI calls :func:`register`; torch,
transformers, peft and trl load only when the handler runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..commands import add_command

TRAIN_EXAMPLE = """example:
  python -m kochallenge_data train --data train.jsonl --validation validation.jsonl --base models/base --out runs/lora
  python -m kochallenge_data train --config train.toml --max-steps 50          # a config file, one flag overridden
  python -m kochallenge_data train --config train.toml --resume latest          # after a preemption
  accelerate launch --config_file docs/accelerate/ddp.yaml -m kochallenge_data train --config train.toml
  torchrun --nproc_per_node 8 -m kochallenge_data train --config train.toml

then:
  python -m kochallenge_data merge --base models/base --adapter runs/lora --out runs/merged
  python -m kochallenge_data doctor runs/merged"""

CHOICES: dict[str, tuple[str, ...]] = {
    "precision": ("auto", "bf16", "fp16", "fp32"),
    "gradient_checkpointing": ("auto", "on", "off"),
    "quantization": ("none", "4bit"),
    "report_to": ("none", "tensorboard", "wandb"),
    "scheduler": ("cosine", "linear", "constant_with_warmup", "cosine_with_min_lr"),
    "prompt_mode": ("layout", "chat-template"),
}

# (field, flag, type, metavar, help). Defaults come from TrainOptions and are shown in --help.
FLAGS: tuple[tuple[str, str, Any, str | None, str], ...] = (
    ("data", "--data", Path, "FILE", "training records: a JSON array or JSONL"),
    ("base", "--base", Path, "MODEL_DIR", "the base model directory"),
    ("out", "--out", Path, "DIR", "where the adapter, report and evaluation go"),
    ("validation", "--validation", Path, "FILE", "held-out records for early stopping (split --group-by item)"),
    ("validation_share", "--validation-share", float, None, "share held out when there is no --validation"),
    ("epochs", "--epochs", float, None, "training epochs"),
    ("max_steps", "--max-steps", int, "N", "stop after N optimizer steps (overrides --epochs)"),
    ("learning_rate", "--learning-rate", float, None, "peak learning rate"),
    ("scheduler", "--scheduler", str, None, "learning-rate schedule"),
    ("warmup_ratio", "--warmup-ratio", float, None, "share of steps spent warming up"),
    ("weight_decay", "--weight-decay", float, None, "AdamW weight decay"),
    ("max_grad_norm", "--max-grad-norm", float, None, "gradient clipping norm"),
    ("batch_size", "--per-device-batch-size", int, "N", "per-device batch (default: by free GPU memory)"),
    ("effective_batch_size", "--effective-batch-size", int, "N", "per device x accumulation x processes"),
    ("max_length", "--max-length", int, "N", "tokens per record"),
    ("eval_steps", "--eval-steps", int, "N", "evaluate every N steps (default: twice an epoch)"),
    ("save_steps", "--save-steps", int, "N", "checkpoint every N steps (default: --eval-steps)"),
    ("save_total_limit", "--save-total-limit", int, "N", "checkpoints kept on disk"),
    ("early_stopping_patience", "--patience", int, "N", "evaluations without improvement before stopping"),
    ("lora_r", "--lora-r", int, None, "LoRA rank"),
    ("lora_alpha", "--lora-alpha", int, None, "LoRA alpha"),
    ("lora_dropout", "--lora-dropout", float, None, "LoRA dropout"),
    ("target_modules", "--target-modules", str, "NAMES", "comma-separated module names (default: all linear)"),
    ("precision", "--precision", str, None, "auto: bf16 on GPUs with it, fp16 on older GPUs, fp32 on CPU"),
    ("gradient_checkpointing", "--gradient-checkpointing", str, None, "auto: on for bases over 1B parameters"),
    ("quantization", "--quantization", str, None, "4bit: QLoRA (CUDA and the qlora extra)"),
    ("prompt_mode", "--prompt-mode", str, None, "chat-template: train and serve through the base's chat template"),
    ("report_to", "--report-to", str, None, "experiment tracker"),
    ("resume", "--resume", str, "latest|DIR", "continue from the newest complete checkpoint in OUT, or DIR"),
    ("seed", "--seed", int, None, "seed for the split, the data order and the trainer"),
    ("evaluate_limit", "--evaluate-limit", int, "N", "validation inputs answered and scored at the end (0: none)"),
    ("max_new_tokens", "--max-new-tokens", int, "N", "answer budget (default: longest completion + a quarter)"),
    ("prompt_template", "--prompt-template", Path, "FILE", "prompt template (default: templates/prompt.j2)"),
)
SWITCHES: tuple[tuple[str, str, str], ...] = (
    ("drop_truncated", "--drop-truncated", "drop records that do not fit --max-length (listed) instead of refusing"),
    ("trust_remote_code", "--trust-remote-code", "run the base's own modelling/tokenizer code (only if you trust it)"),
    ("keep_checkpoints", "--keep-checkpoints", "keep OUT/checkpoints after training"),
)


def register(subparsers: Any) -> None:
    """Add ``train`` to an argparse subparsers object."""
    from .train.options import TrainOptions

    parser = add_command(
        subparsers,
        "train",
        help="LoRA fine-tune a base model on a dataset (TRL SFTTrainer; one GPU, many, or CPU)",
        description=(
            "LoRA SFT on TRL's SFTTrainer with the one prompt layout serving uses: loss on the completion only, a "
            "stop token ending every completion, lengths audited with the base tokenizer first, early stopping on "
            "--validation, resumable checkpoints, and the trained model's answers to validation inputs scored as "
            "`validate` scores records. Writes OUT/adapter, OUT/prompt.j2, OUT/train_config.json, "
            "OUT/training_report.json, OUT/evaluation/ and OUT/loss_curves.png. Runs under `accelerate launch` and "
            "`torchrun` (only the main process writes). Needs the train extra."
        ),
        epilog=TRAIN_EXAMPLE,
        run=run_train,
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="options as TOML (or JSON); flags win over it")
    fields = TrainOptions.model_fields
    for name, flag, kind, metavar, text in FLAGS:
        default = fields[name].default
        shown = f" (default {default})" if default is not None and name not in ("data", "base", "out") else ""
        parser.add_argument(
            flag, dest=name, type=kind, metavar=metavar, choices=CHOICES.get(name), help=text + shown, default=None
        )
    for name, flag, text in SWITCHES:
        parser.add_argument(flag, dest=name, action="store_true", default=None, help=text)


def options_from_args(args: argparse.Namespace) -> Any:
    """The config file's values, overridden by every flag given; then validated."""
    from .train.options import load_train_config, make_train_options

    values: dict[str, Any] = load_train_config(args.config) if args.config else {}
    for name in [f[0] for f in FLAGS] + [s[0] for s in SWITCHES]:
        given = getattr(args, name, None)
        if given is not None:
            values[name] = given
    if isinstance(values.get("target_modules"), str):
        values["target_modules"] = [m.strip() for m in values["target_modules"].split(",") if m.strip()]
    from ..errors import KochallengeError

    missing = [flag for name, flag, *_ in FLAGS[:3] if name not in values]
    if missing:
        raise KochallengeError(f"train: {', '.join(missing)} required (as flags or in --config)")
    return make_train_options(values)


def run_train(args: argparse.Namespace) -> int:
    from .train import train
    from .train.trainer import is_main_process

    result = train(options_from_args(args))
    if not is_main_process():
        return 0
    report = result.report
    scored_all = (report.get("evaluation") or {}).get("all")
    scored = (
        f"; {scored_all['valid_rate']:.0%} of {scored_all['count']} validation answers valid, "
        f"{scored_all['truncated_rate']:.0%} truncated"
        if scored_all
        else ""
    )
    print(
        f"trained {report['steps']} steps in {report['train_seconds']} s on {report['world_size']} x "
        f"{report['device']} (effective batch {report['effective_batch_size']})"
        + (" (stopped early)" if report["stopped_early"] else "")
        + f"; best validation loss {report['best_validation_loss']}{scored}"
    )
    for name, path in result.files.items():
        print(f"{name:<20} {path}")
    return 0
