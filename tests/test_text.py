from __future__ import annotations

import unicodedata

import emoji as emoji_lib
from hypothesis import given, settings
from hypothesis import strategies as st

from kochallenge_data.text import (
    broken_sequences,
    cluster_boundaries,
    emoji_in,
    escape_artifacts,
    grapheme_clusters,
    trim,
)

from .strategies import EMOJI, korean_sentences, mixed_text


@given(mixed_text, st.integers(1, 120))
def test_trim_is_a_short_prefix_and_idempotent(text: str, limit: int) -> None:
    trimmed = trim(text, limit)
    normalized = unicodedata.normalize("NFC", text)
    assert len(trimmed) <= limit
    assert normalized.startswith(trimmed)
    assert trim(trimmed, limit) == trimmed
    if len(normalized) <= limit:
        assert trimmed == normalized


@given(mixed_text, st.integers(1, 120))
def test_trim_never_cuts_inside_a_grapheme_cluster(text: str, limit: int) -> None:
    normalized = unicodedata.normalize("NFC", text)
    trimmed = trim(text, limit)
    assert len(trimmed.rstrip()) in cluster_boundaries(normalized) or len(trimmed) in cluster_boundaries(normalized)


@given(st.lists(st.sampled_from(EMOJI), min_size=1, max_size=60).map("".join))
def test_emoji_sequences_stay_whole(text: str) -> None:
    trimmed = trim(text, 37)
    assert trimmed == "".join(list(grapheme_clusters(text))[: len(list(grapheme_clusters(trimmed)))])


def test_trim_prefers_the_sentence_end_and_keeps_its_emoji() -> None:
    text = "텀블러 들고 출근하기를 끝까지 해냈네요! 🎉 " + "다음 주에도 지금처럼 작은 실천을 이어 가면 좋겠어요 " * 4
    assert trim(text, 60) == "텀블러 들고 출근하기를 끝까지 해냈네요! 🎉"


def test_trim_falls_back_to_a_word_boundary() -> None:
    text = "가나다 " * 40
    trimmed = trim(text, 100)
    assert trimmed.endswith("가나다") and len(trimmed) <= 100


def test_clusters_keep_families_flags_keycaps_and_skin_tones() -> None:
    assert list(grapheme_clusters("👨‍👩‍👧1️⃣🇰🇷👍🏽가")) == ["👨‍👩‍👧", "1️⃣", "🇰🇷", "👍🏽", "가"]


def test_broken_sequences_are_found() -> None:
    assert broken_sequences("좋아요 🎉") == []
    assert broken_sequences("👨‍👩‍👧 가족") == []
    assert next(why for *_, why in broken_sequences("좋아요\ufffd")).startswith("replacement character")
    assert broken_sequences("좋아요 👨\u200d")  # family cut after its joiner
    assert broken_sequences("좋아요 \U0001f1f0")  # half a flag
    assert broken_sequences("\ufe0f좋아요")  # a variation selector with nothing before it
    assert broken_sequences("가\u200d나")  # a joiner between letters


def test_escape_artifacts_are_found() -> None:
    assert escape_artifacts("첫 줄\\n둘째 줄") == [(3, 5, "\\n")]
    assert escape_artifacts("\\uD55C\\uAE00")[0][2] == "\\uD55C"
    assert escape_artifacts("줄바꿈\n정상") == []


@given(korean_sentences)
def test_clean_korean_with_whole_emoji_is_never_broken(text: str) -> None:
    assert broken_sequences(text) == []


EMOJI_PARTS = [
    "가",
    "나",
    " ",
    "1",
    "#",
    "*",
    "a",
    "\n",
    "\u200d",
    "\ufe0f",
    "\u20e3",
    "🌱",
    "👍",
    "🏽",
    "🇰",
    "🇷",
    "©",
    "❤",
]
emoji_like = st.text(
    st.one_of(
        st.sampled_from([*EMOJI_PARTS, "♻", "ㆍ", "·"]), st.characters(codec="utf-8", exclude_categories=("Cs",))
    ),
    max_size=30,
)


@settings(max_examples=300)
@given(emoji_like)
def test_emoji_in_finds_what_the_emoji_library_finds_in_the_whole_text(text: str) -> None:
    assert emoji_in(text) == [item["emoji"] for item in emoji_lib.emoji_list(text)]
