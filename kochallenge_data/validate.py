"""``validate`` for any alpaca-style dataset: read it, check every record, report, optionally fix."""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .checks.codes import CODES
from .checks.dedup import DEFAULT_THRESHOLD, DuplicateIndex
from .checks.record import RecordChecker, check_fields, infer_task
from .checks.spacing import SpacingChecker
from .errors import FormatError, InputFileError
from .formats import format_recommendation, parse_recommendation
from .models import Finding, Task
from .pools import default_pools_dir
from .spacing_allowlist import load_allowlist
from .text import FEEDBACK_LIMIT, normalize_for_compare, trim
from .writer import write_atomic

CHECK_BATCH = 1000


@dataclass
class ValidationReport:
    records: int
    tasks: list[Task]
    findings: list[Finding]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> dict[str, int]:
        return dict(sorted(Counter(f.code for f in self.findings).items()))

    def to_json(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "findings": [f.model_dump(exclude_none=True) for f in self.findings],
            "summary": self.summary,
            "info": self.info,
        }


def read_dataset(path: Path) -> list[Any]:
    """A JSON array or JSONL of records; anything unusable is an InputFileError naming the line."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputFileError(f"{path}: file not found") from None
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path}: not UTF-8 (byte {exc.start}: {exc.reason})") from exc
    stripped = text.lstrip()
    if not stripped:
        raise InputFileError(f"{path}: the file is empty")
    if stripped.startswith("["):
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise InputFileError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from exc
        if not isinstance(data, list):
            raise InputFileError(f"{path}: expected a JSON array of records")
        return data
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            raise InputFileError(f"{path}:{number}: JSONL line is not valid JSON: {exc.msg}") from exc
    return records


def validate_records(
    records: Sequence[Any],
    task: Task | None = None,
    expected_challenges: int = 3,
    threshold: float = DEFAULT_THRESHOLD,
    check_spacing: bool = True,
    feedback_limit: int = FEEDBACK_LIMIT,
    spacing: SpacingChecker | None = None,
) -> ValidationReport:
    """Every record-level check, then exact and near duplicates over input + output."""
    checker = RecordChecker(
        expected_challenges=expected_challenges,
        feedback_limit=feedback_limit,
        # Kiwi's known false alarms are facts about Kiwi, not about one dataset: use the shipped list.
        spacing=spacing or SpacingChecker(load_allowlist(default_pools_dir())),
        check_spacing=check_spacing,
    )
    tasks: list[Task] = [task or (infer_task(r) if isinstance(r, dict) else "free_text") for r in records]
    findings: list[Finding] = []
    for start in range(0, len(records), CHECK_BATCH):
        items = [(i, records[i], tasks[i]) for i in range(start, min(start + CHECK_BATCH, len(records)))]
        for record_findings in checker.check_many(items):
            findings.extend(record_findings)
    findings.extend(_duplicate_findings(records, threshold))
    findings.sort(key=lambda f: (f.index, f.field, f.code))
    return ValidationReport(
        records=len(records),
        tasks=tasks,
        findings=findings,
        info={
            "tasks": dict(sorted(Counter(tasks).items())),
            "same_input_different_output": _same_input_different_output(records),
        },
    )


def _usable(record: Any) -> bool:
    return not check_fields(0, record)


def _duplicate_findings(records: Sequence[Any], threshold: float) -> list[Finding]:
    index = DuplicateIndex(threshold)
    findings = []
    for i, record in enumerate(records):
        if not _usable(record):
            continue
        hit = index.add(f"{record['input']}\n{record['output']}", i)
        if hit is not None:
            kind, other, similarity = hit
            message = f"same as record {other}" if kind == "duplicate" else f"like record {other} ({similarity:.2f})"
            findings.append(Finding(index=i, field="output", code=kind, message=message))
    return findings


def _same_input_different_output(records: Sequence[Any]) -> int:
    """Inputs that appear with more than one output: normal for recommendations, worth knowing."""
    outputs: dict[str, set[str]] = defaultdict(set)
    for record in records:
        if _usable(record):
            outputs[normalize_for_compare(record["input"])].add(normalize_for_compare(record["output"]))
    return sum(1 for seen in outputs.values() if len(seen) > 1)


def print_report(report: ValidationReport, as_json: bool, source: Path, limit: int = 50) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    print(f"{source}: {report.records} records, {len(report.findings)} findings")
    for finding in report.findings[:limit]:
        line = f"  #{finding.index} {finding.field} {finding.code}: {finding.message}"
        if finding.suggestion:
            line += f"\n      suggestion: {finding.suggestion}"
        print(line)
    if len(report.findings) > limit:
        print(f"  ... {len(report.findings) - limit} more (use --json for all)")
    for code, count in report.summary.items():
        print(f"  {code:<22} {count:>6}  {CODES.get(code, '')}")
    print(f"  info: {report.info}")


def write_fixed(records: Sequence[Any], report: ValidationReport, out: Path) -> str:
    """Write a corrected copy; return a one-line account of what changed."""
    by_index: dict[int, set[str]] = defaultdict(set)
    for finding in report.findings:
        by_index[finding.index].add(finding.code)
    spacing = SpacingChecker(load_allowlist(default_pools_dir()))
    changes: Counter[str] = Counter()
    fixed: list[Any] = []
    for i, record in enumerate(records):
        codes = by_index.get(i, set())
        if codes & {"duplicate", "near_duplicate"}:
            changes["dropped_duplicate"] += 1
            continue
        if not _usable(record):
            changes["kept_unfixable"] += 1
            fixed.append(record)
            continue
        output = record["output"]
        if report.tasks[i] == "feedback":
            output, what = fix_feedback(output, codes, spacing)
        else:
            output, what = fix_recommendation(output, codes, spacing)
        changes.update(what)
        fixed.append({"instruction": record["instruction"], "input": record["input"], "output": output})
    # Unfixable records are kept as they were (a later validate shows them), so write rows as they are.
    write_atomic(out, orjson.dumps(fixed, option=orjson.OPT_INDENT_2) + b"\n")
    return ", ".join(f"{k} {v}" for k, v in sorted(changes.items())) or "no changes"


def fix_feedback(output: str, codes: set[str], spacing: SpacingChecker) -> tuple[str, list[str]]:
    what = []
    if "spacing" in codes:
        output = spacing.check(output).fixed()
        what.append("fixed_spacing")
    if "feedback_too_long" in codes or len(output) > FEEDBACK_LIMIT:
        trimmed = trim(output)
        if trimmed != output:
            output = trimmed
            what.append("trimmed")
    return output, what


def fix_recommendation(output: str, codes: set[str], spacing: SpacingChecker) -> tuple[str, list[str]]:
    what = []
    text = output
    if "json_output" in codes:
        text = _unwrap_json(text)
        what.append("converted_json")
    if codes & {"blank_line", "trailing_whitespace"}:
        text = "\n".join(line.strip() for line in text.split("\n") if line.strip())
        what.append("cleaned_lines")
    try:
        recommendation = parse_recommendation(text)
    except FormatError:
        return (text if what else output), what
    if "spacing" in codes:
        parts = recommendation.model_dump()
        parts["recommend"] = spacing.check(parts["recommend"]).fixed()
        for challenge in parts["challenges"]:
            challenge["title"] = spacing.check(challenge["title"]).fixed()
            challenge["description"] = spacing.check(challenge["description"]).fixed()
        recommendation = type(recommendation).model_validate(parts)
        what.append("fixed_spacing")
    return format_recommendation(recommendation), what


def _unwrap_json(text: str) -> str:
    """``{"text": "..."}`` wrappers hold the real answer inside; JSON objects are parsed as is."""
    try:
        data = orjson.loads(text.strip())
    except orjson.JSONDecodeError:
        return text
    if isinstance(data, dict) and isinstance(data.get("text"), str):
        return str(data["text"])
    return text
