"""Training-ready folders for the frameworks people train with, one command from a build.

Every export splits the data first (see :mod:`.split`), writes each split in the framework's own
shape, and leaves a README beside the data that states the format, what a trainer's loss covers
with its default settings, and the prompt layout the model must be trained and served with,
rendered for a real record.

A folder holds one export: ``export`` refuses a folder that is not empty, and ``--force`` replaces
a folder only when it holds nothing but the files the previous export listed in its ``.export.json``,
so ``load_dataset(folder)`` and every trainer see exactly one format. The export is written into a
staging folder beside ``--out`` and swapped in whole: a run killed at any moment leaves the previous
export or the new one, never a mix, and the next run removes what the killed one left.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import orjson

from .checks.dedup import DEFAULT_THRESHOLD
from .errors import ConfigError, KochallengeError
from .progress import SILENT, Reporter
from .prompt import PromptLayout, load_prompt_layout
from .report import LICENSE_FILE, LICENSE_PLACEHOLDER, CardSplit, arrow_string_bytes, card_metadata, yaml_header
from .split import DEFAULT_SEED, DEFAULT_VAL_RATIO, GroupBy, Source, Split, split_rows, split_source
from .writer import json_bytes, jsonl_bytes, remove_stale_staging, staged_folder, write_atomic

FORMATS: tuple[str, ...] = (
    "alpaca",
    "jsonl",
    "messages",
    "conversational",
    "prompt-completion",
    "sharegpt",
    "llamafactory",
    "hf",
)
LLAMAFACTORY_PREFIX = "kochallenge"
HF_EXTRA_HINT = "pip install 'kochallenge-data[hf]'"
EXPORT_MANIFEST = ".export.json"
HF_FEATURES = ("instruction", "input", "output", "task")

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


def conversational_row(record: Mapping[str, str]) -> Row:
    """TRL's conversational prompt-completion: the same chat, split where the loss should start."""
    return {
        "prompt": [
            {"role": "system", "content": record["instruction"]},
            {"role": "user", "content": record["input"]},
        ],
        "completion": [{"role": "assistant", "content": record["output"]}],
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
    "conversational": "{name}.jsonl",
    "prompt-completion": "{name}.jsonl",
    "sharegpt": "{name}.json",
    "llamafactory": LLAMAFACTORY_PREFIX + "_{name}.json",
    "hf": "data/{name}.parquet",
}
# What an export writes besides its split files, README.md and split.json; "name/" is a whole folder.
_EXTRA_FILES: dict[str, tuple[str, ...]] = {
    "sharegpt": ("dataset_info.json",),
    "llamafactory": ("dataset_info.json",),
    "hf": ("dataset/", LICENSE_FILE),
}


def split_file(fmt: str, name: str, out: Path) -> Path:
    """Where format ``fmt`` keeps split ``name`` inside ``out``."""
    return out / _SPLIT_FILE[fmt].format(name=name)


def export_files(fmt: str, split_names: Sequence[str]) -> list[str]:
    """Every path (relative, POSIX) an export of ``fmt`` writes: what ``.export.json`` records as its own."""
    data = [_SPLIT_FILE[fmt].format(name=name) for name in split_names]
    return [*data, *_EXTRA_FILES.get(fmt, ()), "README.md", "split.json"]


def json_array_bytes(rows: Sequence[Row]) -> bytes:
    return orjson.dumps(list(rows), option=orjson.OPT_INDENT_2) + b"\n"


# --- one export per folder ---------------------------------------------------------------------


def files_under(folder: Path) -> list[str]:
    """Every file and link below ``folder`` (relative, POSIX, sorted); links are listed, never followed."""
    if not folder.is_dir():
        return []
    found = []
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        links = [d for d in dirs if (here / d).is_symlink()]
        dirs[:] = [d for d in dirs if d not in links]
        found += [(here / name).relative_to(folder).as_posix() for name in [*files, *links]]
    return sorted(found)


def read_export_manifest(out: Path) -> list[str] | None:
    """The paths a previous export recorded in ``.export.json``; None when there is no such file."""
    path = out / EXPORT_MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise KochallengeError(
            f"{path}: not readable JSON ({exc}); remove the folder yourself or pick another --out"
        ) from exc
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, str) and _safe_relative(f) for f in files):
        raise KochallengeError(
            f"{path}: `files` must list paths inside the folder; it does not, so nothing there is removed "
            "(remove the folder yourself or pick another --out)"
        )
    return files


def _safe_relative(entry: str) -> bool:
    """A path that stays inside the folder: relative, no ``..``, not empty."""
    parts = PurePosixPath(entry.rstrip("/")).parts
    return bool(parts) and not entry.startswith("/") and ".." not in parts and "\\" not in entry


def is_owned(path: str, owned: Sequence[str]) -> bool:
    """Whether an export wrote ``path``: listed, inside a listed folder, the manifest, or a temp file
    an interrupted atomic write left beside one of those (``.<name>.<random>.tmp``)."""
    if path == EXPORT_MANIFEST or path in owned or any(e.endswith("/") and path.startswith(e) for e in owned):
        return True
    parts = path.split("/")
    for depth, part in enumerate(parts):
        if not (part.startswith(".") and part.endswith((".tmp", ".old"))):
            continue
        parent = "/".join(parts[:depth])
        for entry in [*owned, EXPORT_MANIFEST]:
            entry_parent, _, entry_name = entry.rstrip("/").rpartition("/")
            if entry_parent == parent and part.startswith(f".{entry_name}."):
                return True
    return False


def _some(paths: Sequence[str], shown: int = 5) -> str:
    listed = ", ".join(paths[:shown])
    return f"{listed} and {len(paths) - shown} more" if len(paths) > shown else listed


def previous_export_files(out: Path, force: bool) -> list[str]:
    """Check ``--out`` before anything is written; the files of a previous export ``--force`` will replace."""
    if out.exists() and not out.is_dir():
        raise KochallengeError(f"--out {out}: this is a file; give a folder for the export")
    # The top level is enough to refuse; the folder is walked only when it holds a previous export.
    top = sorted(entry.name for entry in out.iterdir()) if out.is_dir() else []
    if not top:
        return []
    if not force:
        raise KochallengeError(
            f"--out {out}: the folder is not empty ({_some(top)}); a folder holds one export, so pick an "
            "empty or new folder, or pass --force to replace the export that is there"
        )
    owned = read_export_manifest(out)
    if owned is None:
        raise KochallengeError(
            f"--out {out}: --force replaces only a previous export, and this folder has no {EXPORT_MANIFEST} "
            f"saying which files one wrote (it holds {_some(top)}); pick an empty or new folder"
        )
    present = files_under(out)
    foreign = [path for path in present if not is_owned(path, owned)]
    if foreign:
        raise KochallengeError(
            f"--out {out}: holds files no export wrote ({_some(foreign)}); --force removes only what the "
            "previous export wrote, so move them or pick another folder"
        )
    return present


def write_export_manifest(out: Path, fmt: str, files: Sequence[str], complete: bool) -> None:
    """The ownership marker ``--force`` reads; written last, in the staging folder, so always complete."""
    from . import __version__

    manifest = {
        "written_by": f"kochallenge_data {__version__} export",
        "format": fmt,
        "complete": complete,
        "files": list(files),
    }
    write_atomic(out / EXPORT_MANIFEST, json_bytes(manifest))


# --- the export --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportResult:
    out: Path
    format: str
    files: list[Path]
    counts: dict[str, int]
    split: Split
    replaced: int = 0


def export_dataset(
    source: Source,
    fmt: str,
    out: Path,
    val_ratio: float = DEFAULT_VAL_RATIO,
    seed: int = DEFAULT_SEED,
    group_by: GroupBy = "none",
    threshold: float = DEFAULT_THRESHOLD,
    layout: PromptLayout | None = None,
    force: bool = False,
    reporter: Reporter = SILENT,
) -> ExportResult:
    """Split ``source`` and write it to ``out`` in format ``fmt``, with a README and ``split.json``.

    ``out`` must be empty or new; with ``force`` a folder holding only a previous export is replaced whole
    (see the module).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--to: unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    remove_stale_staging(out, "export")  # first: a killed swap's old folder is put back before the check
    previous = previous_export_files(out, force)
    if fmt == "hf":
        require_datasets()
    layout = layout or load_prompt_layout()
    split = split_source(
        source, val_ratio=val_ratio, seed=seed, group_by=group_by, threshold=threshold, reporter=reporter
    )
    rows = split_rows(split)
    sides = {name: [source.records[i] for i in indices] for name, indices in rows.items()}
    tasks: Tasks = {name: [str(source.tasks[i]) for i in indices] for name, indices in rows.items()}
    owned = export_files(fmt, list(sides))
    counts = {name: len(records) for name, records in sides.items()}
    step_name = f"export: writing {fmt}"
    with reporter.step(step_name, total=len(source.records)) as step, staged_folder(out, "export") as staging:
        files = _WRITERS[fmt](sides, tasks, staging, layout)
        step.advance(len(source.records))
        first = next(iter(sides.values()))[0]
        header = _readme_header(fmt, sides, tasks, staging)
        readme = export_readme(fmt, files, counts, layout, first, split.report, staging, header)
        write_atomic(staging / "split.json", json_bytes(split.report))
        write_atomic(staging / "README.md", readme.encode("utf-8"))
        files += [staging / "README.md", staging / "split.json"]
        write_export_manifest(staging, fmt, owned, complete=True)
        # Checked again just before the swap: a file put into --out meanwhile must not vanish with it.
        previous = previous_export_files(out, force)
    written = [out / path.relative_to(staging) for path in files]
    return ExportResult(out, fmt, written, counts, split, replaced=len(previous))


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


def _write_conversational(sides: Sides, tasks: Tasks, out: Path, layout: PromptLayout) -> list[Path]:
    return _write_rows(sides, out, "conversational", conversational_row)


def _write_prompt_completion(sides: Sides, tasks: Tasks, out: Path, layout: PromptLayout) -> list[Path]:
    return _write_rows(sides, out, "prompt-completion", lambda r: prompt_completion_row(r, layout))


# LLaMA-Factory's dataset_info.json (data/README.md of hiyouga/LLaMA-Factory): one entry per file, its
# "formatting", the "columns" that hold each part and, for sharegpt, the "tags" naming keys and roles.
# Every tag is spelled out: LLaMA-Factory sets tags left out of a "tags" block to None.
SHAREGPT_TAGS: dict[str, str] = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}


def llamafactory_entry(fmt: str, file_name: str) -> dict[str, Any]:
    if fmt == "sharegpt":
        return {
            "file_name": file_name,
            "formatting": "sharegpt",
            "columns": {"messages": "conversations"},
            "tags": dict(SHAREGPT_TAGS),
        }
    return {
        "file_name": file_name,
        "formatting": "alpaca",
        "columns": {"prompt": "instruction", "query": "input", "response": "output"},
    }


def llamafactory_dataset_info(files: Mapping[str, str], fmt: str = "llamafactory") -> dict[str, Any]:
    """``dataset_info.json`` entries ``kochallenge_<split>`` for the data files (split name -> file name)."""
    return {f"{LLAMAFACTORY_PREFIX}_{name}": llamafactory_entry(fmt, file_name) for name, file_name in files.items()}


def _with_dataset_info(sides: Sides, out: Path, fmt: str, make_row: Callable[[Mapping[str, str]], Row]) -> list[Path]:
    files = _write_rows(sides, out, fmt, make_row)
    names = {name: split_file(fmt, name, out).name for name in sides}
    info = out / "dataset_info.json"
    write_atomic(info, json_bytes(llamafactory_dataset_info(names, fmt)))
    return [*files, info]


def _write_sharegpt(sides: Sides, tasks: Tasks, out: Path, layout: PromptLayout) -> list[Path]:
    return _with_dataset_info(sides, out, "sharegpt", sharegpt_row)


def _write_llamafactory(sides: Sides, tasks: Tasks, out: Path, layout: PromptLayout) -> list[Path]:
    return _with_dataset_info(sides, out, "llamafactory", alpaca_row)


def require_datasets() -> Any:
    """The ``datasets`` module, or an error naming the extra; checked before anything is written."""
    try:
        import datasets
    except ImportError as exc:
        raise KochallengeError(
            f"the hf export needs the `datasets` library, which is not installed; run {HF_EXTRA_HINT} "
            "(or pick another --to format)"
        ) from exc
    return datasets


def hf_rows(records: Sequence[Mapping[str, str]], tasks: Sequence[str]) -> list[Row]:
    return [dict(alpaca_row(r), task=t) for r, t in zip(records, tasks, strict=True)]


def _write_hf(sides: Sides, tasks: Tasks, out: Path, layout: PromptLayout) -> list[Path]:
    """A DatasetDict saved with ``save_to_disk`` under ``dataset/`` plus one Parquet file per split."""
    datasets = require_datasets()
    datasets.disable_progress_bars()
    features = datasets.Features({name: datasets.Value("string") for name in HF_FEATURES})
    dataset_dict = datasets.DatasetDict(
        {
            name: datasets.Dataset.from_list(hf_rows(records, tasks[name]), features=features)
            for name, records in sides.items()
        }
    )
    dataset_dict.save_to_disk(str(out / "dataset"))
    files = [out / "dataset"]
    for name, dataset in dataset_dict.items():
        buffer = io.BytesIO()
        dataset.to_parquet(buffer)
        path = split_file("hf", name, out)
        write_atomic(path, buffer.getvalue())
        files.append(path)
    write_atomic(out / LICENSE_FILE, LICENSE_PLACEHOLDER.encode("utf-8"))
    return [*files, out / LICENSE_FILE]


_WRITERS: dict[str, Writer] = {
    "alpaca": _write_alpaca,
    "jsonl": _write_jsonl,
    "messages": _write_messages,
    "conversational": _write_conversational,
    "prompt-completion": _write_prompt_completion,
    "sharegpt": _write_sharegpt,
    "llamafactory": _write_llamafactory,
    "hf": _write_hf,
}


def _readme_header(fmt: str, sides: Sides, tasks: Tasks, out: Path) -> str:
    """The card header: ``configs`` name this export's files, so ``load_dataset(folder)`` reads only them.

    The ``hf`` export's README is a full dataset card, with the ``dataset_info`` ``datasets`` checks.
    """
    if fmt != "hf":
        files = [{"split": name, "path": _SPLIT_FILE[fmt].format(name=name)} for name in sides]
        return yaml_header({"language": ["ko"], "configs": [{"config_name": "default", "data_files": files}]})
    splits = []
    for name, records in sides.items():
        path = split_file("hf", name, out)
        rows = hf_rows(records, tasks[name])
        splits.append(
            CardSplit(name, _relative(path, out), len(rows), arrow_string_bytes(rows, HF_FEATURES), path.stat().st_size)
        )
    return yaml_header(card_metadata(splits, HF_FEATURES, sum(len(r) for r in sides.values())))


@dataclass(frozen=True)
class FormatText:
    """What a README says about a format: what it is, how to load it, the prompt layout, and the loss."""

    what: str
    load: str
    prompt_note: str
    loss: str


_LOAD_FOLDER = 'from datasets import load_dataset\nds = load_dataset("path/to/this/folder")  # train and validation'
_RAW_PROMPT_NOTE = "The fields are raw text: your training script renders them with the prompt layout below."
_CHAT_PROMPT_NOTE = (
    "Chat trainers render these messages with the model's chat template, not with the layout below; serve the "
    "model with that same chat template, or export `prompt-completion` to keep this layout."
)
_RAW_LOSS = (
    "Raw fields: your script decides. `python -m kochallenge_data train` masks the prompt and trains on the output "
    "and eos only; LLaMA-Factory on these columns trains on the output only (`train_on_prompt: false`, its default)."
)
_LLAMAFACTORY_INSTALL = (
    "Install LLaMA-Factory in its own virtual environment (`python -m venv lf && lf/bin/pip install torch` for your "
    "hardware, then `lf/bin/pip install llamafactory`): installed into this project's environment, a plain "
    "`pip install llamafactory` replaces a CPU torch with a CUDA build."
)
_LLAMAFACTORY_LOAD = (
    "# LLaMA-Factory config (YAML), with this folder's dataset_info.json:\ndataset_dir: path/to/this/folder\n"
    "dataset: kochallenge_train\neval_dataset: kochallenge_validation"
)

_FORMAT_TEXT: dict[str, FormatText] = {
    "alpaca": FormatText(
        "Alpaca JSON: each split is a JSON array of `{instruction, input, output}` records, the dataset as built.",
        _LOAD_FOLDER,
        _RAW_PROMPT_NOTE,
        _RAW_LOSS,
    ),
    "jsonl": FormatText(
        "JSON Lines: one `{instruction, input, output}` object per line.", _LOAD_FOLDER, _RAW_PROMPT_NOTE, _RAW_LOSS
    ),
    "messages": FormatText(
        "OpenAI-style chat JSON Lines: `{messages: [system = instruction, user = input, assistant = output]}`.",
        _LOAD_FOLDER
        + "\n# TRL: SFTTrainer(model, train_dataset=ds['train'], ...) applies the tokenizer's chat template",
        _CHAT_PROMPT_NOTE,
        "TRL's `SFTTrainer` with its default settings trains on **every token of the conversation**: system, user "
        "and assistant. To train on the answer only, set `SFTConfig(assistant_only_loss=True)`; that needs a chat "
        "template marking the assistant turn with `{% generation %}` ... `{% endgeneration %}` (TRL swaps one in "
        "for the model families it knows and stops with an error for the others). Or export `conversational`, "
        "where training on the answer only is TRL's default.",
    ),
    "conversational": FormatText(
        "TRL conversational prompt-completion JSON Lines: `{prompt: [system = instruction, user = input], "
        "completion: [assistant = output]}`.",
        _LOAD_FOLDER + "\n# TRL: SFTTrainer(model, train_dataset=ds['train'], eval_dataset=ds['validation'])",
        "TRL renders prompt and completion with the tokenizer's chat template, not with the layout below: the "
        "prompt is the template applied to the system and user messages with the generation prompt. Serve the model "
        "with that same chat template.",
        "TRL's `SFTTrainer` with its default settings trains on **the completion only** (`completion_only_loss` is "
        "on for prompt/completion data): the assistant's answer and what the chat template writes after it (its "
        "end-of-turn token, which teaches the model to stop). The system and user tokens are masked (label -100). "
        "`completion_only_loss=False` would train on everything.",
    ),
    "prompt-completion": FormatText(
        "TRL prompt/completion JSON Lines: `{prompt, completion}` where `prompt` is the rendered prompt layout and "
        "`completion` the output.",
        _LOAD_FOLDER + "\n# TRL: SFTTrainer(model, train_dataset=ds['train'], eval_dataset=ds['validation'])",
        "`prompt` is already rendered with the layout below; serve with exactly the same layout.",
        "TRL's `SFTTrainer` with its default settings appends the tokenizer's eos to the completion and trains on "
        "**the completion and eos only** (`completion_only_loss`); the prompt is masked.",
    ),
    "sharegpt": FormatText(
        "ShareGPT JSON: each split is a JSON array of `{conversations: [{from: system|human|gpt, value}]}`, as "
        "LLaMA-Factory and axolotl read it, with LLaMA-Factory's `dataset_info.json` (formatting sharegpt, the "
        "`conversations` column, the from/value keys and the system/human/gpt roles). TRL renames from/value but "
        "keeps the role names human/gpt, which chat templates do not know: use the `messages` export for TRL.",
        _LLAMAFACTORY_LOAD,
        _CHAT_PROMPT_NOTE,
        "LLaMA-Factory with its defaults (`train_on_prompt: false`) trains on the `gpt` turn only; the system and "
        "`human` turns are masked. " + _LLAMAFACTORY_INSTALL,
    ),
    "llamafactory": FormatText(
        "A LLaMA-Factory dataset folder: alpaca-format data files plus `dataset_info.json` entries mapping the "
        "columns (prompt = instruction, query = input, response = output).",
        _LLAMAFACTORY_LOAD,
        "LLaMA-Factory joins instruction and input with a newline and renders them with its own `template:` "
        "setting, not with the layout below; serve the model with that same template.",
        "LLaMA-Factory with its defaults (`train_on_prompt: false`) trains on the output only; instruction and input "
        "are masked. " + _LLAMAFACTORY_INSTALL,
    ),
    "hf": FormatText(
        "A Hugging Face `datasets` DatasetDict saved with `save_to_disk` in `dataset/`, and the same splits as "
        "Parquet in `data/`, with this README as the dataset card. Columns: instruction, input, output, task. "
        f"Licence `other`: `{LICENSE_FILE}` holds the terms, a placeholder until someone writes them.",
        'from datasets import load_dataset, load_from_disk\nds = load_dataset("path/to/this/folder")  # the Parquet '
        'files, with this card\nds = load_from_disk("path/to/this/folder/dataset")  # the saved DatasetDict',
        _RAW_PROMPT_NOTE,
        _RAW_LOSS,
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
    header: str = "",
) -> str:
    text = _FORMAT_TEXT[fmt]
    listed = "\n".join(f"- `{_relative(path, out)}{'/' if path.is_dir() else ''}`" for path in files)
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
            text.what,
            "",
            split_line,
            "",
            "## Files",
            "",
            listed,
            "",
            f"`{EXPORT_MANIFEST}` lists them: `export --force` replaces this folder only while it holds nothing else.",
            "",
            "## Load it",
            "",
            "```python" if fmt not in ("sharegpt", "llamafactory") else "```yaml",
            text.load,
            "```",
            "",
            "## What the loss covers",
            "",
            text.loss,
            "",
            text.prompt_note,
            "",
            prompt_layout_section(layout, sample),
            "",
        ]
    )


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def describe_export(result: ExportResult) -> str:
    counts = ", ".join(f"{name} {count}" for name, count in result.counts.items())
    replaced = f" (replaced the {result.replaced} files of the previous export)" if result.replaced else ""
    return (
        f"exported {result.format} to {result.out}: {counts}{replaced}\n"
        f"read {result.out / 'README.md'} for how to load it and what the loss covers"
    )
