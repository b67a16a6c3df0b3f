from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kochallenge_data.errors import FormatError
from kochallenge_data.formats import format_recommendation, parse_recommendation, recommendation_to_json
from kochallenge_data.models import Challenge, Recommendation

# Field text: no line breaks, no surrounding whitespace, not empty; titles also without ':'.
_chars = st.characters(
    blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85"
)
field_text = st.text(_chars, min_size=1, max_size=40).map(str.strip).filter(bool)
title_text = (
    field_text.map(lambda s: s.replace(":", ""))
    .map(str.strip)
    .filter(lambda s: bool(s) and not s[0].isdigit() and s[0] not in "-*•·#")
)
recommend_text = field_text.filter(lambda s: not s.startswith("{") and s[0] not in "-*•·#" and not s[0].isdigit())


@st.composite
def recommendations(draw: st.DrawFn) -> Recommendation:
    challenges = draw(st.lists(st.builds(Challenge, title=title_text, description=field_text), min_size=1, max_size=5))
    return Recommendation(recommend=draw(recommend_text), challenges=challenges)


@given(recommendations())
def test_parse_inverts_format(recommendation: Recommendation) -> None:
    assert parse_recommendation(format_recommendation(recommendation)) == recommendation


@given(recommendations())
def test_json_object_form_parses_to_the_same_recommendation(recommendation: Recommendation) -> None:
    assert parse_recommendation(recommendation_to_json(recommendation)) == recommendation


@given(recommendations())
def test_newline_format_has_one_line_per_challenge_and_no_padding(recommendation: Recommendation) -> None:
    lines = format_recommendation(recommendation).split("\n")
    assert len(lines) == 1 + len(recommendation.challenges)
    assert all(line == line.strip() and line for line in lines)


def test_known_output_renders_exactly() -> None:
    recommendation = Recommendation(
        recommend="도시에서 해 보기 좋은 챌린지예요.",
        challenges=[Challenge(title="텀블러 쓰기", description="일회용 컵을 줄여요.")],
    )
    assert (
        format_recommendation(recommendation) == "도시에서 해 보기 좋은 챌린지예요.\n텀블러 쓰기: 일회용 컵을 줄여요."
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("추천해요.", "at least one"),
        ("추천해요.\n\n텀블러: 좋아요.", "line 2 is blank"),
        ("추천해요.\n텀블러 좋아요.", "line 2 has no ':'"),
        ("추천해요.\n1. 텀블러: 좋아요.", "line 2 starts with numbering"),
        ("추천해요.\n- 텀블러: 좋아요.", "line 2 starts with numbering"),
        ("추천해요.\n텀블러:좋아요.", "exactly one space"),
        ("추천해요.\n텀블러: 좋아요. ", "line 2 has leading or trailing whitespace"),
        ('{"text": "추천해요."}', "exactly 'recommend' and 'challenges'"),
        ('{"recommend": "추천", "challenges": [{"title": "a"}]}', "challenges.0.description"),
        ("{not json", "not valid JSON"),
    ],
)
def test_parser_says_which_line_is_wrong(text: str, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_recommendation(text)


def test_expected_count_is_enforced() -> None:
    text = "추천해요.\n텀블러: 좋아요.\n손수건: 좋아요."
    assert len(parse_recommendation(text, expected_challenges=2).challenges) == 2
    with pytest.raises(FormatError, match="expected 3 challenges, found 2"):
        parse_recommendation(text, expected_challenges=3)


def test_title_with_colon_is_rejected_by_the_model() -> None:
    with pytest.raises(ValueError, match="never contains ':'"):
        Challenge(title="제목: 부제", description="설명")
