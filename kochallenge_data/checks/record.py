"""Per-record checks: the same function judges a freshly built record and a line of a foreign file."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from ..models import Finding, Task, WeeklyRecord
from ..text import FEEDBACK_LIMIT, broken_sequences, emoji_in, escape_artifacts, nfc
from .korean import DEFAULT_POLICY, FieldPolicy, describe_span, disallowed_spans
from .spacing import SpacingChecker, SpacingResult
from .structure import classify_json, line_problems, parse_or_explain

FIELDS = ("instruction", "input", "output")
_TRIPLE = re.compile(r"^[^,\n]+, [^,\n]+, [^,\n]+$")


def infer_task(record: Mapping[str, Any]) -> Task:
    """Guess a record's task from its input: feedback JSON, a base-info triple, or free text."""
    text = record.get("input")
    if not isinstance(text, str):
        return "free_text"
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            return "free_text"
        if isinstance(data, dict) and ("personalChallenges" in data or "groupChallenges" in data):
            return "feedback"
    if _TRIPLE.match(stripped):
        return "base_info"
    return "free_text"


def check_fields(index: int, record: Any) -> list[Finding]:
    """Presence and type of the three fields; the other checks need them."""
    if not isinstance(record, Mapping):
        return [Finding(index=index, field="record", code="missing_field", message="record is not an object")]
    findings = []
    for name in FIELDS:
        value = record.get(name)
        if not isinstance(value, str):
            what = "missing" if name not in record else f"a {type(value).__name__}, not a string"
            findings.append(Finding(index=index, field=name, code="missing_field", message=f"{name} is {what}"))
        elif not value.strip():
            findings.append(Finding(index=index, field=name, code="empty_field", message=f"{name} is empty"))
    return findings


@dataclass
class RecordChecker:
    """All per-record checks with their settings; spacing results are cached across records."""

    expected_challenges: int = 3
    feedback_limit: int = FEEDBACK_LIMIT
    policy: Mapping[str, FieldPolicy] = field(default_factory=lambda: dict(DEFAULT_POLICY))
    spacing: SpacingChecker = field(default_factory=SpacingChecker)
    check_spacing: bool = True

    def check(self, index: int, record: Any, task: Task | None = None) -> list[Finding]:
        return self.check_many([(index, record, task)])[0]

    def check_many(self, items: Sequence[tuple[int, Any, Task | None]]) -> list[list[Finding]]:
        """Check records in one batch so Kiwi sees every new sentence at once."""
        prepared = [self._structural(index, record, task) for index, record, task in items]
        if self.check_spacing:
            texts = [text for _, parts in prepared for _, text in parts]
            results = dict(zip(texts, self.spacing.check_many(texts), strict=True))
            for (findings, parts), (index, _, _) in zip(prepared, items, strict=True):
                for label, text in parts:
                    findings.extend(_spacing_findings(index, label, results[text]))
        return [findings for findings, _ in prepared]

    def _structural(self, index: int, record: Any, task: Task | None) -> tuple[list[Finding], list[tuple[str, str]]]:
        """Every check but spacing, plus the labelled texts that spacing should look at."""
        findings = check_fields(index, record)
        if any(f.code == "missing_field" for f in findings) or not isinstance(record, Mapping):
            return findings, []
        task = task or infer_task(record)
        output: str = record["output"]
        for name in FIELDS:
            findings += _broken_findings(index, name, record[name])
        if not output.strip():
            return findings, []
        if task == "feedback":
            return findings + self._feedback_findings(index, record), [("output", output)]
        return self._recommendation_findings(index, record, findings)

    def _feedback_findings(self, index: int, record: Mapping[str, Any]) -> list[Finding]:
        output: str = record["output"]
        findings = []
        length = len(nfc(output))
        if length > self.feedback_limit:
            findings.append(
                Finding(
                    index=index,
                    field="output",
                    code="feedback_too_long",
                    message=f"feedback is {length} characters; the limit is {self.feedback_limit}",
                )
            )
        if not emoji_in(output):
            findings.append(
                Finding(index=index, field="output", code="feedback_no_emoji", message="feedback has no emoji")
            )
        findings += _policy_findings(index, "output", output, self.policy["feedback"], "feedback")
        try:
            WeeklyRecord.model_validate_json(record["input"])
        except ValidationError as exc:
            first = exc.errors()[0]
            place = ".".join(str(p) for p in first["loc"])
            findings.append(
                Finding(
                    index=index,
                    field="input",
                    code="bad_input",
                    message=f"weekly record {place}: {first['msg']}",
                )
            )
        return findings

    def _recommendation_findings(
        self, index: int, record: Mapping[str, Any], findings: list[Finding]
    ) -> tuple[list[Finding], list[tuple[str, str]]]:
        output: str = record["output"]
        json_problem = classify_json(output)
        if json_problem:
            findings.append(Finding(index=index, field="output", code="json_output", message=json_problem))
            return findings, []
        for code, message in line_problems(output):
            findings.append(Finding(index=index, field="output", code=code, message=message))
        recommendation, problem = parse_or_explain(output)
        if recommendation is None:
            if not any(f.code in ("blank_line", "trailing_whitespace", "numbering") for f in findings):
                findings.append(Finding(index=index, field="output", code="not_newline_format", message=str(problem)))
            return findings, []
        count = len(recommendation.challenges)
        if count != self.expected_challenges:
            findings.append(
                Finding(
                    index=index,
                    field="output",
                    code="challenge_count",
                    message=f"{count} challenges; expected {self.expected_challenges}",
                )
            )
        parts = [("recommend", recommendation.recommend)]
        for number, challenge in enumerate(recommendation.challenges, start=1):
            parts += [
                (f"challenge {number} title", challenge.title),
                (f"challenge {number} description", challenge.description),
            ]
        for label, text in parts:
            policy_name = (
                "recommend"
                if label == "recommend"
                else ("challenge_title" if label.endswith("title") else "challenge_description")
            )
            findings += _policy_findings(index, "output", text, self.policy[policy_name], label)
        return findings, parts


def _policy_findings(index: int, field_name: str, text: str, policy: FieldPolicy, label: str) -> list[Finding]:
    spans = disallowed_spans(text, policy)
    if not spans:
        return []
    described = "; ".join(describe_span(text, span) for span in spans[:3])
    return [
        Finding(
            index=index,
            field=field_name,
            code="non_korean",
            message=f"{label}: {described}",
            span=spans[0],
        )
    ]


def _broken_findings(index: int, field_name: str, text: str) -> list[Finding]:
    findings = [
        Finding(
            index=index,
            field=field_name,
            code="broken_text",
            message=f"{why} at {start}-{end}",
            span=(start, end),
        )
        for start, end, why in broken_sequences(text)
    ]
    findings += [
        Finding(
            index=index,
            field=field_name,
            code="escape_artifact",
            message=f"literal escape {piece!r} at {start}; the text was encoded twice",
            span=(start, end),
        )
        for start, end, piece in escape_artifacts(text)
    ]
    return findings


def _spacing_findings(index: int, label: str, result: SpacingResult) -> list[Finding]:
    if result.ok:
        return []
    text = result.text
    words = ", ".join(repr(text[max(0, o - 4) : o + 4]) for o in result.insertions[:3])
    return [
        Finding(
            index=index,
            field="output",
            code="spacing",
            message=f"{label}: missing space in {words}",
            span=(result.insertions[0], result.insertions[0]),
            suggestion=result.suggestion,
        )
    ]
