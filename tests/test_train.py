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

from kochallenge_data.errors import KochallengeError
from kochallenge_data.ml import train_cli
from kochallenge_data.ml.train import (
    IGNORE_INDEX,
    BatchPlan,
    TrainOptions,
    audit_lengths,
    choose_precision,
    eos_and_pad,
    load_base_tokenizer,
    loss_curves,
    plan_batches,
    tokenize_chat_record,
    tokenize_record,
    train,
    use_gradient_checkpointing,
)
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
        "evaluate_limit": 4,
        "max_new_tokens": 16,
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
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    eos, pad, note = eos_and_pad(tokenizer)
    assert tokenizer.pad_token is None and pad == eos and "collator only" in note
    short = {"input_ids": [5, 6], "labels": [IGNORE_INDEX, 6]}
    long = {"input_ids": [5, 6, 7, 8], "labels": [IGNORE_INDEX, 6, 7, 8]}
    batch = DataCollatorForLanguageModeling(pad_token_id=pad)([short, long])
    assert batch["input_ids"][0].tolist() == [5, 6, eos, eos]
    assert batch["attention_mask"][0].tolist() == [1, 1, 0, 0]
    assert batch["labels"][0].tolist() == [IGNORE_INDEX, 6, IGNORE_INDEX, IGNORE_INDEX]
    assert batch["labels"][1].tolist() == long["labels"]
    assert tokenizer.pad_token is None, "the tokenizer itself is never given a pad token"


def test_length_audit_finds_records_whose_completion_or_eos_would_be_cut(tiny: TinySetup, tokenizer: Any) -> None:
    layout = load_prompt_layout()
    examples = [tokenize_record(tokenizer, layout, r, tokenizer.eos_token_id, i) for i, r in enumerate(tiny.records)]
    longest = max(e.length for e in examples)
    audit = audit_lengths(examples, longest - 1)
    assert [e.length for e in audit.truncated] == [longest] * len(audit.truncated) and audit.truncated
    exact = audit_lengths(examples, longest)
    assert not exact.truncated, "a record whose eos is the last token that fits is kept"


@pytest.mark.parametrize(
    ("effective", "memory", "given", "world", "expected"),
    [
        (16, None, None, 1, (2, 8, 16)),
        (16, 80.0, None, 1, (16, 1, 16)),
        (16, 30.0, None, 1, (4, 4, 16)),
        (16, None, 3, 1, (3, 6, 18)),  # 16 is not a multiple of 3: the plan says 18, the truth
        (4, 80.0, None, 1, (4, 1, 4)),
        (16, None, 2, 2, (2, 4, 16)),  # two processes halve the accumulation, not double the batch
        (16, 80.0, None, 8, (2, 1, 16)),
        (6, None, 2, 4, (2, 1, 8)),
    ],
)
def test_batch_plan_counts_every_process(
    effective: int, memory: float | None, given: int | None, world: int, expected: tuple[int, int, int]
) -> None:
    plan = plan_batches(effective, memory, given, world)
    assert (plan.per_device, plan.accumulation, plan.effective) == expected
    assert plan == BatchPlan(expected[0], expected[1], world)


def test_precision_is_bf16_fp16_or_fp32_by_what_the_machine_has() -> None:
    assert choose_precision("auto", cuda=True, bf16_supported=True, quantization="none") == "bf16"
    assert choose_precision("auto", cuda=True, bf16_supported=False, quantization="none") == "fp16"
    assert choose_precision("auto", cuda=False, bf16_supported=False, quantization="none") == "fp32"
    with pytest.raises(KochallengeError, match=r"no bf16.*--precision fp16"):
        choose_precision("bf16", cuda=True, bf16_supported=False, quantization="none")
    with pytest.raises(KochallengeError, match="needs a CUDA GPU"):
        choose_precision("fp16", cuda=False, bf16_supported=False, quantization="none")


def test_gradient_checkpointing_is_on_by_default_only_above_a_billion_parameters() -> None:
    assert use_gradient_checkpointing("auto", 7_000_000_000)
    assert not use_gradient_checkpointing("auto", 500_000_000)
    assert not use_gradient_checkpointing("auto", None)
    assert use_gradient_checkpointing("on", 10) and not use_gradient_checkpointing("off", 7_000_000_000)


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
    assert report["steps"] == 6 and report["device"] == "cpu" and report["seconds_per_step"] > 0
    assert report["records"] == {
        "total": 48, "train": 36, "validation": 12, "validation_source": "0.1 share, whole pool items held out",
        "dropped_truncated": [],
    }  # fmt: skip
    assert report["world_size"] == 1 and report["effective_batch_size"] == 4
    assert [p["step"] for p in report["loss_curves"]["validation"]] == [2.0, 4.0, 6.0]
    assert report["loss_curves"]["train"] and isinstance(report["final_validation_loss"], float)
    assert report["best_validation_loss"] == min(p["loss"] for p in report["loss_curves"]["validation"])
    scored = orjson.loads((out / "evaluation" / "evaluation.json").read_bytes())
    assert len(scored["items"]) == 4 and report["evaluation"]["all"]["count"] == 4
    assert all(item["finish"] in ("eos", "length") for item in scored["items"])
    assert (out / "evaluation" / "evaluation.md").is_file()
    assert (out / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "prompt.j2").read_bytes() == (ROOT / "templates" / "prompt.j2").read_bytes()
    config = orjson.loads((out / "train_config.json").read_bytes())
    assert config["options"]["learning_rate"] == 1e-3 and config["resolved"]["gradient_accumulation_steps"] == 2
    resolved = config["resolved"]
    assert resolved["world_size"] == 1 and resolved["effective_batch_size"] == 4
    assert (
        resolved["max_new_tokens"] == 16
        and resolved["longest_completion_tokens"] == report["longest_completion_tokens"]
    )
    assert config["base_fingerprint"] and config["versions"]["trl"]
    adapter_files = {p.name for p in (out / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= adapter_files
    assert not adapter_files & {"config.json", "tokenizer_config.json", "tokenizer.json", "generation_config.json"}
    assert not (out / "checkpoints").exists()
    assert folder_digest(tiny.model_dir) == before, "training must not touch the base model's files"


def test_the_merged_result_passes_the_doctor_with_clean_configs(tiny: TinySetup, tmp_path: Path) -> None:
    from kochallenge_data.ml.doctor import doctor
    from kochallenge_data.ml.merge import merge_adapter

    train(quick_options(tiny, tmp_path / "run", max_steps=2, evaluate_limit=0), progress=lambda _: None)
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
        tiny,
        tmp_path / "run",
        learning_rate=0.0,
        max_steps=30,
        eval_steps=1,
        early_stopping_patience=2,
        evaluate_limit=0,
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
        quick_options(tiny, tmp_path / "dropped", max_length=limit, drop_truncated=True, max_steps=2, evaluate_limit=0),
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
         "--max-steps", "2", "--per-device-batch-size", "2", "--effective-batch-size", "2", "--eval-steps", "1", "--evaluate-limit", "0"]
    )  # fmt: skip
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "trained 2 steps" in printed and str(tmp_path / "cli" / "adapter") in printed
    resolved = orjson.loads((tmp_path / "cli" / "train_config.json").read_bytes())["resolved"]
    # No --max-new-tokens: the answer budget is the longest trained completion plus room, so serving never cuts
    # an answer the model learned to finish.
    assert resolved["max_new_tokens"] >= resolved["longest_completion_tokens"] + 16


def test_the_tokenizer_audit_counts_records_as_training_builds_them(tiny: TinySetup, tokenizer: Any) -> None:
    from kochallenge_data.audit import render_records, token_lengths

    layout = load_prompt_layout()
    records = [r.model_dump() for r in tiny.records]
    audited = token_lengths(tokenizer, render_records(records, layout))
    built = [tokenize_record(tokenizer, layout, r, tokenizer.eos_token_id) for r in tiny.records]
    assert [a.total for a in audited] == [b.length for b in built]
    assert [a.prompt for a in audited] == [b.prompt_length for b in built]


# --------------------------------------------------------------------------------------------
# configuration, chat templates, held-out file, memory levers

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def chat_base(tiny: TinySetup, root: Path, template: str) -> Path:
    base = root / "chat-base"
    shutil.copytree(tiny.model_dir, base)
    config_path = base / "tokenizer_config.json"
    config = orjson.loads(config_path.read_bytes())
    config["chat_template"] = template
    config_path.write_bytes(orjson.dumps(config))
    return base


def test_chat_template_mode_trains_and_serves_through_the_base_template(tiny: TinySetup, tmp_path: Path) -> None:
    from kochallenge_data.prompt import load_prompt_layout as load_layout

    base = chat_base(tiny, tmp_path, CHAT_TEMPLATE)
    out = tmp_path / "run"
    report = train(
        quick_options(tiny, out, base=base, prompt_mode="chat-template", max_steps=2, evaluate_limit=2),
        progress=lambda _: None,
    ).report
    assert report["steps"] == 2
    tokenizer = load_base_tokenizer(base)
    served = load_layout(out / "prompt.j2")  # what `serve` and `evaluate` load from the run folder
    assert served.exact
    for record in tiny.records[:10]:
        messages = [{"role": "system", "content": record.instruction}, {"role": "user", "content": record.input}]
        expected = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
        expected_ids = list(expected["input_ids"] if hasattr(expected, "keys") else expected)
        # This template writes no bos; the tokenizer adds its own, in training and serving alike.
        assert tokenizer(served.render(record.instruction, record.input))["input_ids"] == [0, *expected_ids]
    resolved = orjson.loads((out / "train_config.json").read_bytes())["resolved"]
    assert resolved["prompt_mode"] == "chat-template" and resolved["chat_system_role"] is True
    example = tokenize_chat_record(tokenizer, served, tiny.records[0], True, {tokenizer.eos_token_id})
    learned = example.labels[example.prompt_length :]
    assert learned[-1] == tokenizer.eos_token_id and tokenizer.decode(learned[:-1]) == tiny.records[0].output


def test_chat_template_mode_uses_one_user_turn_when_the_template_has_no_system_role(
    tiny: TinySetup, tmp_path: Path
) -> None:
    from kochallenge_data.ml.train import chat_prompt_layout

    no_system = (
        "{% if messages[0].role == 'system' %}{{ raise_exception('no system role') }}{% endif %}" + CHAT_TEMPLATE
    )
    tokenizer = load_base_tokenizer(chat_base(tiny, tmp_path, no_system))
    layout, system_role = chat_prompt_layout(tokenizer, tiny.records)
    assert system_role is False
    record = tiny.records[0]
    assert layout.render(record.instruction, record.input).startswith(f"<|user|>\n{record.instruction}\n\n")


def test_chat_template_mode_refuses_a_template_that_rewrites_the_content(tiny: TinySetup, tmp_path: Path) -> None:
    cutting = CHAT_TEMPLATE.replace("{{ m.content }}", "{{ m.content[:40] }}")
    base = chat_base(tiny, tmp_path, cutting)
    with pytest.raises(KochallengeError, match="does not render the record as plain text"):
        train(quick_options(tiny, tmp_path / "run", base=base, prompt_mode="chat-template"), progress=lambda _: None)
    with pytest.raises(KochallengeError, match="has no chat_template"):
        train(quick_options(tiny, tmp_path / "run2", prompt_mode="chat-template"), progress=lambda _: None)


def test_the_default_validation_holds_out_whole_pool_items(tiny: TinySetup) -> None:
    from kochallenge_data.ml.train.examples import grouped_validation
    from kochallenge_data.split import group_keys, read_source

    indices = list(range(len(tiny.records)))
    split = grouped_validation(tiny.data, tiny.records, indices, 0.1, 42)
    assert split is not None
    train_ids, validation_ids = split
    assert sorted(train_ids + validation_ids) == indices and validation_ids
    keys, _ = group_keys(read_source(tiny.data), "item")  # the pool item each record's phrasing comes from
    assert not {keys[i] for i in train_ids} & {keys[i] for i in validation_ids}, "no pool item on both sides"


def test_a_held_out_file_is_the_validation_set(tiny: TinySetup, tmp_path: Path) -> None:
    from kochallenge_data.writer import dataset_bytes

    held_out = tmp_path / "validation.json"
    held_out.write_bytes(dataset_bytes(r.model_dump() for r in tiny.records[:6]))
    train_file = tmp_path / "train.json"
    train_file.write_bytes(dataset_bytes(r.model_dump() for r in tiny.records[6:]))
    report = train(
        quick_options(tiny, tmp_path / "run", data=train_file, validation=held_out, max_steps=2, evaluate_limit=0),
        progress=lambda _: None,
    ).report
    assert report["records"]["train"] == 42 and report["records"]["validation"] == 6
    assert report["records"]["validation_source"] == str(held_out)


def test_a_config_file_supplies_options_and_flags_win(tiny: TinySetup, tmp_path: Path) -> None:
    config = tmp_path / "train.toml"
    config.write_text(
        f'data = "{tiny.data}"\nbase = "{tiny.model_dir}"\nout = "run"\nlora_r = 4\nlora_dropout = 0.2\n'
        'target_modules = ["q_proj", "v_proj"]\nmax_steps = 1\nlearning_rate = 1e-3\nevaluate_limit = 0\n'
        "batch_size = 2\neffective_batch_size = 2\n",
        encoding="utf-8",
    )
    args = train_parser().parse_args(["train", "--config", str(config), "--lora-r", "8", "--eval-steps", "1"])
    assert args.func(args) == 0
    recorded = orjson.loads((tmp_path / "run" / "train_config.json").read_bytes())["options"]
    assert recorded["lora_r"] == 8 and recorded["lora_dropout"] == 0.2  # the flag won; the file filled the rest
    assert recorded["out"] == str(tmp_path / "run"), "paths in a config file are relative to the file"
    adapter = orjson.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_bytes())
    assert sorted(adapter["target_modules"]) == ["q_proj", "v_proj"] and adapter["r"] == 8
    assert adapter["lora_dropout"] == 0.2
    config.write_text('data = "x.json"\nlora_rank = 4\n', encoding="utf-8")
    args = train_parser().parse_args(["train", "--config", str(config)])
    with pytest.raises(KochallengeError, match=r"unknown train option\(s\) lora_rank"):
        args.func(args)


def test_gradient_checkpointing_trains_on_request_and_is_recorded(tiny: TinySetup, tmp_path: Path) -> None:
    options = quick_options(tiny, tmp_path / "run", gradient_checkpointing="on", max_steps=2, evaluate_limit=0)
    report = train(options, progress=lambda _: None).report
    assert report["gradient_checkpointing"] is True and report["steps"] == 2
    assert report["final_validation_loss"] == pytest.approx(report["final_validation_loss"])  # a real number


def test_qlora_and_half_precision_are_refused_on_cpu_before_anything_loads(tiny: TinySetup, tmp_path: Path) -> None:
    with pytest.raises(KochallengeError, match=r"QLoRA.*needs a CUDA GPU"):
        train(quick_options(tiny, tmp_path / "q", quantization="4bit"), progress=lambda _: None)
    with pytest.raises(KochallengeError, match="--precision fp16 needs a CUDA GPU"):
        train(quick_options(tiny, tmp_path / "h", precision="fp16"), progress=lambda _: None)
    assert not (tmp_path / "q").exists() and not (tmp_path / "h").exists()
