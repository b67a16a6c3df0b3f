"""Each export is loaded back with the library that consumes it and compared, record by record, with the source."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from kochallenge_data.errors import KochallengeError
from kochallenge_data.export import (
    EXPORT_MANIFEST,
    FORMATS,
    SHAREGPT_TAGS,
    alpaca_row,
    conversational_row,
    export_dataset,
    export_files,
    messages_row,
    prompt_completion_row,
    sharegpt_row,
)
from kochallenge_data.models import Record
from kochallenge_data.progress import StderrReporter
from kochallenge_data.prompt import load_prompt_layout, render_prompt
from kochallenge_data.split import GROUP_BY_CHOICES, Source, read_source, split_source
from kochallenge_data.stack_cli import FORMATS as CLI_FORMATS
from kochallenge_data.stack_cli import GROUP_BY_CHOICES as CLI_GROUP_BY

from .stack_helpers import run_in_process, run_subprocess, sample_dataset
from .stack_tokenizers import corpus_lines, train_byte_level_bpe

__all__ = ["sample_dataset"]

SEED = 5
RATIO = 0.2


def expected_sides(source: Source) -> dict[str, list[dict[str, str]]]:
    """What every export must contain: the split the library computes for these options, in order."""
    split = split_source(source, val_ratio=RATIO, seed=SEED, group_by="item")
    return {
        "train": [source.records[i] for i in split.train],
        "validation": [source.records[i] for i in split.validation],
    }


def export(source: Source, fmt: str, out: Path, force: bool = False) -> None:
    export_dataset(source, fmt, out, val_ratio=RATIO, seed=SEED, group_by="item", force=force)


def load_json_splits(out: Path, files: dict[str, str], cache: Path) -> dict[str, list[dict[str, Any]]]:
    datasets = pytest.importorskip("datasets", reason="needs the hf extra")
    datasets.disable_progress_bars()
    loaded = datasets.load_dataset("json", data_files={k: str(out / v) for k, v in files.items()}, cache_dir=str(cache))
    return {name: list(loaded[name]) for name in files}


@pytest.fixture(scope="module")
def source(sample_dataset: Path) -> Source:
    return read_source(sample_dataset)


@pytest.mark.parametrize(("fmt", "suffix"), [("alpaca", ".json"), ("jsonl", ".jsonl")])
def test_alpaca_and_jsonl_load_as_the_dataset_itself(source: Source, tmp_path: Path, fmt: str, suffix: str) -> None:
    export(source, fmt, tmp_path / "out")
    files = {name: f"{name}{suffix}" for name in ("train", "validation")}
    assert load_json_splits(tmp_path / "out", files, tmp_path / "cache") == expected_sides(source)


def test_messages_are_system_user_assistant_chats_trl_recognizes(source: Source, tmp_path: Path) -> None:
    export(source, "messages", tmp_path / "out")
    files = {name: f"{name}.jsonl" for name in ("train", "validation")}
    loaded = load_json_splits(tmp_path / "out", files, tmp_path / "cache")
    trl_data = pytest.importorskip("trl.data_utils", reason="needs trl to apply its dataset checks")
    for name, records in expected_sides(source).items():
        assert len(loaded[name]) == len(records)
        for row, record in zip(loaded[name], records, strict=True):
            assert trl_data.is_conversational(row)
            assert row["messages"] == [
                {"role": "system", "content": record["instruction"]},
                {"role": "user", "content": record["input"]},
                {"role": "assistant", "content": record["output"]},
            ]


def test_sharegpt_keeps_sharegpt_roles_and_trl_reads_its_keys(source: Source, tmp_path: Path) -> None:
    export(source, "sharegpt", tmp_path / "out")
    files = {name: f"{name}.json" for name in ("train", "validation")}
    loaded = load_json_splits(tmp_path / "out", files, tmp_path / "cache")
    trl_data = pytest.importorskip("trl.data_utils", reason="needs trl to apply its dataset checks")
    for name, records in expected_sides(source).items():
        for row, record in zip(loaded[name], records, strict=True):
            assert trl_data.is_conversational_from_value(row)
            # TRL renames from/value to role/content but keeps the ShareGPT role names (the README says so).
            chat = trl_data.maybe_convert_to_chatml(dict(row))["messages"]
            assert chat == [
                {"role": "system", "content": record["instruction"]},
                {"role": "human", "content": record["input"]},
                {"role": "gpt", "content": record["output"]},
            ]
    assert "use the `messages` export for TRL" in (tmp_path / "out" / "README.md").read_text(encoding="utf-8")


def test_prompt_completion_passes_the_checks_trl_applies(source: Source, tmp_path: Path) -> None:
    export(source, "prompt-completion", tmp_path / "out")
    files = {name: f"{name}.jsonl" for name in ("train", "validation")}
    loaded = load_json_splits(tmp_path / "out", files, tmp_path / "cache")
    trl_data = pytest.importorskip("trl.data_utils", reason="needs trl to apply its dataset checks")
    pytest.importorskip("transformers", reason="needs the train extra")
    texts = [render_prompt(r["instruction"], r["input"]) + r["output"] for r in source.records]
    tokenizer_dir = train_byte_level_bpe(tmp_path / "bpe", corpus_lines(texts))
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    for name, records in expected_sides(source).items():
        for row, record in zip(loaded[name], records, strict=True):
            assert set(row) == {"prompt", "completion"}
            # SFTTrainer: standard (not conversational) prompt/completion, eos appended by TRL, not by us.
            assert not trl_data.is_conversational(row)
            assert row["prompt"] == render_prompt(record["instruction"], record["input"])
            assert row["completion"] == record["output"]
            assert not row["completion"].endswith(tokenizer.eos_token)
            # SFTTrainer masks the prompt by the common prefix of prompt and prompt + completion tokens.
            prompt_ids = tokenizer(row["prompt"])["input_ids"]
            full_ids = tokenizer(row["prompt"] + row["completion"] + tokenizer.eos_token)["input_ids"]
            assert trl_data.common_prefix_length(prompt_ids, full_ids) == len(prompt_ids)
            assert full_ids[-1] == tokenizer.eos_token_id


def test_llamafactory_folder_maps_its_columns_back_to_the_records(source: Source, tmp_path: Path) -> None:
    out = tmp_path / "out"
    export(source, "llamafactory", out)
    info = orjson.loads((out / "dataset_info.json").read_bytes())
    assert set(info) == {"kochallenge_train", "kochallenge_validation"}
    files = {name: info[f"kochallenge_{name}"]["file_name"] for name in ("train", "validation")}
    loaded = load_json_splits(out, files, tmp_path / "cache")
    for name, records in expected_sides(source).items():
        entry = info[f"kochallenge_{name}"]
        assert entry["formatting"] == "alpaca"
        columns = entry["columns"]
        mapped = [
            {"instruction": row[columns["prompt"]], "input": row[columns["query"]], "output": row[columns["response"]]}
            for row in loaded[name]
        ]
        assert mapped == records


def test_hf_export_loads_from_disk_and_from_parquet(source: Source, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets", reason="needs the hf extra")
    out = tmp_path / "out"
    export(source, "hf", out)
    export(source, "hf", out, force=True)  # a second export replaces the saved DatasetDict cleanly
    expected = expected_sides(source)
    tasks = {
        name: [source.tasks[i] for i in indices]
        for name, indices in zip(("train", "validation"), _split_indices(source), strict=True)
    }
    on_disk = datasets.load_from_disk(str(out / "dataset"))
    parquet = datasets.load_dataset(
        "parquet",
        data_files={name: str(out / "data" / f"{name}.parquet") for name in expected},
        cache_dir=str(tmp_path / "cache"),
    )
    for loaded in (on_disk, parquet):
        assert sorted(loaded) == ["train", "validation"]
        for name, records in expected.items():
            rows = list(loaded[name])
            assert [{k: r[k] for k in ("instruction", "input", "output")} for r in rows] == records
            assert [r["task"] for r in rows] == tasks[name]
    card = (out / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n") and "path: data/train.parquet" in card
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [EXPORT_MANIFEST]  # no temp left


def _split_indices(source: Source) -> tuple[list[int], list[int]]:
    split = split_source(source, val_ratio=RATIO, seed=SEED, group_by="item")
    return split.train, split.validation


def test_hf_export_without_datasets_names_the_extra(sample_dataset: Path, tmp_path: Path) -> None:
    result = run_subprocess("export", str(sample_dataset), "--to", "hf", "--out", str(tmp_path), block=["datasets"])
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ") and "pip install 'kochallenge-data[hf]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_export_has_a_readme_with_format_and_rendered_prompt(source: Source, tmp_path: Path, fmt: str) -> None:
    if fmt == "hf":
        pytest.importorskip("datasets", reason="needs the hf extra")
    export(source, fmt, tmp_path)
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    first = expected_sides(source)["train"][0]
    assert f"`{fmt}`" in readme
    assert render_prompt(first["instruction"], first["input"]) + first["output"] + "<eos>" in readme
    assert load_prompt_layout().source.rstrip("\n") in readme
    assert orjson.loads((tmp_path / "split.json").read_bytes())["group_by"] == "item"


def test_same_seed_gives_the_same_export_bytes(source: Source, tmp_path: Path) -> None:
    for name in ("a", "b"):
        export(source, "prompt-completion", tmp_path / name)
    for file in ("train.jsonl", "validation.jsonl", "README.md", "split.json"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()


def test_cli_choices_match_the_library() -> None:
    assert CLI_FORMATS == FORMATS and CLI_GROUP_BY == GROUP_BY_CHOICES


def test_building_the_parser_imports_no_heavy_library() -> None:
    heavy = ["datasets", "matplotlib", "transformers", "torch", "trl", "kiwipiepy", "pyarrow"]
    script = (
        "import argparse, sys\n"
        "from kochallenge_data.stack_cli import register\n"
        "register(argparse.ArgumentParser().add_subparsers())\n"
        f"print([m for m in {heavy!r} if m in sys.modules])\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_export_command(sample_dataset: Path, tmp_path: Path) -> None:
    assert run_in_process("export", str(sample_dataset), "--to", "jsonl", "--out", str(tmp_path))[0] == 0
    assert (tmp_path / "validation.jsonl").exists()
    code, out, err = run_in_process(
        "export", str(sample_dataset), "--to", "jsonl", "--out", str(tmp_path), "--val-ratio", "0", "--force"
    )
    assert code == 0, err
    assert "exported jsonl" in out and "train 300" in out
    assert not (tmp_path / "validation.jsonl").exists()
    code, _, err = run_in_process("export", str(sample_dataset), "--to", "csv", "--out", str(tmp_path))
    assert code == 2 and "invalid choice" in err


# --------------------------------------------------------------------------------------------
# one folder, one export: what `load_dataset(folder)` reads is exactly the export


def expected_rows(source: Source, fmt: str) -> dict[str, list[dict[str, Any]]]:
    """What each export's rows must be, for the split the library computes."""
    layout = load_prompt_layout()
    makers: dict[str, Callable[[Mapping[str, str]], dict[str, Any]]] = {
        "alpaca": alpaca_row,
        "jsonl": alpaca_row,
        "llamafactory": alpaca_row,
        "messages": messages_row,
        "conversational": conversational_row,
        "prompt-completion": lambda r: prompt_completion_row(r, layout),
        "sharegpt": sharegpt_row,
    }
    if fmt == "hf":
        train, validation = _split_indices(source)
        return {
            name: [dict(alpaca_row(source.records[i]), task=source.tasks[i]) for i in indices]
            for name, indices in (("train", train), ("validation", validation))
        }
    return {name: [makers[fmt](r) for r in records] for name, records in expected_sides(source).items()}


def load_folder_dataset(out: Path, cache: Path) -> Any:
    """``load_dataset(folder)``, as a user loads an export."""
    datasets = pytest.importorskip("datasets", reason="needs the hf extra")
    datasets.disable_progress_bars()
    return datasets.load_dataset(str(out), cache_dir=str(cache))


def load_folder(out: Path, cache: Path) -> dict[str, list[dict[str, Any]]]:
    return {name: list(split) for name, split in load_folder_dataset(out, cache).items()}


@pytest.mark.parametrize("fmt", FORMATS)
def test_load_dataset_on_the_folder_gives_exactly_the_export(source: Source, tmp_path: Path, fmt: str) -> None:
    export(source, fmt, tmp_path / "out")
    assert load_folder(tmp_path / "out", tmp_path / "cache") == expected_rows(source, fmt)
    written = orjson.loads((tmp_path / "out" / EXPORT_MANIFEST).read_bytes())
    assert written["complete"] and written["format"] == fmt
    assert written["files"] == export_files(fmt, ["train", "validation"])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_exporting_into_a_used_folder_needs_force_and_then_leaves_one_format(source: Source, tmp_path: Path) -> None:
    out = tmp_path / "out"
    export(source, "jsonl", out)
    before = snapshot(out)
    with pytest.raises(KochallengeError, match=r"not empty.*--force"):
        export(source, "alpaca", out)
    assert snapshot(out) == before  # refused before anything was written
    export(source, "alpaca", out, force=True)
    # Before: train.jsonl and train.json side by side, and load_dataset read both (twice the rows).
    assert sorted(snapshot(out)) == sorted([*export_files("alpaca", ["train", "validation"]), EXPORT_MANIFEST])
    assert load_folder(out, tmp_path / "cache") == expected_rows(source, "alpaca")
    assert [p.name for p in tmp_path.iterdir() if p.name != "cache"] == ["out"], "no staging folder left beside"


def test_force_replaces_an_hf_export_folder_and_all(source: Source, tmp_path: Path) -> None:
    pytest.importorskip("datasets", reason="needs the hf extra")
    out = tmp_path / "out"
    export(source, "hf", out)
    (out / "data" / ".train.parquet.x1y2.tmp").write_bytes(b"half")  # what a killed write leaves behind
    export(source, "messages", out, force=True)
    assert sorted(snapshot(out)) == sorted([*export_files("messages", ["train", "validation"]), EXPORT_MANIFEST])
    assert not (out / "dataset").exists() and not (out / "data").exists()


def test_force_never_removes_a_file_no_export_wrote(source: Source, tmp_path: Path) -> None:
    out = tmp_path / "out"
    export(source, "jsonl", out)
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    before = snapshot(out)
    with pytest.raises(KochallengeError, match=r"no export wrote \(notes.txt\)"):
        export(source, "alpaca", out, force=True)
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "refused before a staging folder was made"

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "train.json").write_text("[]", encoding="utf-8")
    with pytest.raises(KochallengeError, match=f"has no {EXPORT_MANIFEST}"):
        export(source, "alpaca", plain, force=True)
    assert (plain / "train.json").read_text(encoding="utf-8") == "[]"


def test_a_manifest_pointing_outside_the_folder_removes_nothing(source: Source, tmp_path: Path) -> None:
    out = tmp_path / "out"
    export(source, "jsonl", out)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep", encoding="utf-8")
    (out / EXPORT_MANIFEST).write_bytes(orjson.dumps({"files": ["../victim.txt", "train.jsonl"]}))
    before = snapshot(out)
    with pytest.raises(KochallengeError, match="paths inside the folder"):
        export(source, "alpaca", out, force=True)
    assert victim.read_text(encoding="utf-8") == "keep" and snapshot(out) == before


def test_the_export_folder_and_its_files_follow_the_umask(source: Source, tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        export(source, "jsonl", tmp_path / "out")
    finally:
        os.umask(previous)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o750
    for path in (tmp_path / "out").iterdir():
        assert path.stat().st_mode & 0o777 == 0o640, path


def test_out_that_is_a_file_is_refused(source: Source, tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x", encoding="utf-8")
    with pytest.raises(KochallengeError, match="is a file"):
        export(source, "jsonl", target, force=True)


def test_export_command_refuses_a_used_folder_with_a_sentence(sample_dataset: Path, tmp_path: Path) -> None:
    assert run_in_process("export", str(sample_dataset), "--to", "jsonl", "--out", str(tmp_path))[0] == 0
    code, out, err = run_in_process("export", str(sample_dataset), "--to", "alpaca", "--out", str(tmp_path))
    assert code == 1 and err.startswith(f"Error: --out {tmp_path}: the folder is not empty")
    assert "--force" in err and "Traceback" not in err
    code, out, err = run_in_process("export", str(sample_dataset), "--to", "alpaca", "--out", str(tmp_path), "--force")
    assert code == 0, err
    assert "replaced the 5 files of the previous export" in out
    assert not (tmp_path / "train.jsonl").exists() and (tmp_path / "train.json").exists()


# --------------------------------------------------------------------------------------------
# conversational: TRL's prompt-completion chat form, so the default loss is on the answer


def test_conversational_rows_are_trl_conversational_prompt_completion(source: Source, tmp_path: Path) -> None:
    trl_data = pytest.importorskip("trl.data_utils", reason="needs trl to apply its dataset checks")
    export(source, "conversational", tmp_path / "out")
    loaded = load_folder(tmp_path / "out", tmp_path / "cache")
    for name, records in expected_sides(source).items():
        for row, record in zip(loaded[name], records, strict=True):
            assert trl_data.is_conversational(row) and set(row) == {"prompt", "completion"}
            assert row["prompt"] == [
                {"role": "system", "content": record["instruction"]},
                {"role": "user", "content": record["input"]},
            ]
            assert row["completion"] == [{"role": "assistant", "content": record["output"]}]


CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# The same template with the assistant turn marked, as assistant_only_loss needs.
CHATML_GENERATION = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{% if m.role == 'assistant' %}{% generation %}{{ m.content }}<|im_end|>\n{% endgeneration %}"
    "{% else %}{{ m.content }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def trl_labels(
    tokenizer: Any, model: Any, folder: Path, tmp_path: Path, **config: Any
) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) of the first rows after SFTTrainer's own dataset preparation, loaded from the folder."""
    from trl import SFTConfig, SFTTrainer

    train = load_folder_dataset(folder, tmp_path / "cache")["train"].select(range(4))
    arguments = SFTConfig(
        output_dir=str(tmp_path / "run"), report_to="none", bf16=False, use_cpu=True, max_length=None, **config
    )
    trainer = SFTTrainer(model=model, args=arguments, train_dataset=train, processing_class=tokenizer)
    return [(row["input_ids"], row["labels"]) for row in trainer.train_dataset]


@pytest.mark.train
def test_trl_default_loss_on_the_conversational_export_covers_only_the_answer(source: Source, tmp_path: Path) -> None:
    pytest.importorskip("trl", reason="needs the train extra")
    from .tiny_model import make_model, records_tokenizer

    tokenizer = records_tokenizer([Record(**r) for r in source.records])
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = CHATML
    model = make_model(len(tokenizer), bos=tokenizer.bos_token_id, eos=tokenizer.eos_token_id, dtype="float32")
    for fmt in ("conversational", "messages"):
        export(source, fmt, tmp_path / fmt)
    answers = [r["output"] for r in expected_sides(source)["train"][:4]]

    # conversational, TRL's defaults: -100 on system and user, labels on the answer and its end-of-turn only.
    conversational = trl_labels(tokenizer, model, tmp_path / "conversational", tmp_path)
    for (ids, labels), answer in zip(conversational, answers, strict=True):
        start = next(i for i, label in enumerate(labels) if label != -100)
        assert labels[:start] == [-100] * start and labels[start:] == ids[start:]
        assert tokenizer.decode(ids[start:]) == answer + "<|im_end|>\n"
        assert tokenizer.decode(ids[:start]).endswith("<|im_start|>assistant\n")

    # messages, TRL's defaults: the whole conversation is trained, system and user included (the README says so).
    for ids, labels in trl_labels(tokenizer, model, tmp_path / "messages", tmp_path):
        assert labels == ids and tokenizer.decode(ids).startswith("<|im_start|>system\n")

    # messages with assistant_only_loss and a {% generation %} template: the answer only, as the README says.
    tokenizer.chat_template = CHATML_GENERATION
    pairs = trl_labels(tokenizer, model, tmp_path / "messages", tmp_path, assistant_only_loss=True)
    for (ids, labels), answer in zip(pairs, answers, strict=True):
        learned = [token for token, label in zip(ids, labels, strict=True) if label != -100]
        assert tokenizer.decode(learned) == answer + "<|im_end|>\n"


@pytest.mark.parametrize(
    ("fmt", "says"),
    [
        ("messages", ["every token of the conversation", "assistant_only_loss=True", "{% generation %}"]),
        ("conversational", ["the completion only", "label -100"]),
        ("prompt-completion", ["the completion and eos only"]),
        ("sharegpt", ["`gpt` turn only", "own virtual environment"]),
        ("llamafactory", ["output only", "own virtual environment"]),
        ("alpaca", ["your script decides"]),
    ],
)
def test_each_readme_says_what_the_loss_covers(source: Source, tmp_path: Path, fmt: str, says: list[str]) -> None:
    export(source, fmt, tmp_path)
    section = (tmp_path / "README.md").read_text(encoding="utf-8").split("## What the loss covers\n", 1)[1]
    section = section.split("## Prompt layout", 1)[0]
    assert all(phrase in section for phrase in says), section


# --------------------------------------------------------------------------------------------
# sharegpt ships LLaMA-Factory's dataset_info.json


def test_sharegpt_dataset_info_columns_and_tags_match_the_files(source: Source, tmp_path: Path) -> None:
    """LLaMA-Factory's documented schema (data/README.md, SharegptDatasetConverter): the messages column, the
    role and content keys, the system tag on a leading system message, then user tags at odd and assistant
    tags at even positions, an even count. LLaMA-Factory is not installed: the rules are checked here."""
    out = tmp_path / "out"
    export(source, "sharegpt", out)
    info = orjson.loads((out / "dataset_info.json").read_bytes())
    assert set(info) == {"kochallenge_train", "kochallenge_validation"}
    for name, records in expected_sides(source).items():
        entry = info[f"kochallenge_{name}"]
        assert entry["formatting"] == "sharegpt"
        # LLaMA-Factory sets every tag a "tags" block leaves out to None, so all of them are written.
        assert entry["tags"] == SHAREGPT_TAGS
        tags, column = entry["tags"], entry["columns"]["messages"]
        rows = orjson.loads((out / entry["file_name"]).read_bytes())
        assert len(rows) == len(records)
        for row, record in zip(rows, records, strict=True):
            messages = row[column]
            assert all(set(m) == {tags["role_tag"], tags["content_tag"]} for m in messages)
            assert messages[0][tags["role_tag"]] == tags["system_tag"]
            turns = messages[1:]
            assert len(turns) % 2 == 0
            for position, message in enumerate(turns):
                allowed = (
                    (tags["user_tag"], tags["observation_tag"])
                    if position % 2 == 0
                    else (tags["assistant_tag"], tags["function_tag"])
                )
                assert message[tags["role_tag"]] in allowed
            system, user, assistant = (m[tags["content_tag"]] for m in messages)
            assert {"instruction": system, "input": user, "output": assistant} == record


# --------------------------------------------------------------------------------------------
# progress


def test_export_reports_progress_for_its_long_steps(source: Source, tmp_path: Path) -> None:
    stream = io.StringIO()
    export_dataset(source, "jsonl", tmp_path, reporter=StderrReporter(stream=stream, every_s=0.0))
    lines = stream.getvalue().splitlines()
    assert any(line.startswith(f"split: near-duplicates across splits: {len(source.records)}/") for line in lines)
    assert f"export: writing jsonl: {len(source.records):,}/{len(source.records):,} records (100%)" in "\n".join(lines)
