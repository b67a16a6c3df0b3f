"""The recommendation output format, both ways.

Newline format: line 1 is the recommend sentence, then one ``title: description`` line per
challenge. The service's parser also meets the JSON object form ``{"recommend": ..., "challenges":
[...]}`` that a served model may emit, so :func:`parse_recommendation` accepts both and the
dataset only ever contains the newline format.
"""

from __future__ import annotations

import re
from functools import lru_cache

import orjson
from pydantic import ValidationError

from .errors import FormatError
from .models import Challenge, Recommendation

SEPARATOR = ": "
# Challenge lines repeat across a dataset by design; lines up to this length are parsed once each.
CACHED_LINE = 200
# Markers the old datasets used and the service's parser choked on.
LIST_MARKER = re.compile(r"^\s*(?:\d+[.)]|[-*•·]|#+)\s*")


def format_recommendation(recommendation: Recommendation) -> str:
    """Render a recommendation in newline format; raise FormatError if it cannot round-trip."""
    check_field("recommend", recommendation.recommend)
    lines = [recommendation.recommend]
    for number, challenge in enumerate(recommendation.challenges, start=1):
        check_field(f"challenge {number} title", challenge.title)
        check_field(f"challenge {number} description", challenge.description)
        if LIST_MARKER.match(challenge.title):
            raise FormatError(f"challenge {number} title starts with a list marker: {challenge.title!r}")
        lines.append(f"{challenge.title}{SEPARATOR}{challenge.description}")
    return "\n".join(lines)


def parse_recommendation(text: str, expected_challenges: int | None = None) -> Recommendation:
    """Parse newline format or the JSON object form; FormatError says which line is wrong."""
    stripped = text.strip()
    recommendation = _parse_json_object(stripped) if stripped.startswith("{") else _parse_newline(text)
    if expected_challenges is not None and len(recommendation.challenges) != expected_challenges:
        raise FormatError(f"expected {expected_challenges} challenges, found {len(recommendation.challenges)}")
    return recommendation


def check_field(name: str, value: str) -> None:
    """FormatError unless ``value`` can stand as one field of the newline format (the sampler checks its
    recommend sentences with it)."""
    if not value:
        raise FormatError(f"{name} is empty")
    if "\n" in value or "\r" in value:
        raise FormatError(f"{name} contains a line break: {value!r}")
    if value != value.strip():
        raise FormatError(f"{name} has leading or trailing whitespace: {value!r}")


def _parse_newline(text: str) -> Recommendation:
    lines = text.split("\n")
    if len(lines) < 2:
        raise FormatError("expected a recommend sentence and at least one 'title: description' line")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise FormatError(f"line {number} is blank")
        if line != line.strip():
            raise FormatError(f"line {number} has leading or trailing whitespace")
    recommend = lines[0]
    if LIST_MARKER.match(recommend):
        raise FormatError("line 1 starts with a list marker; the recommend sentence stands alone")
    challenges = [_parse_challenge_line(line, number) for number, line in enumerate(lines[1:], start=2)]
    return Recommendation(recommend=recommend, challenges=challenges)


def _parse_challenge_line(line: str, number: int) -> Challenge:
    return _parsed_line(line, number) if len(line) <= CACHED_LINE else _challenge_from_line(line, number)


@lru_cache(maxsize=1 << 15)
def _parsed_line(line: str, number: int) -> Challenge:
    return _challenge_from_line(line, number)  # a Challenge is frozen, so one instance can serve every record


def _challenge_from_line(line: str, number: int) -> Challenge:
    if LIST_MARKER.match(line):
        raise FormatError(f"line {number} starts with numbering or a bullet: {line!r}")
    title, separator, description = line.partition(":")
    if not separator:
        raise FormatError(f"line {number} has no ':' between title and description: {line!r}")
    if not description.startswith(" ") or description.startswith("  "):
        raise FormatError(f"line {number}: write exactly one space after ':': {line!r}")
    title, description = title, description[1:]
    if not title or title != title.strip():
        raise FormatError(f"line {number}: the title is empty or padded with spaces: {line!r}")
    if not description.strip():
        raise FormatError(f"line {number}: the description is empty: {line!r}")
    return Challenge(title=title, description=description)


def _parse_json_object(text: str) -> Recommendation:
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise FormatError(f"output starts with '{{' but is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or set(data) != {"recommend", "challenges"}:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise FormatError(f"JSON output must have exactly 'recommend' and 'challenges', found {keys}")
    try:
        recommendation = Recommendation.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        place = ".".join(str(part) for part in first["loc"])
        raise FormatError(f"JSON output field {place}: {first['msg']}") from exc
    # Re-render to enforce the same field rules the newline format has.
    format_recommendation(recommendation)
    return recommendation


def recommendation_to_json(recommendation: Recommendation) -> str:
    """The JSON object form, for services and for converting old datasets."""
    return orjson.dumps(recommendation.model_dump()).decode()
