"""Training as a cluster runs it: two processes under torchrun (gloo on CPU), and a run killed and resumed.

Each run happens in its own Python process, because that is the only honest way to test a launch and a
SIGKILL: the library's own entry point (`-m kochallenge_data train`) under `torch.distributed.run`, and
a training process that kills itself with SIGKILL right after a checkpoint is written.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

pytest.importorskip("torch", reason="needs the train extra")
pytest.importorskip("trl", reason="needs the train extra")

from kochallenge_data.errors import KochallengeError
from kochallenge_data.ml.train import TrainOptions, train

from .conftest import ROOT
from .tiny_model import TinySetup, make_tiny_setup

pytestmark = pytest.mark.train


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinySetup:
    return make_tiny_setup(tmp_path_factory.mktemp("processes"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def quiet_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(ROOT))
    env.pop("WORLD_SIZE", None)
    env.pop("RANK", None)
    return env


def launcher(name: str) -> list[str]:
    """Two processes on this CPU: torchrun, or accelerate's own launcher (gloo without GPUs)."""
    if name == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_addr", "127.0.0.1", "--master_port", str(free_port())]  # fmt: skip
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(free_port())]  # fmt: skip


@pytest.mark.parametrize("launch", ["torchrun", "accelerate"])
def test_two_processes_train_once_write_once_and_record_the_true_batch(
    tiny: TinySetup, tmp_path: Path, launch: str
) -> None:
    out = tmp_path / "run"
    command = [
        *launcher(launch), "-m", "kochallenge_data", "train",
        "--data", str(tiny.data), "--base", str(tiny.model_dir), "--out", str(out),
        "--max-steps", "4", "--per-device-batch-size", "2", "--effective-batch-size", "8", "--eval-steps", "2",
        "--learning-rate", "1e-3", "--evaluate-limit", "3", "--max-new-tokens", "8", "--validation-share", "0.1",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, env=quiet_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained 4 steps") == 1, done.stdout
    assert done.stdout.count("training on 2 x cpu") == 1

    config = orjson.loads((out / "train_config.json").read_bytes())
    resolved = config["resolved"]
    assert (resolved["world_size"], resolved["per_device_batch_size"]) == (2, 2)
    assert (resolved["gradient_accumulation_steps"], resolved["effective_batch_size"]) == (2, 8)
    report = orjson.loads((out / "training_report.json").read_bytes())
    assert report["world_size"] == 2 and report["effective_batch_size"] == 8
    # The optimizer saw 8 records a step, not 16: four steps cover about 32 of the 43 training records
    # (each process rounds its half of the data up to whole batches, hence the tolerance).
    assert report["epochs"] == pytest.approx(4 * 8 / report["records"]["train"], abs=0.05)
    # One set of outputs: the adapter files, one evaluation of three answers, no staging or checkpoints left.
    assert sorted(p.name for p in (out / "adapter").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    assert len(orjson.loads((out / "evaluation" / "evaluation.json").read_bytes())["items"]) == 3
    assert sorted(p.name for p in out.iterdir()) == [
        "adapter", "evaluation", "loss_curves.png", "prompt.j2", "train_config.json", "training_report.json"
    ]  # fmt: skip


KILLER = """
import os, signal, sys
from pathlib import Path
from transformers import TrainerCallback
from kochallenge_data.ml.train import TrainOptions, train

class KillAfterSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        if state.global_step == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)

train(TrainOptions.model_validate_json(Path(sys.argv[1]).read_text()), progress=lambda _: None,
      callbacks=[KillAfterSave()])
"""


def resumable_options(tiny: TinySetup, out: Path, **overrides: Any) -> TrainOptions:
    values: dict[str, Any] = {
        "data": tiny.data, "base": tiny.model_dir, "out": out, "max_steps": 8, "eval_steps": 2, "save_steps": 2,
        "batch_size": 2, "effective_batch_size": 4, "learning_rate": 1e-3, "lora_dropout": 0.0,
        "validation_share": 0.1, "evaluate_limit": 0, "show_progress": False, "early_stopping_patience": 10,
    }  # fmt: skip
    values.update(overrides)
    return TrainOptions.model_validate(values)


def adapter_tensors(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter" / "adapter_model.safetensors"))


def test_a_run_killed_after_a_checkpoint_resumes_to_the_uninterrupted_result(tiny: TinySetup, tmp_path: Path) -> None:
    import torch

    torch.set_num_threads(1)
    killed = tmp_path / "killed"
    options_file = tmp_path / "options.json"
    options_file.write_text(resumable_options(tiny, killed).model_dump_json())
    dead = subprocess.run(
        [sys.executable, "-c", KILLER, str(options_file), "4"], env=quiet_env(), capture_output=True, timeout=600
    )
    assert dead.returncode == -signal.SIGKILL, dead.stderr[-2000:]
    assert not (killed / "adapter").exists() and (killed / "checkpoints" / "checkpoint-4").is_dir()

    resumed = train(resumable_options(tiny, killed, resume="latest"), progress=lambda _: None).report
    assert resumed["resumed_from"].endswith("checkpoint-4") and resumed["steps"] == 8
    whole = train(resumable_options(tiny, tmp_path / "whole"), progress=lambda _: None).report
    assert whole["steps"] == 8 and whole["resumed_from"] is None

    after_resume, uninterrupted = adapter_tensors(killed), adapter_tensors(tmp_path / "whole")
    assert after_resume.keys() == uninterrupted.keys()
    changed = [k for k in uninterrupted if not torch.equal(uninterrupted[k], torch.zeros_like(uninterrupted[k]))]
    assert changed, "the adapter trained"
    for name, tensor in uninterrupted.items():
        assert torch.allclose(after_resume[name], tensor, atol=1e-5, rtol=1e-4), name
    assert resumed["best_validation_loss"] == pytest.approx(whole["best_validation_loss"], rel=1e-4)


def test_resume_refuses_a_missing_checkpoint_or_another_run(tiny: TinySetup, tmp_path: Path) -> None:
    with pytest.raises(KochallengeError, match="no complete checkpoint"):
        train(resumable_options(tiny, tmp_path / "none", resume="latest"), progress=lambda _: None)
    out = tmp_path / "run"
    train(resumable_options(tiny, out, max_steps=2, keep_checkpoints=True), progress=lambda _: None)
    other = tmp_path / "other.json"
    other.write_bytes(tiny.data.read_bytes().replace("서울".encode(), "부산".encode()) + b"\n")
    with pytest.raises(KochallengeError, match=r"belongs to a run with other options.*data"):
        train(resumable_options(tiny, out, resume="latest", data=other), progress=lambda _: None)
    half_written = out / "checkpoints" / "checkpoint-99"
    half_written.mkdir()
    (half_written / "trainer_state.json").write_text("{}")
    with pytest.raises(KochallengeError, match="not a complete checkpoint"):
        train(resumable_options(tiny, out, resume=str(half_written)), progress=lambda _: None)
