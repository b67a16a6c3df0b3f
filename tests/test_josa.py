from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kochallenge_data.josa import PARTICLE_PAIRS, attach_particle, choose_particle

syllables = st.integers(0xAC00, 0xD7A3).map(chr)
words = st.text(syllables, min_size=1, max_size=6)


def has_final(word: str) -> bool:
    return (ord(word[-1]) - 0xAC00) % 28 != 0


def final_is_rieul(word: str) -> bool:
    return (ord(word[-1]) - 0xAC00) % 28 == 8


@given(words, st.sampled_from(sorted(PARTICLE_PAIRS - {"으로/로", "으로써/로써"})))
def test_particle_follows_the_final_consonant(word: str, pair: str) -> None:
    after_consonant, after_vowel = pair.split("/")
    expected = after_consonant if has_final(word) else after_vowel
    assert choose_particle(word, pair) == expected
    assert attach_particle(word, pair) == word + expected


@given(words)
def test_euro_ro_takes_ro_after_rieul_and_vowels(word: str) -> None:
    expected = "로" if not has_final(word) or final_is_rieul(word) else "으로"
    assert choose_particle(word, "으로/로") == expected


@pytest.mark.parametrize(
    ("word", "pair", "expected"),
    [
        ("도시", "을/를", "도시를"),
        ("바닷가", "이/가", "바닷가가"),
        ("산", "이/가", "산이"),
        ("사무직", "으로/로", "사무직으로"),
        ("재택근무", "으로/로", "재택근무로"),
        ("서울", "으로/로", "서울로"),
        ("비건", "이에요/예요", "비건이에요"),
        ("플로깅", "과/와", "플로깅과"),
        ("에너지 절약", "은/는", "에너지 절약은"),
        ("'텀블러'", "을/를", "'텀블러'를"),
        ("3", "을/를", "3을"),
        ("2", "을/를", "2를"),
        ("1", "으로/로", "1로"),
    ],
)
def test_known_words(word: str, pair: str, expected: str) -> None:
    assert attach_particle(word, pair) == expected


def test_unreadable_word_and_unknown_pair_fail_clearly() -> None:
    with pytest.raises(ValueError, match="not a Hangul syllable or digit"):
        choose_particle("ABC", "을/를")
    with pytest.raises(ValueError, match="unknown particle pair"):
        choose_particle("도시", "을(를)")
