"""Score a model's real answers the way the dataset is scored.

Each answer is checked as ``validate`` checks a record whose output is that answer (format, challenge count,
spacing, Korean-only, feedback length and emoji), and then for what the record checks cannot see:

- ``truncated``: the answer ran into the token limit instead of ending with eos;
- fit to the input: a recommendation may name only pool challenges that the hard rules
  (:func:`~kochallenge_data.generate.selection.allowed`) allow for its input, and feedback may name only
  challenges of the week it answers.

How the input is read for fit is in :mod:`.evaluate_fit`; how answers are generated, in :mod:`.answers`.

:func:`score_answers` is pure (no model, no files), so ``train`` can call it on answers it generated itself.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checks.codes import CODES
from ..checks.record import RecordChecker, infer_task
from ..checks.spacing import SpacingChecker
from ..models import TASKS, Record, Task
from ..pools import Pools, default_pools_dir
from ..spacing_allowlist import load_allowlist
from ..text import nfc
from ..writer import json_bytes, write_atomic
from .answers import Finish, Generation, generate_with_model
from .evaluate_fit import Failure, FitJudge, judge_fit

__all__ = [
    "EVALUATION_CODES",
    "Evaluation",
    "Failure",
    "Generation",
    "ScoredAnswer",
    "generate_with_model",
    "score_answers",
    "select_records",
    "write_evaluation",
]

EVALUATION_CODES: Mapping[str, str] = {
    "truncated": "the answer hit the token limit instead of ending with eos (finish 'length')",
    "unknown_challenge": "a recommendation names a title that is no challenge of the pools",
    "challenge_not_allowed": "a pool challenge the hard rules do not allow for this input (place, work, season, "
    "presupposition or category)",
    "repeated_challenge": "a recommendation names the same challenge twice",
    "not_in_week": "feedback names a pool challenge that is not in the week's record",
}
"""Codes the evaluation adds to the record check codes (checks/codes.py); stable, like those."""

CHECK_BATCH = 500
EVALUATION_JSON = "evaluation.json"
EVALUATION_MD = "evaluation.md"
EXAMPLES_PER_CODE = 3


@dataclass(frozen=True)
class ScoredAnswer:
    """One answer with every check's verdict. ``fit`` is None when it could not be judged (see ``fit_note``)."""

    index: int
    task: Task
    instruction: str
    input: str
    reference: str
    answer: str
    finish: Finish
    tokens: int | None
    failures: tuple[Failure, ...]
    parses: bool | None  # parse_recommendation accepts it; None for feedback
    exact_match: bool
    fit: bool | None
    fit_note: str | None = None
    raw: str | None = None  # the generated text when stripping changed it

    @property
    def codes(self) -> list[str]:
        return sorted({f.code for f in self.failures})

    @property
    def valid(self) -> bool:
        return not self.failures

    @property
    def truncated(self) -> bool:
        return self.finish == "length"

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "index": self.index,
            "task": self.task,
            "input": self.input,
            "reference": self.reference,
            "answer": self.answer,
            "finish": self.finish,
            "tokens": self.tokens,
            "valid": self.valid,
            "failures": [{"code": f.code, "message": f.message} for f in self.failures],
            "parses": self.parses,
            "exact_match": self.exact_match,
            "fit": self.fit,
        }
        if self.fit_note:
            row["fit_note"] = self.fit_note
        if self.raw is not None:
            row["raw"] = self.raw
        return row


@dataclass(frozen=True)
class Evaluation:
    """Every scored answer, plus what produced them (model, data, settings) for the report."""

    items: tuple[ScoredAnswer, ...]
    run: Mapping[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> dict[str, Any]:
        """Figures per task and for all items together ("all")."""
        by_task: dict[str, list[ScoredAnswer]] = defaultdict(list)
        for item in self.items:
            by_task[item.task].append(item)
        figures: dict[str, Any] = {task: summarize(by_task[task]) for task in TASKS if by_task[task]}
        figures["all"] = summarize(self.items)
        return figures

    def to_json(self) -> dict[str, Any]:
        return {
            "run": dict(self.run),
            "summary": self.summary,
            "codes": {**CODES, **EVALUATION_CODES},
            "items": [item.to_json() for item in self.items],
        }


def summarize(items: Sequence[ScoredAnswer]) -> dict[str, Any]:
    """Rates are shares of ``count``, except fit (of the answers it could judge) and parse (of recommendations)."""
    count = len(items)
    codes = Counter(code for item in items for code in item.codes)
    judged = [item for item in items if item.fit is not None]
    recommendations = [item for item in items if item.parses is not None]
    tokens = [item.tokens for item in items if item.tokens is not None]
    return {
        "count": count,
        "valid_rate": _rate(sum(item.valid for item in items), count),
        "failure_rates": {code: _rate(n, count) for code, n in sorted(codes.items())},
        "truncated_rate": _rate(sum(item.truncated for item in items), count),
        "fit_rate": _rate(sum(bool(item.fit) for item in judged), len(judged)) if judged else None,
        "fit_judged": len(judged),
        "parse_rate": (
            _rate(sum(bool(item.parses) for item in recommendations), len(recommendations)) if recommendations else None
        ),
        "exact_match_rate": _rate(sum(item.exact_match for item in items), count),
        "mean_answer_chars": round(sum(len(nfc(item.answer)) for item in items) / count, 1) if count else 0.0,
        "mean_answer_tokens": round(sum(tokens) / len(tokens), 1) if tokens else None,
        "finish": dict(sorted(Counter(item.finish for item in items).items())),
    }


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


# --------------------------------------------------------------------------------------------
# choosing records


def select_records(tasks: Sequence[Task], limit: int | None, seed: int) -> list[int]:
    """Indices of ``limit`` records with the file's task mix, chosen by a seeded shuffle within each task.

    Each task gets its share of ``limit`` (largest remainder, so the shares add up), and takes the first
    records of its own shuffled list; the chosen indices come back in file order. No limit: every record.
    """
    if limit is None or limit >= len(tasks):
        return list(range(len(tasks)))
    rng = random.Random(seed)
    groups: dict[Task, list[int]] = {task: [i for i, t in enumerate(tasks) if t == task] for task in TASKS}
    exact = {task: limit * len(members) / len(tasks) for task, members in groups.items()}
    quota = {task: int(share) for task, share in exact.items()}
    by_remainder = sorted(TASKS, key=lambda task: (-(exact[task] - quota[task]), TASKS.index(task)))
    for task in by_remainder[: limit - sum(quota.values())]:
        quota[task] += 1
    chosen: list[int] = []
    for task in TASKS:
        members = list(groups[task])
        rng.shuffle(members)
        chosen += members[: quota[task]]
    return sorted(chosen)


# --------------------------------------------------------------------------------------------
# scoring


def score_answers(
    records: Sequence[Record | Mapping[str, str]],
    generations: Sequence[Generation],
    *,
    pools: Pools,
    expected_challenges: int = 3,
    check_spacing: bool = True,
    indexes: Sequence[int] | None = None,
    run: Mapping[str, Any] | None = None,
) -> Evaluation:
    """Score ``generations[i]`` as the answer to ``records[i]``; ``indexes`` are the records' places in their file."""
    if len(records) != len(generations):
        raise ValueError(f"{len(records)} records but {len(generations)} generations")
    rows = [r if isinstance(r, Record) else Record.model_validate(dict(r)) for r in records]
    tasks = [infer_task(r.model_dump()) for r in rows]
    answers = [g.text.strip() for g in generations]
    checker = RecordChecker(
        expected_challenges=expected_challenges,
        # Kiwi's known false alarms are facts about Kiwi, so validate uses the shipped list; so does this.
        spacing=SpacingChecker(load_allowlist(default_pools_dir())),
        check_spacing=check_spacing,
    )
    findings = []
    for start in range(0, len(rows), CHECK_BATCH):
        batch = range(start, min(start + CHECK_BATCH, len(rows)))
        candidates = [(i, {**rows[i].model_dump(), "output": answers[i]}, tasks[i]) for i in batch]
        findings += checker.check_many(candidates)
    judge = FitJudge(pools)
    items = []
    for i, (row, task, answer, generation) in enumerate(zip(rows, tasks, answers, generations, strict=True)):
        failures = [Failure(f.code, f"{f.field}: {f.message}") for f in findings[i]]
        if generation.finish == "length":
            tokens = f" after {generation.tokens} tokens" if generation.tokens is not None else ""
            failures.append(Failure("truncated", f"stopped at the token limit{tokens}, not at eos"))
        parses, fit, note, fit_failures = judge_fit(judge, task, row.input, answer)
        items.append(
            ScoredAnswer(
                index=indexes[i] if indexes is not None else i,
                task=task,
                instruction=row.instruction,
                input=row.input,
                reference=row.output,
                answer=answer,
                finish=generation.finish,
                tokens=generation.tokens,
                failures=tuple(failures + fit_failures),
                parses=parses,
                exact_match=answer == row.output,
                fit=fit,
                fit_note=note,
                raw=generation.text if generation.text != answer else None,
            )
        )
    return Evaluation(items=tuple(items), run=dict(run or {}))


# --------------------------------------------------------------------------------------------
# writing


def write_evaluation(evaluation: Evaluation, out_dir: Path) -> dict[str, Path]:
    """``evaluation.json`` (summary and every item) and ``evaluation.md`` (for people), each written atomically."""
    paths = {"json": out_dir / EVALUATION_JSON, "markdown": out_dir / EVALUATION_MD}
    write_atomic(paths["json"], json_bytes(evaluation.to_json()))
    write_atomic(paths["markdown"], render_markdown(evaluation).encode("utf-8"))
    return paths


SUMMARY_COLUMNS = (
    ("count", "count"),
    ("valid", "valid_rate"),
    ("truncated", "truncated_rate"),
    ("fit", "fit_rate"),
    ("parses", "parse_rate"),
    ("exact", "exact_match_rate"),
    ("chars", "mean_answer_chars"),
    ("tokens", "mean_answer_tokens"),
)


def summary_rows(evaluation: Evaluation) -> tuple[list[str], list[list[str]]]:
    """The summary as a header and one row of cells per task (and "all")."""
    header = ["task", *(name for name, _ in SUMMARY_COLUMNS)]
    rows = []
    for task, figures in evaluation.summary.items():
        cells = [task]
        for _, key in SUMMARY_COLUMNS:
            value = figures[key]
            if value is None:
                cells.append("-")
            elif key.endswith("_rate"):
                cells.append(f"{100 * value:.1f}%")
            elif isinstance(value, float):
                cells.append(f"{value:.1f}")
            else:
                cells.append(str(value))
        rows.append(cells)
    return header, rows


def summary_table(evaluation: Evaluation) -> str:
    """The summary and the failure codes as plain text, for the terminal."""
    header, rows = summary_rows(evaluation)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths, strict=True)))
        for r in [header, *rows]
    ]
    codes = evaluation.summary["all"]["failure_rates"]
    counts = Counter(code for item in evaluation.items for code in item.codes)
    lines.append("failures (answers with the code):" if codes else "failures: none")
    for code in codes:
        lines.append(f"  {code:<22} {counts[code]:>5}  {_meaning(code)}")
    return "\n".join(lines)


def render_markdown(evaluation: Evaluation) -> str:
    header, rows = summary_rows(evaluation)
    out = ["# Evaluation", ""]
    out += [f"- {key}: {_inline(value)}" for key, value in evaluation.run.items()]
    out += [
        "",
        "Rates are shares of the answers, except fit (of the answers it could judge) and parses "
        "(of the recommendations).",
        "",
    ]
    out += [_md_row(header), _md_row(["---"] * len(header)), *(_md_row(r) for r in rows), ""]
    tasks = [task for task in evaluation.summary if task != "all"]
    counts: dict[str, Counter[str]] = {task: Counter() for task in tasks}
    for item in evaluation.items:
        counts[item.task].update(item.codes)
    codes = sorted({code for counter in counts.values() for code in counter})
    out += ["## Failures by code", ""]
    if not codes:
        out += ["Every answer passed every check.", ""]
        return "\n".join(out)
    out += [_md_row(["code", *tasks, "meaning"]), _md_row(["---"] * (len(tasks) + 2))]
    out += [_md_row([code, *(str(counts[t][code]) for t in tasks), _meaning(code)]) for code in codes]
    out += ["", f"## First failing answers per code (up to {EXAMPLES_PER_CODE})", ""]
    for code in codes:
        out += [f"### {code}", ""]
        for item in [i for i in evaluation.items if code in i.codes][:EXAMPLES_PER_CODE]:
            messages = "; ".join(f.message for f in item.failures if f.code == code)
            out += [f"- record {item.index} ({item.task}, finish {item.finish}): {_inline(messages)}", ""]
            out += [*_fenced("input", item.input), *_fenced("answer", item.answer)]
            out += [*_fenced("reference", item.reference), ""]
    return "\n".join(out)


def _meaning(code: str) -> str:
    return EVALUATION_CODES.get(code) or CODES.get(code, "")


def _md_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def _inline(value: object) -> str:
    return str(value).replace("\n", " ")


def _fenced(label: str, text: str) -> list[str]:
    fence = "`" * max(3, _longest_backtick_run(text) + 1)
    return [f"  {label}:", "", f"  {fence}text", *(f"  {line}" for line in text.split("\n")), f"  {fence}"]


def _longest_backtick_run(text: str) -> int:
    longest = current = 0
    for char in text:
        current = current + 1 if char == "`" else 0
        longest = max(longest, current)
    return longest
