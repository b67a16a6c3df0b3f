"""Command line: parse arguments, call the library, turn KochallengeError into ``Error: ...``.

Exit codes: 0 success, 1 a user mistake or findings, 2 bad usage or unusable input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .commands import CliParser, add_command, positive_int, unit_interval
from .errors import KochallengeError

BUILD_EXAMPLE = """example:
  python -m kochallenge_data build --size 3000 --seed 42 --out multitask_dataset_v2.json
  python -m kochallenge_data build --mix base_info=2,free_text=1,feedback=1 --pools my_pools/"""

VALIDATE_EXAMPLE = """example:
  python -m kochallenge_data validate old_dataset.json
  python -m kochallenge_data validate data.jsonl --json > report.json
  python -m kochallenge_data validate old_dataset.json --fix fixed.json
  python -m kochallenge_data validate big.jsonl --workers 2"""

LINT_EXAMPLE = """example:
  python -m kochallenge_data lint-pools
  python -m kochallenge_data lint-pools --pools my_pools/"""


def program_name(argv0: str) -> str:
    """How the user ran us: ``kochallenge-data`` (the console script) or ``python -m kochallenge_data``."""
    return "kochallenge-data" if Path(argv0).name.startswith("kochallenge-data") else "python -m kochallenge_data"


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(
        prog=program_name(sys.argv[0]),
        description="Build, check and ship Korean instruction data for the eco-challenge chatbot.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"kochallenge_data {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_build(commands)
    _add_validate(commands)
    _add_lint(commands)
    _register_groups(commands)
    return parser


def _register_groups(commands: Any) -> None:
    """Command groups that live in their own modules; each imports its heavy stack only when run."""
    from . import stack_cli
    from .ml import cli as model_commands
    from .ml import evaluate_cli, train_cli
    from .serve import cli as serve_commands

    for group in (stack_cli, model_commands, train_cli, evaluate_cli, serve_commands):
        group.register(commands)


def _add_build(commands: Any) -> None:
    build = add_command(
        commands,
        "build",
        help="build multitask_dataset_v2.json from the pools and templates",
        description="Sample, render and check records, then write the dataset and its sidecars atomically.",
        epilog=BUILD_EXAMPLE,
        run=_run_build,
    )
    build.add_argument("--size", type=int, help="number of records (default 3000)")
    build.add_argument("--seed", type=int, help="random seed (default 42)")
    build.add_argument(
        "--out",
        type=dataset_out,
        metavar="FILE|DIR/",
        help="dataset file (default ./multitask_dataset_v2.json); a folder (an existing one, or a path ending in /) "
        "gets multitask_dataset_v2.json inside it, with its sidecars",
    )
    build.add_argument("--pools", type=Path, help="pools folder (default: the shipped pools)")
    build.add_argument("--templates", type=Path, help="templates folder (default: the shipped templates)")
    build.add_argument("--config", type=Path, help="TOML or JSON file with build options; flags override it")
    build.add_argument("--mix", help="task weights, e.g. base_info=1,free_text=1,feedback=1")
    build.add_argument("--no-diversity", action="store_true", help="skip the diversity statistics")
    build.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="processes that check records while this one draws them (the same bytes for any number; at most one "
        "per CPU is started)",
    )


def _add_validate(commands: Any) -> None:
    validate = add_command(
        commands,
        "validate",
        help="check any alpaca-style dataset (JSON array or JSONL)",
        description=(
            "Report every finding with record index, field and code. Exit 0 clean, 1 findings, 2 unusable input."
        ),
        epilog=VALIDATE_EXAMPLE,
        run=_run_validate,
    )
    validate.add_argument("file", type=Path, help="dataset file: a JSON array or JSONL of records")
    validate.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    validate.add_argument("--fix", type=Path, metavar="OUT", help="write a corrected copy to OUT")
    validate.add_argument(
        "--task", choices=["base_info", "free_text", "feedback"], help="treat every record as this task"
    )
    validate.add_argument("--challenges", type=positive_int, default=3, help="expected challenges per recommendation")
    validate.add_argument(
        "--threshold", type=unit_interval, default=0.8, help="near-duplicate Jaccard threshold, in (0, 1] (default 0.8)"
    )
    validate.add_argument("--no-spacing", action="store_true", help="skip the Kiwi spacing check")
    validate.add_argument(
        "--exact-spacing",
        action="store_true",
        help="run Kiwi's full spacing check on every text (slow); by default a per-word pre-check clears most",
    )
    validate.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="processes that check records (same output for any number; at most one per CPU is started)",
    )


def _add_lint(commands: Any) -> None:
    lint = add_command(
        commands,
        "lint-pools",
        help="check every pool phrase with the dataset checks",
        description="Render every pool phrase and run the spacing and Korean-only checks, naming file and line.",
        epilog=LINT_EXAMPLE,
        run=_run_lint,
    )
    lint.add_argument("--pools", type=Path, help="pools folder (default: the shipped pools)")


DEFAULT_DATASET_NAME = "multitask_dataset_v2.json"


def dataset_out(text: str) -> Path:
    """``build --out``: a file path, or a folder (existing, or written with a trailing slash) that gets the default
    file name; every other command's ``--out`` is a folder, so a folder here must not silently become a file."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give a file path or a folder")
    path = Path(text)
    if text.endswith(("/", "\\")) or path.is_dir():
        return path / DEFAULT_DATASET_NAME
    return path


def _run_build(args: argparse.Namespace) -> int:
    from .build import build_to_files, load_config_file, make_config, parse_mix
    from .progress import stderr_reporter

    values: dict[str, Any] = load_config_file(args.config) if args.config else {}
    flags = {
        "size": args.size,
        "seed": args.seed,
        "out": args.out,
        "pools": args.pools,
        "templates": args.templates,
        "mix": parse_mix(args.mix) if args.mix else None,
    }
    values.update({k: v for k, v in flags.items() if v is not None})
    if args.no_diversity:
        values["diversity"] = False
    config = make_config(values, str(args.config) if args.config else "options")
    if config.out.is_dir():  # `out = "data/"` in a config file follows the --out rule
        config = config.model_copy(update={"out": config.out / DEFAULT_DATASET_NAME})
    workers = min(args.workers, os.cpu_count() or 1)
    stats, paths = build_to_files(config, config.out, stderr_reporter(), workers=workers)
    print(_build_summary(stats, paths))
    return 0


def _build_summary(stats: dict[str, Any], paths: dict[str, Path]) -> str:
    lines = [f"built {stats['records']} records in {stats['seconds']} s"]
    for task, count in stats["per_task"].items():
        cap = stats["capacity"][task]
        cap_text = f"{cap:,}" if cap < 10**15 else "over 10^15"
        lines.append(f"  {task:<10} {count:>7}  (capacity {cap_text})")
    rejected = stats["rejected"]
    if rejected:
        lines.append("rejected and replaced: " + ", ".join(f"{k} {v}" for k, v in rejected.items()))
    else:
        lines.append("rejected and replaced: none")
    diversity = stats.get("diversity")
    if diversity:
        lines.append(
            "distinct-2 (Kiwi morphemes): " + ", ".join(f"{task} {d['distinct_2']}" for task, d in diversity.items())
        )
    lines.append(f"dataset:  {paths['dataset']}")
    lines.append(f"manifest: {paths['manifest']}")
    lines.append(f"metadata: {paths['meta']}  rejected: {paths['rejected']}")
    return "\n".join(lines)


def _run_validate(args: argparse.Namespace) -> int:
    from .progress import stderr_reporter
    from .validate import ReportWriter, ValidateOptions, validate_file

    options = ValidateOptions(
        task=args.task,
        expected_challenges=args.challenges,
        threshold=args.threshold,
        check_spacing=not args.no_spacing,
        spacing_precheck=not args.exact_spacing,
    )
    report = ReportWriter(as_json=args.json)
    # More processes than CPUs only load Kiwi more times (100,000 of them would never finish starting).
    workers = min(args.workers, os.cpu_count() or 1)
    result = validate_file(args.file, options, report, fixed_out=args.fix, workers=workers, reporter=stderr_reporter())
    report.finish(args.file, result)
    if args.fix:
        print(f"wrote {args.fix}: {result.changes_line()}", file=sys.stderr if args.json else sys.stdout)
    return 1 if result.findings else 0


def _run_lint(args: argparse.Namespace) -> int:
    from .lint import lint_pools, print_lint

    problems = lint_pools(args.pools)
    print_lint(problems)
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except KochallengeError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("Interrupted; nothing was written.", file=sys.stderr)
        return 130
    return code
