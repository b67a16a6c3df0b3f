"""The ``evaluate`` subcommand: generate answers to held-out records and score them like the dataset.

A thin layer over :mod:`kochallenge_data.ml.evaluate` (scoring, writing) and :mod:`.answers` (generating);
torch, transformers, peft and httpx load only when the handler runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ..commands import add_command, positive_float, positive_int
from ..errors import KochallengeError

EVALUATE_EXAMPLE = """example:
  python -m kochallenge_data evaluate --model runs/merged --data split/validation.json --limit 300 --out eval/merged
  python -m kochallenge_data evaluate --model runs/lora --data split/validation.json --out eval/lora
  python -m kochallenge_data evaluate --url http://localhost:8000 --data split/validation.json --out eval/vllm

--model takes a merged model directory or a train --out folder (base + adapter). --limit takes a seeded
sample that keeps the file's task mix: each task gets its share of N and its first records after a shuffle
with --seed. Writes OUT/evaluation.json (summary and every answer) and OUT/evaluation.md.
exit: 0 whatever the answers' quality (read the summary), 1 a user mistake, 2 an unusable --data file"""

DEFAULT_BATCH_SIZE = 8
DEFAULT_SEED = 42
DEFAULT_TIMEOUT_S = 120.0


def register(subparsers: Any) -> None:
    """Add ``evaluate`` to an argparse subparsers object."""
    parser = add_command(
        subparsers,
        "evaluate",
        help="generate answers with a model (or a vLLM server) and score them with the dataset's checks",
        description=(
            "Answer held-out records with a trained model, in-process (--model) or through an OpenAI-compatible "
            "server (--url), and score every answer as validate scores a record (format, challenge count, "
            "spacing, Korean-only, feedback length and emoji), plus truncation, fit to the input (pool "
            "challenges the input allows; feedback naming only the week's challenges), exact match and parsing."
        ),
        epilog=EVALUATE_EXAMPLE,
        run=run_evaluate,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, metavar="DIR", help="merged model directory or train --out folder")
    source.add_argument("--url", metavar="URL", help="OpenAI-compatible server, e.g. http://localhost:8000")
    parser.add_argument("--model-name", metavar="NAME", help="model name to send with --url (default: its first)")
    parser.add_argument(
        "--data", type=Path, required=True, metavar="FILE", help="dataset file (JSON array or JSONL) to answer"
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="where evaluation.json/.md go")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="answer N records (default: all)")
    parser.add_argument(
        "--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE, metavar="N", help="prompts at once (8)"
    )
    parser.add_argument(
        "--max-new-tokens",
        type=positive_int,
        metavar="N",
        help="answer length limit (default: what train_config.json records, else 256)",
    )
    parser.add_argument(
        "--prompt-template", type=Path, metavar="FILE", help="prompt template when DIR has no prompt.j2"
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, metavar="N", help="seed for choosing --limit records (42)"
    )
    parser.add_argument("--pools", type=Path, metavar="DIR", help="pools folder (default: the shipped pools)")
    parser.add_argument(
        "--challenges", type=positive_int, default=3, metavar="N", help="expected challenges per answer (3)"
    )
    parser.add_argument(
        "--timeout", type=positive_float, default=DEFAULT_TIMEOUT_S, metavar="S", help="seconds per --url answer"
    )
    parser.add_argument(
        "--guided-decoding",
        action="store_true",
        help="with --url: hold recommendation answers to the newline format by vLLM's structured_outputs regex, "
        "as serve does; run with and without it to measure what it changes",
    )


def _guided_regexes(records: list[dict[str, str]], expected: int) -> list[str | None]:
    """The newline-format regex for each recommendation record (what serve sends), none for feedback."""
    from ..checks.record import infer_task
    from ..serve.guided import recommendation_regex

    regex = recommendation_regex(expected)
    return [None if infer_task(r) == "feedback" else regex for r in records]


def run_evaluate(args: argparse.Namespace) -> int:
    from ..checks.record import infer_task
    from ..pools import load_pools
    from ..prompt import load_prompt_layout
    from ..split import usable_records
    from ..validate import read_dataset
    from .answers import DEFAULT_MAX_NEW_TOKENS, ServerSettings, generate_with_server, load_model, server_model_name
    from .evaluate import generate_with_model, score_answers, select_records, summary_table, write_evaluation

    if args.guided_decoding and args.url is None:
        raise KochallengeError("--guided-decoding goes with --url: only a vLLM server enforces the regex")
    if args.model_name and args.url is None:
        raise KochallengeError("--model-name goes with --url; a --model directory names itself")
    records = usable_records(args.data, read_dataset(args.data))
    pools = load_pools(args.pools)
    indexes = select_records([infer_task(r) for r in records], args.limit, args.seed)
    chosen = [records[i] for i in indexes]
    run: dict[str, Any] = {
        "data": str(args.data),
        "records_in_file": len(records),
        "answered": len(chosen),
        "selection": f"--limit {args.limit}, seed {args.seed}, task mix kept" if args.limit else "every record",
        "pools": str(pools.root),
        "batch_size": args.batch_size,
    }
    started = time.perf_counter()
    if args.model is not None:
        loaded = load_model(args.model)
        template = loaded.prompt_file or args.prompt_template
        if loaded.prompt_file and args.prompt_template:
            _note(f"using {loaded.prompt_file}, the template the model was trained with; --prompt-template ignored")
        layout = load_prompt_layout(template)
        max_new_tokens, origin = _max_new_tokens(args.max_new_tokens, loaded.max_new_tokens, DEFAULT_MAX_NEW_TOKENS)
        run.update(model=loaded.description, prompt_template=str(layout.path))
        run.update(max_new_tokens=max_new_tokens, max_new_tokens_from=origin)
        prompts = [layout.render(r["instruction"], r["input"]) for r in chosen]
        generations = generate_with_model(
            loaded.model,
            loaded.tokenizer,
            prompts,
            batch_size=args.batch_size,
            max_new_tokens=max_new_tokens,
            progress=_progress,
        )
    else:
        layout = load_prompt_layout(args.prompt_template)
        name = args.model_name or server_model_name(args.url, args.timeout)
        max_new_tokens = args.max_new_tokens or DEFAULT_MAX_NEW_TOKENS
        run.update(url=args.url, model_name=name, prompt_template=str(layout.path))
        run.update(
            max_new_tokens=max_new_tokens, max_new_tokens_from="--max-new-tokens" if args.max_new_tokens else "default"
        )
        prompts = [layout.render(r["instruction"], r["input"]) for r in chosen]
        settings = ServerSettings(url=args.url, model_name=name, max_new_tokens=max_new_tokens, timeout_s=args.timeout)
        regexes = _guided_regexes(chosen, args.challenges) if args.guided_decoding else None
        run.update(guided_decoding=bool(args.guided_decoding))
        generations = generate_with_server(
            settings, prompts, batch_size=args.batch_size, regexes=regexes, progress=_progress
        )
    run["generation_seconds"] = round(time.perf_counter() - started, 1)
    evaluation = score_answers(
        chosen, generations, pools=pools, expected_challenges=args.challenges, indexes=indexes, run=run
    )
    paths = write_evaluation(evaluation, args.out)
    print(summary_table(evaluation))
    for name, path in paths.items():
        print(f"{name:<9} {path}")
    return 0


def _max_new_tokens(flag: int | None, recorded: int | None, default: int) -> tuple[int, str]:
    """The flag, else what the run folder records, else the default; and which one it was."""
    if flag is not None:
        return flag, "--max-new-tokens"
    if recorded is not None:
        return recorded, "train_config.json"
    return default, "default"


def _progress(done: int, total: int) -> None:
    print(f"generated {done}/{total} answers", file=sys.stderr, flush=True)


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)
