"""The chatbot API on a real uvicorn server, read by a real httpx client.

The transformers backend runs the tiny chat model (it knows three answers; anything else comes out
as garbage) or the tiny random base model (always garbage).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from kochallenge_data.errors import KochallengeError
from kochallenge_data.serve import cli as serve_cli
from kochallenge_data.serve.app import BASE_INFO_PATH, FEEDBACK_PATH, FREE_TEXT_PATH, ChatService
from kochallenge_data.serve.backends import HttpTimeouts, OpenAICompletionsBackend, TransformersBackend
from kochallenge_data.serve.http import create_app
from kochallenge_data.text import nfc, trim

from ..conftest import FIXTURE_POOLS, ROOT
from .conftest import (
    BASE_INFO_ANSWER,
    FEEDBACK_ANSWER,
    FREE_TEXT_ANSWER,
    KNOWN_BASE_INFO,
    KNOWN_FREE_TEXT,
    KNOWN_WEEK,
    ChatModel,
    make_service,
)
from .helpers import ReplayServer, Reply, Stream, closed_port, completion_stream, read_sse, serve_in_thread

pytestmark = pytest.mark.train
CLIENT_TIMEOUT = httpx.Timeout(30.0)


def get_stream(base_url: str, path: str, params: dict[str, str]) -> Stream:
    async def go() -> Stream:
        async with httpx.AsyncClient(base_url=base_url, timeout=CLIENT_TIMEOUT) as client:
            return await read_sse(client, path, params)

    return asyncio.run(go())


def post_feedback(base_url: str, body: bytes) -> httpx.Response:
    with httpx.Client(base_url=base_url, timeout=CLIENT_TIMEOUT) as client:
        return client.post(FEEDBACK_PATH, content=body, headers={"content-type": "application/json"})


ERROR_CODES = {
    "invalid_request", "truncated", "no_eos", "unparsable", "wrong_count", "invalid_line", "backend_error",
    "backend_unavailable", "backend_timeout", "internal", "too_large",
}  # fmt: skip


def assert_well_formed(stream: Stream) -> None:
    """challenge* then exactly one close or error, nothing after; each challenge one whole, numbered line."""
    assert stream.status == 200
    assert stream.content_type.startswith("text/event-stream")
    assert stream.names, "empty stream"
    *pieces, (last, data) = stream.events
    assert last in ("close", "error")
    assert all(name == "challenge" for name, _ in pieces), stream.names
    for number, (_, piece) in enumerate(pieces, start=1):
        assert piece["status"] == 200 and piece["message"] == "challenge"
        item = piece["data"]
        assert list(item) == ["index", "title", "description", "category", "label"] and item["index"] == number
        for text in (item["title"], item["description"]):
            assert text and text == text.strip() and "\n" not in text and "\ufffd" not in text and text == nfc(text)
    if last == "error":
        assert set(data) == {"status", "message", "data"} and set(data["data"]) == {"code"}
        assert data["data"]["code"] in ERROR_CODES
        assert isinstance(data["status"], int) and data["status"] >= 400 and data["message"]


def streamed_lines(stream: Stream) -> list[str]:
    return [f"{d['data']['title']}: {d['data']['description']}" for name, d in stream.events if name == "challenge"]


def assert_close_payload(stream: Stream, expected_answer: str, categories: list[tuple[str, str]]) -> None:
    assert_well_formed(stream)
    assert stream.names.count("close") == 1
    name, close = stream.last()
    assert name == "close"
    assert set(close) == {"status", "message", "data"} and close["status"] == 200 and close["message"]
    assert set(close["data"]) == {"recommend", "challenges"}
    lines = expected_answer.split("\n")
    assert close["data"]["recommend"] == lines[0]
    challenges = close["data"]["challenges"]
    assert isinstance(challenges, list) and len(challenges) == 3
    for item, line, (key, label) in zip(challenges, lines[1:], categories, strict=True):
        assert list(item) == ["title", "description", "category", "label"]
        assert f"{item['title']}: {item['description']}" == line
        assert (item["category"], item["label"]) == (key, label)
    assert streamed_lines(stream) == lines[1:], "each challenge was streamed once, whole, before the close"


# --------------------------------------------------------------------------------------------
# the transformers backend on the tiny chat model


def test_base_info_streams_challenges_then_one_close(chat_server: str) -> None:
    stream = get_stream(chat_server, BASE_INFO_PATH, KNOWN_BASE_INFO)
    assert stream.names == ["challenge", "challenge", "challenge", "close"]
    assert_close_payload(stream, BASE_INFO_ANSWER, [("VEGAN", "비건")] * 3)


def test_category_may_be_given_by_its_korean_name(chat_server: str) -> None:
    stream = get_stream(chat_server, BASE_INFO_PATH, {**KNOWN_BASE_INFO, "category": "비건"})
    assert_close_payload(stream, BASE_INFO_ANSWER, [("VEGAN", "비건")] * 3)


def test_free_text_close_labels_unknown_titles_with_the_session_category(
    chat_server: str, chat_service: ChatService
) -> None:
    stream = get_stream(chat_server, FREE_TEXT_PATH, KNOWN_FREE_TEXT)
    # 나만의 비건 도시락 is no pool title: it takes the category the message named (비건).
    assert_close_payload(stream, FREE_TEXT_ANSWER, [("VEGAN", "비건")] * 3)
    session = chat_service.sessions.peek(KNOWN_FREE_TEXT["sessionId"])
    assert session is not None and session.category == "VEGAN"
    assert session.turns[-1].titles == ("두유 라테 주문하기", "제철 채소 반찬 만들기", "나만의 비건 도시락")


def test_a_free_text_message_switches_the_session_category(chat_server: str, chat_service: ChatService) -> None:
    params = {**KNOWN_BASE_INFO, "sessionId": "switch", "category": "ZERO_WASTE"}
    get_stream(chat_server, BASE_INFO_PATH, params)
    session = chat_service.sessions.peek("switch")
    assert session is not None and session.category == "ZERO_WASTE"
    get_stream(chat_server, FREE_TEXT_PATH, {"sessionId": "switch", "message": "오늘은 아무거나 추천해 줘"})
    assert session.category == "ZERO_WASTE", "a message naming no category keeps the current one"
    get_stream(chat_server, FREE_TEXT_PATH, {"sessionId": "switch", "message": "비건 챌린지 해 보고 싶어요"})
    assert session.category == "VEGAN"


def test_sessions_keep_only_the_last_three_turns(chat_server: str, chat_service: ChatService) -> None:
    for _ in range(5):
        assert get_stream(chat_server, BASE_INFO_PATH, {**KNOWN_BASE_INFO, "sessionId": "turns"}).last()[0] == "close"
    session = chat_service.sessions.peek("turns")
    assert session is not None and len(session.turns) == 3


def test_feedback_returns_the_model_answer_within_100_characters(chat_server: str) -> None:
    response = post_feedback(chat_server, KNOWN_WEEK.encode())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {"status": 200, "message": "feedback generated", "data": {"feedback": FEEDBACK_ANSWER}}
    assert len(body["data"]["feedback"]) <= 100


# --------------------------------------------------------------------------------------------
# garbage from a random model


@pytest.fixture(scope="module")
def garbage_server(chat_model: ChatModel) -> Iterator[tuple[str, TransformersBackend]]:
    backend = TransformersBackend.from_dir(chat_model.base.model_dir)
    with serve_in_thread(create_app(make_service(backend))) as url:
        yield url, backend


def test_garbage_ends_in_an_error_never_a_malformed_close(garbage_server: tuple[str, TransformersBackend]) -> None:
    url, _ = garbage_server
    for path, params in ((BASE_INFO_PATH, KNOWN_BASE_INFO), (FREE_TEXT_PATH, KNOWN_FREE_TEXT)):
        stream = get_stream(url, path, params)
        assert_well_formed(stream)
        _name, error = stream.last()
        assert stream.names == ["error"], "garbage never reaches the client, not even as whitespace events"
        assert error["status"] == 502 and error["data"]["code"] in ("unparsable", "invalid_line", "truncated")


def test_backend_pieces_add_up_to_the_model_output_without_cut_characters(
    garbage_server: tuple[str, TransformersBackend], chat_service: ChatService
) -> None:
    """The random model emits byte tokens that cut syllables; the backend's pieces lose nothing else, and the
    stream ends with how generation stopped."""
    import torch

    from kochallenge_data.serve.backends import Finish, GenerationRequest

    _url, backend = garbage_server
    prompt = chat_service.prompt("base_info", "도시, 사무직, 비건")

    async def pieces() -> list[object]:
        return [p async for p in backend.stream(GenerationRequest(prompt, max_tokens=120))]

    streamed = asyncio.run(pieces())
    *texts, finish = streamed
    assert finish == Finish("length", 120), "a model that never says eos hits the limit, and says so"
    assert all(isinstance(t, str) and t for t in texts)
    prompt_ids = backend.encode(chat_service.prompt("base_info", "도시, 사무직, 비건"))
    with torch.no_grad():
        generated = backend.model.generate(
            torch.tensor([prompt_ids]), max_new_tokens=120, do_sample=False, pad_token_id=backend.tokenizer.eos_token_id
        )
    decoded = backend.tokenizer.decode(generated[0, len(prompt_ids) :], skip_special_tokens=True)
    assert "\ufffd" in decoded, "this model was expected to emit a cut character (pick another seed)"
    assert "".join(str(t) for t in texts) == nfc(decoded.replace("\ufffd", ""))
    for text in texts:
        assert not unicodedata.combining(str(text)[0]) and not "\u1160" <= str(text)[0] <= "\u11ff", "split cluster"


def test_garbage_feedback_is_refused_with_the_failed_checks(garbage_server: tuple[str, TransformersBackend]) -> None:
    url, _ = garbage_server
    response = post_feedback(url, KNOWN_WEEK.encode())
    assert response.status_code == 502
    body = response.json()
    assert body["data"]["code"] in ("truncated", "invalid_line") and body["status"] == 502


# --------------------------------------------------------------------------------------------
# request validation


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        (BASE_INFO_PATH, {k: v for k, v in KNOWN_BASE_INFO.items() if k != "sessionId"}, "sessionId"),
        (BASE_INFO_PATH, {k: v for k, v in KNOWN_BASE_INFO.items() if k != "location"}, "location"),
        (BASE_INFO_PATH, {k: v for k, v in KNOWN_BASE_INFO.items() if k != "workType"}, "workType"),
        (BASE_INFO_PATH, {k: v for k, v in KNOWN_BASE_INFO.items() if k != "category"}, "category"),
        (BASE_INFO_PATH, {**KNOWN_BASE_INFO, "category": "PLOGGING"}, "category"),
        (BASE_INFO_PATH, {**KNOWN_BASE_INFO, "location": "   "}, "location"),
        (BASE_INFO_PATH, {**KNOWN_BASE_INFO, "location": "도시, 산"}, "location"),
        (BASE_INFO_PATH, {**KNOWN_BASE_INFO, "workType": "사무직\n재택"}, "workType"),
        (BASE_INFO_PATH, {**KNOWN_BASE_INFO, "sessionId": "x" * 129}, "sessionId"),
        (FREE_TEXT_PATH, {"sessionId": "s"}, "message"),
        (FREE_TEXT_PATH, {"sessionId": "s", "message": "추천해줘"}, "message"),
        (FREE_TEXT_PATH, {"sessionId": "s", "message": "  안녕  "}, "message"),
        (FREE_TEXT_PATH, {"sessionId": "s", "message": "가" * 501}, "message"),
        (FREE_TEXT_PATH, {"message": "비건 챌린지 해 보고 싶어요"}, "sessionId"),
    ],
)
def test_invalid_requests_get_one_400_error_naming_the_field(
    chat_server: str, path: str, params: dict[str, str], field: str
) -> None:
    stream = get_stream(chat_server, path, params)
    assert_well_formed(stream)
    assert stream.names == ["error"]
    error = stream.last()[1]
    assert error["status"] == 400
    assert error["message"].startswith(f"{field}: "), error["message"]


def test_an_unknown_category_error_lists_the_configured_ones(chat_server: str) -> None:
    message = get_stream(chat_server, BASE_INFO_PATH, {**KNOWN_BASE_INFO, "category": "PLOGGING"}).last()[1]["message"]
    assert "ZERO_WASTE (제로웨이스트)" in message and "VEGAN (비건)" in message


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"personalChallenges": [], "groupChallenges": []}', "memberId"),
        (
            b'{"memberId": 1, "personalChallenges": [{"id": 1, "title": "x", "isSuccess": "maybe"}], '
            b'"groupChallenges": []}',
            "personalChallenges.0.isSuccess",
        ),
        (b'{"memberId": 1, "personalChallenges": [], "groupChallenges": [], "extra": 1}', "extra"),
        (b"not json", "body"),
    ],
)
def test_invalid_feedback_bodies_get_a_400_naming_the_field(chat_server: str, body: bytes, field: str) -> None:
    response = post_feedback(chat_server, body)
    assert response.status_code == 400
    payload = response.json()
    assert payload["status"] == 400 and payload["data"] == {"code": "invalid_request"}
    assert payload["message"].startswith(f"{field}: "), payload["message"]


def test_an_oversized_feedback_body_is_refused(chat_server: str) -> None:
    response = post_feedback(chat_server, b"[" + b"1," * 40_000 + b"1]")
    assert response.status_code == 413


# --------------------------------------------------------------------------------------------
# the vLLM backend: down, and trimming a long feedback


def test_backend_down_gives_an_error_event_and_a_503(tmp_path: Path) -> None:
    backend = OpenAICompletionsBackend(f"http://127.0.0.1:{closed_port()}", "runs/merged", HttpTimeouts(connect=1))
    with serve_in_thread(create_app(make_service(backend))) as url:
        for path, params in ((BASE_INFO_PATH, KNOWN_BASE_INFO), (FREE_TEXT_PATH, KNOWN_FREE_TEXT)):
            stream = get_stream(url, path, params)
            assert_well_formed(stream)
            assert stream.names == ["error"]
            error = stream.last()[1]
            assert error["status"] == 503 and "cannot reach vLLM" in error["message"]
            assert error["data"] == {"code": "backend_unavailable"}
            assert "vllm serve" in error["message"]
        response = post_feedback(url, KNOWN_WEEK.encode())
        assert response.status_code == 503 and "cannot reach vLLM" in response.json()["message"]


def test_long_feedback_is_trimmed_with_the_shared_function() -> None:
    long_answer = (
        "채식 점심 한 끼를 끝까지 해냈네요! 🎉 이번 주는 정말 꾸준했어요. 작은 실천이 모여 큰 변화가 돼요. "
        "다음 주에는 두유 라테 주문하기도 함께 해 봐요. 천천히 가도 괜찮아요. 다음 주도 응원할게요! 💪🌱"
    )
    assert len(long_answer) > 100
    pieces = [long_answer[i : i + 3] for i in range(0, len(long_answer), 3)]
    with ReplayServer(lambda _: Reply(chunks=[completion_stream(pieces)])) as replay:
        backend = OpenAICompletionsBackend(replay.url, "runs/merged")
        with serve_in_thread(create_app(make_service(backend))) as url:
            response = post_feedback(url, KNOWN_WEEK.encode())
    assert response.status_code == 200, response.text
    feedback = response.json()["data"]["feedback"]
    assert feedback == trim(long_answer, 100) and len(feedback) <= 100
    assert feedback.endswith(("!", "요.", "🎉")), feedback


# --------------------------------------------------------------------------------------------
# the serve command


def serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kochallenge_data")
    serve_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_serve_binds_loopback_unless_told_otherwise(chat_model: ChatModel) -> None:
    args = serve_parser().parse_args(["serve", "--model", str(chat_model.model_dir), "--backend", "transformers"])
    plan = serve_cli.plan_from_args(args)
    assert (plan.host, plan.backend) == ("127.0.0.1", "transformers")
    args = serve_parser().parse_args(["serve", "--model", "m", "--host", "0.0.0.0", "--port", "9000"])
    plan = serve_cli.plan_from_args(args)
    assert (plan.host, plan.port, plan.backend, plan.served_model_name) == ("0.0.0.0", 9000, "vllm", None)


def test_the_served_model_name_is_found_however_the_path_was_written(tmp_path: Path) -> None:
    model_dir = tmp_path / "runs" / "merged"
    model_dir.mkdir(parents=True)
    absolute = str(model_dir.resolve())
    assert serve_cli.choose_served_name(["other", absolute], model_dir) == absolute
    assert serve_cli.choose_served_name([str(model_dir)], model_dir) == str(model_dir)
    assert serve_cli.choose_served_name(["other"], model_dir) is None


def test_serve_asks_vllm_which_name_it_serves(tmp_path: Path) -> None:
    """A replayed /v1/models answer: serve picks the entry naming MODEL_DIR, or warns."""
    model_dir = tmp_path / "merged"
    model_dir.mkdir()
    listing = orjson.dumps({"object": "list", "data": [{"id": str(model_dir.resolve()), "object": "model"}]})
    reply = Reply(kind="json", status=200, body=listing)
    with ReplayServer(lambda _: reply) as replay:
        args = serve_parser().parse_args(["serve", "--model", str(model_dir), "--vllm-url", replay.url])
        name, warning = serve_cli.resolve_served_name(serve_cli.plan_from_args(args))
    assert (name, warning) == (str(model_dir.resolve()), None)
    args = serve_parser().parse_args(
        ["serve", "--model", str(model_dir), "--vllm-url", f"http://127.0.0.1:{closed_port()}"]
    )
    name, warning = serve_cli.resolve_served_name(serve_cli.plan_from_args(args))
    assert name == str(model_dir) and warning is not None and "not answering" in warning


def test_importing_the_serve_modules_loads_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "import kochallenge_data.serve.app, kochallenge_data.serve.backends, kochallenge_data.serve.cli\n"
        "import kochallenge_data.serve.sessions, kochallenge_data.serve.sse\n"
        "heavy = ('torch', 'transformers', 'fastapi', 'starlette', 'uvicorn', 'httpx')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_serve_help_has_an_example() -> None:
    parser = serve_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    epilog = subparsers.choices["serve"].epilog
    assert epilog is not None and epilog.startswith("example:") and "python -m kochallenge_data serve" in epilog


@pytest.mark.parametrize("breakage", ["blank_eos", "no_weights"])
def test_serve_refuses_a_model_the_doctor_rejects(chat_model: ChatModel, tmp_path: Path, breakage: str) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(chat_model.model_dir, broken)
    if breakage == "blank_eos":
        config_path = broken / "tokenizer_config.json"
        config: dict[str, Any] = orjson.loads(config_path.read_bytes())
        config["eos_token"] = " "
        config_path.write_bytes(orjson.dumps(config))
    else:
        (broken / "model.safetensors").unlink()
    args = serve_parser().parse_args(["serve", "--model", str(broken), "--backend", "transformers", "--port", "0"])
    with pytest.raises(KochallengeError) as caught:
        args.func(args)
    assert "the doctor found" in str(caught.value) and "not serving it" in str(caught.value)
    assert {"blank_eos": "eos_blank", "no_weights": "weights_missing"}[breakage] in str(caught.value)
    assert caught.value.exit_code == 1


def test_serve_command_starts_on_loopback_and_answers(chat_model: ChatModel) -> None:
    """One real subprocess: doctor, model load, uvicorn on 127.0.0.1 with a free port."""
    code = (
        "import argparse, sys\n"
        "from kochallenge_data.serve.cli import register\n"
        "parser = argparse.ArgumentParser(); register(parser.add_subparsers())\n"
        "args = parser.parse_args(sys.argv[1:]); sys.exit(args.func(args))\n"
    )
    command = [
        sys.executable, "-c", code, "serve", "--model", str(chat_model.model_dir), "--backend", "transformers",
        "--port", "0", "--pools", str(FIXTURE_POOLS),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stderr is not None
        deadline, seen = time.monotonic() + 60, ""
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            seen += line
            found = re.search(r"Uvicorn running on http://([\d.]+):(\d+)", line)
            if found or (not line and process.poll() is not None):
                break
        assert found, f"the server did not start:\n{seen}"
        assert found.group(1) == "127.0.0.1"
        health = httpx.get(f"http://127.0.0.1:{found.group(2)}/health", timeout=10).json()
        assert health["data"]["backend"] == "transformers"
    finally:
        process.terminate()
        process.wait(timeout=20)
