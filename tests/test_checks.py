"""Property tests for the record checks: valid records pass, each kind of damage gets its code."""

from __future__ import annotations

import json

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from kochallenge_data.checks.korean import DEFAULT_POLICY, disallowed_spans
from kochallenge_data.checks.record import RecordChecker, weekly_record_problem
from kochallenge_data.formats import format_recommendation, recommendation_to_json
from kochallenge_data.models import Challenge, Recommendation, WeeklyRecord

from .strategies import EMOJI, words

checker = RecordChecker(check_spacing=False)
korean_phrase = st.lists(words, min_size=1, max_size=5).map(" ".join)


@st.composite
def recommendations(draw: st.DrawFn, count: int = 3) -> Recommendation:
    challenges = [
        Challenge(title=draw(korean_phrase), description=draw(korean_phrase) + draw(st.sampled_from(["", ".", "!"])))
        for _ in range(count)
    ]
    return Recommendation(
        recommend=draw(korean_phrase) + draw(st.sampled_from(["", ".", " 🌱"])), challenges=challenges
    )


def codes(output: str, input_text: str = "도시, 사무직, 비건") -> set[str]:
    return {f.code for f in checker.check(0, {"instruction": "추천해 주세요.", "input": input_text, "output": output})}


@given(recommendations())
def test_a_valid_recommendation_has_no_findings(recommendation: Recommendation) -> None:
    assert codes(format_recommendation(recommendation)) == set()


@given(recommendations())
def test_json_forms_are_always_json_output(recommendation: Recommendation) -> None:
    assert "json_output" in codes(recommendation_to_json(recommendation))
    assert "json_output" in codes('{"text": "' + format_recommendation(recommendation).replace("\n", "\\n") + '"}')


@given(recommendations(), st.integers(1, 3), st.sampled_from(["1. ", "- ", "* ", "• ", "## "]))
def test_numbering_or_bullets_are_caught(recommendation: Recommendation, line: int, marker: str) -> None:
    lines = format_recommendation(recommendation).split("\n")
    lines[line] = marker + lines[line]
    assert "numbering" in codes("\n".join(lines))


@given(recommendations(), st.integers(1, 3))
def test_blank_lines_and_padding_are_caught(recommendation: Recommendation, line: int) -> None:
    lines = format_recommendation(recommendation).split("\n")
    assert "blank_line" in codes("\n".join([*lines[:line], "", *lines[line:]]))
    padded = [*lines]
    padded[line] += " "
    assert "trailing_whitespace" in codes("\n".join(padded))


@given(st.integers(1, 6).filter(lambda n: n != 3), st.data())
def test_wrong_challenge_count_is_caught(count: int, data: st.DataObject) -> None:
    assert "challenge_count" in codes(format_recommendation(data.draw(recommendations(count))))


@given(korean_phrase, st.sampled_from(["ABC", "ㅋㅋ", "#", "3", "http", "🎉", "`"]), st.integers(0, 5))
def test_korean_only_policy_reports_the_offending_span(phrase: str, intruder: str, where: int) -> None:
    at = min(where, len(phrase))
    text = phrase[:at] + intruder + phrase[at:]
    spans = disallowed_spans(text, DEFAULT_POLICY["challenge_title"])
    assert spans and text[spans[0][0] : spans[0][1]].find(intruder[0]) != -1


@given(korean_phrase, st.sampled_from(EMOJI), st.integers(0, 99))
def test_feedback_allows_digits_and_emoji_but_not_past_100(phrase: str, emoji: str, count: int) -> None:
    week = '{"memberId":1,"personalChallenges":[],"groupChallenges":[]}'
    output = f"{phrase} {count}번 했어요! {emoji}"
    found = codes(output, week)
    assert "non_korean" not in found
    assert ("feedback_too_long" in found) == (len(output) > 100)


# The speed-only helpers in checks/record.py must give exactly what the functions they stand for give.

from emoji import EMOJI_DATA  # noqa: E402

from kochallenge_data.checks import korean  # noqa: E402
from kochallenge_data.checks.record import by_words, has_emoji  # noqa: E402
from kochallenge_data.text import broken_sequences, emoji_in, grapheme_clusters  # noqa: E402

from .strategies import INVISIBLE, mixed_text  # noqa: E402

spaced_mixed_text = st.lists(
    st.one_of(mixed_text, st.sampled_from([" ", "  ", " \u0301", "\u200d ", " \U0001f1f0", "1\ufe0f\u20e3 "])),
    max_size=6,
).map("".join)


@settings(max_examples=300)
@given(spaced_mixed_text)
def test_word_by_word_span_finders_match_the_whole_text_walk(text: str) -> None:
    assert by_words(text, broken_sequences) == broken_sequences(text)
    for policy in DEFAULT_POLICY.values():
        assert by_words(text, lambda piece, p=policy: disallowed_spans(piece, p)) == disallowed_spans(text, policy)


ONE_CHARACTER_EMOJI = sorted(key for key in EMOJI_DATA if len(key) == 1)


@settings(max_examples=500)
@given(
    st.one_of(
        spaced_mixed_text,
        st.lists(st.sampled_from([*EMOJI, *INVISIBLE, "가", " ", "1", "#"])).map("".join),
        # Every emoji of one character, beside joiners, selectors, keycap bases and other emoji.
        st.lists(
            st.one_of(st.sampled_from(ONE_CHARACTER_EMOJI), st.sampled_from([*INVISIBLE, "\u20e3", "1", "가"]))
        ).map("".join),
    )
)
def test_has_emoji_matches_the_emoji_library(text: str) -> None:
    assert has_emoji(text) == bool(emoji_in(text))


WEEK_KEYS = ["memberId", "personalChallenges", "groupChallenges", "id", "title", "isSuccess"]
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(WEEK_KEYS), inner, max_size=4),
    max_leaves=8,
)


@settings(max_examples=150)
@given(_json_values)
def test_a_bad_feedback_input_is_always_a_sentence_naming_its_place(value: object) -> None:
    """Whatever the input holds, bad_input says where in it and what is wrong in plain words."""
    text = orjson.dumps(value).decode()
    problem = weekly_record_problem(text)
    if problem is None:
        WeeklyRecord.model_validate_json(text)  # only a real weekly record passes
        return
    assert not any(words in problem for words in ("Input should", "Field required", "Extra inputs", " : "))
    assert problem.startswith(("the ", "memberId", "personalChallenges", "groupChallenges", "id", "title")), problem


def test_a_feedback_input_written_with_ascii_escapes_is_not_an_escape_artifact() -> None:
    """json.dumps writes Korean as \\uXXXX by default: the team's old files are valid JSON, not double encodings."""
    week = {
        "memberId": 1,
        "personalChallenges": [{"title": "텀블러 챙기기", "isSuccess": True}],
        "groupChallenges": [],
    }
    record = {"instruction": "피드백을 써 줘", "input": json.dumps(week), "output": "텀블러 챙기기를 해냈어요! 🌱"}
    assert "\\\\u" in json.dumps(record["input"])
    codes = {f.code for f in RecordChecker(check_spacing=False).check(0, record, "feedback")}
    assert "escape_artifact" not in codes
    # Escaped twice: after decoding, the value still holds a literal backslash-u escape.
    escaped_twice = dict(record, input=json.dumps(week, ensure_ascii=False).replace("텀블러", "\\\\ud14c"))
    assert "\\ud14c" in json.loads(escaped_twice["input"])["personalChallenges"][0]["title"]
    findings = RecordChecker(check_spacing=False).check(0, escaped_twice, "feedback")
    assert [f.code for f in findings if f.code == "escape_artifact"] == ["escape_artifact"]


def test_a_deeply_nested_feedback_input_is_a_finding_not_a_crash() -> None:
    deep = "[" * 990 + "]" * 990
    findings = RecordChecker(check_spacing=False).check(
        0, {"instruction": "a", "input": deep, "output": "b"}, "feedback"
    )
    assert any(f.code == "bad_input" for f in findings)


_escapable_text = st.lists(
    st.one_of(spaced_mixed_text, st.sampled_from(["\\", "\\n", "\\u00e9", "\\\\", '"', "\ufffd"]))
).map("".join)


@settings(max_examples=300)
@given(_escapable_text)
def test_the_broken_text_shortcut_never_skips_a_finding(text: str) -> None:
    """A text the shortcut passes has neither escape artifacts nor broken sequences in the full walk."""
    from kochallenge_data.checks.record import _may_hold_broken_text
    from kochallenge_data.text import escape_artifacts

    if not _may_hold_broken_text(text):
        assert broken_sequences(text) == [] and escape_artifacts(text) == []


@settings(max_examples=200)
@given(st.recursive(_escapable_text, lambda inner: st.lists(inner, max_size=3), max_leaves=6), st.booleans())
def test_a_feedback_input_is_judged_by_its_decoded_strings_with_or_without_the_shortcut(
    value: object, ascii_only: bool
) -> None:
    """The same broken_text and escape_artifact findings as walking every decoded string of the input."""
    from kochallenge_data.checks.record import _broken_findings, _json_values_broken_findings
    from kochallenge_data.text import strings_in

    text = json.dumps({"title": value}, ensure_ascii=ascii_only)
    walked = [f.code for string in strings_in(json.loads(text)) for f in _broken_findings(0, "input", string)]
    assert [f.code for f in _json_values_broken_findings(0, "input", text)] == walked


@settings(max_examples=500)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(ONE_CHARACTER_EMOJI),
            st.sampled_from(["가", "각", " ", "1", ".", "~", "…", "a", "\u20e3", "\u1161", *INVISIBLE]),
        ),
        max_size=12,
    ).map("".join)
)
def test_text_the_quick_pattern_passes_has_no_cluster_the_policy_forbids(text: str) -> None:
    for policy in DEFAULT_POLICY.values():
        if korean._plain_pattern(policy).fullmatch(text):
            assert all(korean._allowed(cluster, policy) for cluster in grapheme_clusters(text)), text
