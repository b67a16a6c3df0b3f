"""Each export is loaded back with the library that consumes it and compared, record by record, with the source."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from kochallenge_data.export import FORMATS, export_dataset
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


def export(source: Source, fmt: str, out: Path) -> None:
    export_dataset(source, fmt, out, val_ratio=RATIO, seed=SEED, group_by="item")


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
    export(source, "hf", out)  # a second export replaces the saved DatasetDict cleanly
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
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


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
        "export", str(sample_dataset), "--to", "jsonl", "--out", str(tmp_path), "--val-ratio", "0"
    )
    assert code == 0, err
    assert "exported jsonl" in out and "train 300" in out
    assert not (tmp_path / "validation.jsonl").exists()
    code, _, err = run_in_process("export", str(sample_dataset), "--to", "csv", "--out", str(tmp_path))
    assert code == 2 and "invalid choice" in err
