"""The training-stack commands: ``split``, ``export``, ``report`` and ``audit-tokenizer``.

``register`` adds them to the main parser. Only argparse and pathlib load here; each handler
imports its module (and that module its optional libraries) when the command runs, so ``--help``
and the other commands stay fast and work without the extras.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from .commands import add_command

# Copies of split.GROUP_BY_CHOICES and export.FORMATS, so building the parser imports neither
# (a test checks they agree).
GROUP_BY_CHOICES = ("none", "template", "item")
FORMATS = ("alpaca", "jsonl", "messages", "conversational", "prompt-completion", "sharegpt", "llamafactory", "hf")
DEFAULT_VAL_RATIO = 0.1
DEFAULT_SEED = 42

SPLIT_EXAMPLE = """example:
  python -m kochallenge_data split multitask_dataset_v2.json --out splits/ --val-ratio 0.1 --group-by item
  python -m kochallenge_data split old_dataset.json --out splits/ --seed 7

--out holds one split: a new or empty folder, or one holding only an earlier split's files, which the
new split replaces whole (a folder with other files is refused)."""

EXPORT_EXAMPLE = """example:
  python -m kochallenge_data export multitask_dataset_v2.json --to conversational --out trl_chat/
  python -m kochallenge_data export multitask_dataset_v2.json --to prompt-completion --out trl_data/
  python -m kochallenge_data export multitask_dataset_v2.json --to llamafactory --out lf_data/ --group-by template
  python -m kochallenge_data export multitask_dataset_v2.json --to hf --out hf_data/ --val-ratio 0.05 --force

formats (what TRL's or LLaMA-Factory's default settings train on, in brackets):
  alpaca             JSON arrays of {instruction, input, output}, the dataset as is
  jsonl              the same, one record per line
  messages           OpenAI-style chat: system = instruction, user = input, assistant = output
                     [TRL: the whole conversation, unless assistant_only_loss with a {% generation %} template]
  conversational     TRL chat prompt-completion: prompt = [system, user], completion = [assistant]
                     [TRL: the answer only]
  prompt-completion  TRL {prompt, completion}: prompt rendered with templates/prompt.j2 [TRL: the answer only]
  sharegpt           {conversations: [{from, value}]} with system / human / gpt, plus dataset_info.json
                     [LLaMA-Factory: the gpt turn only]
  llamafactory       alpaca files plus dataset_info.json with the column mapping [LLaMA-Factory: the output only]
  hf                 a datasets DatasetDict (save_to_disk) plus Parquet and a dataset card; needs the hf extra

--out must be an empty or new folder: a folder holds one export. --force replaces the export already
there, whole, when the folder holds only the files its .export.json lists; a folder with other files is
refused. The export is written beside --out and swapped in, so a killed run leaves the old export or
the new one, never a mix."""

REPORT_EXAMPLE = """example:
  python -m kochallenge_data report multitask_dataset_v2.json --out card/
  python -m kochallenge_data report multitask_dataset_v2.json --out card/ --tokenizer path/to/model
  python -m kochallenge_data report multitask_dataset_v2.json --out card/ --license cc-by-4.0

The card folder holds the records (data/train.json), so load_dataset("card/") works and the folder can be
uploaded to the Hub as it is."""

AUDIT_EXAMPLE = """example:
  python -m kochallenge_data audit-tokenizer multitask_dataset_v2.json --tokenizer path/to/model
  python -m kochallenge_data audit-tokenizer data.json --tokenizer path/to/model --max-length 512 --json

exit status: 0 when every record fits and every character survives; 1 when records would lose their
eos (truncation, no eos token, or an eos the tokenizer appends to every prompt) or the tokenizer would
lose characters (unk, dropped, changed, or '\\n')"""


def _license(text: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a Hub licence id; use one such as cc-by-4.0, mit, apache-2.0, or other"
        )
    return text


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {value}")
    return value


def _add_split_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--val-ratio",
        type=_ratio,
        default=DEFAULT_VAL_RATIO,
        metavar="R",
        help="validation share per task (default 0.1; 0: none)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, metavar="S", help="split seed (default 42)")
    parser.add_argument(
        "--group-by",
        choices=GROUP_BY_CHOICES,
        default="none",
        help="keep records of one template or pool item on one side (default none)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.8,
        metavar="T",
        help="near-duplicate Jaccard threshold across splits (default 0.8)",
    )


def register(subparsers: Any) -> None:
    """Add ``split``, ``export``, ``report`` and ``audit-tokenizer`` to the CLI's subparsers."""
    _add_split(subparsers)
    _add_export(subparsers)
    _add_report(subparsers)
    _add_audit(subparsers)


def _add_split(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "split",
        help="seeded train/validation split, stratified by task, optionally grouped",
        description=(
            "Write train.json and validation.json (and split.json with the figures). --group-by template or item\n"
            "keeps every record of one template or pool item on one side, so validation measures phrasings the\n"
            "model never saw. No record lands in both splits, and no validation record is a near-duplicate of a\n"
            "training record (offenders are moved to train, or dropped when grouping; split.json counts them)."
        ),
        epilog=SPLIT_EXAMPLE,
        run=run_split,
    )
    parser.add_argument("file", type=Path, help="dataset file: a JSON array or JSONL of records")
    parser.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder for train.json, validation.json, split.json"
    )
    _add_split_options(parser)


def _add_export(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "export",
        help="write a training-ready folder for alpaca, TRL, LLaMA-Factory, datasets ...",
        description=(
            "Split the dataset, write each split in the chosen format, and put a README.md beside the data that\n"
            "states the format and the prompt layout (templates/prompt.j2 rendered for a real record)."
        ),
        epilog=EXPORT_EXAMPLE,
        run=run_export,
    )
    parser.add_argument("file", type=Path, help="dataset file: a JSON array or JSONL of records")
    parser.add_argument("--to", required=True, choices=FORMATS, metavar="FORMAT", help=", ".join(FORMATS))
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="empty or new folder to write")
    parser.add_argument(
        "--force", action="store_true", help="replace the previous export in --out (refused if anything else is there)"
    )
    parser.add_argument(
        "--prompt-template", type=Path, metavar="FILE", help="prompt layout (default: templates/prompt.j2)"
    )
    _add_split_options(parser)


def _add_report(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "report",
        help="write a Hugging Face dataset card with figures and plots",
        description=(
            "Write a dataset card folder: README.md (the Hub's YAML header, with configs and dataset_info that\n"
            "`datasets` reads), data/train.json (the records), report.json and plots/*.png: counts per task,\n"
            "category, location and work type, length distributions, emoji, diversity, validation findings, the\n"
            "build manifest and one example per task. Plot labels are ASCII (Korean names romanized, the card's\n"
            "tables give the Hangul), so no Hangul font is needed. Plots need matplotlib (the report extra);\n"
            "without it the card is written and says the plots were skipped."
        ),
        epilog=REPORT_EXAMPLE,
        run=run_report,
    )
    parser.add_argument("file", type=Path, help="dataset file: a JSON array or JSONL of records")
    parser.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="card folder: README.md, data/, report.json, plots/"
    )
    parser.add_argument("--tokenizer", type=Path, metavar="DIR", help="also report token lengths with this tokenizer")
    parser.add_argument(
        "--prompt-template", type=Path, metavar="FILE", help="prompt layout for token lengths (default prompt.j2)"
    )
    parser.add_argument(
        "--license",
        type=_license,
        default="other",
        metavar="ID",
        help="the card's Hub licence id (default other: license_name and a LICENSE.md to fill in)",
    )
    parser.add_argument("--no-diversity", action="store_true", help="skip the Kiwi diversity figures")
    parser.add_argument("--no-plots", action="store_true", help="do not draw plots")


def _add_audit(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "audit-tokenizer",
        help="find records a tokenizer and max_length would damage, before training",
        description=(
            "Render every record with the training prompt layout (prompt + output + eos) and report token\n"
            "lengths, the records max_length would truncate (and whether the completion or only its eos is cut),\n"
            "characters the tokenizer maps to unk, drops, changes or spells in byte pieces, whether '\\n' survives,\n"
            "and what to do about each. Needs transformers (the train extra)."
        ),
        epilog=AUDIT_EXAMPLE,
        run=run_audit,
    )
    parser.add_argument("file", type=Path, help="dataset file: a JSON array or JSONL of records")
    parser.add_argument("--tokenizer", type=Path, required=True, metavar="DIR", help="local tokenizer folder")
    parser.add_argument(
        "--max-length", type=int, default=1024, metavar="N", help="training max_length (default 1024, as train and TRL)"
    )
    parser.add_argument(
        "--prompt-template", type=Path, metavar="FILE", help="prompt layout (default: templates/prompt.j2)"
    )
    parser.add_argument("--json", action="store_true", help="print the audit as JSON on stdout")


def run_split(args: argparse.Namespace) -> int:
    from .progress import stderr_reporter
    from .split import check_split_folder, describe_split, read_source, split_source, write_split

    reporter = stderr_reporter()
    check_split_folder(args.out)  # before the work, so a refused folder costs nothing
    source = read_source(args.file)
    split = split_source(source, args.val_ratio, args.seed, args.group_by, args.threshold, reporter=reporter)
    paths = write_split(source, split, args.out, reporter=reporter)
    print(describe_split(split.report))
    print("wrote " + ", ".join(str(path) for path in paths.values()))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from .export import describe_export, export_dataset
    from .progress import stderr_reporter
    from .prompt import load_prompt_layout
    from .split import read_source

    layout = load_prompt_layout(args.prompt_template)
    source = read_source(args.file)
    result = export_dataset(
        source,
        args.to,
        args.out,
        val_ratio=args.val_ratio,
        seed=args.seed,
        group_by=args.group_by,
        threshold=args.threshold,
        layout=layout,
        force=args.force,
        reporter=stderr_reporter(),
    )
    print(describe_export(result))
    return 0


def run_report(args: argparse.Namespace) -> int:
    from .progress import stderr_reporter
    from .prompt import load_prompt_layout
    from .report import describe_report, write_report
    from .split import read_source

    layout = load_prompt_layout(args.prompt_template)
    source = read_source(args.file)
    result = write_report(
        source,
        args.out,
        tokenizer_dir=args.tokenizer,
        diversity=not args.no_diversity,
        plots=not args.no_plots,
        layout=layout,
        license_id=args.license,
        reporter=stderr_reporter(),
    )
    print(describe_report(result))
    return 0


def run_audit(args: argparse.Namespace) -> int:
    from .audit import audit_tokenizer, load_tokenizer, print_audit
    from .prompt import load_prompt_layout
    from .split import read_source

    layout = load_prompt_layout(args.prompt_template)
    source = read_source(args.file)
    tokenizer = load_tokenizer(args.tokenizer)
    report = audit_tokenizer(
        source.records, source.tasks, tokenizer, layout, max_length=args.max_length, tokenizer_name=str(args.tokenizer)
    )
    print_audit(report, as_json=args.json)
    return report.exit_code
