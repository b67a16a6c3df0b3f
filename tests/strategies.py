"""Hypothesis strategies for Korean text with every kind of emoji sequence and invisible character."""

from __future__ import annotations

from hypothesis import strategies as st

EMOJI = [
    "🎉",
    "🌱",
    "♻️",
    "☀️",
    "👍🏽",
    "👨‍👩‍👧",
    "🧑‍🌾",
    "🏳️‍🌈",
    "🇰🇷",
    "1️⃣",
    "#️⃣",
    "❤️‍🔥",
    "🙌🏻",
    "💚",
]
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\ufe0f", "\u0301"]

hangul = st.integers(0xAC00, 0xD7A3).map(chr)
words = st.text(hangul, min_size=1, max_size=6)
pieces = st.one_of(
    words,
    words,
    st.sampled_from(EMOJI),
    st.sampled_from([" ", " ", ". ", "! ", "? ", ", ", "\n"]),
    st.sampled_from(INVISIBLE),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=3),
)
mixed_text = st.lists(pieces, max_size=40).map("".join)
korean_sentences = st.lists(st.one_of(words, st.sampled_from(EMOJI)), min_size=1, max_size=30).map(" ".join)
