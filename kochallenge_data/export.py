"""Training-ready folders for the frameworks people train with, one command from a build.

Every export splits the data first (see :mod:`.split`), writes each split in the framework's own
shape, and leaves a README beside the data that states the format and the prompt layout the
model must be trained and served with, rendered for a real record.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .checks.dedup import DEFAULT_THRESHOLD
from .errors import ConfigError, KochallengeError
from .prompt import PromptLayout, load_prompt_layout
from .split import DEFAULT_SEED, DEFAULT_VAL_RATIO, SPLIT_NAMES, GroupBy, Source, Split, split_rows, split_source
from .writer import json_bytes, jsonl_bytes, write_atomic

FORMATS: tuple[str, ...] = ("alpaca", "jsonl", "messages", "prompt-completion", "sharegpt", "llamafactory", "hf")
LLAMAFACTORY_PREFIX = "kochallenge"
HF_EXTRA_HINT = "pip install 'kochallenge-data[hf]'"

Row = dict[str, Any]
Sides = dict[str, list[dict[str, str]]]  # split name -> records
Tasks = dict[str, list[str]]  # split name -> task of each record
Writer = Callable[[Sides, Tasks, Path, PromptLayout], list[Path]]


def alpaca_row(record: Mapping[str, str]) -> Row:
    return {"instruction": record["instruction"], "input": record["input"], "output": record["output"]}


def messages_row(record: Mapping[str, str]) -> Row:
    """OpenAI-style chat: the instruction is the system message, the input the user's turn."""
    return {
        "messages": [
            {"role": "system", "content": record["instruction"]},
            {"role": "user", "content": record["input"]},
            {"role": "assistant", "content": record["output"]},
        ]
    }


def sharegpt_row(record: Mapping[str, str]) -> Row:
    return {
        "conversations": [
            {"from": "system", "value": record["instruction"]},
            {"from": "human", "value": record["input"]},
            {"from": "gpt", "value": record["output"]},
        ]
    }


def prompt_completion_row(record: Mapping[str, str], layout: PromptLayout) -> Row:
    """TRL's standard prompt/completion shape; TRL appends the eos to the completion itself."""
    return {"prompt": layout.render(record["instruction"], record["input"]), "completion": record["output"]}


_SPLIT_FILE: dict[str, str] = {
    "alpaca": "{name}.json",
    "jsonl": "{name}.jsonl",
    "messages": "{name}.jsonl",
    "prompt-completion": "{name}.jsonl",
    "sharegpt": "{name}.json",
    "llamafactory": LLAMAFACTORY_PREFIX + "_{name}.json",
    "hf": "data/{name}.parquet",
}


def split_file(fmt: str, name: str, out: Path) -> Path:
    """Where format ``fmt`` keeps split ``name`` inside ``out``."""
    return out / _SPLIT_FILE[fmt].format(name=name)


def json_array_bytes(rows: Sequence[Row]) -> bytes:
    return orjson.dumps(list(rows), option=orjson.OPT_INDENT_2) + b"\n"


@dataclass(frozen=True)
class ExportResult:
    out: Path
    format: str
    files: list[Path]
    counts: dict[str, int]
    split: Split


def export_dataset(
    source: Source,
    fmt: str,
    out: Path,
    val_ratio: float = DEFAULT_VAL_RATIO,
    seed: int = DEFAULT_SEED,
    group_by: GroupBy = "none",
    threshold: float = DEFAULT_THRESHOLD,
    layout: PromptLayout | None = None,
) -> ExportResult:
    """Split ``source`` and write it to ``out`` in format ``fmt``, with a README and ``split.json``."""
    if fmt not in FORMATS:
        raise ConfigError(f"--to: unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    layout = layout or load_prompt_layout()
    split = split_source(source, val_ratio=val_ratio, seed=seed, group_by=group_by, threshold=threshold)
    rows = split_rows(split)
    sides = {name: [source.records[i] for i in indices] for name, indices in rows.items()}
    tasks: Tasks = {name: [str(source.tasks[i]) for i in indices] for name, indices in rows.items()}
    writer = _WRITERS[fmt]
    files = writer(sides, tasks, out, layout)
    for name in SPLIT_NAMES:
        if name not in sides:  # a previous export's split would be mistaken for this one's
            split_file(fmt, name, out).unlink(missing_ok=True)
    counts = {name: len(rows) for name, rows in sides.items()}
    first = next(iter(sides.values()))[0]
    readme = export_readme(fmt, files, counts, layout, first, split.report, out)
    files.append(out / "README.md")
    write_atomic(out / "split.json", json_bytes(split.report))
    files.append(out / "split.json")
    write_atomic(out / "README.md", readme.encode("utf-8"))
    return ExportResult(out, fmt, files, counts, split)


def _write_rows(sides: Sides, out: Path, fmt: str, make_row: Callable[[Mapping[str, str]], Row]) -> list[Path]:
    files = []
    for name, records in sides.items():
        rows = [make_row(r) for r in records]
        path = split_file(fmt, name, out)
        write_atomic(path, json_array_bytes(rows) if path.suffix == ".json" else jsonl_bytes(rows))
        files.append(path)
    return files


def _write_alpaca(sides: Sides, tasks: Tasks, out: Path, layout: PromptLayout) -> list[Path]:
    return _write_rows(sides, out, "alpaca", alpaca_row)


def _write_jsonl(sides: Sides, tasks: Tasks, out: Path, layout: PromptLayout) -> list[Path]:
    return _write_rows(sides, out, "jsonl", alpaca_row)


def _write_messages(sides: Sides, tasks: Tasks, out: Path, layout: PromptLayout) -> list[Path]:
    return _write_rows(sides, out, "messages", messages_row)


def _write_prompt_completion(sides: Sides, tasks: Tasks, out: Path, layout: PromptLayout) -> list[Path]:
    return _write_rows(sides, out, "prompt-completion", lambda r: prompt_completion_row(r, layout))


def _write_sharegpt(sides: Sides, tasks: Tasks, out: Path, layout: PromptLayout) -> list[Path]:
    return _write_rows(sides, out, "sharegpt", sharegpt_row)


def llamafactory_dataset_info(files: Mapping[str, str]) -> dict[str, Any]:
    """``dataset_info.json`` entries: split name -> alpaca column mapping for LLaMA-Factory."""
    return {
        f"{LLAMAFACTORY_PREFIX}_{name}": {
            "file_name": file_name,
            "formatting": "alpaca",
            "columns": {"prompt": "instruction", "query": "input", "response": "output"},
        }
        for name, file_name in files.items()
    }


def _write_llamafactory(sides: Sides, tasks: Tasks, out: Path, layout: PromptLayout) -> list[Path]:
    files = []
    names = {}
    for name, records in sides.items():
        path = split_file("llamafactory", name, out)
        write_atomic(path, json_array_bytes([alpaca_row(r) for r in records]))
        files.append(path)
        names[name] = path.name
    info = out / "dataset_info.json"
    write_atomic(info, json_bytes(llamafactory_dataset_info(names)))
    files.append(info)
    return files


def _write_hf(sides: Sides, tasks: Tasks, out: Path, layout: PromptLayout) -> list[Path]:
    """A DatasetDict saved with ``save_to_disk`` under ``dataset/`` plus one Parquet file per split."""
    try:
        import datasets
    except ImportError as exc:
        raise KochallengeError(
            f"the hf export needs the `datasets` library, which is not installed; run {HF_EXTRA_HINT} "
            "(or pick another --to format)"
        ) from exc
    datasets.disable_progress_bars()
    features = datasets.Features(
        {name: datasets.Value("string") for name in ("instruction", "input", "output", "task")}
    )
    dataset_dict = datasets.DatasetDict(
        {
            name: datasets.Dataset.from_list(
                [dict(alpaca_row(r), task=t) for r, t in zip(records, tasks[name], strict=True)], features=features
            )
            for name, records in sides.items()
        }
    )
    files = [_save_to_disk_atomic(dataset_dict, out / "dataset")]
    for name, dataset in dataset_dict.items():
        buffer = io.BytesIO()
        dataset.to_parquet(buffer)
        path = split_file("hf", name, out)
        write_atomic(path, buffer.getvalue())
        files.append(path)
    return files


def _save_to_disk_atomic(dataset_dict: Any, target: Path) -> Path:
    """``save_to_disk`` into a temp folder beside ``target``, then swap it in with renames."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    old = target.with_name(f".{target.name}.old")
    try:
        dataset_dict.save_to_disk(str(temp))
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return target


_WRITERS: dict[str, Writer] = {
    "alpaca": _write_alpaca,
    "jsonl": _write_jsonl,
    "messages": _write_messages,
    "prompt-completion": _write_prompt_completion,
    "sharegpt": _write_sharegpt,
    "llamafactory": _write_llamafactory,
    "hf": _write_hf,
}

# What each format is, how to load it, and how the prompt layout applies to it.
_FORMAT_TEXT: dict[str, tuple[str, str, str]] = {
    "alpaca": (
        "Alpaca JSON: each split is a JSON array of `{instruction, input, output}` records, the dataset as built.",
        'from datasets import load_dataset\nds = load_dataset("json", data_files={"train": "train.json", '
        '"validation": "validation.json"})',
        "The fields are raw text: your training script renders them with the prompt layout below.",
    ),
    "jsonl": (
        "JSON Lines: one `{instruction, input, output}` object per line.",
        'from datasets import load_dataset\nds = load_dataset("json", data_files={"train": "train.jsonl", '
        '"validation": "validation.jsonl"})',
        "The fields are raw text: your training script renders them with the prompt layout below.",
    ),
    "messages": (
        "OpenAI-style chat JSON Lines: `{messages: [system = instruction, user = input, assistant = output]}`.",
        'from datasets import load_dataset\nds = load_dataset("json", data_files={"train": "train.jsonl", '
        '"validation": "validation.jsonl"})\n# TRL: SFTTrainer(model, train_dataset=ds["train"], ...) applies the '
        "tokenizer's chat template",
        "Chat trainers render these messages with the model's chat template, not with the layout below; "
        "serve the model with that same chat template, or export `prompt-completion` to keep this layout.",
    ),
    "prompt-completion": (
        "TRL prompt/completion JSON Lines: `{prompt, completion}` where `prompt` is the rendered prompt layout "
        "and `completion` the output. TRL appends the tokenizer's eos to the completion and trains on the "
        "completion only (`completion_only_loss`).",
        'from datasets import load_dataset\nds = load_dataset("json", data_files={"train": "train.jsonl", '
        '"validation": "validation.jsonl"})\n# TRL: SFTTrainer(model, train_dataset=ds["train"], '
        'eval_dataset=ds["validation"])',
        "`prompt` is already rendered with the layout below; serve with exactly the same layout.",
    ),
    "sharegpt": (
        "ShareGPT JSON: each split is a JSON array of `{conversations: [{from: system|human|gpt, value}]}`, "
        "as LLaMA-Factory and axolotl read it. TRL renames from/value but keeps the role names human/gpt, which "
        "chat templates do not know: use the `messages` export for TRL.",
        'from datasets import load_dataset\nds = load_dataset("json", data_files={"train": "train.json", '
        '"validation": "validation.json"})',
        "Chat trainers render conversations with the model's chat template, not with the layout below; "
        "serve the model with that same chat template, or export `prompt-completion` to keep this layout.",
    ),
    "llamafactory": (
        "A LLaMA-Factory dataset folder: alpaca-format data files plus `dataset_info.json` entries mapping the "
        "columns (prompt = instruction, query = input, response = output).",
        "# LLaMA-Factory config (YAML):\ndataset_dir: <this folder>\ndataset: kochallenge_train\n"
        "eval_dataset: kochallenge_validation",
        "LLaMA-Factory joins instruction and input with a newline and renders them with its own `template:` "
        "setting, not with the layout below; serve the model with that same template.",
    ),
    "hf": (
        "A Hugging Face `datasets` DatasetDict saved with `save_to_disk` in `dataset/`, and the same splits as "
        "Parquet in `data/`. Columns: instruction, input, output, task.",
        'from datasets import load_from_disk\nds = load_from_disk("dataset")\n# or: '
        'load_dataset("parquet", data_files={"train": "data/train.parquet", "validation": "data/validation.parquet"})',
        "The fields are raw text: your training script renders them with the prompt layout below.",
    ),
}


def _fence(text: str) -> str:
    """A code fence longer than any backtick run inside ``text``, so the sample shows verbatim."""
    longest = max((len(run) for run in text.split("\n") for run in _backtick_runs(run)), default=0)
    return "`" * max(3, longest + 1)


def _backtick_runs(line: str) -> list[str]:
    runs, current = [], ""
    for char in line:
        if char == "`":
            current += "`"
        elif current:
            runs.append(current)
            current = ""
    if current:
        runs.append(current)
    return runs


def prompt_layout_section(layout: PromptLayout, sample: Mapping[str, str]) -> str:
    """The prompt layout rendered for a real record, as training sees it: prompt, output, eos."""
    prompt = layout.render(sample["instruction"], sample["input"])
    trained = f"{prompt}{sample['output']}<eos>"
    fence = _fence(trained + layout.source)
    return "\n".join(
        [
            "## Prompt layout",
            "",
            f"Training text = `{layout.path.name}` rendered with the record's instruction and input, then the output,",
            "then the tokenizer's eos token (shown as `<eos>`). Serving sends the same prompt and stops at eos.",
            "For the first record of this export:",
            "",
            fence,
            trained,
            fence,
            "",
            f"The template (`{layout.path.name}`):",
            "",
            fence,
            layout.source.rstrip("\n"),
            fence,
        ]
    )


def export_readme(
    fmt: str,
    files: Sequence[Path],
    counts: Mapping[str, int],
    layout: PromptLayout,
    sample: Mapping[str, str],
    split_report: Mapping[str, Any],
    out: Path,
) -> str:
    what, how, prompt_note = _FORMAT_TEXT[fmt]
    header = _hf_card_header(counts) if fmt == "hf" else ""
    listed = "\n".join(f"- `{_relative(path, out)}`" for path in files)
    split_line = (
        f"{counts.get('train', 0)} train and {counts.get('validation', 0)} validation records from "
        f"`{split_report['source']['file']}` (sha256 `{split_report['source']['sha256'][:12]}`), seed "
        f"{split_report['seed']}, validation ratio {split_report['val_ratio']}, grouped by "
        f"{split_report['group_by']} ({split_report['groups_from']}); near-duplicates across splits: "
        f"{split_report['near_duplicates']['moved_to_train']} moved to train, "
        f"{split_report['near_duplicates']['dropped']} dropped. Details in `split.json`."
    )
    return "\n".join(
        [
            header + f"# kochallenge dataset export: `{fmt}`",
            "",
            what,
            "",
            split_line,
            "",
            "## Files",
            "",
            listed,
            "",
            "## Load it",
            "",
            "```python",
            how,
            "```",
            "",
            prompt_note,
            "",
            prompt_layout_section(layout, sample),
            "",
        ]
    )


def _hf_card_header(counts: Mapping[str, int]) -> str:
    """The YAML front matter the Hub reads to find the Parquet splits."""
    lines = ["---", "language:", "- ko", "configs:", "- config_name: default", "  data_files:"]
    for name in counts:
        lines += [f"  - split: {name}", f"    path: data/{name}.parquet"]
    return "\n".join([*lines, "---", ""]) + "\n"


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def describe_export(result: ExportResult) -> str:
    counts = ", ".join(f"{name} {count}" for name, count in result.counts.items())
    return f"exported {result.format} to {result.out}: {counts}\nread {result.out / 'README.md'} for how to load it"
