"""Per-record checks: the same function judges a freshly built record and a line of a foreign file."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeVar

import orjson
from emoji import EMOJI_DATA
from emoji.tokenizer import EmojiMatch, get_search_tree, tokenize
from pydantic import ValidationError

from ..formats import CACHED_LINE
from ..models import Finding, Task, WeeklyRecord
from ..text import (
    _MAY_BE_BROKEN,
    FEEDBACK_LIMIT,
    ZWJ,
    broken_sequences,
    character_ranges,
    escape_artifacts,
    nfc,
    strings_in,
)
from .korean import DEFAULT_POLICY, FieldPolicy, _plain_pattern, describe_span, disallowed_spans
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
        message = f"the record is {json_kind(record)}, not an object with instruction, input and output"
        return [Finding(index=index, field="record", code="missing_field", message=message)]
    findings = []
    for name in FIELDS:
        value = record.get(name)
        if not isinstance(value, str):
            what = "missing" if name not in record else f"{json_kind(value)}, not a string"
            findings.append(Finding(index=index, field=name, code="missing_field", message=f"{name} is {what}"))
        elif not value.strip():
            findings.append(Finding(index=index, field=name, code="empty_field", message=f"{name} is empty"))
    return findings


def json_kind(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words (a person reading a report knows no Python types)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


_FEEDBACK_INPUT = (
    'a feedback input is a weekly record: {"memberId": 1, "personalChallenges": [...], "groupChallenges": [...]}'
)
# What pydantic expected, by the first word of its error type (int_parsing, list_type, datetime_from_date_parsing).
_EXPECTED = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
    "list": "a list",
    "model": "an object",
    "dict": "an object",
    "datetime": "a date and time like 2026-01-05T09:00:00",
}


def weekly_record_problem(text: str) -> str | None:
    """Why ``text`` is not a feedback input, as a sentence naming the place inside it; None when it is one."""
    try:
        WeeklyRecord.model_validate_json(text)
    except ValidationError as exc:
        errors = exc.errors()
        more = len(errors) - 1
        return _describe_input_error(errors[0]) + (f", and {more} more problem{'s' * (more > 1)}" if more else "")
    return None


def _describe_input_error(error: Any) -> str:
    kind: str = error["type"]
    location: tuple[str | int, ...] = tuple(error["loc"])
    if kind == "json_invalid":
        return f"the input is not JSON ({error['ctx']['error']}); {_FEEDBACK_INPUT}"
    if kind in ("missing", "extra_forbidden"):
        owner = _json_path(location[:-1]) or "the weekly record"
        return (
            f"{owner} has no {location[-1]}" if kind == "missing" else f'{owner} has an unknown field "{location[-1]}"'
        )
    expected = _EXPECTED.get(kind.split("_")[0])
    if expected is None:  # a kind this shape cannot raise today: pydantic's own words, after the place
        return f"{_json_path(location) or 'the input'}: {error['msg']}"
    shown = orjson.dumps(error["input"]).decode()
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    if not location:
        return f"the input is {shown}, not {expected}; {_FEEDBACK_INPUT}"
    return f"{_json_path(location)} is {shown}, not {expected}"


def _json_path(location: tuple[str | int, ...]) -> str:
    """personalChallenges[0].isSuccess"""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


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
            problems = self.spacing.problems([text for _, parts in prepared for _, text in parts])
            for (findings, parts), (index, _, _) in zip(prepared, items, strict=True):
                for label, text in parts:
                    if text in problems:
                        findings.extend(_spacing_findings(index, label, problems[text]))
        return [findings for findings, _ in prepared]

    def _structural(self, index: int, record: Any, task: Task | None) -> tuple[list[Finding], list[tuple[str, str]]]:
        """Every check but spacing, plus the labelled texts that spacing should look at."""
        findings = check_fields(index, record)
        if any(f.code == "missing_field" for f in findings) or not isinstance(record, Mapping):
            return findings, []
        task = task or infer_task(record)
        output: str = record["output"]
        for name in FIELDS:
            if name == "input" and task == "feedback":
                findings += _json_values_broken_findings(index, name, record[name])
            else:
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
        if not has_emoji(output):
            findings.append(
                Finding(index=index, field="output", code="feedback_no_emoji", message="feedback has no emoji")
            )
        findings += _policy_findings(index, "output", output, self.policy["feedback"], "feedback")
        problem = weekly_record_problem(record["input"])
        if problem is not None:
            findings.append(Finding(index=index, field="input", code="bad_input", message=problem))
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
    if _plain_pattern(policy).fullmatch(text):
        return []  # disallowed_spans' own first test, without the calls around it
    spans = _repeated_spans(text, policy) if len(text) <= CACHED_LINE else _disallowed_by_words(text, policy)
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


def _disallowed_by_words(text: str, policy: FieldPolicy) -> tuple[tuple[int, int], ...]:
    return tuple(by_words(text, lambda piece: disallowed_spans(piece, policy)))


# Recommend sentences and challenge lines come back again and again in a dataset: each is walked once.
_repeated_spans = lru_cache(maxsize=1 << 14)(_disallowed_by_words)


def _may_hold_broken_text(text: str) -> bool:
    """False when neither test of :func:`_broken_findings` can find anything: escapes need a backslash, and
    broken sequences one of a few rare characters."""
    return "\\" in text or _MAY_BE_BROKEN.search(text) is not None


def _broken_findings(index: int, field_name: str, text: str) -> list[Finding]:
    if not _may_hold_broken_text(text):
        return []
    findings = [
        Finding(
            index=index,
            field=field_name,
            code="broken_text",
            message=f"{why} at {start}-{end}",
            span=(start, end),
        )
        # broken_sequences' own first test: most text has none of the characters that can break.
        for start, end, why in (by_words(text, broken_sequences) if _MAY_BE_BROKEN.search(text) else [])
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


def _json_values_broken_findings(index: int, field_name: str, text: str) -> list[Finding]:
    """A JSON input is judged by its decoded strings: ``\\uc190`` is how ``json.dumps`` writes 손 by default, not a
    double encoding; an escape that survives decoding is one. Offsets would point into a value, so none are given."""
    if not _may_hold_broken_text(text):
        return []  # without a backslash, every decoded string is a piece of the text as written
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return _broken_findings(index, field_name, text)
    findings = []
    for string in strings_in(value):
        for finding in _broken_findings(index, field_name, string):
            findings.append(finding.model_copy(update={"span": None, "message": f"{finding.message} in {string!r}"}))
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


# Speed only: the same answers as the functions they wrap, without walking every grapheme cluster of a
# text that has one emoji. tests/test_checks.py holds them to that on random text.

# Characters that never join the cluster before them and are never part of an emoji sequence by themselves.
_PLAIN = "\\t\\n\\r\\x20-\\x7e\\uac00-\\ud7a3"
_NOT_PLAIN = re.compile(f"[^{_PLAIN}]")
# A space is a cluster of its own unless a zero-width joiner pulls it in or a combining mark follows it.
_LONE_SPACE = re.compile(f"(?<!{ZWJ}) (?=[{_PLAIN}]|\\Z)")
Span = TypeVar("Span", tuple[int, int], tuple[int, int, str])


def by_words(text: str, find: Callable[[str], list[Span]]) -> list[Span]:
    """``find(text)`` for span finders that judge clusters one at a time, run separately on the words that
    hold a non-plain character and on the plain stretches between them (cut at lone spaces, which are
    clusters of their own), so only those words pay for the cluster walk."""
    marks = [m.start() for m in _NOT_PLAIN.finditer(text)]
    if not marks:
        return find(text)
    pieces: list[tuple[int, int]] = []  # words with a non-plain character, in order
    for at in marks:
        if pieces and at < pieces[-1][1]:
            continue
        pieces.append((_lone_space_before(text, at) + 1, _lone_space_after(text, at)))
    found: list[Span] = []
    last = 0
    for start, end in [*pieces, (len(text) + 1, len(text) + 1)]:
        for piece_start, piece_end in ((last, start - 1), (start, end)):
            if piece_end > piece_start and piece_start < len(text):
                found += [_shifted(span, piece_start) for span in find(text[piece_start:piece_end])]
        last = end + 1
    return found


def _lone_space_before(text: str, at: int) -> int:
    """The last lone space before ``at``, or -1."""
    space = text.rfind(" ", 0, at)
    while space != -1 and not _LONE_SPACE.match(text, space):
        space = text.rfind(" ", 0, space)
    return space


def _lone_space_after(text: str, at: int) -> int:
    """The first lone space after ``at``, or the end of the text."""
    space = text.find(" ", at)
    while space != -1 and not _LONE_SPACE.match(text, space):
        space = text.find(" ", space + 1)
    return len(text) if space == -1 else space


def _shifted(span: Span, by: int) -> Span:
    return (span[0] + by, span[1] + by, *span[2:])


@lru_cache(maxsize=1)
def _emoji_start() -> re.Pattern[str]:
    """Any character an emoji can begin with (the first level of the emoji library's search tree)."""
    return _character_class(get_search_tree())


@lru_cache(maxsize=1)
def _one_character_emoji() -> re.Pattern[str]:
    """Any character that is an emoji on its own (🥳): wherever it stands, the tokenizer finds an emoji there, or
    a longer one that holds it."""
    return _character_class(key for key in EMOJI_DATA if len(key) == 1)


def _character_class(characters: Iterable[str]) -> re.Pattern[str]:
    return re.compile(f"[{character_ranges(characters)}]")


def has_emoji(text: str) -> bool:
    """``bool(emoji_in(text))``: true at once for a one-character emoji; otherwise the library's tokenizer,
    started at the first character an emoji can begin with (before it nothing can change what the tokenizer
    finds), and stopped at the first emoji."""
    if _one_character_emoji().search(text):
        return True  # the common case, with no walk through the text
    start = _emoji_start().search(text)
    if start is None:
        return False
    return any(isinstance(token.value, EmojiMatch) for token in tokenize(text[start.start() :], keep_zwj=False))
