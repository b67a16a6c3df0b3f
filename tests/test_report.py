"""The dataset card parses as the Hub reads it, and every figure in it is checked against the data."""

from __future__ import annotations

import io
import shutil
import unicodedata
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import emoji
import orjson
import pytest

from kochallenge_data.checks.record import infer_task
from kochallenge_data.errors import ConfigError
from kochallenge_data.progress import StderrReporter
from kochallenge_data.prompt import render_prompt
from kochallenge_data.report import LICENSE_FILE, plot_labels, romanize, size_category, write_report
from kochallenge_data.split import read_source
from kochallenge_data.validate import validate_records

from .stack_helpers import load_records, run_in_process, run_subprocess, sample_dataset
from .stack_tokenizers import corpus_lines, train_byte_level_bpe

__all__ = ["sample_dataset"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def split_card(text: str) -> tuple[dict[str, Any], str]:
    yaml = pytest.importorskip("yaml", reason="needs pyyaml to parse the card header")
    assert text.startswith("---\n")
    header, body = text[4:].split("\n---\n", 1)
    parsed: dict[str, Any] = yaml.safe_load(header)
    return parsed, body


def table_after(body: str, heading: str) -> list[list[str]]:
    """The rows of the first Markdown table after ``heading`` (header and rule left out)."""
    lines = body.split("\n")
    start = lines.index(heading)
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
        elif rows:
            break
    return rows[2:]


def meta_rows(dataset: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in dataset.with_name("data.meta.jsonl").read_bytes().splitlines()]


@pytest.fixture(scope="module")
def card(sample_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("card")
    write_report(read_source(sample_dataset), out)
    return out


def test_the_yaml_header_parses_and_states_what_the_hub_needs(sample_dataset: Path, card: Path) -> None:
    header, _ = split_card((card / "README.md").read_text(encoding="utf-8"))
    records = load_records(sample_dataset)
    assert header["language"] == ["ko"]
    assert header["license"] == "other"
    assert header["license_name"] == "kochallenge-data-terms" and header["license_link"] == LICENSE_FILE
    assert (card / LICENSE_FILE).read_text(encoding="utf-8").startswith("# Terms of use")
    assert header["annotations_creators"] == ["machine-generated"]
    assert header["source_datasets"] == ["original"]
    assert header["task_categories"] == ["text-generation"]
    assert header["size_categories"] == ["n<1K"] == [size_category(len(records))]
    data_files = [{"split": "train", "path": "data/train.json"}]
    assert header["configs"] == [{"config_name": "default", "data_files": data_files}]
    (split,) = header["dataset_info"]["splits"]
    assert split["name"] == "train" and split["num_examples"] == len(records) and split["num_bytes"] > 0
    assert header["dataset_info"]["download_size"] == (card / "data" / "train.json").stat().st_size
    assert [f["name"] for f in header["dataset_info"]["features"]] == ["instruction", "input", "output"]
    # The paths are inside the card folder, and the copy there is the built file itself.
    assert (card / "data" / "train.json").read_bytes() == sample_dataset.read_bytes()


def test_load_dataset_on_the_card_folder_gives_the_records(sample_dataset: Path, card: Path, tmp_path: Path) -> None:
    """`datasets` reads the header: it would ignore a malformed dataset_info and fail on paths outside the folder;
    it checks num_examples against the rows it reads."""
    datasets = pytest.importorskip("datasets", reason="needs the hf extra")
    datasets.disable_progress_bars()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = datasets.load_dataset(str(card), cache_dir=str(tmp_path / "cache"))
    assert list(loaded) == ["train"]
    assert list(loaded["train"]) == load_records(sample_dataset)
    header, _ = split_card((card / "README.md").read_text(encoding="utf-8"))
    recorded = loaded["train"].info.splits["train"]
    (stated,) = header["dataset_info"]["splits"]
    assert (recorded.num_examples, recorded.num_bytes) == (stated["num_examples"], stated["num_bytes"])
    assert not [w for w in caught if "dataset_info" in str(w.message) or "malformed" in str(w.message)]


def test_a_standard_licence_and_terms_someone_wrote(sample_dataset: Path, tmp_path: Path) -> None:
    source = read_source(sample_dataset)
    write_report(source, tmp_path / "mit", diversity=False, plots=False, license_id="cc-by-4.0")
    header, _ = split_card((tmp_path / "mit" / "README.md").read_text(encoding="utf-8"))
    assert header["license"] == "cc-by-4.0" and "license_name" not in header and "license_link" not in header
    assert not (tmp_path / "mit" / LICENSE_FILE).exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / LICENSE_FILE).write_text("Use it kindly.\n", encoding="utf-8")
    write_report(source, tmp_path / "other", diversity=False, plots=False)
    assert (tmp_path / "other" / LICENSE_FILE).read_text(encoding="utf-8") == "Use it kindly.\n"
    with pytest.raises(ConfigError, match="--license: 'CC BY' is not a Hub licence id"):
        write_report(source, tmp_path / "bad", diversity=False, plots=False, license_id="CC BY")
    code, _, err = run_in_process("report", str(sample_dataset), "--out", str(tmp_path / "x"), "--license", "CC BY")
    assert code == 2 and "is not a Hub licence id" in err


def test_counts_per_task_and_base_info_balance_match_the_data(sample_dataset: Path, card: Path) -> None:
    _, body = split_card((card / "README.md").read_text(encoding="utf-8"))
    records = load_records(sample_dataset)
    tasks = Counter(infer_task(r) for r in records)
    assert {row[0]: int(row[1]) for row in table_after(body, "## Records per task")} == tasks
    base_info = [m for m in meta_rows(sample_dataset) if m["task"] == "base_info"]
    for key in ("category", "location", "work_type"):
        rows = table_after(body, f"### {key}")
        assert {row[2]: int(row[3]) for row in rows} == Counter(m[key] for m in base_info)
        assert [int(row[0]) for row in rows] == list(range(1, len(rows) + 1))
        assert [row[1] for row in rows] == plot_labels([row[2] for row in rows])


def test_lengths_emoji_and_findings_match_the_data(sample_dataset: Path, card: Path) -> None:
    _, body = split_card((card / "README.md").read_text(encoding="utf-8"))
    records = load_records(sample_dataset)
    lengths = {(row[0], row[1]): (int(row[2]), int(row[6])) for row in table_after(body, "## Length distribution")}
    for task in ("base_info", "free_text", "feedback"):
        for field in ("instruction", "input", "output"):
            sizes = [len(unicodedata.normalize("NFC", r[field])) for r in records if infer_task(r) == task]
            assert lengths[(task, field)] == (min(sizes), max(sizes))
    counts = Counter(item["emoji"] for r in records for item in emoji.emoji_list(r["output"]))
    assert f"{sum(counts.values())} emoji in the outputs, {len(counts)} distinct" in body
    shown = {row[1]: int(row[3]) for row in table_after(body, "## Emoji")}
    assert shown and all(counts[e] == n for e, n in shown.items())
    assert min(shown.values()) >= sorted(counts.values(), reverse=True)[len(shown) - 1]
    findings = validate_records(records).findings
    assert f"`validate` finds {len(findings)} findings" in body


def test_one_example_per_task_and_the_manifest(sample_dataset: Path, card: Path) -> None:
    _, body = split_card((card / "README.md").read_text(encoding="utf-8"))
    records = load_records(sample_dataset)
    for task in ("base_info", "free_text", "feedback"):
        section = body.split(f"### {task}\n\n```json\n", 1)[1].split("\n```", 1)[0]
        assert orjson.loads(section) == next(r for r in records if infer_task(r) == task)
    manifest = orjson.loads(sample_dataset.with_name("data.manifest.json").read_bytes())
    assert f"with seed {manifest['seed']}; `output_sha256` matches this file" in body
    figures = orjson.loads((card / "report.json").read_bytes())
    assert figures["manifest"] == manifest and figures["records"] == len(records)


def test_plots_are_real_pngs_linked_from_the_card(card: Path) -> None:
    pytest.importorskip("matplotlib", reason="needs the report extra")
    text = (card / "README.md").read_text(encoding="utf-8")
    for name in ("lengths.png", "balance.png", "emoji.png"):
        path = card / "plots" / name
        assert path.read_bytes().startswith(PNG_SIGNATURE) and path.stat().st_size > 5000
        assert f"(plots/{name})" in text


def test_without_matplotlib_the_card_is_written_and_says_plots_were_skipped(
    sample_dataset: Path, tmp_path: Path
) -> None:
    result = run_subprocess(
        "report", str(sample_dataset), "--out", str(tmp_path), "--no-diversity", block=["matplotlib"]
    )
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "Plots skipped: matplotlib is not installed (pip install 'kochallenge-data[report]')." in text
    assert "Plots skipped" in result.stdout
    assert not (tmp_path / "plots").exists()


def test_without_sidecars_balance_comes_from_the_input_text(sample_dataset: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.json"
    shutil.copy(sample_dataset, bare)
    write_report(read_source(bare), tmp_path / "card", diversity=False, plots=False)
    _, body = split_card((tmp_path / "card" / "README.md").read_text(encoding="utf-8"))
    triples = [r["input"].split(", ") for r in load_records(bare) if infer_task(r) == "base_info"]
    rows = table_after(body, "### category")
    assert {row[2]: int(row[3]) for row in rows} == Counter(t[2] for t in triples)
    assert [row[1] for row in rows] == [romanize(row[2]) for row in rows]  # Korean names, romanized for the plots
    assert "No build manifest matches this file" in body
    assert "## Diversity" not in body and "Plots not requested." in body


def test_with_a_tokenizer_the_card_shows_token_lengths(sample_dataset: Path, tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="needs the train extra")
    records = load_records(sample_dataset)
    texts = [render_prompt(r["instruction"], r["input"]) + r["output"] for r in records]
    tokenizer_dir = train_byte_level_bpe(tmp_path / "bpe", corpus_lines(texts))
    code, out, err = run_in_process(
        "report", str(sample_dataset), "--out", str(tmp_path / "card"), "--tokenizer", str(tokenizer_dir),
        "--no-diversity", "--no-plots",
    )  # fmt: skip
    assert code == 0, err
    assert "README.md" in out
    _, body = split_card((tmp_path / "card" / "README.md").read_text(encoding="utf-8"))
    rows = {(row[0], row[1]): int(row[6]) for row in table_after(body, "## Token lengths")}
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    for task in ("base_info", "free_text", "feedback"):
        mine = [r for r in records if infer_task(r) == task]
        # train's layout: tokens(prompt) + tokens(output) + eos
        longest = max(
            len(tokenizer(render_prompt(r["instruction"], r["input"]))["input_ids"])
            + len(tokenizer(r["output"], add_special_tokens=False)["input_ids"])
            + 1
            for r in mine
        )
        assert rows[(task, "total")] == longest


def test_plot_labels_are_ascii_and_need_no_hangul_font() -> None:
    assert [romanize(name) for name in ("농촌", "바닷가", "재택근무", "현장직", "닭")] == [
        "nongchon",
        "badatga",
        "jaetaekgeunmu",
        "hyeonjangjik",
        "dak",
    ]
    labels = plot_labels(["VEGAN", "도시", "🌱", "간아", "가나"])
    assert labels == ["VEGAN", "dosi", "#3", "gana", "gana #5"]  # kept, romanized, numbered, told apart
    assert all(label.isascii() for label in labels) and len(set(labels)) == len(labels)


def test_plots_draw_korean_balance_without_a_missing_glyph(sample_dataset: Path, tmp_path: Path) -> None:
    """Balance read from the input text is Korean; the plots still draw every label with the default font."""
    pytest.importorskip("matplotlib", reason="needs the report extra")
    bare = tmp_path / "bare.json"
    shutil.copy(sample_dataset, bare)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = write_report(read_source(bare), tmp_path / "card", diversity=False)
    assert not [w for w in caught if "missing from" in str(w.message) or "Glyph" in str(w.message)]
    assert [path.name for path, _ in result.plots.files] == ["lengths.png", "balance.png", "emoji.png"]


def test_report_reports_progress_for_its_long_steps(sample_dataset: Path, tmp_path: Path) -> None:
    stream = io.StringIO()
    write_report(read_source(sample_dataset), tmp_path, reporter=StderrReporter(stream=stream, every_s=0.0))
    text = stream.getvalue()
    for label in (
        "report: counts, fit, lengths, emoji",
        "validate",
        "report: diversity (Kiwi)",
        "report: writing the card",
    ):
        assert f"\n{label}: 300/300 records (100%)" in "\n" + text, label
    assert "report: plots: 3/3 plots (100%)" in text
