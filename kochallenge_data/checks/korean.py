"""Korean-only policy per output field: which characters each part of an output may contain."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

from emoji import EMOJI_DATA
from pydantic import BaseModel, ConfigDict

from ..text import character_ranges, grapheme_clusters, is_emoji_cluster, joins_a_neighbour


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


def _plain_pattern(policy: FieldPolicy) -> re.Pattern[str]:
    """Text made only of these characters passes without the per-cluster walk: each is a cluster of its own and
    allowed alone. Looked up by the policy's values (hashing the model itself costs more than the match)."""
    return _plain_pattern_for(policy.digits, policy.emoji, policy.punctuation)


@lru_cache(maxsize=32)
def _plain_pattern_for(digits: bool, emoji: bool, punctuation: str) -> re.Pattern[str]:
    allowed = "가-힣 " + ("0-9" if digits else "") + re.escape(punctuation)
    return re.compile(f"[{allowed}{_lone_emoji_class() if emoji else ''}]*")


@lru_cache(maxsize=1)
def _lone_emoji_class() -> str:
    """Emoji of one character that never join a neighbour into one cluster (no modifier, flag letter or joiner),
    for a character class: a run of them and plain characters is a run of allowed one-character clusters."""
    return character_ranges(key for key in EMOJI_DATA if len(key) == 1 and not joins_a_neighbour(key))


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
