"""Decisions made before the model loads: batch shape across processes, precision, memory levers.

Pure functions of the options and of facts about the machine (free memory, bf16 support, the
number of processes), so each decision is testable without a GPU and is recorded as made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ...errors import KochallengeError
from ..safetensors_header import HeaderError, read_header
from .options import Precision, Quantization, Switch

# Per-device batch sizes by free accelerator memory (GiB), for a 1-8B base with LoRA and
# sequences up to ~1k tokens: what fitted for the team. CPU runs use the smallest.
BATCH_BY_MEMORY: tuple[tuple[float, int], ...] = ((70.0, 16), (40.0, 8), (20.0, 4), (10.0, 2))
CPU_BATCH = 2
CHECKPOINTING_ABOVE = 1_000_000_000
"""Parameters above which activations, not weights, decide whether a batch fits: checkpoint them."""


@dataclass(frozen=True)
class BatchPlan:
    """How the effective batch is reached: per device x accumulation x processes."""

    per_device: int
    accumulation: int
    world_size: int

    @property
    def effective(self) -> int:
        return self.per_device * self.accumulation * self.world_size


def plan_batches(
    effective_batch_size: int, memory_gib: float | None, batch_size: int | None, world_size: int = 1
) -> BatchPlan:
    """Per-device batch (given, or by free memory) and the accumulation that reaches the effective size
    over ``world_size`` processes; the effective batch may round up, and the plan says what it is."""
    if batch_size is None:
        batch_size = CPU_BATCH
        if memory_gib is not None:
            batch_size = next((size for floor, size in BATCH_BY_MEMORY if memory_gib >= floor), 1)
    per_process = max(1, math.ceil(effective_batch_size / world_size))
    per_device = min(batch_size, per_process)
    return BatchPlan(per_device, max(1, math.ceil(per_process / per_device)), world_size)


def default_eval_steps(train_count: int, plan: BatchPlan) -> int:
    """Evaluate twice per epoch, so early stopping reacts within half an epoch."""
    steps_per_epoch = max(1, math.ceil(train_count / plan.effective))
    return max(1, steps_per_epoch // 2)


def choose_precision(requested: Precision, cuda: bool, bf16_supported: bool, quantization: Quantization) -> str:
    """bf16 where the GPU has it, fp16 where it does not (T4, V100), fp32 on CPU; an explicit choice is checked."""
    if requested == "auto":
        if not cuda:
            return "fp32"
        return "bf16" if bf16_supported else "fp16"
    if requested in ("bf16", "fp16") and not cuda:
        raise KochallengeError(f"--precision {requested} needs a CUDA GPU; this machine trains in fp32 on CPU")
    if requested == "bf16" and not bf16_supported:
        raise KochallengeError("--precision bf16: this GPU has no bf16 (pre-Ampere); use --precision fp16")
    if quantization == "4bit" and requested == "fp32":
        raise KochallengeError("--quantization 4bit computes in bf16 or fp16; drop --precision fp32")
    return requested


def use_gradient_checkpointing(requested: Switch, parameters: int | None) -> bool:
    if requested == "auto":
        return parameters is not None and parameters > CHECKPOINTING_ABOVE
    return requested == "on"


def count_parameters(model_dir: Path) -> int | None:
    """Parameters of a base from its safetensors headers, without loading a weight; None when unreadable."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        return None
    try:
        return sum(t.numel for f in files for t in read_header(f).tensors.values())
    except (HeaderError, OSError):
        return None


def check_quantization(quantization: Quantization, cuda: bool) -> None:
    """QLoRA needs bitsandbytes and a CUDA GPU; say so before anything loads."""
    if quantization == "none":
        return
    if not cuda:
        raise KochallengeError(
            "--quantization 4bit (QLoRA) needs a CUDA GPU: bitsandbytes' 4-bit kernels do not run on CPU; "
            "train without --quantization here"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise KochallengeError(
            "--quantization 4bit needs bitsandbytes: pip install -e '.[qlora]' (CUDA machines only)"
        ) from None
