"""Korean particle agreement: pick 이/가, 을/를, 으로/로 ... from the word's last sound.

Templates write ``{{ work_type | josa("으로/로") }}`` instead of hedges like ``사무직이(가)``,
which the model would otherwise learn.
"""

from __future__ import annotations

HANGUL_FIRST = 0xAC00
HANGUL_LAST = 0xD7A3
RIEUL_FINAL = 8  # index of ㄹ among the 28 final-consonant slots

# Pairs written as "after a consonant/after a vowel".
PARTICLE_PAIRS: frozenset[str] = frozenset(
    {
        "이/가",
        "은/는",
        "을/를",
        "과/와",
        "으로/로",
        "이에요/예요",
        "이나/나",
        "이랑/랑",
        "아/야",
        "이라고/라고",
        "이라서/라서",
        "이든/든",
        "으로써/로써",
        "이며/며",
    }
)

# How digits are read aloud decides their particle: 1 is 일 (ㄹ), 3 is 삼 (ㅁ), 2 is 이 (none).
_DIGIT_FINAL = {"0": 21, "1": 8, "2": 0, "3": 16, "4": 0, "5": 0, "6": 1, "7": 8, "8": 8, "9": 0}
# Closing marks that do not change how the word ends when read.
_TRANSPARENT_TAIL = "'\"’”)]』」》〉 "


def final_consonant(word: str) -> int:
    """The final-consonant index (0 = none, 8 = ㄹ) of the last readable character."""
    tail = word.rstrip(_TRANSPARENT_TAIL)
    if not tail:
        raise ValueError(f"cannot attach a particle to {word!r}: it has no readable last character")
    last = tail[-1]
    code = ord(last)
    if HANGUL_FIRST <= code <= HANGUL_LAST:
        return (code - HANGUL_FIRST) % 28
    if last in _DIGIT_FINAL:
        return _DIGIT_FINAL[last]
    raise ValueError(f"cannot attach a particle to {word!r}: it ends in {last!r}, not a Hangul syllable or digit")


def choose_particle(word: str, pair: str) -> str:
    """Return the form of ``pair`` ("이/가" style) that agrees with ``word``."""
    if pair not in PARTICLE_PAIRS:
        known = ", ".join(sorted(PARTICLE_PAIRS))
        raise ValueError(f"unknown particle pair {pair!r}; use one of: {known}")
    after_consonant, after_vowel = pair.split("/")
    final = final_consonant(word)
    if pair.startswith("으로"):
        return after_vowel if final in (0, RIEUL_FINAL) else after_consonant
    return after_consonant if final else after_vowel


def attach_particle(word: str, pair: str) -> str:
    """``word`` followed by the agreeing particle: ``attach_particle("도시", "을/를") == "도시를"``."""
    return word + choose_particle(word, pair)
