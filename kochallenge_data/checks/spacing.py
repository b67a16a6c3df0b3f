"""Spacing check with Kiwi, used as a checker and never as a blind rewriter.

Kiwi's ``space()`` restores glued Korean well but also "corrects" allowed spellings (compound nouns,
auxiliary verbs) and breaks around emoji and zero-width characters. So this module:

1. runs Kiwi only on Hangul stretches between emoji and invisible characters, and discards any
   suggestion that changes more than whitespace;
2. flags a text only where Kiwi inserts a space right after a particle, an ending or a dependent
   noun (tags ``J*``, ``ETM``, ``EC``, ``EF``, ``ETN``, ``NNB``) or a comma or sentence end, but not
   between an ending and an auxiliary verb (``EC``→``VX``)
   and not before symbols or emoji;
3. offers Kiwi's full spacing as a suggestion, and ``fix`` applies only the flagged insertions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..text import ZERO_WIDTH, ZWJ, grapheme_clusters, is_emoji_cluster, nfc

# Particles and endings, plus dependent nouns (수, 것, 때): "할수있는" is the team's most common error;
# and sentence punctuation (SF, SP: "와,진짜"), after which the next word always takes a space.
FLAGGED_BEFORE = ("J", "ETM", "EC", "EF", "ETN", "NNB", "SF", "SP")
NOT_FLAGGED_AFTER = ("S", "W")  # symbols, numbers, emoji, URLs: Kiwi's spaces there are style


@lru_cache(maxsize=1)
def get_kiwi() -> Any:
    """One Kiwi per process, built on first use (about a second); its typo and multi-word dictionaries
    are off because spacing needs neither and they double the memory."""
    from kiwipiepy import Kiwi

    return Kiwi(load_typo_dict=False, load_multi_dict=False)


@dataclass(frozen=True)
class SpacingResult:
    """Offsets in the (NFC) text before which a space is missing, and Kiwi's whole suggestion."""

    text: str
    insertions: tuple[int, ...]
    suggestion: str

    @property
    def ok(self) -> bool:
        return not self.insertions

    def fixed(self) -> str:
        """The text with only the flagged spaces inserted."""
        pieces, last = [], 0
        for offset in self.insertions:
            pieces.append(self.text[last:offset])
            last = offset
        pieces.append(self.text[last:])
        return " ".join(pieces)


@dataclass(frozen=True)
class _Segment:
    start: int
    text: str


def _segments(text: str) -> list[_Segment]:
    """Stretches of text that contain Hangul, split at emoji and invisible characters."""
    segments: list[_Segment] = []
    current: list[str] = []
    start = offset = 0
    for cluster in grapheme_clusters(text):
        barrier = is_emoji_cluster(cluster) or any(c in ZERO_WIDTH or c == ZWJ for c in cluster)
        if barrier:
            if current:
                segments.append(_Segment(start, "".join(current)))
            current = []
            start = offset + len(cluster)
        else:
            if not current:
                start = offset
            current.append(cluster)
        offset += len(cluster)
    if current:
        segments.append(_Segment(start, "".join(current)))
    return [s for s in segments if any("\uac00" <= c <= "\ud7a3" for c in s.text)]


def _align(original: str, spaced: str) -> list[tuple[int, int]] | None:
    """Pairs (offset in original, offset of the new space in spaced) for each inserted space.

    None when Kiwi changed anything but whitespace: then its output is not trusted.
    """
    inserted: list[tuple[int, int]] = []
    i = j = 0
    while i < len(original) and j < len(spaced):
        a, b = original[i], spaced[j]
        if a == b or (a.isspace() and b.isspace()):
            i, j = i + 1, j + 1
        elif b == " ":
            inserted.append((i, j))
            j += 1
        elif a.isspace():
            i += 1
        else:
            return None
    if original[i:].strip() or spaced[j:].strip():
        return None
    return inserted


def _is_flagged(tokens: Sequence[Any], space_at: int) -> bool:
    before = [t for t in tokens if t.start + t.len == space_at]
    after = [t for t in tokens if t.start == space_at + 1]
    if not before or not after:
        return False
    left, right = before[-1].tag, after[0].tag
    if not left.startswith(FLAGGED_BEFORE) or right.startswith(NOT_FLAGGED_AFTER):
        return False
    if left == "NNB":
        # "수 있다", "것 같다": only before a verb or adjective; Kiwi misreads "거라면" as 거 + 라면 (noodles).
        return bool(right.startswith(("VV", "VA", "VX")))
    return not (left == "EC" and right.startswith("VX"))


class SpacingChecker:
    """Checks texts once each (results are cached) and in batches for volume."""

    def __init__(self, allowlist: Iterable[str] = ()) -> None:
        self._cache: dict[str, SpacingResult] = {}
        self._allowlist = tuple(a for a in allowlist if a)

    def check(self, text: str) -> SpacingResult:
        return self.check_many([text])[0]

    def check_many(self, texts: Sequence[str]) -> list[SpacingResult]:
        normalized = [nfc(t) for t in texts]
        todo = list(dict.fromkeys(t for t in normalized if t not in self._cache))
        if todo:
            for text, result in zip(todo, self._run(todo), strict=True):
                self._cache[text] = result
        return [self._cache[t] for t in normalized]

    def _run(self, texts: Sequence[str]) -> list[SpacingResult]:
        kiwi = get_kiwi()
        per_text = [_segments(t) for t in texts]
        flat = [segment.text for segments in per_text for segment in segments]
        spaced_flat = list(kiwi.space(flat)) if flat else []
        alignments = [_align(o, s) for o, s in zip(flat, spaced_flat, strict=True)]
        needs_tokens = [k for k, a in enumerate(alignments) if a]
        tokens_for = (
            dict(zip(needs_tokens, kiwi.tokenize([spaced_flat[k] for k in needs_tokens]), strict=True))
            if needs_tokens
            else {}
        )
        results: list[SpacingResult] = []
        k = 0
        for text, segments in zip(texts, per_text, strict=True):
            insertions: list[int] = []
            suggestion_parts: list[str] = []
            last = 0
            for segment in segments:
                alignment = alignments[k]
                spaced = spaced_flat[k] if alignment is not None else segment.text
                suggestion_parts += [text[last : segment.start], spaced]
                last = segment.start + len(segment.text)
                for at_original, at_spaced in alignment or []:
                    offset = segment.start + at_original
                    if _is_flagged(tokens_for[k], at_spaced) and not self._allowed(text, offset):
                        insertions.append(offset)
                k += 1
            suggestion_parts.append(text[last:])
            results.append(SpacingResult(text, tuple(insertions), "".join(suggestion_parts)))
        return results

    def _allowed(self, text: str, offset: int) -> bool:
        """True when the flagged offset falls inside an allowlisted phrase (Kiwi known to be wrong)."""
        for phrase in self._allowlist:
            start = text.find(phrase)
            while start != -1:
                if start < offset < start + len(phrase):
                    return True
                start = text.find(phrase, start + 1)
        return False
