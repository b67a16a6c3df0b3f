"""The vLLM client against recorded OpenAI-compatible streams replayed on loopback, and the decoders."""

from __future__ import annotations

import asyncio
import time
import unicodedata

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kochallenge_data.serve.app import BASE_INFO_PATH
from kochallenge_data.serve.backends import (
    BackendError,
    BackendTimeout,
    Finish,
    GenerationRequest,
    HttpTimeouts,
    OpenAICompletionsBackend,
)
from kochallenge_data.serve.http import create_app
from kochallenge_data.serve.sse import SseParser, StreamDecodeError, TextStream, TokenDecoder, Utf8Decoder
from kochallenge_data.text import grapheme_clusters, nfc

from ..strategies import EMOJI
from ..tiny_model import TinySetup
from .conftest import KNOWN_BASE_INFO, make_service
from .helpers import (
    ReplayServer,
    Reply,
    completion_stream,
    load_recording,
    read_sse,
    serve_in_thread,
    split_inside_characters,
)

RECOMMENDATION = (
    "비건 한 끼로 가볍게 시작해 봐요 🌱\n"
    "채식 점심 한 끼: 점심 한 끼를 채소 위주로 먹으면 탄소를 줄일 수 있어요.\n"
    "두유 라테 주문하기: 우유 대신 두유를 골라 보면 생각보다 맛있어요.\n"
    "비건 간식 만들기: 두부와 견과류로 간식을 만들어 나눠 먹어요 👍🏽"
)
FEEDBACK = "텀블러로 커피 마시기를 끝까지 해냈네요! 👨‍👩‍👧 다음 주도 응원할게요! 🎉"


def run_backend_pieces(backend: OpenAICompletionsBackend, request: GenerationRequest) -> list[str | Finish]:
    async def go() -> list[str | Finish]:
        try:
            return [piece async for piece in backend.stream(request)]
        finally:
            await backend.aclose()

    return asyncio.run(go())


def run_backend(backend: OpenAICompletionsBackend, request: GenerationRequest) -> list[str]:
    """The text pieces; the stream must end with exactly one Finish."""
    *texts, finish = run_backend_pieces(backend, request)
    assert isinstance(finish, Finish) and all(isinstance(t, str) for t in texts)
    return [str(t) for t in texts]


def assert_whole_pieces(pieces: list[str]) -> None:
    for piece in pieces:
        assert "\ufffd" not in piece
        first = next(grapheme_clusters(piece))
        assert first == piece[: len(first)] and not unicodedata.combining(piece[0])
        assert piece[0] not in "\u200d\ufe0f" and not "\U0001f3fb" <= piece[0] <= "\U0001f3ff", repr(piece)


# --------------------------------------------------------------------------------------------
# the recorded streams, replayed


@pytest.mark.parametrize(
    ("recording", "expected"),
    [
        pytest.param("vllm_recommendation.sse", RECOMMENDATION, id="recommendation"),
        pytest.param("vllm_feedback.sse", FEEDBACK, id="feedback"),
    ],
)
def test_a_recorded_stream_cut_inside_characters_decodes_whole(recording: str, expected: str) -> None:
    chunks = split_inside_characters(load_recording(recording))
    assert any(chunk and 0x80 <= chunk[0] < 0xC0 for chunk in chunks), "some read must start mid-character"
    with ReplayServer(lambda _: Reply(chunks=chunks, delay_s=0.001)) as replay:
        backend = OpenAICompletionsBackend(replay.url, "runs/merged")
        pieces = run_backend(backend, GenerationRequest(prompt="### 지시문:\n...", max_tokens=64))
        body = replay.requests[0]
    assert "".join(pieces) == expected
    assert len(pieces) > 10
    assert_whole_pieces(pieces)
    assert body == {
        "model": "runs/merged",
        "prompt": "### 지시문:\n...",
        "max_tokens": 64,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_json_output_uses_structured_outputs_and_the_json_form_closes() -> None:
    chunks = split_inside_characters(load_recording("vllm_recommendation_json.sse"), every=11)
    with ReplayServer(lambda _: Reply(chunks=chunks)) as replay:
        service = make_service(OpenAICompletionsBackend(replay.url, "runs/merged"), json_output=True)
        with serve_in_thread(create_app(service)) as url:

            async def go() -> list[tuple[str, object]]:
                async with httpx.AsyncClient(base_url=url, timeout=20) as client:
                    return (await read_sse(client, BASE_INFO_PATH, KNOWN_BASE_INFO)).events

            events = asyncio.run(go())
        body = replay.requests[0]
    schema = body["structured_outputs"]["json"]
    assert schema["properties"]["challenges"]["minItems"] == 3 == schema["properties"]["challenges"]["maxItems"]
    assert not any(key.startswith("guided_") for key in body), "vLLM removed the guided_* fields"
    name, close = events[-1]
    assert name == "close" and [n for n, _ in events[:-1]] == ["challenge"] * (len(events) - 1)
    assert isinstance(close, dict)
    items = close["data"]["challenges"]
    assert [(i["title"], i["category"], i["label"]) for i in items] == [
        ("채식 점심 한 끼", "VEGAN", "비건"),
        ("두유 라테 주문하기", "VEGAN", "비건"),
        ("손수건 쓰기", "ZERO_WASTE", "제로웨이스트"),  # a pool title keeps its own category
    ]


# --------------------------------------------------------------------------------------------
# failures


def stream_with(reply: Reply, timeouts: HttpTimeouts | None = None) -> tuple[BackendError, float]:
    with ReplayServer(lambda _: reply) as replay:
        backend = OpenAICompletionsBackend(replay.url, "runs/merged", timeouts)
        started = time.monotonic()
        with pytest.raises(BackendError) as caught:
            run_backend(backend, GenerationRequest(prompt="p"))
    return caught.value, time.monotonic() - started


def recorded_chunks() -> list[bytes]:
    return split_inside_characters(load_recording("vllm_recommendation.sse"), every=40)


def test_an_http_error_reports_the_servers_message() -> None:
    error, _ = stream_with(Reply(kind="http_error", status=500))
    assert error.status == 502 and "HTTP 500: model overloaded" in str(error)
    error, _ = stream_with(Reply(kind="http_error", status=503, body=b"upstream busy"))
    assert error.status == 503 and "upstream busy" in str(error)


def test_a_connection_dropped_mid_stream_is_an_error_not_a_short_answer() -> None:
    error, _ = stream_with(Reply(kind="drop", chunks=recorded_chunks()))
    assert error.status == 502
    assert "before [DONE]" in str(error) or "failed mid-answer" in str(error)


def test_a_stalled_stream_times_out_on_the_read_timeout() -> None:
    error, seconds = stream_with(Reply(kind="stall", chunks=recorded_chunks(), stall_s=3), HttpTimeouts(read=0.3))
    assert isinstance(error, BackendTimeout) and error.status == 504
    assert seconds < 2.5


def test_a_trickling_stream_times_out_on_the_total_timeout() -> None:
    reply = Reply(chunks=recorded_chunks(), delay_s=0.05)
    error, seconds = stream_with(reply, HttpTimeouts(read=5, total=0.3))
    assert isinstance(error, BackendTimeout) and "longer than 0.3 s" in str(error)
    assert seconds < 2


def test_an_error_object_mid_stream_is_reported() -> None:
    body = completion_stream(["비건"])[: -len(b"data: [DONE]\n\n")]
    body += b'data: {"error": {"message": "CUDA out of memory", "code": 500}}\n\n'
    error, _ = stream_with(Reply(chunks=[body]))
    assert "CUDA out of memory" in str(error)


def test_bytes_that_are_not_utf8_are_an_error() -> None:
    body = completion_stream(["비건"]).replace("비".encode(), b"\xff\xfe")
    error, _ = stream_with(Reply(chunks=[body]))
    assert "not UTF-8" in str(error)


# --------------------------------------------------------------------------------------------
# the decoders, alone


def test_utf8_decoder_survives_every_single_cut() -> None:
    data = load_recording("vllm_feedback.sse")
    whole = data.decode("utf-8")
    for cut in range(len(data)):
        decoder = Utf8Decoder()
        assert decoder.feed(data[:cut]) + decoder.feed(data[cut:]) + decoder.finish() == whole


def test_utf8_decoder_refuses_a_stream_cut_inside_a_character() -> None:
    decoder = Utf8Decoder()
    assert decoder.feed("한".encode()[:2]) == ""
    with pytest.raises(StreamDecodeError):
        decoder.finish()


@settings(max_examples=30, deadline=None)
@given(cuts=st.lists(st.integers(0, 6000), max_size=40))
def test_sse_parser_gives_the_same_events_for_any_chunking(cuts: list[int]) -> None:
    text = load_recording("vllm_recommendation.sse").decode("utf-8").replace("\n", "\r\n")
    points = sorted({min(c, len(text)) for c in cuts})
    whole = SseParser().feed(text)
    parser = SseParser()
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    assert [e for piece in pieces for e in parser.feed(piece)] == whole
    assert len(whole) == text.count("\r\n\r\n")  # one event per blank-line-terminated block
    assert whole[-1].data == "[DONE]"


hangul_or_emoji = st.one_of(
    st.integers(0xAC00, 0xD7A3).map(chr),
    st.sampled_from([*EMOJI, " ", "\n", "요.", "\u1100\u1161\u11a8", "e\u0301"]),
)


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(hangul_or_emoji, min_size=1, max_size=30), cuts=st.lists(st.integers(0, 200), max_size=20))
def test_text_stream_never_emits_a_split_cluster(parts: list[str], cuts: list[int]) -> None:
    text = "".join(parts)
    points = sorted({min(c, len(text)) for c in cuts})
    stream = TextStream()
    emitted = [stream.push(text[a:b]) for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    emitted.append(stream.finish())
    assert "".join(emitted) == nfc(text)
    assert_whole_pieces([piece for piece in emitted if piece])


def test_token_decoder_on_a_byte_level_tokenizer_never_releases_a_cut_character(tiny: TinySetup) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny.model_dir))
    text = "처음 뵙겠습니다 👨‍👩‍👧 뷁 읊조리기! 🌱♻️"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    cut = [str(tokenizer.decode(ids[:i])) for i in range(1, len(ids))]
    assert any(piece.endswith("\ufffd") for piece in cut), "the text must contain characters split across tokens"
    decoder = TokenDecoder(lambda window: str(tokenizer.decode(list(window), skip_special_tokens=True)))
    pieces = [decoder.push([token]) for token in ids]
    pieces.append(decoder.finish())
    assert "".join(pieces) == text
    assert not any("\ufffd" in piece for piece in pieces)
    assert orjson.loads(orjson.dumps(pieces))  # every piece is valid Unicode text


def test_text_cut_by_the_token_budget_keeps_everything_before_the_cut(tiny: TinySetup) -> None:
    """Generation stopped mid-character: the whole characters before it are all delivered."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny.model_dir))
    text = "오늘도 가볍게 🌱"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    cut_at = next(i for i in range(len(ids), 0, -1) if str(tokenizer.decode(ids[:i])).endswith("\ufffd"))
    decoder = TokenDecoder(lambda window: str(tokenizer.decode(list(window), skip_special_tokens=True)))
    stream = TextStream()
    pieces = [stream.push(decoder.push(ids[:cut_at]))]
    pieces.append(stream.finish(decoder.finish()))
    assert "".join(pieces) == str(tokenizer.decode(ids[:cut_at])).replace("\ufffd", "")
    assert "".join(pieces).startswith("오늘도 가볍게")
