"""Unicode-aware text helpers: normalization, grapheme clusters, emoji, and the one trimming function.

Lengths everywhere are code points after NFC (Python ``len``), the unit the service counts.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

import emoji as emoji_lib

FEEDBACK_LIMIT = 100
ZWJ = "\u200d"
VS15, VS16 = "\ufe0e", "\ufe0f"
KEYCAP = "\u20e3"
# Invisible characters that carry no meaning in this data and confuse Kiwi; ZWJ is kept (emoji use it).
ZERO_WIDTH = "\u200b\u200c\u2060\ufeff"
SENTENCE_END = ".!?…"
_WHITESPACE_RUN = re.compile(r"\s+")


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def normalize_for_compare(text: str) -> str:
    """NFC, zero-width characters removed, whitespace runs collapsed: for duplicate detection."""
    cleaned = nfc(text).translate({ord(c): None for c in ZERO_WIDTH})
    return _WHITESPACE_RUN.sub(" ", cleaned).strip()


def _is_regional(char: str) -> bool:
    return "\U0001f1e6" <= char <= "\U0001f1ff"


def character_ranges(characters: Iterable[str]) -> str:
    """The characters as the inside of a regex character class, consecutive code points as ranges: a class of
    1,400 single characters makes the regex engine slow."""
    ranges: list[list[int]] = []
    for code in sorted(ord(c) for c in characters):
        if ranges and code == ranges[-1][1] + 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "".join(f"{re.escape(chr(low))}-{re.escape(chr(high))}" for low, high in ranges)


def joins_a_neighbour(char: str) -> bool:
    """Whether :func:`grapheme_clusters` may put ``char`` in one cluster with the character before or after it."""
    return _extends(char) or _is_regional(char) or char == ZWJ


def _extends(char: str) -> bool:
    """Characters that belong to the cluster before them."""
    if char in (VS15, VS16, KEYCAP, ZWJ):
        return True
    if "\U0001f3fb" <= char <= "\U0001f3ff" or "\U000e0020" <= char <= "\U000e007f":
        return True  # skin tones, emoji tag sequences
    if "\u1160" <= char <= "\u11ff" or "\ud7b0" <= char <= "\ud7ff":
        return True  # conjoining Hangul vowels and final consonants
    return unicodedata.category(char) in ("Mn", "Me", "Mc")


def grapheme_clusters(text: str) -> Iterator[str]:
    """Split into user-perceived characters: emoji sequences, flags, keycaps and jamo stay whole.

    A simplified UAX #29: enough for Hangul and emoji, which is what this data holds.
    """
    i, n = 0, len(text)
    while i < n:
        j = i + 1
        if _is_regional(text[i]) and j < n and _is_regional(text[j]):
            j += 1
        while j < n:
            char = text[j]
            if text[j - 1] == ZWJ:
                j += 1  # the character a ZWJ joins to
            elif _extends(char):
                j += 1
            else:
                break
        yield text[i:j]
        i = j


def cluster_boundaries(text: str) -> list[int]:
    """Offsets where a cut does not split a cluster (0 and len(text) included)."""
    offsets = [0]
    for cluster in grapheme_clusters(text):
        offsets.append(offsets[-1] + len(cluster))
    return offsets


def is_emoji_cluster(cluster: str) -> bool:
    return emoji_lib.is_emoji(cluster) or any(emoji_lib.is_emoji(c) for c in cluster if c not in (ZWJ, VS16))


# Runs of characters outside the plain ones (tabs, line breaks, ASCII, Hangul syllables). Plain characters are never
# part of an emoji or an invisible sequence, except a keycap's base (1, #, *), which comes right before such a run:
# whoever looks for emoji or clusters reads each run with the character before it.
NOT_PLAIN_RUN = re.compile(r"[^\t\n\r\x20-\x7e\uac00-\ud7a3]+")


def emoji_in(text: str) -> list[str]:
    """The emoji in ``text``, in order: ``emoji.emoji_list`` read only where emoji can be (it walks every
    character, and Korean text is mostly syllables that never are)."""
    found: list[str] = []
    for run in NOT_PLAIN_RUN.finditer(text):
        found += _emoji_of(text[max(0, run.start() - 1) : run.end()])
    return found


@lru_cache(maxsize=4096)
def _emoji_of(piece: str) -> tuple[str, ...]:
    return tuple(item["emoji"] for item in emoji_lib.emoji_list(piece))


def trim(text: str, limit: int = FEEDBACK_LIMIT) -> str:
    """Shorten ``text`` to at most ``limit`` code points (after NFC), cutting where a reader would.

    Prefers the end of a sentence (keeping the emoji that close it), then a word boundary, and never
    cuts inside a grapheme cluster. The result is a prefix of ``nfc(text)``; already short text is
    returned as is, so trimming twice changes nothing.
    """
    normalized = nfc(text)
    if len(normalized) <= limit:
        return normalized
    clusters = list(grapheme_clusters(normalized))
    boundaries = [0]
    for cluster in clusters:
        boundaries.append(boundaries[-1] + len(cluster))
    sentence_cuts: list[int] = []
    word_cuts: list[int] = []
    for index, cluster in enumerate(clusters):
        end = boundaries[index + 1]
        if end > limit:
            break
        following = clusters[index + 1] if index + 1 < len(clusters) else ""
        if cluster[-1] in SENTENCE_END and following[:1] not in SENTENCE_END:
            sentence_cuts.append(end)
        elif is_emoji_cluster(cluster) and sentence_cuts and _only_space_and_emoji(normalized[sentence_cuts[-1] : end]):
            sentence_cuts.append(end)  # emoji that close the sentence travel with it
        if following.isspace():
            word_cuts.append(end)
    for cuts in (sentence_cuts, word_cuts):
        if cuts:
            return normalized[: cuts[-1]].rstrip()
    fitting = [b for b in boundaries if b <= limit]
    return normalized[: fitting[-1]].rstrip()


def _only_space_and_emoji(segment: str) -> bool:
    return all(c.isspace() or is_emoji_cluster(c) for c in grapheme_clusters(segment))


# Characters without which no text can be broken in the ways below: a cheap test skips clean text.
_MAY_BE_BROKEN = re.compile("[\u200d\ufe0e\ufe0f\u20e3\ufffd\U0001f1e6-\U0001f1ff\U0001f3fb-\U0001f3ff]")


def broken_sequences(text: str) -> list[tuple[int, int, str]]:
    """Spans of text that was cut or corrupted: (start, end, why)."""
    if _MAY_BE_BROKEN.search(text) is None:
        return []
    problems: list[tuple[int, int, str]] = []
    offset = 0
    for cluster in grapheme_clusters(text):
        start, end = offset, offset + len(cluster)
        offset = end
        if "\ufffd" in cluster:
            problems.append((start, end, "replacement character U+FFFD (bytes lost in decoding)"))
        elif cluster[0] in (ZWJ, VS15, VS16, KEYCAP) or (
            "\U0001f3fb" <= cluster[0] <= "\U0001f3ff" and len(cluster) == 1 and start > 0
        ):
            problems.append((start, end, "a joiner, variation selector or modifier with nothing to attach to"))
        elif cluster.endswith(ZWJ):
            problems.append((start, end, "an emoji sequence cut after its zero-width joiner"))
        elif len(cluster) == 1 and _is_regional(cluster):
            problems.append((start, end, "half of a flag (a lone regional indicator)"))
        elif ZWJ in cluster and not is_emoji_cluster(cluster):
            problems.append((start, end, "a zero-width joiner between characters that are not emoji"))
        elif (VS16 in cluster or KEYCAP in cluster) and not is_emoji_cluster(cluster):
            problems.append((start, end, "an emoji variation selector or keycap on a non-emoji character"))
    return problems


_ESCAPE = re.compile(r"\\(?:n|r|t|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})")


def escape_artifacts(text: str) -> list[tuple[int, int, str]]:
    """Literal escape sequences (``\\n``, ``\\uXXXX``) that a double-encoding left in the text."""
    if "\\" not in text:
        return []
    return [(m.start(), m.end(), m.group()) for m in _ESCAPE.finditer(text)]


def strings_in(data: Any) -> Iterator[str]:
    """Every string in parsed JSON or TOML, keys included, in document order; iterative, since hostile files nest
    a thousand levels deep."""
    waiting = [data]
    while waiting:
        item = waiting.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            waiting += [part for pair in reversed(item.items()) for part in reversed(pair)]
        elif isinstance(item, list):
            waiting += reversed(item)
