"""Shared fixtures for the model tools: tiny real models built once per session (train extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

TRAIN_REASON = "needs the train extra: pip install torch==2.13.0 -e '.[train]'"


def _require_train_extra() -> None:
    for module in ("torch", "transformers", "peft", "safetensors", "sentencepiece", "tokenizers", "google.protobuf"):
        pytest.importorskip(module, reason=TRAIN_REASON)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Tokenizers, a base model, broken variants, LoRA adapters and plain merges, built once."""
    _require_train_extra()
    from ..tiny_model import build

    return build(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(autouse=True)
def _one_torch_thread(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("train") is not None:
        _require_train_extra()
        import torch

        torch.set_num_threads(1)


@pytest.fixture
def copy_of(tmp_path: Path) -> Any:
    """Copy a session directory before a test changes it."""
    import shutil

    def copy(path: Path, name: str | None = None) -> Path:
        return Path(shutil.copytree(path, tmp_path / (name or path.name)))

    return copy
