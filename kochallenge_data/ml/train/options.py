"""What shapes a training run: one pydantic model, filled from flags and an optional TOML/JSON file.

The defaults follow current LoRA practice (lr 2e-4, rank 16, alpha 32, dropout 0.05 on every linear
layer, cosine schedule with a short warmup). Every field is a flag (``--lora-dropout``) and a key of
``--config`` (``lora_dropout = 0.1``); flags given on the command line win over the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ...errors import KochallengeError

Precision = Literal["auto", "bf16", "fp16", "fp32"]
Switch = Literal["auto", "on", "off"]
Quantization = Literal["none", "4bit"]
ReportTo = Literal["none", "tensorboard", "wandb"]
Scheduler = Literal["cosine", "linear", "constant_with_warmup", "cosine_with_min_lr"]
PromptMode = Literal["layout", "chat-template"]


class TrainOptions(BaseModel):
    """Everything that shapes a training run; saved in ``train_config.json`` beside the adapter."""

    model_config = ConfigDict(extra="forbid")

    data: Path
    base: Path
    out: Path
    validation: Path | None = Field(default=None, description="held-out file (split --group-by item); else a share")
    validation_share: float = Field(default=0.05, gt=0, lt=1)
    epochs: float = Field(default=3.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1)
    learning_rate: float = Field(default=2e-4, ge=0)
    scheduler: Scheduler = "cosine"
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    batch_size: int | None = Field(default=None, ge=1, description="per device; None picks it by memory")
    effective_batch_size: int = Field(default=16, ge=1, description="per device x accumulation x processes")
    max_length: int = Field(default=1024, ge=8)
    drop_truncated: bool = False
    eval_steps: int | None = Field(default=None, ge=1)
    save_steps: int | None = Field(default=None, ge=1, description="checkpoint every N steps; default eval_steps")
    save_total_limit: int = Field(default=2, ge=1)
    early_stopping_patience: int = Field(default=3, ge=1)
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: int = Field(default=32, ge=1)
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] | None = Field(default=None, description="None: every linear layer")
    precision: Precision = "auto"
    gradient_checkpointing: Switch = "auto"
    quantization: Quantization = "none"
    prompt_mode: PromptMode = "layout"
    trust_remote_code: bool = False
    report_to: ReportTo = "none"
    resume: str | None = Field(default=None, description="'latest' or a checkpoint folder")
    seed: int = Field(default=42, ge=0, lt=2**32)
    evaluate_limit: int = Field(default=64, ge=0, description="validation inputs answered and scored at the end")
    max_new_tokens: int | None = Field(default=None, ge=1, description="None: longest completion + margin")
    expected_challenges: int = Field(default=3, ge=1)
    prompt_template: Path | None = None
    keep_checkpoints: bool = False
    show_progress: bool = True


FLAG_NAMES = {"early_stopping_patience": "--patience", "batch_size": "--per-device-batch-size"}
"""Option fields whose command-line flag is not simply the field name with dashes."""


def flag_name(field_name: str) -> str:
    return FLAG_NAMES.get(field_name, "--" + field_name.replace("_", "-"))


def make_train_options(values: dict[str, Any], source: str = "options") -> TrainOptions:
    """Validate options, turning a bad value into an error that names the flag (or the config key)."""
    try:
        return TrainOptions.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field_name = ".".join(str(p) for p in first["loc"])
        name = flag_name(field_name) if source == "options" else f"{source}: {field_name}"
        raise KochallengeError(f"{name}: {first['msg']} (got {first.get('input')!r})") from exc


def load_train_config(path: Path) -> dict[str, Any]:
    """Read a ``--config`` file (TOML, or JSON by suffix) as a dict of option fields, keys checked."""
    from ...safe_files import read_options_file

    data = read_options_file(path, "train options")
    unknown = sorted(set(data) - set(TrainOptions.model_fields))
    if unknown:
        raise KochallengeError(f"{path}: unknown train option(s) {', '.join(unknown)}; see `train --help`")
    # Relative paths in a config file are relative to the file, so a config travels with its data.
    for key in ("data", "base", "out", "validation", "prompt_template"):
        if isinstance(data.get(key), str) and not Path(data[key]).is_absolute():
            data[key] = str(path.parent / data[key])
    return data
