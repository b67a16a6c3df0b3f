"""Operating the router over a real socket: /health and /ready, /metrics, API keys, CORS, the rate and
body limits, round robin over vLLM replicas, the OpenAPI document, and the serve command's flags.

vLLM is played by a small FastAPI app on loopback (FakeVllm) that lists one model and streams a
known answer for each of the three tasks, with a usage chunk like vLLM's ``include_usage``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import Request  # module level: the fake's endpoint annotations are resolved from here

from kochallenge_data.errors import KochallengeError
from kochallenge_data.serve import cli as serve_cli
from kochallenge_data.serve.app import BASE_INFO_PATH, FEEDBACK_PATH, FREE_TEXT_PATH, ChatService
from kochallenge_data.serve.backends import HttpTimeouts, OpenAICompletionsBackend
from kochallenge_data.serve.http import HttpOptions, create_app, read_capped
from kochallenge_data.serve.ops import RateLimit, RateLimiter, event_outcome, is_loopback_host, parse_rate_limit
from kochallenge_data.serve.sse import format_event
from kochallenge_data.serve.upstreams import RoundRobinBackend

from ..conftest import FIXTURE_POOLS, ROOT
from .conftest import (
    BASE_INFO_ANSWER,
    FEEDBACK_ANSWER,
    FREE_TEXT_ANSWER,
    KNOWN_BASE_INFO,
    KNOWN_FREE_TEXT,
    KNOWN_WEEK,
    make_service,
)
from .helpers import Stream, closed_port, completion_stream, parse_sse, read_sse, serve_in_thread

pytestmark = pytest.mark.train
MODEL = "runs/merged"
TOKENS = 42  # completion_tokens the fake reports for every answer
CLIENT_TIMEOUT = httpx.Timeout(30.0)


# --------------------------------------------------------------------------------------------
# a fake vLLM: /v1/models and streamed /v1/completions


def answer_for(prompt: str) -> str:
    if '"memberId"' in prompt:
        return FEEDBACK_ANSWER
    if KNOWN_FREE_TEXT["message"] in prompt:
        return FREE_TEXT_ANSWER
    return BASE_INFO_ANSWER


def completion_with_usage(answer: str) -> bytes:
    """vLLM's stream with ``include_usage``: the text chunks, a usage-only chunk, then [DONE]."""
    pieces = [answer[i : i + 6] for i in range(0, len(answer), 6)]
    body = completion_stream(pieces, model=MODEL).removesuffix(b"data: [DONE]\n\n")
    usage = {"id": "cmpl-1", "object": "text_completion", "model": MODEL, "choices": [], "usage": {
        "prompt_tokens": 50, "completion_tokens": TOKENS, "total_tokens": 50 + TOKENS}}  # fmt: skip
    return body + b"data: " + orjson.dumps(usage) + b"\n\ndata: [DONE]\n\n"


@dataclass
class FakeVllm:
    """Serves ``model``; ``healthy=False`` answers 503 to everything, like a vLLM still loading."""

    model: str = MODEL
    healthy: bool = True
    delay_s: float = 0.0  # between chunks of a stream
    completions: int = 0
    prompts: list[str] = field(default_factory=list)

    def app(self) -> Any:
        from fastapi import FastAPI
        from fastapi.responses import JSONResponse, Response, StreamingResponse

        app = FastAPI()
        unavailable = {"error": {"message": "loading", "type": "ServiceUnavailable", "code": 503}}

        @app.get("/v1/models")
        async def models() -> Response:
            if not self.healthy:
                return JSONResponse(unavailable, status_code=503)
            return JSONResponse({"object": "list", "data": [{"id": self.model, "object": "model"}]})

        @app.post("/v1/completions")
        async def completions(request: Request) -> Response:
            if not self.healthy:
                return JSONResponse(unavailable, status_code=503)
            body = await request.json()
            self.completions += 1
            self.prompts.append(body["prompt"])
            data = completion_with_usage(answer_for(body["prompt"]))

            async def chunks() -> AsyncIterator[bytes]:
                for start in range(0, len(data), 97):
                    yield data[start : start + 97]
                    await asyncio.sleep(self.delay_s)

            return StreamingResponse(chunks(), media_type="text/event-stream")

        return app


@contextlib.contextmanager
def running_vllm(fake: FakeVllm | None = None) -> Iterator[tuple[str, FakeVllm]]:
    fake = fake or FakeVllm()
    with serve_in_thread(fake.app()) as url:
        yield url, fake


def vllm_backend(url: str) -> OpenAICompletionsBackend:
    return OpenAICompletionsBackend(url, MODEL, HttpTimeouts(connect=1.0, read=10.0, total=20.0))


@contextlib.contextmanager
def router(backend: Any, options: HttpOptions | None = None, **app_args: Any) -> Iterator[tuple[str, ChatService]]:
    service = make_service(backend, pools=None)
    with serve_in_thread(create_app(service, options, **app_args)) as url:
        yield url, service


def get_stream(base_url: str, path: str, params: dict[str, str], headers: dict[str, str] | None = None) -> Stream:
    async def go() -> Stream:
        async with httpx.AsyncClient(base_url=base_url, timeout=CLIENT_TIMEOUT, headers=headers) as client:
            return await read_sse(client, path, params)

    return asyncio.run(go())


def stream_response(base_url: str, path: str, params: dict[str, str], **kwargs: Any) -> tuple[httpx.Response, Stream]:
    """The response head (for headers) and the parsed stream."""
    with httpx.Client(base_url=base_url, timeout=CLIENT_TIMEOUT) as client:
        response = client.get(path, params=params, **kwargs)
    return response, Stream(response.status_code, response.headers["content-type"], response.content,
                            parse_sse(response.content))  # fmt: skip


def post_feedback(base_url: str, body: bytes, **kwargs: Any) -> httpx.Response:
    headers = {"content-type": "application/json", **kwargs.pop("headers", {})}
    with httpx.Client(base_url=base_url, timeout=CLIENT_TIMEOUT) as client:
        return client.post(FEEDBACK_PATH, content=body, headers=headers, **kwargs)


def error_of(stream: Stream) -> tuple[int, str]:
    """The status and code of a stream that is one ``error`` event."""
    assert stream.status == 200 and stream.names == ["error"], stream.events
    data = stream.last()[1]
    return data["status"], data["data"]["code"]


def samples(
    base_url: str, name: str, headers: dict[str, str] | None = None
) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample called ``name`` on /metrics, keyed by its sorted labels."""
    from prometheus_client.parser import text_string_to_metric_families

    response = httpx.get(f"{base_url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


# --------------------------------------------------------------------------------------------
# /health and /ready


def test_health_is_liveness_and_ready_waits_for_vllm_to_list_the_model() -> None:
    with router(vllm_backend(f"http://127.0.0.1:{closed_port()}")) as (url, _):
        health = httpx.get(f"{url}/health", timeout=10)
        ready = httpx.get(f"{url}/ready", timeout=10)
    assert health.status_code == 200 and health.json()["data"]["backend"] == "vllm"
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == 503 and body["data"] == {"code": "backend_unavailable"}
    assert "not answering" in body["message"]

    with running_vllm(FakeVllm(healthy=False)) as (vllm_url, fake), router(vllm_backend(vllm_url)) as (url, _):
        loading = httpx.get(f"{url}/ready", timeout=10)
        fake.healthy = True
        ready = httpx.get(f"{url}/ready", timeout=10)
        fake.model = "another/model"
        wrong_model = httpx.get(f"{url}/ready", timeout=10)
    assert loading.status_code == 503 and "HTTP 503" in loading.json()["message"]
    assert ready.status_code == 200 and ready.json()["message"] == "ready"
    assert ready.json()["data"]["detail"] == f"{vllm_url}: serves {MODEL}"
    assert wrong_model.status_code == 503 and "another/model" in wrong_model.json()["message"]


def test_the_transformers_backend_is_ready_once_loaded(chat_server: str) -> None:
    ready = httpx.get(f"{chat_server}/ready", timeout=10)
    assert ready.status_code == 200 and ready.json()["data"] == {
        "backend": "transformers",
        "detail": "model loaded in this process",
    }


# --------------------------------------------------------------------------------------------
# /metrics


def test_metrics_count_a_close_an_error_and_feedback_with_latency_and_tokens() -> None:
    with running_vllm() as (vllm_url, _), router(vllm_backend(vllm_url)) as (url, _):
        assert get_stream(url, BASE_INFO_PATH, KNOWN_BASE_INFO).names[-1] == "close"
        assert error_of(get_stream(url, FREE_TEXT_PATH, {"sessionId": "s"}))[1] == "invalid_request"
        assert post_feedback(url, KNOWN_WEEK.encode()).status_code == 200
        assert post_feedback(url, b"not json").status_code == 400
        requests = samples(url, "kochallenge_requests_total")
        first_event = samples(url, "kochallenge_first_event_seconds_count")
        total = samples(url, "kochallenge_request_seconds_count")
        tokens = samples(url, "kochallenge_generated_tokens_sum")
        in_flight = samples(url, "kochallenge_streams_in_flight")

    def labels(endpoint: str, outcome: str, status: int) -> tuple[tuple[str, str], ...]:
        return (("endpoint", endpoint), ("outcome", outcome), ("status", str(status)))

    assert requests == {
        labels("base_info", "close", 200): 1.0,
        labels("free_text", "invalid_request", 400): 1.0,
        labels("feedback", "ok", 200): 1.0,
        labels("feedback", "invalid_request", 400): 1.0,
    }
    assert first_event == {(("endpoint", "base_info"),): 1.0, (("endpoint", "free_text"),): 1.0}
    assert total[(("endpoint", "feedback"),)] == 2.0 and total[(("endpoint", "base_info"),)] == 1.0
    assert tokens == {(("endpoint", "base_info"),): TOKENS, (("endpoint", "feedback"),): TOKENS}
    assert set(in_flight.values()) == {0.0}


def test_a_client_that_leaves_mid_stream_is_counted_and_leaves_no_stream_open() -> None:
    async def read_one_event(url: str) -> str:
        async with (
            httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT) as client,
            client.stream("GET", BASE_INFO_PATH, params=KNOWN_BASE_INFO) as response,
        ):
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    return line  # leaving the block closes the connection mid-answer
        return ""

    slow = FakeVllm(delay_s=0.05)
    with running_vllm(slow) as (vllm_url, _), router(vllm_backend(vllm_url)) as (url, _):
        assert asyncio.run(read_one_event(url)) == "event: challenge"
        disconnected = (("endpoint", "base_info"), ("outcome", "disconnected"), ("status", "499"))
        deadline = time.monotonic() + 20
        while samples(url, "kochallenge_requests_total").get(disconnected) != 1.0 and time.monotonic() < deadline:
            time.sleep(0.05)
        requests = samples(url, "kochallenge_requests_total")
        in_flight = samples(url, "kochallenge_streams_in_flight")
    assert requests == {disconnected: 1.0}
    assert in_flight == {(("endpoint", "base_info"),): 0.0}


def test_event_outcome_reads_the_final_event_from_the_wire() -> None:
    challenge = {"status": 200, "message": "challenge", "data": {"index": 1, "title": "t"}}
    assert event_outcome(format_event("challenge", challenge)) is None
    assert event_outcome(format_event("close", {"status": 200, "message": "m", "data": {}})) == ("close", 200)
    truncated = {"status": 502, "message": "cut", "data": {"code": "truncated"}}
    assert event_outcome(format_event("error", truncated)) == ("truncated", 502)
    assert event_outcome(format_event("error", {"status": 504, "message": "slow", "data": None})) == (
        "backend_timeout",
        504,
    ), "an error without a code is named by its status"


# --------------------------------------------------------------------------------------------
# API key


def test_an_api_key_is_required_on_the_api_and_metrics_but_not_on_health() -> None:
    options = HttpOptions(api_keys=("k-one", "k-two"))
    with running_vllm() as (vllm_url, _), router(vllm_backend(vllm_url), options) as (url, _):
        missing = get_stream(url, BASE_INFO_PATH, KNOWN_BASE_INFO)
        wrong = get_stream(url, BASE_INFO_PATH, KNOWN_BASE_INFO, headers={"X-API-Key": "k-three"})
        by_header = get_stream(url, BASE_INFO_PATH, KNOWN_BASE_INFO, headers={"X-API-Key": "k-two"})
        by_query = get_stream(url, FREE_TEXT_PATH, {**KNOWN_FREE_TEXT, "apiKey": "k-one"})
        invalid_without_key = get_stream(url, FREE_TEXT_PATH, {"sessionId": "s"})
        feedback_missing = post_feedback(url, KNOWN_WEEK.encode())
        feedback_by_query = post_feedback(url, KNOWN_WEEK.encode(), params={"apiKey": "k-one"})
        feedback_ok = post_feedback(url, KNOWN_WEEK.encode(), headers={"X-API-Key": "k-one"})
        metrics_missing = httpx.get(f"{url}/metrics", timeout=10)
        bearer = samples(url, "kochallenge_requests_total", headers={"Authorization": "Bearer k-one"})
        open_paths = [httpx.get(f"{url}{path}", timeout=10).status_code for path in ("/health", "/ready")]
    assert error_of(missing) == (401, "unauthorized") and "missing" in missing.last()[1]["message"]
    assert error_of(wrong) == (401, "unauthorized") and "wrong" in wrong.last()[1]["message"]
    assert error_of(invalid_without_key) == (401, "unauthorized"), "the key is checked before the fields"
    assert by_header.names[-1] == "close" and by_query.names[-1] == "close"
    assert feedback_missing.status_code == 401 and feedback_missing.json()["data"] == {"code": "unauthorized"}
    assert feedback_by_query.status_code == 401, "only EventSource streams may put the key in the URL"
    assert feedback_ok.status_code == 200 and feedback_ok.json()["data"]["feedback"] == FEEDBACK_ANSWER
    assert metrics_missing.status_code == 401
    assert bearer[(("endpoint", "base_info"), ("outcome", "unauthorized"), ("status", "401"))] == 2.0
    assert open_paths == [200, 200]


def test_the_key_never_reaches_the_prompt() -> None:
    with (
        running_vllm() as (vllm_url, fake),
        router(vllm_backend(vllm_url), HttpOptions(api_keys=("secret-k",))) as (
            url,
            _,
        ),
    ):
        assert get_stream(url, BASE_INFO_PATH, {**KNOWN_BASE_INFO, "apiKey": "secret-k"}).names[-1] == "close"
    assert fake.prompts and not any("secret-k" in prompt for prompt in fake.prompts)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True), ("0.0.0.0", False),
     ("::", False), ("10.0.0.5", False), ("example.com", False)],
)  # fmt: skip
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_serve_refuses_to_bind_beyond_loopback_without_a_key(tmp_path: Path) -> None:
    """A real subprocess: a clean error and exit 1 before anything is loaded; a key lets it go on."""
    missing_model = tmp_path / "no-such-model"
    command = [sys.executable, "-m", "kochallenge_data", "serve", "--model", str(missing_model), "--host", "0.0.0.0"]
    env = {k: v for k, v in os.environ.items() if k != "KOCHALLENGE_API_KEY"}
    refused = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1, refused.stderr
    assert "Traceback" not in refused.stderr
    assert "--host 0.0.0.0 exposes the API" in refused.stderr and "KOCHALLENGE_API_KEY" in refused.stderr

    args = serve_parser().parse_args(["serve", "--model", str(missing_model), "--host", "0.0.0.0"])
    with pytest.raises(KochallengeError) as caught:  # past the key check: the model check refuses next
        serve_cli.run_serve(argparse.Namespace(**{**vars(args), "api_key": ["k"]}))
    assert "exposes the API" not in str(caught.value)


# --------------------------------------------------------------------------------------------
# CORS


def test_cors_preflight_is_answered_for_a_configured_origin() -> None:
    origin = "https://app.example.com"
    preflight = {
        "Origin": origin,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "x-api-key",
    }
    with running_vllm() as (vllm_url, _):
        with router(vllm_backend(vllm_url), HttpOptions(cors_origins=(origin,))) as (url, _):
            allowed = httpx.options(f"{url}{BASE_INFO_PATH}", headers=preflight, timeout=10)
            other = httpx.options(f"{url}{BASE_INFO_PATH}", headers={**preflight, "Origin": "https://evil.example"})
            response, stream = stream_response(url, BASE_INFO_PATH, KNOWN_BASE_INFO, headers={"Origin": origin})
        with router(vllm_backend(vllm_url)) as (url, _):
            without = httpx.options(f"{url}{BASE_INFO_PATH}", headers=preflight, timeout=10)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == origin
    assert "x-api-key" in allowed.headers["access-control-allow-headers"].lower()
    assert "GET" in allowed.headers["access-control-allow-methods"]
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    assert response.headers["access-control-allow-origin"] == origin and stream.names[-1] == "close"
    assert without.status_code == 405, "no --cors-origin: no CORS"


# --------------------------------------------------------------------------------------------
# rate limit and body limit


@dataclass
class ManualClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_limit_answers_429_with_retry_after_until_the_bucket_refills() -> None:
    clock = ManualClock()
    options = HttpOptions(rate_limit=RateLimit(2, 60.0))
    with running_vllm() as (vllm_url, _), router(vllm_backend(vllm_url), options, clock=clock) as (url, _):
        first = [get_stream(url, BASE_INFO_PATH, KNOWN_BASE_INFO).names[-1] for _ in range(2)]
        limited, stream = stream_response(url, BASE_INFO_PATH, KNOWN_BASE_INFO)
        feedback = post_feedback(url, KNOWN_WEEK.encode())
        clock.now += 30.0  # one request's worth of tokens
        again = get_stream(url, BASE_INFO_PATH, KNOWN_BASE_INFO).names[-1]
        after = post_feedback(url, KNOWN_WEEK.encode())
        health = httpx.get(f"{url}/health", timeout=10)
    assert first == ["close", "close"]
    assert error_of(stream) == (429, "rate_limited") and limited.headers["retry-after"] == "30"
    assert feedback.status_code == 429 and feedback.headers["retry-after"] == "30"
    assert feedback.json()["data"] == {"code": "rate_limited"}
    assert again == "close"
    assert after.status_code == 429, "the refill was spent by the stream"
    assert health.status_code == 200, "health checks are not rate limited"


def test_clients_with_different_keys_have_their_own_buckets() -> None:
    limiter = RateLimiter(parse_rate_limit("1/min"), clock=ManualClock())
    assert limiter.take("key:a") == 0 and limiter.take("key:b") == 0
    assert limiter.take("key:a") == pytest.approx(60.0)
    options = HttpOptions(api_keys=("k-a", "k-b"), rate_limit=RateLimit(1, 60.0))
    with running_vllm() as (vllm_url, _), router(vllm_backend(vllm_url), options, clock=ManualClock()) as (url, _):
        a = [error_of(s)[1] if s.names == ["error"] else s.names[-1] for s in (
            get_stream(url, BASE_INFO_PATH, KNOWN_BASE_INFO, headers={"X-API-Key": "k-a"}) for _ in range(2))]  # fmt: skip
        b = get_stream(url, BASE_INFO_PATH, {**KNOWN_BASE_INFO, "apiKey": "k-b"}).names[-1]
    assert a == ["close", "rate_limited"] and b == "close"


@pytest.mark.parametrize("text", ["60", "0/min", "5/day", "x/min"])
def test_a_bad_rate_limit_names_the_flag(text: str) -> None:
    with pytest.raises(KochallengeError, match="--rate-limit"):
        parse_rate_limit(text)


def test_a_body_over_the_limit_gets_413_declared_or_chunked() -> None:
    options = HttpOptions(max_body_bytes=1000)

    def chunked() -> Iterator[bytes]:  # no content-length: the server must count
        for _ in range(64):
            yield b" " * 1024

    with running_vllm() as (vllm_url, _), router(vllm_backend(vllm_url), options) as (url, _):
        declared = post_feedback(url, b" " * 1001)
        streamed = post_feedback(url, chunked())  # type: ignore[arg-type]
        at_limit = post_feedback(url, KNOWN_WEEK.encode().ljust(1000))
        requests = samples(url, "kochallenge_requests_total")
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json() == {"status": 413, "message": "body: larger than 1000 bytes", "data": {
            "code": "too_large"}}  # fmt: skip
    assert at_limit.status_code == 200, at_limit.text
    assert requests[(("endpoint", "feedback"), ("outcome", "too_large"), ("status", "413"))] == 2.0


def test_reading_a_body_stops_at_the_limit() -> None:
    pulled: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for index in range(100):
            pulled.append(index)
            yield b"x" * 400

    assert asyncio.run(read_capped(chunks(), None, 1000)) is None
    assert pulled == [0, 1, 2], "nothing is read past the chunk that crosses the limit"
    assert asyncio.run(read_capped(chunks(), "5000", 1000)) is None and pulled == [0, 1, 2], "declared: not read"


# --------------------------------------------------------------------------------------------
# round robin over replicas


def test_round_robin_skips_a_dead_replica_and_every_stream_closes() -> None:
    dead = vllm_backend(f"http://127.0.0.1:{closed_port()}")
    with running_vllm() as (live_url, live):
        backend = RoundRobinBackend([dead, vllm_backend(live_url)], check_interval_s=3600)
        with router(backend) as (url, _):
            endings = [get_stream(url, BASE_INFO_PATH, KNOWN_BASE_INFO).names[-1] for _ in range(4)]
            ready = httpx.get(f"{url}/ready", timeout=10).json()
    assert endings == ["close"] * 4
    assert live.completions == 4, "every request was answered by the live replica"
    assert (backend.upstreams[0].healthy, backend.upstreams[1].healthy) == (False, True)
    assert ready["status"] == 200 and ready["data"]["detail"].startswith("1 of 2 upstreams ready")


def test_round_robin_alternates_and_takes_a_replica_back_when_it_recovers() -> None:
    with running_vllm() as (url_a, a), running_vllm() as (url_b, b):
        backend = RoundRobinBackend([vllm_backend(url_a), vllm_backend(url_b)], check_interval_s=3600)
        with router(backend) as (url, _):
            for _ in range(4):
                assert get_stream(url, BASE_INFO_PATH, KNOWN_BASE_INFO).names[-1] == "close"
            shared = (a.completions, b.completions)
            b.healthy = False
            down = httpx.get(f"{url}/ready", timeout=10).json()["data"]["detail"]
            for _ in range(2):
                assert get_stream(url, BASE_INFO_PATH, KNOWN_BASE_INFO).names[-1] == "close"
            while_down = (a.completions, b.completions)
            b.healthy = True
            up = httpx.get(f"{url}/ready", timeout=10).json()["data"]["detail"]
            for _ in range(2):
                assert get_stream(url, BASE_INFO_PATH, KNOWN_BASE_INFO).names[-1] == "close"
    assert shared == (2, 2)
    assert down.startswith("1 of 2") and while_down == (4, 2), "the unhealthy replica got nothing"
    assert up.startswith("2 of 2") and (a.completions, b.completions) == (5, 3)


def test_round_robin_with_every_replica_down_is_a_503_error_event() -> None:
    backends = [vllm_backend(f"http://127.0.0.1:{closed_port()}") for _ in range(2)]
    with router(RoundRobinBackend(backends, check_interval_s=3600)) as (url, _):
        streams = [get_stream(url, BASE_INFO_PATH, KNOWN_BASE_INFO) for _ in range(2)]
        ready = httpx.get(f"{url}/ready", timeout=10)
    assert [error_of(s) for s in streams] == [(503, "backend_unavailable")] * 2
    assert ready.status_code == 503 and ready.json()["message"].startswith("not ready: 0 of 2 upstreams ready")


# --------------------------------------------------------------------------------------------
# OpenAPI


def test_openapi_documents_every_parameter_the_feedback_body_and_the_event_stream() -> None:
    with router(vllm_backend(f"http://127.0.0.1:{closed_port()}")) as (url, service):
        spec = httpx.get(f"{url}/openapi.json", timeout=10).json()
        missing = get_stream(url, BASE_INFO_PATH, {"sessionId": "s"})
        docs = httpx.get(f"{url}/docs", timeout=10)
    paths = spec["paths"]
    for path, names in ((BASE_INFO_PATH, ["sessionId", "location", "workType", "category"]),
                        (FREE_TEXT_PATH, ["sessionId", "message"])):  # fmt: skip
        operation = paths[path]["get"]
        parameters = {p["name"]: p for p in operation["parameters"]}
        assert list(parameters) == names
        for parameter in parameters.values():
            assert parameter["in"] == "query" and parameter["required"] is True
            assert parameter["description"] and parameter["schema"]["type"] == "string"
        answer = operation["responses"]["200"]
        assert "text/event-stream" in answer["content"] and "application/json" not in answer["content"]
        assert "`close`" in answer["description"] and "`truncated`" in answer["description"]
        assert "422" not in operation["responses"], "validation errors are 400 error events"
    category = {p["name"]: p for p in paths[BASE_INFO_PATH]["get"]["parameters"]}["category"]
    for configured in service.pools.categories:
        assert f"`{configured.key}` ({configured.name})" in category["description"]
    assert category["schema"]["enum"] == [c.key for c in service.pools.categories]

    feedback = paths[FEEDBACK_PATH]["post"]
    assert feedback["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/WeeklyRecord"
    }
    schemas = spec["components"]["schemas"]
    record = schemas["WeeklyRecord"]
    assert set(record["required"]) == {"memberId", "personalChallenges", "groupChallenges"}
    nested = record["properties"]["personalChallenges"]["items"]["$ref"].rsplit("/", 1)[1]
    assert "isSuccess" in schemas[nested]["properties"], "nested models resolve inside the document"
    assert feedback["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/FeedbackBody")
    error_ref = feedback["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(schemas[error_ref]["properties"]) == {"status", "message", "data"}
    assert {"/health", "/ready", "/metrics"} <= set(paths)
    assert error_of(missing) == (400, "invalid_request") and missing.last()[1]["message"].startswith("location: ")
    assert docs.status_code == 200


def test_openapi_declares_the_api_key_schemes_when_keys_are_configured() -> None:
    backend = vllm_backend(f"http://127.0.0.1:{closed_port()}")
    with router(backend, HttpOptions(api_keys=("k",))) as (url, _):
        spec = httpx.get(f"{url}/openapi.json", timeout=10).json()
    schemes = spec["components"]["securitySchemes"]
    assert {(s["in"], s["name"]) for s in schemes.values()} == {("header", "X-API-Key"), ("query", "apiKey")}
    assert len(spec["paths"][BASE_INFO_PATH]["get"]["security"]) == 2
    assert len(spec["paths"][FEEDBACK_PATH]["post"]["security"]) == 1


# --------------------------------------------------------------------------------------------
# the serve command


def serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kochallenge_data")
    serve_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


def plan(*flags: str, environ: dict[str, str] | None = None) -> serve_cli.ServePlan:
    args = serve_parser().parse_args(["serve", "--model", "runs/merged", "--pools", str(FIXTURE_POOLS), *flags])
    return serve_cli.plan_from_args(args, environ=environ or {})


def test_serve_flags_make_the_plan() -> None:
    chosen = plan(
        "--vllm-url", "http://gpu1:8000", "--vllm-url", "http://gpu2:8000/", "--connect-timeout", "1.5",
        "--read-timeout", "9", "--answer-timeout", "60", "--cors-origin", "https://a.example",
        "--cors-origin", "http://localhost:5173", "--rate-limit", "30/min", "--max-body-bytes", "4096",
        "--api-key", "k1", "--api-key", "k2", "--no-guided-decoding",
    )  # fmt: skip
    assert chosen.vllm_urls == ("http://gpu1:8000", "http://gpu2:8000")
    assert (chosen.connect_timeout_s, chosen.read_timeout_s, chosen.answer_timeout_s) == (1.5, 9.0, 60.0)
    assert chosen.cors_origins == ("https://a.example", "http://localhost:5173")
    assert chosen.rate_limit == RateLimit(30, 60.0) and chosen.max_body_bytes == 4096
    assert chosen.api_keys == ("k1", "k2") and chosen.guided_decoding is False
    backend = serve_cli.build_backend(chosen)
    assert isinstance(backend, RoundRobinBackend)
    assert [u.backend.timeouts for u in backend.upstreams] == [HttpTimeouts(1.5, 9.0, 60.0)] * 2
    service = serve_cli.build_service(chosen)
    assert service.settings.guided_decoding is False
    assert service.generation_request("p").regex is None

    defaults = plan(environ={"KOCHALLENGE_API_KEY": "from-env"})
    assert defaults.api_keys == ("from-env",) and defaults.guided_decoding is True
    assert defaults.vllm_urls == (serve_cli.DEFAULT_VLLM_URL,) and defaults.rate_limit is None
    single = serve_cli.build_backend(defaults)
    assert isinstance(single, OpenAICompletionsBackend) and single.timeouts == HttpTimeouts()


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--cors-origin", "https://app.example.com/"], "--cors-origin"),
        (["--cors-origin", "app.example.com"], "--cors-origin"),
        (["--vllm-url", "http://a:8000", "--vllm-url", "http://a:8000/"], "--vllm-url"),
        (["--max-body-bytes", "0"], "--max-body-bytes"),
        (["--read-timeout", "0"], "--read-timeout"),
        (["--api-key", " padded "], "--api-key"),
    ],
)
def test_bad_serve_flags_are_named(flags: list[str], named: str) -> None:
    with pytest.raises(KochallengeError, match=re.escape(named)):
        plan(*flags)


def test_max_tokens_comes_from_what_train_recorded(tmp_path: Path) -> None:
    model_dir = tmp_path / "merged"
    model_dir.mkdir()
    base = serve_cli.plan_from_args(serve_parser().parse_args(["serve", "--model", str(model_dir)]), environ={})
    tokens, note = serve_cli.resolve_max_tokens(base)
    assert tokens == serve_cli.DEFAULT_MAX_TOKENS and note.startswith("note:") and "--max-tokens" in note
    (model_dir / "train_config.json").write_bytes(orjson.dumps({"resolved": {"max_new_tokens": 137}}))
    assert serve_cli.resolve_max_tokens(base) == (137, "max tokens per answer: 137 (train_config.json resolved."
                                                        "max_new_tokens)")  # fmt: skip
    flagged = serve_cli.plan_from_args(
        serve_parser().parse_args(["serve", "--model", str(model_dir), "--max-tokens", "99"]), environ={}
    )
    assert serve_cli.resolve_max_tokens(flagged)[0] == 99
    (model_dir / "train_config.json").write_bytes(orjson.dumps({"resolved": {"max_new_tokens": "many"}}))
    with pytest.raises(KochallengeError, match=r"resolved\.max_new_tokens"):
        serve_cli.resolve_max_tokens(base)


def test_a_train_run_is_asked_for_by_its_adapter_name(tmp_path: Path) -> None:
    run_dir = tmp_path / "lora"
    run_dir.mkdir()
    with running_vllm(FakeVllm(model="lora")) as (vllm_url, _):
        args = serve_parser().parse_args(["serve", "--model", str(run_dir), "--vllm-url", vllm_url])
        assert serve_cli.resolve_served_name(serve_cli.plan_from_args(args, environ={})) == ("lora", None)


def test_importing_the_ops_modules_loads_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "import kochallenge_data.serve.http, kochallenge_data.serve.ops, kochallenge_data.serve.upstreams\n"
        "heavy = ('torch', 'transformers', 'fastapi', 'starlette', 'uvicorn', 'httpx', 'prometheus_client')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def help_curl_commands() -> list[str]:
    """The curl lines of ``serve --help``, continuation lines joined."""
    epilog = serve_cli.SERVE_EXAMPLE.replace("\\\n", " ")
    return [line.strip() for line in epilog.splitlines() if line.strip().startswith("curl ")]


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_the_help_curl_examples_work_as_printed() -> None:
    commands = help_curl_commands()
    assert len(commands) == 2
    with running_vllm() as (vllm_url, _), router(vllm_backend(vllm_url)) as (url, _):
        outputs = []
        for command in commands:
            words = shlex.split(command.replace("http://127.0.0.1:8080", url))
            assert all(word.isascii() for word in words if word.startswith("http")), "no raw Hangul in a URL"
            done = subprocess.run(words, capture_output=True, timeout=60, check=True)
            outputs.append(parse_sse(done.stdout))
    for events in outputs:
        assert [name for name, _ in events] == ["challenge", "challenge", "challenge", "close"], events
