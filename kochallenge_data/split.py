"""Seeded train/validation splits that measure generalization, not memorization.

A random split of synthetic data puts the same pool sentence, user message or instruction
phrasing on both sides, so validation loss only shows the model remembers them. Grouping keeps
every record of one template or pool item on one side, stratified by task so each task keeps its
share, and a near-duplicate guard makes sure no validation record is (nearly) a training record.

A folder holds one split, written into a staging folder beside it and swapped in whole, so a run
killed at any moment leaves the previous split or the new one: never a new ``train.json`` beside an
old ``train.meta.jsonl`` that would pass for its metadata.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import orjson

from .checks.dedup import DEFAULT_THRESHOLD, DuplicateIndex
from .checks.record import check_fields, infer_task
from .errors import ConfigError, InputFileError, KochallengeError
from .models import TASKS, Task
from .progress import SILENT, Reporter, Step
from .validate import read_dataset
from .writer import (
    TEMP_SUFFIX,
    dataset_bytes,
    json_bytes,
    jsonl_bytes,
    sha256_bytes,
    sidecar,
    staged_folder,
    write_atomic,
)

GroupBy = Literal["none", "template", "item"]
GROUP_BY_CHOICES: tuple[str, ...] = get_args(GroupBy)
DEFAULT_VAL_RATIO = 0.1
DEFAULT_SEED = 42
SPLIT_NAMES = ("train", "validation")
SPLIT_REPORT = "split.json"
# Everything a split writes; a folder holding anything else is refused, since the split replaces the folder.
SPLIT_FILES = (*(f"{n}{ext}" for n in SPLIT_NAMES for ext in (".json", ".meta.jsonl")), SPLIT_REPORT)
# The pool item that carries each task's phrasing: the recommend sentence for base_info, the user's
# message for free_text (its input), the instruction phrasing for feedback (its input is random JSON).
ITEM_SOURCE: Mapping[Task, str] = {"base_info": "recommend", "free_text": "message", "feedback": "instruction"}


@dataclass(frozen=True)
class Source:
    """A dataset file with its build sidecars, when they belong to it."""

    path: Path
    records: list[dict[str, str]]
    tasks: list[Task]
    sha256: str
    meta: list[dict[str, Any]] | None = None
    manifest: dict[str, Any] | None = None
    notes: tuple[str, ...] = ()


def read_source(path: Path) -> Source:
    """Read a dataset and, when they match it, its ``.meta.jsonl`` and ``.manifest.json`` sidecars."""
    raw = read_dataset(path)
    records = usable_records(path, raw)
    digest = sha256_bytes(path.read_bytes())
    manifest, notes = _read_manifest(path, digest)
    meta, meta_notes = _read_meta(
        path, len(records), stale=manifest is None and sidecar(path, "manifest.json").exists()
    )
    notes += meta_notes
    if meta is not None:
        tasks: list[Task] = [
            m["task"] if m.get("task") in TASKS else infer_task(r) for m, r in zip(meta, records, strict=True)
        ]
    else:
        tasks = [infer_task(r) for r in records]
    return Source(path, records, tasks, digest, meta, manifest, tuple(notes))


def usable_records(path: Path, raw: Sequence[Any]) -> list[dict[str, str]]:
    """The three string fields of every record; a record without them stops the command."""
    records = []
    for index, record in enumerate(raw):
        problems = [f for f in check_fields(index, record) if f.code == "missing_field"]
        if problems:
            raise InputFileError(
                f"{path}: record {index}: {problems[0].message}; every record needs instruction, input and output "
                f"strings (run `python -m kochallenge_data validate {path}` to see all problems)"
            )
        records.append({"instruction": record["instruction"], "input": record["input"], "output": record["output"]})
    if not records:
        raise InputFileError(f"{path}: the dataset has no records")
    return records


def _read_manifest(path: Path, digest: str) -> tuple[dict[str, Any] | None, list[str]]:
    manifest_path = sidecar(path, "manifest.json")
    if not manifest_path.exists():
        return None, []
    try:
        manifest = orjson.loads(manifest_path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None, [f"{manifest_path.name} is not readable JSON; ignored"]
    if not isinstance(manifest, dict):
        return None, [f"{manifest_path.name} is not a JSON object; ignored"]
    if manifest.get("output_sha256") != digest:
        return None, [f"{manifest_path.name} describes a different file (sha256 differs); sidecars ignored"]
    return manifest, []


def _read_meta(path: Path, count: int, stale: bool) -> tuple[list[dict[str, Any]] | None, list[str]]:
    meta_path = sidecar(path, "meta.jsonl")
    if stale or not meta_path.exists():
        return None, []
    try:
        rows = [orjson.loads(line) for line in meta_path.read_bytes().splitlines() if line.strip()]
    except (OSError, orjson.JSONDecodeError):
        return None, [f"{meta_path.name} is not readable JSONL; ignored"]
    if len(rows) != count or not all(isinstance(row, dict) for row in rows):
        return None, [f"{meta_path.name} has {len(rows)} rows for {count} records; ignored"]
    return rows, []


def group_keys(source: Source, group_by: GroupBy) -> tuple[list[str], str]:
    """One key per record (records sharing a key stay together) and where the keys came from."""
    if group_by == "none":
        return [f"record:{i}" for i in range(len(source.records))], "each record alone"
    if source.meta is not None:
        keys = _meta_keys(source, group_by)
        return keys, "build metadata sidecar"
    keys = [
        f"{task}:{_text_key(record, task, group_by)}" for record, task in zip(source.records, source.tasks, strict=True)
    ]
    return keys, "record text (no metadata sidecar)"


def _meta_keys(source: Source, group_by: GroupBy) -> list[str]:
    assert source.meta is not None
    templates_per_task: dict[Task, set[str]] = defaultdict(set)
    for meta, task in zip(source.meta, source.tasks, strict=True):
        templates_per_task[task].add(str(meta.get("template")))
    keys = []
    for index, (meta, task) in enumerate(zip(source.meta, source.tasks, strict=True)):
        if group_by == "template" and len(templates_per_task[task]) > 1:
            field_name = "template"
        elif group_by == "template":
            # One template file renders every record of this task: its instruction phrasing is what varies.
            field_name = "instruction"
        else:
            field_name = ITEM_SOURCE[task]
        value = meta.get(field_name)
        if value is None:
            value = _text_key(source.records[index], task, group_by)
        keys.append(f"{task}:{field_name}:{value}")
    return keys


def _text_key(record: Mapping[str, str], task: Task, group_by: GroupBy) -> str:
    """A group key read from the record itself, for files without a metadata sidecar."""
    if group_by == "template" or task == "feedback":
        return record["instruction"]
    if task == "free_text":
        return record["input"]
    return _recommend_pattern(record)


def _recommend_pattern(record: Mapping[str, str]) -> str:
    """The recommend sentence with the input's location, work type and category replaced by slots."""
    sentence = record["output"].split("\n", 1)[0]
    for number, part in enumerate(p.strip() for p in record["input"].split(",")):
        if part:
            sentence = sentence.replace(part, f"{{{number}}}")
    return sentence


def validation_target(size: int, val_ratio: float) -> int:
    """Records a task of ``size`` should give to validation (rounded half up)."""
    return int(size * val_ratio + 0.5)


def choose_validation_groups(sizes: Sequence[int], target: int, rng: random.Random) -> set[int]:
    """Pick groups, in a seeded random order, whose sizes add up closest to ``target``.

    At least one group goes each way when there are two or more and the target is above zero, so a
    task never vanishes from either side; a task with a single group stays in train.
    """
    order = list(range(len(sizes)))
    rng.shuffle(order)
    chosen: list[int] = []
    total = 0
    for group in order:
        if abs(total + sizes[group] - target) < abs(total - target):
            chosen.append(group)
            total += sizes[group]
    if target > 0 and not chosen and len(sizes) > 1:
        chosen.append(min(order, key=lambda g: sizes[g]))
    if chosen and len(chosen) == len(sizes):
        chosen.pop()  # a task always keeps training records; a single-group task stays in train
    return set(chosen)


def stratified_group_split(
    tasks: Sequence[Task], keys: Sequence[str], val_ratio: float, seed: int
) -> tuple[list[int], list[int], dict[str, dict[str, int]]]:
    """Train and validation indices, per task, keeping each key's records on one side."""
    rng = random.Random(seed)
    validation: list[int] = []
    per_task: dict[str, dict[str, int]] = {}
    for task in TASKS:
        groups: dict[str, list[int]] = {}
        for index, (record_task, key) in enumerate(zip(tasks, keys, strict=True)):
            if record_task == task:
                groups.setdefault(key, []).append(index)
        if not groups:
            continue
        members = list(groups.values())
        size = sum(len(m) for m in members)
        chosen = choose_validation_groups([len(m) for m in members], validation_target(size, val_ratio), rng)
        for group in sorted(chosen):
            validation.extend(members[group])
        per_task[task] = {"groups": len(members), "validation_groups": len(chosen)}
    held_out = set(validation)
    train = [i for i in range(len(tasks)) if i not in held_out]
    return train, sorted(validation), per_task


@dataclass
class NearDuplicateGuard:
    """Removes validation records that repeat, or nearly repeat, a training record.

    ``move`` sends them to training (harmless: the model may as well learn them); it is only
    allowed when records are not grouped, since moving one record of a group would leak its
    phrasing into training, so grouped splits drop them instead.
    """

    threshold: float = DEFAULT_THRESHOLD
    move: bool = True
    moved: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)

    def apply(
        self, texts: Sequence[str], train: list[int], validation: list[int], step: Step | None = None
    ) -> tuple[list[int], list[int]]:
        """``step`` advances per training record indexed, then by the validation records checked."""
        index = DuplicateIndex(self.threshold)
        for i in train:
            index.insert(texts[i], i)
            if step is not None:
                step.advance()
        remaining = list(validation)
        while True:
            offenders = [i for i in remaining if index.find(texts[i]) is not None]
            if step is not None:
                step.advance(len(validation))
                step = None  # later passes recheck a few records only
            if not offenders:
                break
            gone = set(offenders)
            remaining = [i for i in remaining if i not in gone]
            if not self.move:
                self.dropped.extend(offenders)
                break
            # A moved record may itself be close to another validation record: check again.
            self.moved.extend(offenders)
            for i in offenders:
                index.insert(texts[i], i)
            train = sorted(train + offenders)
        return train, remaining


@dataclass(frozen=True)
class Split:
    train: list[int]
    validation: list[int]
    report: dict[str, Any]


def split_source(
    source: Source,
    val_ratio: float = DEFAULT_VAL_RATIO,
    seed: int = DEFAULT_SEED,
    group_by: GroupBy = "none",
    threshold: float = DEFAULT_THRESHOLD,
    reporter: Reporter = SILENT,
) -> Split:
    """Split a dataset; the same source, options and seed always give the same split."""
    check_split_options(val_ratio, group_by, threshold)
    keys, keys_from = group_keys(source, group_by)
    train, validation, per_task = stratified_group_split(source.tasks, keys, val_ratio, seed)
    guard = NearDuplicateGuard(threshold, move=group_by == "none")
    texts = [f"{r['input']}\n{r['output']}" for r in source.records]
    with reporter.step("split: near-duplicates across splits", total=len(texts)) as step:
        train, validation = guard.apply(texts, train, validation, step)
    counts: dict[str, Counter[str]] = {
        name: Counter(source.tasks[i] for i in side) for name, side in (("train", train), ("validation", validation))
    }
    for task, figures in per_task.items():
        figures["train"] = counts["train"][task]
        figures["validation"] = counts["validation"][task]
    report = {
        "source": {"file": source.path.name, "sha256": source.sha256, "records": len(source.records)},
        "seed": seed,
        "val_ratio": val_ratio,
        "group_by": group_by,
        "groups_from": keys_from,
        "near_duplicate_threshold": threshold,
        "train": len(train),
        "validation": len(validation),
        "per_task": per_task,
        "near_duplicates": {"moved_to_train": len(guard.moved), "dropped": len(guard.dropped)},
        "notes": list(source.notes) + _ratio_notes(per_task, val_ratio),
    }
    return Split(train, validation, report)


def check_split_options(val_ratio: float, group_by: str, threshold: float) -> None:
    if not 0.0 <= val_ratio < 1.0:
        raise ConfigError(f"--val-ratio must be at least 0 and below 1, got {val_ratio}")
    if group_by not in GROUP_BY_CHOICES:
        raise ConfigError(f"--group-by must be one of {', '.join(GROUP_BY_CHOICES)}, got {group_by!r}")
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"--threshold must be above 0 and at most 1, got {threshold}")


def _ratio_notes(per_task: Mapping[str, Mapping[str, int]], val_ratio: float) -> list[str]:
    """Say where whole groups could not give the requested share, so nobody is surprised by it."""
    notes = []
    for task, figures in per_task.items():
        size = figures["train"] + figures["validation"]
        if val_ratio > 0 and figures["groups"] < 2:
            notes.append(f"{task}: only one group, so all {size} records stay in train")
        elif size and abs(figures["validation"] / size - val_ratio) > 0.05:
            share = figures["validation"] / size
            notes.append(
                f"{task}: validation holds {share:.1%} (asked {val_ratio:.1%}); its {figures['groups']} groups "
                "cannot come closer"
            )
    return notes


def split_rows(split: Split) -> dict[str, list[int]]:
    """Split name -> record indices, validation left out when empty."""
    sides = {"train": split.train, "validation": split.validation}
    return {name: indices for name, indices in sides.items() if indices}


def split_meta(source: Source, indices: Sequence[int]) -> list[dict[str, Any]] | None:
    """The metadata rows of a split, renumbered, with the source index kept."""
    if source.meta is None:
        return None
    return [dict(source.meta[old], index=new, source_index=old) for new, old in enumerate(indices)]


def is_split_file(name: str) -> bool:
    """A file a split writes, or the temp file an interrupted atomic write of one left (``.train.json.<pid>.*.tmp``)."""
    return name in SPLIT_FILES or any(name.startswith(f".{own}.") and name.endswith(TEMP_SUFFIX) for own in SPLIT_FILES)


def check_split_folder(out: Path) -> None:
    """``--out`` is new, empty, or holds only a previous split's files, which the split replaces whole."""
    if out.exists() and not out.is_dir():
        raise KochallengeError(f"--out {out}: this is a file; give a folder for the split")
    foreign = sorted(entry.name for entry in out.iterdir() if not is_split_file(entry.name)) if out.is_dir() else []
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise KochallengeError(
            f"--out {out}: holds files a split does not write ({shown}); the split replaces the whole folder, "
            "so move them or pick an empty or new folder"
        )


def write_split(source: Source, split: Split, out: Path, reporter: Reporter = SILENT) -> dict[str, Path]:
    """``train.json`` and ``validation.json`` (alpaca arrays), their metadata sidecars, and ``split.json``.

    ``out`` ends holding exactly these files (see :func:`check_split_folder` for what it may hold before).
    """
    check_split_folder(out)
    rows = split_rows(split)
    written: dict[str, str] = {}
    with reporter.step("split: writing", total=len(source.records)) as step, staged_folder(out, "split") as staging:
        for name, indices in rows.items():
            path = staging / f"{name}.json"
            meta = split_meta(source, indices)
            if meta is not None:
                write_atomic(sidecar(path, "meta.jsonl"), jsonl_bytes(meta))
            write_atomic(path, dataset_bytes(source.records[i] for i in indices))
            written[name] = path.name
            step.advance(len(indices))
        write_atomic(staging / SPLIT_REPORT, json_bytes(split.report))
        written["report"] = SPLIT_REPORT
        check_split_folder(out)  # again just before the swap: a file put there meanwhile must not vanish
    return {key: out / name for key, name in written.items()}


def describe_split(report: Mapping[str, Any]) -> str:
    """A few lines for the terminal."""
    lines = [
        f"split {report['source']['records']} records (seed {report['seed']}, group by {report['group_by']}, "
        f"groups from {report['groups_from']}): train {report['train']}, validation {report['validation']}"
    ]
    for task, figures in report["per_task"].items():
        lines.append(
            f"  {task:<10} train {figures['train']:>6}  validation {figures['validation']:>6}  "
            f"({figures['validation_groups']} of {figures['groups']} groups held out)"
        )
    near = report["near_duplicates"]
    lines.append(f"near-duplicates across splits: {near['moved_to_train']} moved to train, {near['dropped']} dropped")
    lines += [f"note: {note}" for note in report["notes"]]
    return "\n".join(lines)
