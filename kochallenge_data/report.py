"""The dataset card: what is in the data, in figures a reader can check, before anyone trains on it.

``report`` writes a Hugging Face dataset card folder: ``README.md`` with the YAML header the Hub and
``datasets`` read (configs pointing at ``data/train.json``, the records, kept inside the folder so
``load_dataset(folder)`` works; ``dataset_info`` with sizes ``datasets`` checks), ``report.json`` with
every figure in the card, and PNG plots when matplotlib is installed, labelled in ASCII so no Hangul
font is needed. Every number is computed from the dataset file itself; the build sidecars only add
what the text cannot tell (category codes, the manifest), and only when their checksum says they
belong to this file.
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .audit import distribution, load_tokenizer, render_records, token_lengths
from .checks.codes import CODES
from .errors import ConfigError
from .models import TASKS
from .progress import SILENT, Reporter
from .prompt import PromptLayout, load_prompt_layout
from .split import Source
from .text import emoji_in, nfc
from .writer import dataset_bytes, json_bytes, sha256_bytes, write_atomic

REPORT_EXTRA_HINT = "pip install 'kochallenge-data[report]'"
FIELDS = ("instruction", "input", "output")
BALANCE_KEYS = ("category", "location", "work_type")
EMOJI_SHOWN = 20
CARD_DATA = "data/train.json"  # the records, inside the card folder, so `load_dataset(card_folder)` works
PRETTY_NAME = "kochallenge eco-challenge instructions"
DEFAULT_LICENSE = "other"
# With `license: other` the Hub wants a name (an id-like slug) and a link to the terms.
OTHER_LICENSE_NAME = "kochallenge-data-terms"
LICENSE_FILE = "LICENSE.md"
LICENSE_PLACEHOLDER = """# Terms of use

The terms under which this dataset may be used have not been chosen yet.

Before publishing, write them here (the card README.md keeps `license: other`, `license_name` and
`license_link: LICENSE.md`), or put a standard licence id such as `cc-by-4.0` in its `license:` field, drop
`license_name` and `license_link`, and delete this file (`report --license cc-by-4.0` writes such a card).
"""
SIZE_CATEGORIES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
)


def size_category(count: int) -> str:
    """The Hub's ``size_categories`` bucket for ``count`` records."""
    for limit, name in SIZE_CATEGORIES:
        if count < limit:
            return name
    return "n>10M"


def task_counts(source: Source) -> dict[str, int]:
    counts = Counter(source.tasks)
    return {task: counts[task] for task in TASKS if counts[task]}


def base_info_balance(source: Source) -> dict[str, Any]:
    """Records per category, location and work type (base_info only), most frequent first."""
    rows: list[Mapping[str, Any]]
    if source.meta is not None:
        rows = [m for m, task in zip(source.meta, source.tasks, strict=True) if task == "base_info"]
        origin = "build metadata sidecar (category keys)"
    else:
        rows = [
            _triple(r["input"]) for r, task in zip(source.records, source.tasks, strict=True) if task == "base_info"
        ]
        origin = "the input text (category names)"
    balance: dict[str, Any] = {"from": origin}
    for key in BALANCE_KEYS:
        counts = Counter(str(row.get(key)) for row in rows)
        balance[key] = dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
    return balance


def _triple(text: str) -> dict[str, str]:
    location, work_type, category = (part.strip() for part in text.split(",", 2))
    return {"location": location, "work_type": work_type, "category": category}


def fit_table(source: Source) -> dict[str, Any] | None:
    """Why the picks are there, from the build's metadata sidecar: how often they meet what the input asked.

    base_info: records with a pick bound to the user's location or work type, and recommend sentences that
    name only what their picks show. free_text: picks that meet the request's main facet, and first lines that
    reply to that facet. feedback: weeks whose failures and idle group challenges are all addressed.
    """
    if source.meta is None:
        return None
    rows: dict[str, Any] = {}
    by_task: dict[str, list[Mapping[str, Any]]] = {}
    for meta, task in zip(source.meta, source.tasks, strict=True):
        by_task.setdefault(task, []).append(meta)
    base = by_task.get("base_info", [])
    if base:
        specific = sum(any(set(why) & {"location", "work_type"} for why in m.get("why", [])) for m in base)
        reasons = Counter(str(m.get("recommend_reason")) for m in base)
        rows["base_info"] = {
            "records": len(base),
            "with_location_or_work_pick": _share(specific, len(base)),
            "recommend_reason": dict(sorted(reasons.items())),
        }
    free = by_task.get("free_text", [])
    if free:
        picks = [met for m in free for met in m.get("main_met", [])]
        with_main = [m for m in free if m.get("main_met")]
        replies = Counter(str(m.get("recommend_reason")) for m in free)
        rows["free_text"] = {
            "records": len(free),
            "picks_meeting_main_facet": _share(sum(picks), len(picks)),
            "records_all_picks_meet_main_facet": _share(sum(all(m["main_met"]) for m in with_main), len(with_main)),
            "records_without_a_facet": len(free) - len(with_main),
            "reply": dict(sorted(replies.items())),
        }
    weeks = by_task.get("feedback", [])
    if weeks:
        owed = [m for m in weeks if any(k in m.get("covered", {}) for k in ("failure", "idle"))]
        rows["feedback"] = {
            "records": len(weeks),
            "weeks_with_failures_or_idle_groups": len(owed),
            "all_addressed": _share(sum(_all_addressed(m["covered"]) for m in owed), len(owed)),
        }
    return rows


def _all_addressed(covered: Mapping[str, Mapping[str, int]]) -> bool:
    return all(sum(counts.values()) > 0 for counts in covered.values())


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def character_lengths(source: Source) -> dict[str, dict[str, dict[str, float]]]:
    """Length distributions in NFC code points (the unit the service counts), per task and field."""
    return {
        task: {
            name: distribution(
                [len(nfc(r[name])) for r, t in zip(source.records, source.tasks, strict=True) if t == task]
            )
            for name in FIELDS
        }
        for task in task_counts(source)
    }


def emoji_frequencies(source: Source) -> dict[str, Any]:
    """Every emoji in the outputs, counted per occurrence."""
    counts = Counter(e for r in source.records for e in emoji_in(r["output"]))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return {"total": sum(counts.values()), "distinct": len(counts), "top": [[e, n] for e, n in ranked[:EMOJI_SHOWN]]}


def validation_summary(source: Source, reporter: Reporter = SILENT) -> dict[str, Any]:
    """The findings ``validate`` would report for this file, by code."""
    from .validate import validate_records

    report = validate_records(source.records, reporter=reporter)
    return {
        "findings": len(report.findings),
        "records_with_findings": len({f.index for f in report.findings}),
        "by_code": report.summary,
    }


def examples(source: Source) -> dict[str, dict[str, str]]:
    """The first record of each task."""
    found: dict[str, dict[str, str]] = {}
    for record, task in zip(source.records, source.tasks, strict=True):
        found.setdefault(task, record)
    return {task: found[task] for task in TASKS if task in found}


def token_figures(source: Source, tokenizer_dir: Path, layout: PromptLayout) -> dict[str, Any]:
    tokenizer = load_tokenizer(tokenizer_dir)
    lengths = token_lengths(tokenizer, render_records(source.records, layout))
    per_task: dict[str, Any] = {}
    for task in task_counts(source):
        mine = [t for t, k in zip(lengths, source.tasks, strict=True) if k == task]
        per_task[task] = {
            "prompt": distribution([t.prompt for t in mine]),
            "completion": distribution([t.completion for t in mine]),
            "total": distribution([t.total for t in mine]),
        }
    return {"tokenizer": tokenizer_dir.name, "per_task": per_task, "totals": [t.total for t in lengths]}


def dataset_figures(
    source: Source,
    diversity: bool = True,
    tokenizer_dir: Path | None = None,
    layout: PromptLayout | None = None,
    reporter: Reporter = SILENT,
) -> dict[str, Any]:
    """Every figure the card shows, computed from the file (and its sidecars when they match)."""
    count = len(source.records)
    with reporter.step("report: counts, fit, lengths, emoji", total=count) as step:
        figures: dict[str, Any] = {
            "file": source.path.name,
            "sha256": source.sha256,
            "records": count,
            "size_category": size_category(count),
            "per_task": task_counts(source),
            "base_info_balance": base_info_balance(source),
            "fit": fit_table(source),
            "characters": character_lengths(source),
            "emoji": emoji_frequencies(source),
            "examples": examples(source),
            "manifest": source.manifest,
            "notes": list(source.notes),
        }
        step.advance(count)
    figures["validation"] = validation_summary(source, reporter)
    if diversity:
        from .checks.diversity import diversity_stats

        # diversity_stats reports no progress of its own: the step says it is running and how long it took.
        with reporter.step("report: diversity (Kiwi)", total=count) as step:
            figures["diversity"] = diversity_stats(source.records, source.tasks)
            step.advance(count)
    if tokenizer_dir is not None:
        with reporter.step("report: token lengths", total=count) as step:
            figures["tokens"] = token_figures(source, tokenizer_dir, layout or load_prompt_layout())
            step.advance(count)
    return figures


# --- the card header: the YAML the Hub and `datasets` read ----------------------------------------

_PLAIN_YAML = re.compile(r"[A-Za-z][A-Za-z0-9_.<>/-]*")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def yaml_scalar(value: Any) -> str:
    """A YAML scalar: plain when it cannot be misread, else JSON (valid double-quoted YAML; Korean kept)."""
    if isinstance(value, bool) or value is None:
        return orjson.dumps(value).decode()
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    if _PLAIN_YAML.fullmatch(text) and text.lower() not in _YAML_WORDS:
        return text
    return orjson.dumps(text).decode()


def yaml_lines(value: Mapping[str, Any] | Sequence[Any], indent: int = 0) -> list[str]:
    """Block-style YAML for mappings and lists of scalars or mappings, in the Hub's layout."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, Mapping):
                lines += [f"{pad}{key}:", *yaml_lines(item, indent + 2)]
            elif isinstance(item, list | tuple):
                lines += [f"{pad}{key}:", *yaml_lines(item, indent)]
            else:
                lines.append(f"{pad}{key}: {yaml_scalar(item)}")
        return lines
    for item in value:
        if isinstance(item, Mapping):
            inner = yaml_lines(item, indent + 2)
            lines += [f"{pad}- {inner[0].lstrip()}", *inner[1:]]
        else:
            lines.append(f"{pad}- {yaml_scalar(item)}")
    return lines


def arrow_string_bytes(rows: Sequence[Mapping[str, str]], columns: Sequence[str]) -> int:
    """A split's ``num_bytes`` as ``datasets`` counts it for string columns: UTF-8 text plus 4-byte offsets."""
    return sum(len(row[column].encode("utf-8")) + 4 for row in rows for column in columns)


@dataclass(frozen=True)
class CardSplit:
    """One split of a card: its data file (relative to the card folder) and the sizes ``dataset_info`` states."""

    name: str
    path: str
    num_examples: int
    num_bytes: int
    file_bytes: int


def license_fields(license_id: str) -> dict[str, str]:
    """``license``, plus the name and link the Hub requires when it is ``other``."""
    if license_id != "other":
        return {"license": license_id}
    return {"license": "other", "license_name": OTHER_LICENSE_NAME, "license_link": LICENSE_FILE}


def check_license_id(license_id: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", license_id):
        raise ConfigError(
            f"--license: {license_id!r} is not a Hub licence id; use one such as cc-by-4.0, cc-by-sa-4.0, mit, "
            "apache-2.0, or other (then write the terms in LICENSE.md)"
        )
    return license_id


def card_metadata(
    splits: Sequence[CardSplit],
    features: Sequence[str],
    records: int,
    license_id: str = DEFAULT_LICENSE,
) -> dict[str, Any]:
    """The dataset card's YAML: what the Hub indexes, and the configs and ``dataset_info`` ``datasets`` loads."""
    return {
        "language": ["ko"],
        **license_fields(license_id),
        "pretty_name": PRETTY_NAME,
        # The texts are written by a program from the project's pools and templates, not by annotators.
        "annotations_creators": ["machine-generated"],
        "language_creators": ["machine-generated"],
        "multilinguality": ["monolingual"],
        "source_datasets": ["original"],
        "task_categories": ["text-generation"],
        "tags": ["korean", "synthetic", "instruction-tuning"],
        "size_categories": [size_category(records)],
        "configs": [
            {"config_name": "default", "data_files": [{"split": s.name, "path": s.path} for s in splits]},
        ],
        "dataset_info": {
            "features": [{"name": name, "dtype": "string"} for name in features],
            "splits": [{"name": s.name, "num_bytes": s.num_bytes, "num_examples": s.num_examples} for s in splits],
            "download_size": sum(s.file_bytes for s in splits),
            "dataset_size": sum(s.num_bytes for s in splits),
        },
    }


def yaml_header(metadata: Mapping[str, Any]) -> str:
    """The ``---`` front matter of a card."""
    return "\n".join(["---", *yaml_lines(metadata), "---", ""]) + "\n"


def card_header(figures: Mapping[str, Any], split: CardSplit, license_id: str = DEFAULT_LICENSE) -> str:
    """The report card's front matter: one ``train`` split, the records in ``data/train.json``."""
    return yaml_header(card_metadata([split], FIELDS, figures["records"], license_id))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _distribution_rows(label: Sequence[str], d: Mapping[str, float]) -> list[Any]:
    return [*label, d["min"], d["p50"], d["p90"], d["p99"], d["max"], d["mean"]]


DISTRIBUTION_HEADERS = ("min", "p50", "p90", "p99", "max", "mean")


def card_body(figures: Mapping[str, Any], plots: PlotOutcome, data: CardData, license_id: str) -> str:
    sections = [
        "# kochallenge eco-challenge instructions",
        "",
        "Synthetic Korean instruction data for an eco-challenge chatbot: challenge recommendations from a user's "
        "location, work type and category (`base_info`) or from a free-text message (`free_text`), and short "
        "feedback on a week of challenge records (`feedback`). Each record has `instruction`, `input` and `output`.",
        "",
        f"File `{figures['file']}`: {figures['records']} records, sha256 `{figures['sha256']}`.",
        "",
        *_data_section(figures["file"], data),
        *_license_section(license_id),
        "## Records per task",
        "",
        _table(
            ("task", "records", "share"),
            [(t, n, f"{n / figures['records']:.1%}") for t, n in figures["per_task"].items()],
        ),
        "",
        *_balance_section(figures["base_info_balance"]),
        *_fit_section(figures.get("fit")),
        "## Length distribution",
        "",
        "Characters are NFC code points, the unit the service counts.",
        "",
        _table(
            ("task", "field", *DISTRIBUTION_HEADERS),
            [
                _distribution_rows((task, name), d)
                for task, fields in figures["characters"].items()
                for name, d in fields.items()
            ],
        ),
        "",
        *_token_section(figures.get("tokens")),
        *_emoji_section(figures["emoji"]),
        *_diversity_section(figures.get("diversity")),
        *_validation_section(figures["validation"]),
        *_example_section(figures["examples"]),
        *_plot_section(plots),
        *_manifest_section(figures.get("manifest"), figures["notes"]),
    ]
    return "\n".join(sections) + "\n"


def _data_section(file_name: str, data: CardData) -> list[str]:
    origin = (
        f"a byte-identical copy of `{file_name}`"
        if data.identical
        else f"the records of `{file_name}` (instruction, input, output) written as one JSON array"
    )
    return [
        "## Load it",
        "",
        f"`{CARD_DATA}` is {origin}; the header above points `datasets` at it:",
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("path/to/this/folder")  # or the Hub repository id, once uploaded',
        "```",
        "",
    ]


def _license_section(license_id: str) -> list[str]:
    if license_id != "other":
        return ["## Licence", "", f"`{license_id}`.", ""]
    return [
        "## Licence",
        "",
        f"`other`: the terms go in `{LICENSE_FILE}`. `report` writes it as a placeholder saying no terms are chosen "
        "yet and never overwrites it, so terms written there stay. For a standard licence write the card again with "
        "`--license <id>` (for example `cc-by-4.0`).",
        "",
    ]


def _balance_section(balance: Mapping[str, Any]) -> list[str]:
    lines = [
        "## base_info balance",
        "",
        f"From {balance['from']}. Plots label bars with the `plot label` (ASCII, so they draw without a Hangul font).",
        "",
    ]
    for key in BALANCE_KEYS:
        counts = balance[key]
        labels = plot_labels(list(counts))
        rows = [(i, label, k, n) for i, (label, (k, n)) in enumerate(zip(labels, counts.items(), strict=True), 1)]
        lines += [f"### {key}", "", _table(("#", "plot label", key, "records"), rows), ""]
    return lines


def _fit_section(fit: Mapping[str, Any] | None) -> list[str]:
    if not fit:
        return []
    rows = []
    if "base_info" in fit:
        b = fit["base_info"]
        rows.append(
            (
                "base_info",
                "records with a pick bound to the location or work type",
                f"{b['with_location_or_work_pick']:.1%}",
            )
        )
        rows += [("base_info", f"recommend sentence claims: {k}", n) for k, n in b["recommend_reason"].items()]
    if "free_text" in fit:
        f = fit["free_text"]
        rows.append(("free_text", "picks meeting the request's main facet", f"{f['picks_meeting_main_facet']:.1%}"))
        rows.append(
            ("free_text", "records whose three picks all meet it", f"{f['records_all_picks_meet_main_facet']:.1%}")
        )
        rows.append(("free_text", "records whose message states no facet", f["records_without_a_facet"]))
        rows += [("free_text", f"first line: {k}", n) for k, n in f["reply"].items()]
    if "feedback" in fit:
        w = fit["feedback"]
        rows.append(("feedback", "weeks with a failure or an idle group", w["weeks_with_failures_or_idle_groups"]))
        rows.append(("feedback", "of those, every one addressed", f"{w['all_addressed']:.1%}"))
    return [
        "## Fit",
        "",
        "From the build's metadata sidecar: why each pick is there. A first line of kind `facet` replies to the "
        "request's main facet and is used only when all three picks meet it.",
        "",
        _table(("task", "measure", "value"), rows),
        "",
    ]


def _token_section(tokens: Mapping[str, Any] | None) -> list[str]:
    if not tokens:
        return []
    rows = [
        _distribution_rows((task, part), d) for task, parts in tokens["per_task"].items() for part, d in parts.items()
    ]
    return [
        "## Token lengths",
        "",
        f"Tokenizer `{tokens['tokenizer']}`; prompt = the prompt layout with special tokens, "
        "completion = output + eos.",
        "",
        _table(("task", "part", *DISTRIBUTION_HEADERS), rows),
        "",
    ]


def _emoji_section(emoji: Mapping[str, Any]) -> list[str]:
    from emoji import demojize

    return [
        "## Emoji",
        "",
        f"{emoji['total']} emoji in the outputs, {emoji['distinct']} distinct. Most frequent:",
        "",
        _table(("#", "emoji", "name", "count"), [(i, e, demojize(e), n) for i, (e, n) in enumerate(emoji["top"], 1)]),
        "",
    ]


def _diversity_section(diversity: Mapping[str, Any] | None) -> list[str]:
    if not diversity:
        return []
    rows = []
    for task, d in diversity.items():
        extra = (
            f"{d.get('emoji_distinct')} distinct emoji"
            if task == "feedback"
            else f"{d.get('distinct_recommend')} recommend sentences, {d.get('distinct_challenges')} challenges"
        )
        rows.append((task, d["records"], d["distinct_1"], d["distinct_2"], extra))
    return [
        "## Diversity",
        "",
        "distinct-n over Kiwi morphemes of the outputs: the share of n-grams that are not repeats.",
        "",
        _table(("task", "records", "distinct-1", "distinct-2", "variety"), rows),
        "",
    ]


def _validation_section(validation: Mapping[str, Any]) -> list[str]:
    lines = [
        "## Validation findings",
        "",
        f"`validate` finds {validation['findings']} findings in {validation['records_with_findings']} records.",
        "",
    ]
    if validation["by_code"]:
        rows = [(code, n, CODES.get(code, "")) for code, n in validation["by_code"].items()]
        lines += [_table(("code", "count", "meaning"), rows), ""]
    return lines


def _example_section(found: Mapping[str, Mapping[str, str]]) -> list[str]:
    lines = ["## One example per task", ""]
    for task, record in found.items():
        lines += [f"### {task}", "", "```json", orjson.dumps(record, option=orjson.OPT_INDENT_2).decode(), "```", ""]
    return lines


def _plot_section(plots: PlotOutcome) -> list[str]:
    lines = ["## Plots", ""]
    if plots.skipped:
        return [*lines, plots.skipped, ""]
    for path, caption in plots.files:
        lines += [f"![{caption}](plots/{path.name})", ""]
    return lines


def _manifest_section(manifest: Mapping[str, Any] | None, notes: Sequence[str]) -> list[str]:
    lines = ["## Build manifest", ""]
    if manifest is None:
        lines.append("No build manifest matches this file (it was not built here, or was changed after the build).")
    else:
        lines += [
            f"Built by kochallenge_data {manifest.get('library_version')} (schema {manifest.get('schema_version')}) "
            f"with seed {manifest.get('seed')}; `output_sha256` matches this file.",
            "",
            "<details><summary>manifest</summary>",
            "",
            "```json",
            orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode(),
            "```",
            "",
            "</details>",
        ]
    lines += [f"- {note}" for note in notes]
    return [*lines, ""]


# --- plots ----------------------------------------------------------------------------------------

# Revised Romanization of Korean, letter by letter (no sound-change rules): enough for an unambiguous
# ASCII plot label that a Korean reader recognises; the card's tables give the Hangul beside it.
_INITIALS = ("g", "kk", "n", "d", "tt", "r", "m", "b", "pp", "s", "ss", "", "j", "jj", "ch", "k", "t", "p", "h")
_VOWELS = (
    "a", "ae", "ya", "yae", "eo", "e", "yeo", "ye", "o", "wa", "wae",
    "oe", "yo", "u", "wo", "we", "wi", "yu", "eu", "ui", "i",
)  # fmt: skip
_FINALS = (
    "", "k", "k", "k", "n", "n", "n", "t", "l", "k", "m", "l", "l", "l",
    "p", "l", "m", "p", "p", "t", "t", "ng", "t", "t", "k", "t", "p", "t",
)  # fmt: skip
_SYLLABLE_BASE, _SYLLABLE_LAST = 0xAC00, 0xD7A3


def romanize(text: str) -> str:
    """Hangul syllables spelled in Latin letters (``농촌`` -> ``nongchon``); other characters kept."""
    out = []
    for char in unicodedata.normalize("NFC", text):
        code = ord(char)
        if _SYLLABLE_BASE <= code <= _SYLLABLE_LAST:
            offset = code - _SYLLABLE_BASE
            initial, rest = divmod(offset, 21 * 28)
            vowel, final = divmod(rest, 28)
            out.append(_INITIALS[initial] + _VOWELS[vowel] + _FINALS[final])
        else:
            out.append(char)
    return "".join(out)


def plot_labels(names: Sequence[str]) -> list[str]:
    """ASCII labels for bar charts, one per name and all different: the name, romanized when it is Korean.

    Plots never need a Hangul font this way, so they look the same on every machine, whatever fonts
    (and whatever stale font cache) it has.
    """
    labels: list[str] = []
    for number, name in enumerate(names, 1):
        label = romanize(name)
        if not label.isascii() or not label.strip():
            label = f"#{number}"
        if label in labels:
            label = f"{label} #{number}"
        labels.append(label)
    return labels


@dataclass(frozen=True)
class PlotOutcome:
    files: list[tuple[Path, str]]
    skipped: str = ""


def write_plots(source: Source, figures: Mapping[str, Any], folder: Path, reporter: Reporter = SILENT) -> PlotOutcome:
    """Length histograms per task, category balance and emoji frequency as PNG; skipped without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return PlotOutcome([], skipped=f"Plots skipped: matplotlib is not installed ({REPORT_EXTRA_HINT}).")

    def new_figure(width: float, height: float) -> Any:
        figure = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasAgg(figure)
        return figure

    def save(figure: Any, name: str) -> Path:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
        path = folder / name
        write_atomic(path, buffer.getvalue())
        return path

    drawings: list[tuple[str, str, Callable[[], Any]]] = [
        ("lengths.png", "output length per task", lambda: _length_figure(new_figure, source, figures)),
        ("balance.png", "records per task and base_info balance", lambda: _balance_figure(new_figure, figures)),
        ("emoji.png", "emoji frequency", lambda: _emoji_figure(new_figure, figures)),
    ]
    files = []
    with reporter.step("report: plots", total=len(drawings), unit="plots") as step:
        for name, caption, draw in drawings:
            files.append((save(draw(), name), caption))
            step.advance()
    return PlotOutcome(files)


def _length_figure(new_figure: Any, source: Source, figures: Mapping[str, Any]) -> Any:
    tasks = list(figures["per_task"])
    tokens = figures.get("tokens")
    rows = 2 if tokens else 1
    figure = new_figure(4.0 * len(tasks), 3.0 * rows)
    axes = figure.subplots(rows, len(tasks), squeeze=False)
    for column, task in enumerate(tasks):
        lengths = [len(nfc(r["output"])) for r, t in zip(source.records, source.tasks, strict=True) if t == task]
        axis = axes[0][column]
        axis.hist(lengths, bins=30, color="#4c72b0")
        axis.set_title(f"{task}: output characters")
        axis.set_xlabel("characters")
        axis.set_ylabel("records")
        if tokens:
            totals = [n for n, t in zip(tokens["totals"], source.tasks, strict=True) if t == task]
            axes[1][column].hist(totals, bins=30, color="#dd8452")
            axes[1][column].set_title(f"{task}: prompt + completion tokens")
            axes[1][column].set_xlabel("tokens")
    return figure


def _balance_figure(new_figure: Any, figures: Mapping[str, Any]) -> Any:
    panels = [("records per task", figures["per_task"])]
    panels += [(f"base_info {key}", figures["base_info_balance"][key]) for key in BALANCE_KEYS]
    figure = new_figure(4.0 * len(panels), 3.5)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for axis, (title, counts) in zip(axes, panels, strict=True):
        names = plot_labels([str(name) for name in counts])
        axis.bar(range(len(names)), list(counts.values()), color="#55a868")
        axis.set_xticks(range(len(names)), names, rotation=45, ha="right")
        axis.set_title(title)
    return figure


def _emoji_figure(new_figure: Any, figures: Mapping[str, Any]) -> Any:
    from emoji import demojize

    top = figures["emoji"]["top"]
    figure = new_figure(max(4.0, 0.45 * len(top) + 1.5), 4.0)
    axis = figure.subplots()
    # Plot fonts have no colour emoji, so bars are labelled with the emoji's name.
    axis.bar(range(len(top)), [n for _, n in top], color="#c44e52")
    axis.set_xticks(range(len(top)), [demojize(e).strip(":") for e, _ in top], rotation=60, ha="right")
    axis.set_title("emoji in outputs")
    axis.set_ylabel("occurrences")
    return figure


@dataclass(frozen=True)
class CardData:
    """The card folder's copy of the records, and whether it is the source file byte for byte."""

    split: CardSplit
    identical: bool


def write_card_data(source: Source, out: Path) -> CardData:
    """``data/train.json`` inside the card folder: the three fields of every record, as ``build`` writes them."""
    data = dataset_bytes(source.records)
    write_atomic(out / CARD_DATA, data)
    split = CardSplit(
        name="train",
        path=CARD_DATA,
        num_examples=len(source.records),
        num_bytes=arrow_string_bytes(source.records, FIELDS),
        file_bytes=len(data),
    )
    return CardData(split, identical=sha256_bytes(data) == source.sha256)


@dataclass(frozen=True)
class ReportResult:
    card: Path
    figures_file: Path
    plots: PlotOutcome
    figures: dict[str, Any]


def write_report(
    source: Source,
    out: Path,
    tokenizer_dir: Path | None = None,
    diversity: bool = True,
    plots: bool = True,
    layout: PromptLayout | None = None,
    license_id: str = DEFAULT_LICENSE,
    reporter: Reporter = SILENT,
) -> ReportResult:
    """Write the card folder: ``README.md``, ``data/train.json``, ``report.json`` and ``plots/*.png``.

    With ``license_id`` ``other`` a placeholder ``LICENSE.md`` is written unless one is there already,
    so terms someone wrote survive the next report.
    """
    check_license_id(license_id)
    figures = dataset_figures(
        source, diversity=diversity, tokenizer_dir=tokenizer_dir, layout=layout, reporter=reporter
    )
    outcome = (
        write_plots(source, figures, out / "plots", reporter) if plots else PlotOutcome([], "Plots not requested.")
    )
    card = out / "README.md"
    stored = {k: v for k, v in figures.items() if k != "tokens"}
    if "tokens" in figures:
        stored["tokens"] = {k: v for k, v in figures["tokens"].items() if k != "totals"}
    with reporter.step("report: writing the card", total=len(source.records)) as step:
        data = write_card_data(source, out)
        if license_id == "other" and not (out / LICENSE_FILE).exists():
            write_atomic(out / LICENSE_FILE, LICENSE_PLACEHOLDER.encode("utf-8"))
        write_atomic(out / "report.json", json_bytes(stored))
        text = card_header(figures, data.split, license_id) + card_body(figures, outcome, data, license_id)
        write_atomic(card, text.encode("utf-8"))
        step.advance(len(source.records))
    return ReportResult(card, out / "report.json", outcome, stored)


def describe_report(result: ReportResult) -> str:
    lines = [f"wrote {result.card}, {result.card.parent / CARD_DATA} and {result.figures_file}"]
    if result.plots.skipped:
        lines.append(result.plots.skipped)
    else:
        lines.append("plots: " + ", ".join(str(path) for path, _ in result.plots.files))
    return "\n".join(lines)
