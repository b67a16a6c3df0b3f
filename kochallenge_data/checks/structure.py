"""Shape checks for recommendation outputs: newline format, never JSON, exactly N challenges."""

from __future__ import annotations

import orjson

from ..errors import FormatError
from ..formats import LIST_MARKER, parse_recommendation
from ..models import Recommendation


def classify_json(text: str) -> str | None:
    """Describe a JSON output (the old mixed-format bug), or None when the text is not JSON."""
    stripped = text.strip()
    if not stripped.startswith(("{", "[")):
        return None
    try:
        data = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        return "output looks like broken JSON"
    if isinstance(data, dict) and "text" in data:
        return "output is a {'text': ...} wrapper around the answer"
    return "output is JSON; recommendations are always newline format"


def line_problems(text: str) -> list[tuple[str, str]]:
    """(code, message) for blank lines, padded lines and numbered or bulleted lines."""
    problems: list[tuple[str, str]] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            problems.append(("blank_line", f"line {number} is blank"))
            continue
        if line != line.strip():
            problems.append(("trailing_whitespace", f"line {number} starts or ends with whitespace"))
        if LIST_MARKER.match(line):
            problems.append(("numbering", f"line {number} starts with a number, bullet or marker: {line[:20]!r}"))
    return problems


def parse_or_explain(text: str) -> tuple[Recommendation | None, str | None]:
    try:
        return parse_recommendation(text), None
    except FormatError as exc:
        return None, str(exc)
