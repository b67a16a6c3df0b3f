"""LoRA training on CPU with a tiny Llama built here: masking, eos, length audit, outputs, early stopping."""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

pytest.importorskip("torch", reason="needs the train extra")
pytest.importorskip("transformers", reason="needs the train extra")
pytest.importorskip("peft", reason="needs the train extra")

from kochallenge_data.checks.record import infer_task
from kochallenge_data.errors import KochallengeError
from kochallenge_data.ml import train_cli
from kochallenge_data.ml.train import (
    IGNORE_INDEX,
    TrainOptions,
    audit_lengths,
    eos_and_pad,
    judge_sample,
    load_base_tokenizer,
    loss_curves,
    pad_examples,
    plan_batches,
    tokenize_record,
    train,
)
from kochallenge_data.models import Record
from kochallenge_data.prompt import load_prompt_layout

from .conftest import ROOT
from .tiny_model import TinySetup, make_tiny_setup

pytestmark = pytest.mark.train


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinySetup:
    import torch

    torch.set_num_threads(1)
    return make_tiny_setup(tmp_path_factory.mktemp("train"))


@pytest.fixture(scope="module")
def tokenizer(tiny: TinySetup) -> Any:
    return load_base_tokenizer(tiny.model_dir)


def quick_options(tiny: TinySetup, out: Path, **overrides: Any) -> TrainOptions:
    values: dict[str, Any] = {
        "data": tiny.data,
        "base": tiny.model_dir,
        "out": out,
        "max_steps": 6,
        "batch_size": 2,
        "effective_batch_size": 4,
        "eval_steps": 2,
        "learning_rate": 1e-3,
        "validation_share": 0.1,
        "samples": 2,
        "sample_max_new_tokens": 16,
        "show_progress": False,
    }
    values.update(overrides)
    return TrainOptions.model_validate(values)


def folder_digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


# --------------------------------------------------------------------------------------------
# tokenization and batches


def test_every_example_learns_its_output_and_eos_and_never_the_prompt(tiny: TinySetup, tokenizer: Any) -> None:
    layout = load_prompt_layout()
    eos = tokenizer.eos_token_id
    for index, record in enumerate(tiny.records):
        example = tokenize_record(tokenizer, layout, record, eos, index)
        prompt_ids = tokenizer(layout.render(record.instruction, record.input))["input_ids"]
        assert example.input_ids[: example.prompt_length] == prompt_ids
        assert example.labels[: example.prompt_length] == [IGNORE_INDEX] * example.prompt_length
        learned = example.labels[example.prompt_length :]
        assert IGNORE_INDEX not in learned
        assert learned == example.input_ids[example.prompt_length :]
        assert learned[-1] == eos and eos not in learned[:-1]
        assert tokenizer.decode(learned[:-1]) == record.output


def test_padding_uses_eos_inside_the_batch_only_and_is_masked(tiny: TinySetup, tokenizer: Any) -> None:
    eos, pad, note = eos_and_pad(tokenizer)
    assert tokenizer.pad_token is None and pad == eos and "collator only" in note
    short = {"input_ids": [5, 6], "labels": [IGNORE_INDEX, 6]}
    long = {"input_ids": [5, 6, 7, 8], "labels": [IGNORE_INDEX, 6, 7, 8]}
    batch = pad_examples([short, long], pad)
    assert batch["input_ids"][0] == [5, 6, eos, eos]
    assert batch["attention_mask"][0] == [1, 1, 0, 0]
    assert batch["labels"][0] == [IGNORE_INDEX, 6, IGNORE_INDEX, IGNORE_INDEX]
    assert batch["labels"][1] == long["labels"]


def test_length_audit_finds_records_whose_completion_or_eos_would_be_cut(tiny: TinySetup, tokenizer: Any) -> None:
    layout = load_prompt_layout()
    examples = [tokenize_record(tokenizer, layout, r, tokenizer.eos_token_id, i) for i, r in enumerate(tiny.records)]
    longest = max(e.length for e in examples)
    audit = audit_lengths(examples, longest - 1)
    assert [e.length for e in audit.truncated] == [longest] * len(audit.truncated) and audit.truncated
    exact = audit_lengths(examples, longest)
    assert not exact.truncated, "a record whose eos is the last token that fits is kept"


@pytest.mark.parametrize(
    ("effective", "memory", "given", "expected"),
    [
        (16, None, None, (2, 8)),
        (16, 80.0, None, (16, 1)),
        (16, 30.0, None, (4, 4)),
        (16, None, 3, (3, 6)),
        (4, 80.0, None, (4, 1)),
    ],
)
def test_batch_plan_reaches_the_effective_batch(
    effective: int, memory: float | None, given: int | None, expected: tuple[int, int]
) -> None:
    assert plan_batches(effective, memory, given) == expected


def test_samples_are_judged_with_the_shared_parser(tiny: TinySetup) -> None:
    by_task: dict[str, Record] = {}
    for record in tiny.records:
        by_task.setdefault(infer_task(record.model_dump()), record)
    for task, record in by_task.items():
        assert judge_sample(record, task, record.output, 3)["parsed"], task  # type: ignore[arg-type]
        bad = judge_sample(record, task, "1. 제목 없음", 3)  # type: ignore[arg-type]
        assert not bad["parsed"] and bad["problem"]


def test_loss_curves_keep_train_and_validation_points() -> None:
    history: list[dict[str, float]] = [
        {"loss": 2.0, "step": 1},
        {"eval_loss": 1.5, "step": 2},
        {"eval_loss": 1.5, "step": 2},
        {"train_loss": 1},
    ]
    assert loss_curves(history) == {
        "train": [{"step": 1.0, "loss": 2.0}],
        "validation": [{"step": 2.0, "loss": 1.5}],
    }


# --------------------------------------------------------------------------------------------
# training runs


def test_train_on_cpu_writes_adapter_template_config_and_report(tiny: TinySetup, tmp_path: Path) -> None:
    before = folder_digest(tiny.model_dir)
    result = train(quick_options(tiny, tmp_path / "run"), progress=lambda _: None)
    out = tmp_path / "run"
    report = orjson.loads((out / "training_report.json").read_bytes())
    assert report == orjson.loads(orjson.dumps(result.report))
    assert report["steps"] == 6 and report["device"] == "cpu" and report["steps_per_second"] > 0
    assert report["records"] == {"total": 48, "train": 43, "validation": 5, "dropped_truncated": []}
    assert [p["step"] for p in report["loss_curves"]["validation"]] == [2.0, 4.0, 6.0]
    assert report["loss_curves"]["train"] and isinstance(report["final_validation_loss"], float)
    assert report["best_validation_loss"] == min(p["loss"] for p in report["loss_curves"]["validation"])
    assert len(report["samples"]) == 2
    for sample in report["samples"]:
        assert sample["parsed"] is (sample["problem"] is None)
    assert (out / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "prompt.j2").read_bytes() == (ROOT / "templates" / "prompt.j2").read_bytes()
    config = orjson.loads((out / "train_config.json").read_bytes())
    assert config["options"]["learning_rate"] == 1e-3 and config["resolved"]["gradient_accumulation_steps"] == 2
    adapter_files = {p.name for p in (out / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= adapter_files
    assert not adapter_files & {"config.json", "tokenizer_config.json", "tokenizer.json", "generation_config.json"}
    assert not (out / "checkpoints").exists()
    assert folder_digest(tiny.model_dir) == before, "training must not touch the base model's files"


def test_the_merged_result_passes_the_doctor_with_clean_configs(tiny: TinySetup, tmp_path: Path) -> None:
    from kochallenge_data.ml.doctor import doctor
    from kochallenge_data.ml.merge import merge_adapter

    train(quick_options(tiny, tmp_path / "run", max_steps=2, samples=0), progress=lambda _: None)
    merged = tmp_path / "merged"
    merge_adapter(tiny.model_dir, tmp_path / "run" / "adapter", merged, log=lambda _: None)
    report = doctor(merged, base=tiny.model_dir)
    assert not report.errors, report.errors
    assert "trainer_leftover" not in report.codes
    config = orjson.loads((merged / "config.json").read_bytes())
    assert config.get("pad_token_id") is None and config["eos_token_id"] == 1 and config.get("use_cache") is not False
    assert orjson.loads((merged / "tokenizer_config.json").read_bytes()).get("pad_token") is None


def test_early_stopping_ends_training_when_validation_loss_stops_improving(tiny: TinySetup, tmp_path: Path) -> None:
    options = quick_options(
        tiny, tmp_path / "run", learning_rate=0.0, max_steps=30, eval_steps=1, early_stopping_patience=2, samples=0
    )
    report = train(options, progress=lambda _: None).report
    assert report["stopped_early"] and report["steps"] < 30
    assert report["planned_steps"] == 30
    assert len(report["loss_curves"]["validation"]) <= 3


def test_too_long_records_are_refused_or_dropped_and_reported(tiny: TinySetup, tmp_path: Path, tokenizer: Any) -> None:
    layout = load_prompt_layout()
    lengths = sorted(tokenize_record(tokenizer, layout, r, tokenizer.eos_token_id).length for r in tiny.records)
    limit = lengths[-4] - 1  # at least four records do not fit
    with pytest.raises(KochallengeError, match=r"would lose completion tokens or the eos.*--drop-truncated"):
        train(quick_options(tiny, tmp_path / "refused", max_length=limit), progress=lambda _: None)
    assert not (tmp_path / "refused" / "adapter").exists()
    said: list[str] = []
    report = train(
        quick_options(tiny, tmp_path / "dropped", max_length=limit, drop_truncated=True, max_steps=2, samples=0),
        progress=said.append,
    ).report
    dropped = report["records"]["dropped_truncated"]
    assert len(dropped) >= 4 and all(d["tokens"] > limit for d in dropped)
    assert report["records"]["train"] + report["records"]["validation"] == 48 - len(dropped)
    assert any(line.startswith(f"dropped {len(dropped)} records") for line in said)


def test_a_base_without_eos_is_refused(tiny: TinySetup, tmp_path: Path) -> None:
    base = tmp_path / "no-eos"
    shutil.copytree(tiny.model_dir, base)
    config_path = base / "tokenizer_config.json"
    config = orjson.loads(config_path.read_bytes())
    del config["eos_token"]
    config_path.write_bytes(orjson.dumps(config))
    with pytest.raises(KochallengeError, match="no eos token"):
        train(quick_options(tiny, tmp_path / "run", base=base), progress=lambda _: None)


# --------------------------------------------------------------------------------------------
# the command


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kochallenge_data")
    train_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_importing_the_train_modules_loads_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "import kochallenge_data.ml.train, kochallenge_data.ml.train_cli\n"
        "heavy = ('torch', 'transformers', 'peft', 'trl', 'matplotlib')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_train_help_has_an_example() -> None:
    subparsers = next(a for a in train_parser()._actions if isinstance(a, argparse._SubParsersAction))
    epilog = subparsers.choices["train"].epilog
    assert epilog is not None and epilog.startswith("example:") and "python -m kochallenge_data train" in epilog


def test_train_command_names_a_bad_flag(tiny: TinySetup, tmp_path: Path) -> None:
    args = train_parser().parse_args(
        [
            "train",
            "--data",
            str(tiny.data),
            "--base",
            str(tiny.model_dir),
            "--out",
            str(tmp_path),
            "--validation-share",
            "1.5",
        ]
    )
    with pytest.raises(KochallengeError, match="--validation-share"):
        args.func(args)


def test_train_command_runs_and_prints_where_things_are(
    tiny: TinySetup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = train_parser().parse_args(
        ["train", "--data", str(tiny.data), "--base", str(tiny.model_dir), "--out", str(tmp_path / "cli"),
         "--max-steps", "2", "--batch-size", "2", "--effective-batch-size", "2", "--eval-steps", "1", "--samples", "0"]
    )  # fmt: skip
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "trained 2 steps" in printed and str(tmp_path / "cli" / "adapter") in printed


def test_the_tokenizer_audit_counts_records_as_training_builds_them(tiny: TinySetup, tokenizer: Any) -> None:
    from kochallenge_data.audit import render_records, token_lengths

    layout = load_prompt_layout()
    records = [r.model_dump() for r in tiny.records]
    audited = token_lengths(tokenizer, render_records(records, layout))
    built = [tokenize_record(tokenizer, layout, r, tokenizer.eos_token_id) for r in tiny.records]
    assert [a.total for a in audited] == [b.length for b in built]
    assert [a.prompt for a in audited] == [b.prompt_length for b in built]
