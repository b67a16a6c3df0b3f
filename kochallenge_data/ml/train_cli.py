"""The ``train`` subcommand: a thin layer over :func:`kochallenge_data.ml.train.train`.

The main CLI calls :func:`register`; torch, transformers and peft load only when the handler runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..commands import add_command

TRAIN_EXAMPLE = """example:
  python -m kochallenge_data train --data multitask_dataset_v2.json --base models/base --out runs/lora
  python -m kochallenge_data train --data data.json --base models/base --out runs/try --max-steps 50 --drop-truncated

then:
  python -m kochallenge_data merge --base models/base --adapter runs/lora/adapter --out runs/merged
  python -m kochallenge_data doctor runs/merged"""


def register(subparsers: Any) -> None:
    """Add ``train`` to an argparse subparsers object."""
    parser = add_command(
        subparsers,
        "train",
        help="LoRA fine-tune a base model on a dataset (GPU when present, else CPU)",
        description=(
            "LoRA SFT with the one prompt layout serving uses: loss on the completion only, eos appended to every "
            "completion, a validation split with early stopping. Lengths are audited with the base tokenizer first. "
            "Writes OUT/adapter, OUT/prompt.j2, OUT/train_config.json, OUT/training_report.json and "
            "OUT/loss_curves.png (when matplotlib is installed). Needs the train extra."
        ),
        epilog=TRAIN_EXAMPLE,
        run=run_train,
    )
    parser.add_argument("--data", type=Path, required=True, help="dataset file: a JSON array or JSONL of records")
    parser.add_argument("--base", type=Path, required=True, metavar="MODEL_DIR", help="the base model directory")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="where the adapter and report go")
    parser.add_argument("--epochs", type=float, default=5.0, help="training epochs (default 5)")
    parser.add_argument("--max-steps", type=int, metavar="N", help="stop after N optimizer steps (overrides --epochs)")
    parser.add_argument("--learning-rate", type=float, default=5e-5, help="peak learning rate (default 5e-5)")
    parser.add_argument("--batch-size", type=int, metavar="N", help="per-device batch size (default: by memory)")
    parser.add_argument(
        "--effective-batch-size", type=int, default=16, metavar="N", help="batch x accumulation (default 16)"
    )
    parser.add_argument("--max-length", type=int, default=1024, metavar="N", help="tokens per record (default 1024)")
    parser.add_argument(
        "--drop-truncated",
        action="store_true",
        help="drop records that do not fit in --max-length (listed in the report) instead of refusing",
    )
    parser.add_argument("--validation-share", type=float, default=0.05, help="held-out share (default 0.05)")
    parser.add_argument("--eval-steps", type=int, metavar="N", help="evaluate every N steps (default: twice an epoch)")
    parser.add_argument("--patience", type=int, default=3, help="evaluations without improvement before stopping")
    parser.add_argument("--lora-r", type=int, default=16, help="LoRA rank (default 16)")
    parser.add_argument("--lora-alpha", type=int, default=32, help="LoRA alpha (default 32)")
    parser.add_argument("--seed", type=int, default=42, help="seed for the split and the trainer (default 42)")
    parser.add_argument("--samples", type=int, default=3, help="validation prompts to answer in the report")
    parser.add_argument("--prompt-template", type=Path, help="prompt template (default: templates/prompt.j2)")
    parser.add_argument("--keep-checkpoints", action="store_true", help="keep OUT/checkpoints after training")


def run_train(args: argparse.Namespace) -> int:
    from .train import make_train_options, train

    options = make_train_options(
        data=args.data,
        base=args.base,
        out=args.out,
        epochs=args.epochs,
        max_steps=args.max_steps,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        effective_batch_size=args.effective_batch_size,
        max_length=args.max_length,
        drop_truncated=args.drop_truncated,
        validation_share=args.validation_share,
        eval_steps=args.eval_steps,
        early_stopping_patience=args.patience,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        seed=args.seed,
        samples=args.samples,
        prompt_template=args.prompt_template,
        keep_checkpoints=args.keep_checkpoints,
    )
    result = train(options)
    report = result.report
    print(
        f"trained {report['steps']} steps in {report['train_seconds']} s on {report['device']}"
        + (" (stopped early)" if report["stopped_early"] else "")
        + f"; best validation loss {report['best_validation_loss']}; "
        f"{report['samples_parsed']}/{len(report['samples'])} samples parse"
    )
    for name, path in result.files.items():
        print(f"{name:<10} {path}")
    return 0
