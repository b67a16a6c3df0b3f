from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import orjson
import pytest

from kochallenge_data.errors import ConfigError, InputFileError, KochallengeError
from kochallenge_data.split import (
    GROUP_BY_CHOICES,
    SPLIT_FILES,
    NearDuplicateGuard,
    choose_validation_groups,
    group_keys,
    read_source,
    split_source,
    stratified_group_split,
    validation_target,
    write_split,
)
from kochallenge_data.text import normalize_for_compare
from kochallenge_data.writer import dataset_bytes

from .stack_helpers import load_records, run_in_process, run_subprocess, sample_dataset

__all__ = ["sample_dataset"]


def text_of(record: dict[str, str]) -> str:
    return f"{record['input']}\n{record['output']}"


def copy_without_sidecars(path: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "bare.json"
    shutil.copy(path, target)
    return target


@pytest.mark.parametrize("group_by", GROUP_BY_CHOICES)
def test_every_record_lands_in_exactly_one_split(sample_dataset: Path, group_by: str) -> None:
    source = read_source(sample_dataset)
    split = split_source(source, val_ratio=0.2, seed=3, group_by=group_by)  # type: ignore[arg-type]
    assert not set(split.train) & set(split.validation)
    assert sorted(split.train + split.validation) == list(range(len(source.records)))
    assert split.report["train"] + split.report["validation"] == len(source.records)
    assert all(figures["validation"] > 0 and figures["train"] > 0 for figures in split.report["per_task"].values())


def test_ungrouped_split_gives_each_task_its_exact_share(sample_dataset: Path) -> None:
    source = read_source(sample_dataset)
    split = split_source(source, val_ratio=0.15, seed=1)
    per_task = Counter(source.tasks)
    held_out = Counter(source.tasks[i] for i in split.validation)
    assert held_out == {task: int(n * 0.15 + 0.5) for task, n in per_task.items()}


def test_grouping_by_item_keeps_each_pool_item_on_one_side(sample_dataset: Path) -> None:
    source = read_source(sample_dataset)
    assert source.meta is not None
    split = split_source(source, val_ratio=0.2, seed=5, group_by="item")
    assert split.report["groups_from"] == "build metadata sidecar"
    for task, field in (("base_info", "recommend"), ("free_text", "message"), ("feedback", "instruction")):
        train_items = {source.meta[i][field] for i in split.train if source.tasks[i] == task}
        validation_items = {source.meta[i][field] for i in split.validation if source.tasks[i] == task}
        assert validation_items, task
        assert not train_items & validation_items, task


def test_grouping_by_template_keeps_layouts_and_instruction_phrasings_apart(sample_dataset: Path) -> None:
    source = read_source(sample_dataset)
    assert source.meta is not None
    split = split_source(source, val_ratio=0.2, seed=5, group_by="template")
    # feedback has several layout templates; the recommendation tasks have one, so their instructions vary.
    for task, field in (("feedback", "template"), ("base_info", "instruction"), ("free_text", "instruction")):
        train_items = {source.meta[i][field] for i in split.train if source.tasks[i] == task}
        validation_items = {source.meta[i][field] for i in split.validation if source.tasks[i] == task}
        assert validation_items and not train_items & validation_items, task


def test_without_a_sidecar_groups_come_from_the_record_text(sample_dataset: Path, tmp_path: Path) -> None:
    bare = read_source(copy_without_sidecars(sample_dataset, tmp_path))
    assert bare.meta is None
    split = split_source(bare, val_ratio=0.2, seed=5, group_by="item")
    assert split.report["groups_from"] == "record text (no metadata sidecar)"
    for task, field in (("free_text", "input"), ("feedback", "instruction")):
        train_items = {bare.records[i][field] for i in split.train if bare.tasks[i] == task}
        validation_items = {bare.records[i][field] for i in split.validation if bare.tasks[i] == task}
        assert validation_items and not train_items & validation_items, task
    template = split_source(bare, val_ratio=0.2, seed=5, group_by="template")
    train_instructions = {bare.records[i]["instruction"] for i in template.train}
    assert not train_instructions & {bare.records[i]["instruction"] for i in template.validation}


def test_a_sidecar_that_belongs_to_another_file_is_ignored(sample_dataset: Path, tmp_path: Path) -> None:
    folder = tmp_path / "edited"
    folder.mkdir()
    for path in sample_dataset.parent.iterdir():
        shutil.copy(path, folder / path.name)
    records = load_records(folder / "data.json")
    records[0] = dict(records[0], output=records[0]["output"] + " 수정")
    (folder / "data.json").write_bytes(dataset_bytes(records))
    source = read_source(folder / "data.json")
    assert source.meta is None and source.manifest is None
    assert any("describes a different file" in note for note in source.notes)


def with_twins(records: list[dict[str, str]], count: int, new_instruction: bool) -> list[dict[str, str]]:
    """The records plus ``count`` near copies (one word added), optionally under a new instruction."""
    twins = []
    for record in records[:count]:
        twin = dict(record, output=record["output"] + " 정말")
        if new_instruction:
            twin["instruction"] = record["instruction"] + " 꼭 지켜 주세요."
        twins.append(twin)
    return records + twins


def trigrams(text: str) -> set[str]:
    compact = normalize_for_compare(text).replace(" ", "")
    return {compact[i : i + 3] for i in range(max(1, len(compact) - 2))}


def jaccard(a: str, b: str) -> float:
    grams_a, grams_b = trigrams(a), trigrams(b)
    return len(grams_a & grams_b) / len(grams_a | grams_b)


def near_pairs_across(records: list[dict[str, str]], train: list[int], validation: list[int]) -> int:
    """Brute force, independent of the index: validation records at Jaccard >= 0.8 of a training record."""
    train_grams = [trigrams(text_of(records[i])) for i in train]
    count = 0
    for i in validation:
        grams = trigrams(text_of(records[i]))
        if any(len(grams & other) / len(grams | other) >= 0.8 for other in train_grams):
            count += 1
    return count


def test_near_duplicates_across_splits_are_moved_to_train_when_ungrouped(sample_dataset: Path, tmp_path: Path) -> None:
    records = with_twins(load_records(sample_dataset), 60, new_instruction=False)
    path = tmp_path / "twins.json"
    path.write_bytes(dataset_bytes(records))
    source = read_source(path)
    keys, _ = group_keys(source, "none")
    _, first_validation, _ = stratified_group_split(source.tasks, keys, 0.3, 11)
    original = len(records) - 60
    pairs = [(i, original + i) for i in range(60)]
    held = set(first_validation)
    expected_moved = sum(1 for a, b in pairs if (a in held) != (b in held))
    split = split_source(source, val_ratio=0.3, seed=11)
    assert expected_moved > 0
    assert split.report["near_duplicates"] == {"moved_to_train": expected_moved, "dropped": 0}
    assert near_pairs_across(records, split.train, split.validation) == 0
    assert len(split.train) + len(split.validation) == len(records)


def test_the_guard_finds_a_record_close_only_to_a_training_near_duplicate(sample_dataset: Path) -> None:
    outputs = [r["output"] for r in load_records(sample_dataset) if "\n" in r["output"]]
    # Distinct lines by length: short ones at both ends and a long one before the last, so that dropping the
    # first line and adding two changes a lot, while swapping one short line for another changes little.
    distinct = sorted(set(line for output in outputs for line in output.split("\n")[1:]), key=lambda t: (len(t), t))
    middle = len(distinct) // 2
    lines = [distinct[0], *distinct[middle : middle + 9], distinct[-1], distinct[1]]
    a = "\n".join(lines[:10])
    b = "\n".join(lines[:11])  # a with one more line: close to a
    c = "\n".join(lines[1:12])  # b shifted by a line: close to b, not to a
    assert jaccard(a, b) >= 0.8 and jaccard(b, c) >= 0.8 > jaccard(a, c)
    guard = NearDuplicateGuard(move=True)
    train, validation = guard.apply([a, b, c], [0, 1], [2])
    assert (train, validation, guard.moved) == ([0, 1, 2], [], [2])


def test_grouped_splits_drop_near_duplicates_instead_of_leaking_a_group(sample_dataset: Path, tmp_path: Path) -> None:
    records = with_twins(load_records(sample_dataset), 80, new_instruction=True)
    path = tmp_path / "twins.json"
    path.write_bytes(dataset_bytes(records))
    source = read_source(path)
    split = split_source(source, val_ratio=0.3, seed=2, group_by="template")
    dropped = split.report["near_duplicates"]["dropped"]
    assert dropped > 0 and split.report["near_duplicates"]["moved_to_train"] == 0
    assert len(split.train) + len(split.validation) + dropped == len(records)
    assert near_pairs_across(records, split.train, split.validation) == 0


def test_same_seed_same_bytes_and_another_seed_another_split(sample_dataset: Path, tmp_path: Path) -> None:
    source = read_source(sample_dataset)
    outputs = []
    for name, seed in (("a", 9), ("b", 9), ("c", 10)):
        write_split(source, split_source(source, 0.1, seed, "item"), tmp_path / name)
        outputs.append({p.name: p.read_bytes() for p in sorted((tmp_path / name).iterdir())})
    assert outputs[0] == outputs[1]
    assert outputs[0]["validation.json"] != outputs[2]["validation.json"]
    assert set(outputs[0]) == {
        "train.json",
        "train.meta.jsonl",
        "validation.json",
        "validation.meta.jsonl",
        "split.json",
    }


def test_split_sidecars_follow_their_records(sample_dataset: Path, tmp_path: Path) -> None:
    source = read_source(sample_dataset)
    write_split(source, split_source(source, 0.2, 4, "item"), tmp_path)
    for name in ("train", "validation"):
        part = read_source(tmp_path / f"{name}.json")
        assert part.meta is not None
        for record, meta in zip(part.records, part.meta, strict=True):
            assert source.records[meta["source_index"]] == record
            assert source.meta is not None and source.meta[meta["source_index"]]["task"] == meta["task"]


def test_a_zero_ratio_keeps_everything_in_train_and_removes_an_old_validation(
    sample_dataset: Path, tmp_path: Path
) -> None:
    source = read_source(sample_dataset)
    write_split(source, split_source(source, 0.2, 1, "item"), tmp_path)
    paths = write_split(source, split_source(source, 0.0, 1, "item"), tmp_path)
    assert "validation" not in paths
    assert sorted(p.name for p in tmp_path.iterdir()) == ["split.json", "train.json", "train.meta.jsonl"]
    assert len(load_records(paths["train"])) == len(source.records)


def test_a_split_replaces_a_previous_split_whole_and_refuses_a_folder_with_other_files(
    sample_dataset: Path, tmp_path: Path
) -> None:
    source = read_source(sample_dataset)
    out = tmp_path / "out"
    write_split(source, split_source(source, 0.2, 1, "item"), out)
    (out / ".train.json.999999999.ab12.tmp").write_bytes(b"half")  # what an older, killed version left
    write_split(source, split_source(source, 0.2, 2, "item"), out)
    assert sorted(p.name for p in out.iterdir()) == sorted(SPLIT_FILES)
    assert orjson.loads((out / "split.json").read_bytes())["seed"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["out"], "no staging folder is left beside it"

    (out / "notes.txt").write_text("mine", encoding="utf-8")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(KochallengeError, match=r"holds files a split does not write \(notes.txt\)"):
        write_split(source, split_source(source, 0.2, 3, "item"), out)
    code, _, err = run_in_process("split", str(sample_dataset), "--out", str(out))
    assert code == 1 and err.startswith(f"Error: --out {out}: holds files") and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_group_choice_approaches_the_target_and_keeps_both_sides() -> None:
    import random

    assert choose_validation_groups([1] * 10, 3, random.Random(0)).__len__() == 3
    chosen = choose_validation_groups([50, 50, 50, 50], 20, random.Random(0))
    assert len(chosen) == 1  # nothing closer than one group, but validation is never left empty
    assert len(choose_validation_groups([5, 5], 10, random.Random(0))) == 1  # never everything
    assert choose_validation_groups([5], 4, random.Random(0)) == set()  # a single group stays in train
    assert validation_target(25, 0.1) == 3 and validation_target(24, 0.1) == 2


@pytest.mark.parametrize(
    ("ratio", "group_by", "threshold", "message"),
    [(1.0, "none", 0.8, "--val-ratio"), (0.1, "word", 0.8, "--group-by"), (0.1, "none", 0.0, "--threshold")],
)
def test_bad_options_are_config_errors(
    sample_dataset: Path, ratio: float, group_by: str, threshold: float, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        split_source(read_source(sample_dataset), ratio, 1, group_by, threshold)  # type: ignore[arg-type]


def test_a_record_without_its_fields_stops_with_the_record_named(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_bytes(orjson.dumps([{"instruction": "a", "input": "b", "output": "c"}, {"instruction": "a"}]))
    with pytest.raises(InputFileError, match=r"record 1: input is missing"):
        read_source(path)


def test_split_command_writes_the_files_and_prints_the_figures(sample_dataset: Path, tmp_path: Path) -> None:
    code, out, err = run_in_process("split", str(sample_dataset), "--out", str(tmp_path), "--group-by", "item")
    assert code == 0, err
    report = orjson.loads((tmp_path / "split.json").read_bytes())
    assert report["group_by"] == "item" and report["seed"] == 42
    train = len(orjson.loads((tmp_path / "train.json").read_bytes()))
    validation = len(orjson.loads((tmp_path / "validation.json").read_bytes()))
    # Whole groups move together, so the validation share lands near, not exactly on, the ratio.
    assert train + validation == 300 and 24 <= validation <= 36
    assert f"train {train}, validation {validation}" in out and "near-duplicates across splits: 0 moved" in out


def test_split_command_user_mistakes_get_one_line(tmp_path: Path) -> None:
    result = run_subprocess("split", str(tmp_path / "missing.json"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and result.stderr.startswith("Error: ") and "file not found" in result.stderr
    assert "Traceback" not in result.stderr
    code, _, err = run_in_process("split", "x.json", "--out", "o", "--val-ratio", "2")
    assert code == 2 and "--val-ratio" in err


def test_split_reports_progress_for_the_near_duplicate_check_and_the_writing(
    sample_dataset: Path, tmp_path: Path
) -> None:
    import io

    from kochallenge_data.progress import StderrReporter

    stream = io.StringIO()
    reporter = StderrReporter(stream=stream, every_s=0.0)
    source = read_source(sample_dataset)
    split = split_source(source, val_ratio=0.2, seed=3, group_by="item", reporter=reporter)
    write_split(source, split, tmp_path, reporter=reporter)
    lines = stream.getvalue().splitlines()
    checked = [line for line in lines if line.startswith("split: near-duplicates across splits: ")]
    # One line per training record indexed, then one for the validation records, ending at the total.
    assert len(checked) == len(split.train) + 1  # grouped: offenders are dropped, train stays as chosen
    assert checked[-1].startswith("split: near-duplicates across splits: 300/300 records (100%)")
    assert any(line.startswith("split: writing: 300/300 records (100%)") for line in lines)
