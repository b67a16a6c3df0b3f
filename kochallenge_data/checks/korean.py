"""Korean-only policy per output field: which characters each part of an output may contain."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

from pydantic import BaseModel, ConfigDict

from ..text import grapheme_clusters, is_emoji_cluster


class FieldPolicy(BaseModel):
    """Allowed character classes for one kind of text; anything else is reported with its span."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    digits: bool = False
    emoji: bool = False
    punctuation: str = ".,!?"


DEFAULT_POLICY: Mapping[str, FieldPolicy] = {
    "challenge_title": FieldPolicy(),
    "challenge_description": FieldPolicy(),
    "recommend": FieldPolicy(emoji=True),
    "feedback": FieldPolicy(digits=True, emoji=True, punctuation=".,!?~…"),
}


def _is_hangul_syllable(char: str) -> bool:
    return "\uac00" <= char <= "\ud7a3"


def _allowed(cluster: str, policy: FieldPolicy) -> bool:
    if len(cluster) == 1:
        char = cluster
        if _is_hangul_syllable(char) or char == " ":
            return True
        if char in policy.punctuation:
            return True
        if policy.digits and "0" <= char <= "9":
            return True
    return policy.emoji and is_emoji_cluster(cluster)


@lru_cache(maxsize=32)
def _plain_pattern(policy: FieldPolicy) -> re.Pattern[str]:
    """Text made only of these characters passes without the per-cluster walk."""
    digits = "0-9" if policy.digits else ""
    return re.compile(f"[가-힣 {digits}{re.escape(policy.punctuation)}]*")


def disallowed_spans(text: str, policy: FieldPolicy) -> list[tuple[int, int]]:
    """Runs of characters the policy forbids, as (start, end) offsets into ``text``."""
    if _plain_pattern(policy).fullmatch(text):
        return []
    spans: list[tuple[int, int]] = []
    offset = 0
    for cluster in grapheme_clusters(text):
        end = offset + len(cluster)
        if not _allowed(cluster, policy):
            if spans and spans[-1][1] == offset:
                spans[-1] = (spans[-1][0], end)
            else:
                spans.append((offset, end))
        offset = end
    return spans


def describe_span(text: str, span: tuple[int, int]) -> str:
    piece = text[span[0] : span[1]]
    if any("a" <= c.lower() <= "z" for c in piece):
        kind = "Latin letters"
    elif any(c.isdigit() for c in piece):
        kind = "digits"
    elif any("\u3131" <= c <= "\u318e" for c in piece):
        kind = "bare jamo"
    elif any(is_emoji_cluster(c) for c in grapheme_clusters(piece)):
        kind = "emoji"
    else:
        kind = "symbols"
    return f"{kind} {piece!r} at {span[0]}-{span[1]}"
