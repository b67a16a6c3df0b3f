"""The ``doctor``, ``merge`` and ``fix`` subcommands. The main CLI calls :func:`register`.

Handlers import their modules lazily; torch and transformers load only inside ``merge`` and
``doctor --load``. User mistakes raise :class:`~kochallenge_data.errors.KochallengeError` (the main
CLI prints ``Error: ...`` and exits with its ``exit_code``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..commands import add_command, positive_int

DOCTOR_EXAMPLE = """example:
  python -m kochallenge_data doctor out/merged
  python -m kochallenge_data doctor out/merged --base models/base --max-model-len 4096
  python -m kochallenge_data doctor out/merged --load --json > doctor.json
  python -m kochallenge_data doctor models/base --no-weights   # a router host: config + tokenizer only

exit: 0 sound, 1 problems found, 2 not a model directory or unreadable"""

MERGE_EXAMPLE = """example:
  python -m kochallenge_data merge --base models/base --adapter runs/r1 --out out/merged
  python -m kochallenge_data merge --base models/base --adapter out/lora --out out/merged --force
  python -m kochallenge_data merge --base models/base --adapter runs/r1 --out out/merged --max-shard-size 2GB

--adapter takes the train output folder (its adapter/ is used, and the base is checked against the
fingerprint in its train_config.json) or an adapter folder."""

FIX_EXAMPLE = """example:
  python -m kochallenge_data fix out/merged --base models/base --dry-run
  python -m kochallenge_data fix out/merged --base models/base"""


def _size(text: str) -> str:
    from .merge import parse_size

    try:
        parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def register(subparsers: Any) -> None:
    """Add ``doctor``, ``merge`` and ``fix`` to an argparse subparsers object."""
    doctor = add_command(
        subparsers,
        "doctor",
        help="check a model directory before serving it (files only; --load also loads it)",
        description=(
            "Check config.json, tokenizer files and safetensors headers for what breaks under vLLM "
            "(no torch needed, well under a second for 7B). Every finding has a stable code, the file, "
            "what breaks and the fix."
        ),
        epilog=DOCTOR_EXAMPLE,
        run=run_doctor,
    )
    doctor.add_argument("model_dir", type=Path, metavar="MODEL_DIR", help="the directory with config.json and weights")
    doctor.add_argument("--base", type=Path, metavar="BASE_DIR", help="compare every file with this base model")
    doctor.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    doctor.add_argument(
        "--max-model-len", type=positive_int, metavar="N", help="the --max-model-len you will serve with"
    )
    doctor.add_argument(
        "--load",
        action="store_true",
        help="also load the tokenizer as vLLM does, round-trip a Korean+emoji+newline probe and run one CPU "
        "forward pass (needs the train extra)",
    )
    doctor.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    doctor.add_argument(
        "--no-weights",
        dest="weights",
        action="store_false",
        help="check config.json, generation_config.json and the tokenizer files only, for a router host that "
        "forwards to vLLM elsewhere (the weights are checked where vLLM runs; --load then loads the tokenizer only)",
    )

    merge = add_command(
        subparsers,
        "merge",
        help="merge a LoRA adapter into its base, verified, ready for vllm serve",
        description=(
            "Check that the adapter belongs to the base (the fingerprint recorded at training, the tensor "
            "shapes), merge tensor by tensor in float32 and cast back to the base dtype without loading the "
            "model, keep the base metadata, reload and compare logits, run the doctor, write merge_report.json. "
            "Needs the train extra."
        ),
        epilog=MERGE_EXAMPLE,
        run=run_merge,
    )
    merge.add_argument("--base", type=Path, required=True, metavar="BASE", help="the base model directory")
    merge.add_argument(
        "--adapter",
        type=Path,
        required=True,
        metavar="ADAPTER",
        help="the LoRA adapter directory, or the train --out folder that holds it in adapter/",
    )
    merge.add_argument("--out", type=Path, required=True, metavar="OUT", help="a new directory for the merged model")
    merge.add_argument("--force", action="store_true", help="replace OUT if it exists (only after the merge verifies)")
    merge.add_argument("--device", choices=["cpu", "cuda"], help="where to merge (default: cuda if available)")
    merge.add_argument(
        "--max-model-len", type=positive_int, metavar="N", help="context length for the check and the vllm command"
    )
    merge.add_argument(
        "--allow-base-mismatch",
        action="store_true",
        help="merge even if the base differs from the fingerprint recorded at training (the report says so)",
    )
    merge.add_argument(
        "--max-shard-size",
        type=_size,
        metavar="SIZE",
        help="largest weight file, e.g. 2GB, 500MB, 4GiB (default: 5GB; a bigger tensor gets a file of its own)",
    )
    merge.add_argument("--json", action="store_true", help="print merge_report.json on stdout")

    fix = add_command(
        subparsers,
        "fix",
        help="copy the base config and tokenizer files over a merged directory where the weights agree",
        description=(
            "Copy config.json, generation_config.json and the tokenizer files from the base only where the "
            "merged weights agree with them, back up what is replaced, then run the doctor."
        ),
        epilog=FIX_EXAMPLE,
        run=run_fix,
    )
    fix.add_argument("model_dir", type=Path, metavar="MODEL_DIR", help="the merged model directory to repair")
    fix.add_argument("--base", type=Path, required=True, metavar="BASE_DIR", help="the base model directory")
    fix.add_argument("--dry-run", action="store_true", help="show what would change; change nothing")
    fix.add_argument(
        "--backup",
        type=Path,
        metavar="DIR",
        help="where to back up replaced files (default: MODEL_DIR.fix-backup-TIME)",
    )
    fix.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


def run_doctor(args: argparse.Namespace) -> int:
    from .doctor import doctor, format_report

    report = doctor(
        args.model_dir, base=args.base, max_model_len=args.max_model_len, load=args.load, weights=args.weights
    )
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(format_report(report))
    return report.exit_code(strict=args.strict)


def run_merge(args: argparse.Namespace) -> int:
    from .doctor import format_report
    from .merge import DEFAULT_MAX_SHARD_SIZE, merge_adapter

    result = merge_adapter(
        args.base,
        args.adapter,
        args.out,
        force=args.force,
        device=args.device,
        max_model_len=args.max_model_len,
        allow_base_mismatch=args.allow_base_mismatch,
        max_shard_size=args.max_shard_size or DEFAULT_MAX_SHARD_SIZE,
    )
    if args.json:
        print(json.dumps(result.report, ensure_ascii=False, indent=2))
        return 0
    verification = result.report["verification"]
    print(format_report(result.doctor))
    print(
        f"merged into {result.out} in {result.seconds:.1f} s "
        f"(max logit difference {verification['max_abs_logit_diff']}, top-1 agreement {verification['top1_agreement']})"
    )
    print(result.base_note)
    print(f"report: {result.out / 'merge_report.json'}")
    from ..serve.model_check import serving_hint

    print(serving_hint(args.adapter, merged_dir=result.out, base=args.base, max_model_len=args.max_model_len))
    return 0


def run_fix(args: argparse.Namespace) -> int:
    from .doctor import format_report
    from .fix import fix_model_dir, format_fix

    result = fix_model_dir(args.model_dir, args.base, dry_run=args.dry_run, backup_dir=args.backup)
    assert result.report is not None
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(format_fix(result, dry_run=args.dry_run))
        print(format_report(result.report))
    code = result.report.exit_code()
    if args.dry_run and code:
        print("(dry run: the doctor ran on the unchanged directory)", file=sys.stderr)
    return code
