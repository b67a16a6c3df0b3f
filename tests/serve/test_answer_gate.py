"""Never a broken `close`: cut, unfinished, malformed or miscounted answers end in an error with a reason code,
and only complete, valid challenge lines are streamed. Recorded-style streams replayed on loopback, plus the
line gate and the guided-decoding regex on their own."""

from __future__ import annotations

import asyncio
import re

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kochallenge_data.build import BuildConfig, build_dataset
from kochallenge_data.checks.record import infer_task
from kochallenge_data.formats import parse_recommendation
from kochallenge_data.serve.answer_lines import AnswerError, AnswerLines
from kochallenge_data.serve.app import BASE_INFO_PATH, FEEDBACK_PATH
from kochallenge_data.serve.backends import OpenAICompletionsBackend
from kochallenge_data.serve.guided import recommendation_regex
from kochallenge_data.serve.http import create_app

from .conftest import KNOWN_BASE_INFO, KNOWN_WEEK, make_service
from .helpers import ReplayServer, Reply, Stream, read_sse, serve_in_thread, split_inside_characters

RECOMMEND = "비건 한 끼로 가볍게 시작해 봐요 🌱"
LINES = [
    "채식 점심 한 끼: 점심 한 끼를 채소 위주로 먹으면 탄소를 줄일 수 있어요.",
    "두유 라테 주문하기: 우유 대신 두유를 골라 보면 생각보다 맛있어요.",
    "계단 이용하기: 가까운 층은 계단으로 오르내리면 전기를 아낄 수 있어요.",
]
ANSWER = "\n".join([RECOMMEND, *LINES])


def vllm_stream(text: str, finish: str | None, *, tokens: int | None = None, step: int = 4) -> bytes:
    """An OpenAI-compatible completion stream of ``text`` whose last chunk says ``finish`` (None: says nothing)."""
    pieces = [text[i : i + step] for i in range(0, len(text), step)] or [""]
    out = b""
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        choice = {"index": 0, "text": piece, "logprobs": None, "finish_reason": finish if last else None}
        out += b"data: " + orjson.dumps({"object": "text_completion", "choices": [choice], "usage": None}) + b"\n\n"
    if tokens is not None:
        usage = {"prompt_tokens": 50, "completion_tokens": tokens, "total_tokens": 50 + tokens}
        out += b"data: " + orjson.dumps({"object": "text_completion", "choices": [], "usage": usage}) + b"\n\n"
    return out + b"data: [DONE]\n\n"


Generations = list[tuple[str, int | None]]


def served(body: bytes, **settings: object) -> tuple[Stream, list[dict[str, object]], Generations]:
    """One base-info stream through the real app, with a replayed upstream sending ``body``; also the upstream
    requests and what ChatService.on_generation heard."""
    generations: Generations = []
    with ReplayServer(lambda _: Reply(chunks=split_inside_characters(body, every=9))) as replay:
        service = make_service(OpenAICompletionsBackend(replay.url, "runs/merged"), **settings)
        service.on_generation = lambda kind, tokens: generations.append((kind, tokens))
        with serve_in_thread(create_app(service)) as url:

            async def go() -> Stream:
                async with httpx.AsyncClient(base_url=url, timeout=20) as client:
                    return await read_sse(client, BASE_INFO_PATH, KNOWN_BASE_INFO)

            stream = asyncio.run(go())
        requests = list(replay.requests)
    return stream, requests, generations


def titles(stream: Stream) -> list[str]:
    return [data["data"]["title"] for name, data in stream.events if name == "challenge"]


def error_code(stream: Stream) -> str:
    name, data = stream.last()
    assert name == "error" and "close" not in stream.names, stream.names
    return str(data["data"]["code"])


# --------------------------------------------------------------------------------------------
# over a real socket


def test_a_complete_answer_streams_each_line_once_then_closes_and_reports_its_tokens() -> None:
    stream, requests, generations = served(vllm_stream(ANSWER, "stop", tokens=61))
    assert stream.names == ["challenge", "challenge", "challenge", "close"]
    assert titles(stream) == ["채식 점심 한 끼", "두유 라테 주문하기", "계단 이용하기"]
    assert generations == [("base_info", 61)]
    body = requests[0]
    assert body["structured_outputs"] == {"regex": recommendation_regex(3)}, "guided decoding is on by default"
    assert not any(key.startswith("guided_") for key in body), "vLLM 0.12+ ignores the guided_* fields"


def test_a_length_stop_is_truncated_even_when_the_cut_line_parses() -> None:
    """The seed team's failure: the last description cut at the token limit still looks like a line."""
    cut = ANSWER[: ANSWER.index("계단으로") + len("계단으로")]
    stream, _, _ = served(vllm_stream(cut, "length"))
    assert error_code(stream) == "truncated"
    assert titles(stream) == ["채식 점심 한 끼", "두유 라테 주문하기"], "only the complete lines went out"
    assert "가까운 층은 계단으로" not in str(stream.events)


def test_a_stream_that_ends_without_a_stop_is_not_delivered() -> None:
    stream, _, _ = served(vllm_stream(ANSWER, None))
    assert error_code(stream) == "no_eos"


@pytest.mark.parametrize(
    ("answer", "code", "streamed"),
    [
        pytest.param(ANSWER + "\n손수건 쓰기: 휴지 대신 손수건을 써요.", "wrong_count", 3, id="four challenges"),
        pytest.param("\n".join([RECOMMEND, *LINES[:2]]), "wrong_count", 1, id="two challenges"),
        pytest.param(
            "\n".join([RECOMMEND, LINES[0], "Use a tumbler: 텀블러를 써요.", LINES[2]]),
            "invalid_line",
            1,
            id="english title",
        ),
        pytest.param("\n".join([RECOMMEND, "1. " + LINES[0], *LINES[1:]]), "unparsable", 0, id="numbered"),
        pytest.param("\n".join([RECOMMEND, "", *LINES]), "unparsable", 0, id="blank line"),
        pytest.param('{"recommend": "비건", "challenges": []}', "unparsable", 0, id="json instead of lines"),
        pytest.param(
            "\n".join([RECOMMEND, LINES[0], "두유 라테 주문하기 우유 대신 두유를 골라요.", LINES[2]]),
            "unparsable",
            1,
            id="no colon",
        ),
    ],
)
def test_malformed_answers_end_in_an_error_with_its_code(answer: str, code: str, streamed: int) -> None:
    stream, _, _ = served(vllm_stream(answer, "stop"))
    assert error_code(stream) == code
    assert len(titles(stream)) == streamed


def test_whitespace_is_never_an_event() -> None:
    stream, _, _ = served(vllm_stream("  \n\n" + ANSWER + "\n\n", "stop", step=1))
    assert stream.names == ["challenge", "challenge", "challenge", "close"]


def test_guided_decoding_can_be_turned_off_and_json_mode_sends_its_schema() -> None:
    _, requests, _ = served(vllm_stream(ANSWER, "stop"), guided_decoding=False)
    assert "structured_outputs" not in requests[0]
    challenges = [dict(zip(("title", "description"), line.split(": "), strict=True)) for line in LINES]
    json_answer = orjson.dumps({"recommend": RECOMMEND, "challenges": challenges}).decode()
    stream, requests, _ = served(vllm_stream(json_answer, "length"), json_output=True)
    assert "json" in requests[0]["structured_outputs"]
    assert error_code(stream) == "truncated", "the JSON form is held to the same rule"


def test_feedback_cut_by_the_token_limit_is_refused() -> None:
    cut = vllm_stream("이번 주도 정말 잘했어요! 🌱 다음 주도", "length")
    with (
        ReplayServer(lambda _: Reply(chunks=[cut])) as replay,
        serve_in_thread(create_app(make_service(OpenAICompletionsBackend(replay.url, "m")))) as url,
    ):
        response = httpx.post(f"{url}{FEEDBACK_PATH}", content=KNOWN_WEEK.encode(), timeout=20)
    assert response.status_code == 502 and response.json()["data"] == {"code": "truncated"}


# --------------------------------------------------------------------------------------------
# the line gate and the regex, alone


def build_outputs() -> list[tuple[str, str, str]]:
    # The shipped pools: the fixture pools are too small for a varied build, and these answers are what serving meets.
    records = build_dataset(BuildConfig(size=300, seed=3, diversity=False, check_spacing=False)).records
    return [(r.instruction, r.input, r.output) for r in records if infer_task(r.model_dump()) != "feedback"]


OUTPUTS = build_outputs()


@settings(max_examples=60, deadline=None)
@given(which=st.integers(0, len(OUTPUTS) - 1), cuts=st.lists(st.integers(0, 400), max_size=25))
def test_any_chunking_of_a_dataset_answer_releases_its_challenges_in_order(which: int, cuts: list[int]) -> None:
    instruction, input_text, output = OUTPUTS[which]
    task = infer_task({"instruction": instruction, "input": input_text, "output": output})
    gate = AnswerLines(3, task, instruction, input_text)
    points = sorted({min(c, len(output)) for c in cuts})
    released = []
    for a, b in zip([0, *points], [*points, len(output)], strict=True):
        released += gate.push(output[a:b])
    last, recommendation = gate.finish("stop")
    assert released + last == parse_recommendation(output, 3).challenges
    assert recommendation == parse_recommendation(output, 3)
    assert len(released) == output.count("\n") - 1, "every line but the last goes out as soon as it ends"


@settings(max_examples=40, deadline=None)
@given(which=st.integers(0, len(OUTPUTS) - 1), keep=st.floats(0.0, 1.0))
def test_a_length_stop_is_never_delivered_wherever_the_cut(which: int, keep: float) -> None:
    instruction, input_text, output = OUTPUTS[which]
    task = infer_task({"instruction": instruction, "input": input_text, "output": output})
    gate = AnswerLines(3, task, instruction, input_text)
    gate.push(output[: int(len(output) * keep)])
    with pytest.raises(AnswerError) as caught:
        gate.finish("length")
    assert caught.value.code == "truncated"


def test_every_dataset_answer_matches_the_guided_regex_and_broken_ones_do_not() -> None:
    pattern = re.compile(recommendation_regex(3))
    for _, _, output in OUTPUTS:
        assert pattern.fullmatch(output), output
    output = OUTPUTS[0][2]
    lines = output.split("\n")
    broken = [
        "\n".join(lines[:3]),  # two challenges
        output + "\n" + lines[1],  # four
        output.replace(": ", ":", 1),
        output.replace("\n", "\n\n", 1),
        "\n".join([lines[0], "1. " + lines[1], *lines[2:]]),
        "\n".join([lines[0], "Tumbler: " + lines[1].split(": ", 1)[1], *lines[2:]]),
        output + " ",
        '{"recommend": "x"}',
    ]
    for text in broken:
        assert not pattern.fullmatch(text), text


def test_the_guided_regex_is_what_the_pinned_vllm_accepts_as_a_regex() -> None:
    """vLLM 0.33 cannot be installed beside the train extra; this checks what it checks first: the request's
    structured_outputs.regex is one string field holding a valid regular expression (Python's re and the
    xgrammar/guidance dialects agree on literal characters, classes, groups and counted repeats)."""
    body = {"structured_outputs": {"regex": recommendation_regex(3)}}
    assert set(body["structured_outputs"]) == {"regex"} and isinstance(body["structured_outputs"]["regex"], str)
    regex = body["structured_outputs"]["regex"]
    assert "\\u" not in regex and "\\p" not in regex, "no escapes whose meaning differs between dialects"
    re.compile(regex)
