"""LoRA fine-tuning on TRL's SFTTrainer with the prompt layout serving uses, on one device or many.

- :mod:`.options`: every knob, from flags and ``--config``;
- :mod:`.examples`: records to token ids (prompt as served, completion and its stop), the length audit;
- :mod:`.plan`: batch shape over processes, precision, memory levers, decided before a weight loads;
- :mod:`.base`: what the base says before it loads: tokenizer, eos and pad, stop tokens, length limit;
- :mod:`.trainer`: the model and TRL's trainer, saving the adapter once;
- :mod:`.run`: the run itself, writing its files once and evaluating the trained model's real answers;
- :mod:`.report`: loss curves and the checkpoint to resume.

torch, transformers, peft and trl are imported inside the functions that need them (the ``train`` extra).
"""

from __future__ import annotations

from .base import eos_and_pad, load_base_tokenizer, stop_ids
from .examples import (
    IGNORE_INDEX,
    LengthAudit,
    TokenizedExample,
    audit_lengths,
    chat_prompt_layout,
    load_training_records,
    split_validation,
    tokenize_chat_record,
    tokenize_record,
)
from .options import TrainOptions, load_train_config, make_train_options
from .plan import BatchPlan, choose_precision, default_eval_steps, plan_batches, use_gradient_checkpointing
from .report import find_resume_checkpoint, loss_curves, plot_curves
from .run import CONFIG_FILE, PROMPT_FILE, REPORT_FILE, TrainResult, completion_budget, prepare, train
from .trainer import ADAPTER_DIR

__all__ = [
    "ADAPTER_DIR",
    "CONFIG_FILE",
    "IGNORE_INDEX",
    "PROMPT_FILE",
    "REPORT_FILE",
    "BatchPlan",
    "LengthAudit",
    "TokenizedExample",
    "TrainOptions",
    "TrainResult",
    "audit_lengths",
    "chat_prompt_layout",
    "choose_precision",
    "completion_budget",
    "default_eval_steps",
    "eos_and_pad",
    "find_resume_checkpoint",
    "load_base_tokenizer",
    "load_train_config",
    "load_training_records",
    "loss_curves",
    "make_train_options",
    "plan_batches",
    "plot_curves",
    "prepare",
    "split_validation",
    "stop_ids",
    "tokenize_chat_record",
    "tokenize_record",
    "train",
    "use_gradient_checkpointing",
]
