from __future__ import annotations

import pytest
from hypothesis import given, settings

from kochallenge_data.checks.spacing import SpacingChecker

from .strategies import mixed_text

checker = SpacingChecker()

# Kiwi is real here: these pairs pin its behaviour through our filter.
GLUED = [
    ("힐링할수있는시는건강!", "힐링할 수 있는 시는 건강!"),
    ("오늘도텀블러를챙겨요", "오늘도 텀블러를 챙겨요"),
    ("장바구니를챙기면 비닐봉지가 줄어요", "장바구니를 챙기면 비닐봉지가 줄어요"),
    ("계단을 이용하면 건강에도좋아요", "계단을 이용하면 건강에도 좋아요"),
]
CORRECT = [
    "오늘은 텀블러를 챙겨 보세요.",
    "분리수거를 해야 해요.",
    "일회용 컵 대신 텀블러를 써요.",
    "함께하면 더 즐거워요 🌱",
    "키캡 1️⃣ 이모지도 괜찮아요.",
    "이번 주에 80%를 줄였어요!",
    "두유 라테 주문하기",
    "사무직으로 일하는 분께 추천해요.",
]


@pytest.mark.parametrize(("glued", "fixed"), GLUED)
def test_glued_sentences_are_flagged_and_fixed(glued: str, fixed: str) -> None:
    result = checker.check(glued)
    assert not result.ok
    assert result.fixed() == fixed


@pytest.mark.parametrize("sentence", CORRECT)
def test_correct_sentences_pass(sentence: str) -> None:
    assert checker.check(sentence).ok


def test_auxiliary_verbs_and_symbols_are_not_flagged() -> None:
    assert checker.check("한번 해보세요").ok  # EC -> VX: both spellings allowed
    assert checker.check("잘했어요!🎉다음 주도 응원해요").ok  # no space demanded next to emoji


def test_zero_width_characters_do_not_corrupt_the_suggestion() -> None:
    result = checker.check("사\u200b건을 봐요")
    assert result.suggestion.replace(" ", "") == "사\u200b건을봐요"


def test_allowlist_silences_a_known_false_alarm() -> None:
    text = "쓰레기 되가져오기"
    assert not SpacingChecker().check(text).ok
    assert SpacingChecker(allowlist=["되가져오기"]).check(text).ok


@settings(max_examples=60)
@given(mixed_text)
def test_only_whitespace_ever_changes_and_nothing_raises(text: str) -> None:
    result = checker.check(text)
    assert result.fixed().replace(" ", "") == result.text.replace(" ", "")
    assert "".join(result.suggestion.split()) == "".join(result.text.split())
    assert len(result.fixed()) == len(result.text) + len(result.insertions)
