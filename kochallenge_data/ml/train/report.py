"""What a run leaves to read: loss curves (JSON and PNG), the resolved configuration, the checkpoint to resume."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...errors import KochallengeError

CHECKPOINT_PREFIX = "checkpoint-"
RESUME_KEYS = ("data", "validation", "base", "prompt_mode", "lora_r", "lora_alpha", "target_modules", "seed")
"""Options a resumed run must share with the run that wrote the checkpoint, or the optimizer state is meaningless."""


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


def is_complete_checkpoint(folder: Path) -> bool:
    """A checkpoint a killed run finished writing: its state, optimizer and adapter are all there."""
    return (
        (folder / "trainer_state.json").is_file()
        and (folder / "optimizer.pt").is_file()
        and any((folder / name).is_file() for name in ("adapter_model.safetensors", "model.safetensors"))
    ) or ((folder / "trainer_state.json").is_file() and any(folder.glob("global_step*")))  # DeepSpeed layout


def checkpoint_step(folder: Path) -> int:
    suffix = folder.name.removeprefix(CHECKPOINT_PREFIX)
    return int(suffix) if suffix.isdigit() else -1


def find_resume_checkpoint(resume: str, checkpoints: Path) -> Path:
    """``latest``: the newest complete checkpoint under ``checkpoints``; otherwise the folder given."""
    if resume != "latest":
        folder = Path(resume)
        if not is_complete_checkpoint(folder):
            raise KochallengeError(
                f"--resume {resume}: not a complete checkpoint (needs trainer_state.json, optimizer.pt and the adapter)"
            )
        return folder
    found = sorted(
        (f for f in checkpoints.glob(f"{CHECKPOINT_PREFIX}*") if checkpoint_step(f) >= 0 and is_complete_checkpoint(f)),
        key=checkpoint_step,
    )
    if not found:
        raise KochallengeError(f"--resume latest: no complete checkpoint in {checkpoints}; start without --resume")
    return found[-1]


def resume_mismatches(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Options that differ between the interrupted run and this one, as ``key: before -> now``."""
    return [
        f"{key}: {recorded.get(key)!r} -> {current.get(key)!r}"
        for key in (*RESUME_KEYS, "data_sha256")
        if recorded.get(key) != current.get(key)
    ]
