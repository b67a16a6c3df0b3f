"""The router under load on loopback: concurrent streams against a vLLM stand-in that is fast, slow, or failing.

A replaying OpenAI-compatible server (tests/serve/helpers.py) streams a valid 3-challenge answer in
4-character chunks; "slow" waits ``--slow-ms`` between chunks (a loaded GPU), "failing" answers every
other request with HTTP 500, a dropped connection or a stall. The router (the real app, uvicorn, the
vLLM client with guided decoding on) and the stand-in run in one process, the load client (httpx,
``--streams`` base-info streams, ``--concurrency`` at a time) in this one, so they do not share a GIL.
Printed per scenario: how the streams ended, first-event and whole-stream latency p50/p99 (first event
= the first challenge, or the error), and the server process's peak RSS.

Run from the repository root: PYTHONPATH=. .venv/bin/python bench/serve_bench.py
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from kochallenge_data.serve.app import BASE_INFO_PATH
from kochallenge_data.serve.backends import HttpTimeouts, OpenAICompletionsBackend
from kochallenge_data.serve.http import create_app
from kochallenge_data.serve.sessions import SessionStore
from tests.serve.conftest import KNOWN_BASE_INFO, make_service
from tests.serve.helpers import ReplayServer, Reply, completion_stream, parse_sse, serve_in_thread

ANSWER = (
    "비건 한 끼로 가볍게 시작해 봐요 🌱\n"
    "채식 점심 한 끼: 점심 한 끼를 채소 위주로 먹으면 탄소를 줄일 수 있어요.\n"
    "두유 라테 주문하기: 우유 대신 두유를 골라 보면 생각보다 맛있어요.\n"
    "비건 간식 만들기: 두부와 견과류로 간식을 만들어 나눠 먹어요."
)
FAILURES = ("http_error", "drop", "stall")


def chunks() -> list[bytes]:
    body = completion_stream([ANSWER[i : i + 4] for i in range(0, len(ANSWER), 4)])
    return [block + b"\n\n" for block in body.split(b"\n\n") if block]


def chooser(scenario: str, slow_s: float) -> object:
    recorded = chunks()

    def choose(index: int) -> Reply:
        if scenario == "failing" and index % 2:
            return Reply(kind=FAILURES[(index // 2) % 3], chunks=recorded, delay_s=0.002, stall_s=2.5)
        return Reply(chunks=recorded, delay_s=slow_s if scenario == "slow" else 0.001)

    return choose


async def one_stream(client: httpx.AsyncClient, index: int, gate: asyncio.Semaphore) -> tuple[str, float, float]:
    async with gate:
        started = time.perf_counter()
        first: float | None = None
        raw = b""
        params = {**KNOWN_BASE_INFO, "sessionId": f"bench-{index}"}
        async with client.stream("GET", BASE_INFO_PATH, params=params) as response:
            async for chunk in response.aiter_raw():
                raw += chunk
                if first is None and b"\n\n" in raw:
                    first = time.perf_counter() - started
        total = time.perf_counter() - started
        events = parse_sse(raw)
        ending = events[-1][0] if events else "nothing"
        if ending == "error":
            ending = f"error:{events[-1][1]['data']['code']}"
        return ending, first if first is not None else total, total


async def load(url: str, streams: int, concurrency: int) -> list[tuple[str, float, float]]:
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(30.0), limits=limits) as client:
        return await asyncio.gather(*(one_stream(client, i, gate) for i in range(streams)))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def serve(scenario: str, slow_s: float, pipe: object) -> None:
    """The server process: the stand-in and the router, until the client says it is done."""
    with ReplayServer(chooser(scenario, slow_s), keep_requests=False) as replay:  # type: ignore[arg-type]
        backend = OpenAICompletionsBackend(replay.url, "runs/merged", HttpTimeouts(connect=2, read=1.0, total=20))
        service = make_service(backend, max_tokens=200)
        service.sessions = SessionStore(max_sessions=200, max_age_s=60)
        with serve_in_thread(create_app(service)) as url:
            pipe.send(url)  # type: ignore[attr-defined]
            pipe.recv()  # type: ignore[attr-defined]
            peak_kib = next(
                int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("VmHWM:")
            )  # fmt: skip
            pipe.send(peak_kib)  # type: ignore[attr-defined]


def run(scenario: str, streams: int, concurrency: int, slow_s: float) -> None:
    here, there = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(scenario, slow_s, there))
    server.start()
    url = here.recv()
    started = time.perf_counter()
    results = asyncio.run(load(url, streams, concurrency))
    seconds = time.perf_counter() - started
    here.send("done")
    peak_mib = here.recv() / 1024
    server.join(30)
    endings = Counter(r[0] for r in results)
    firsts = [r[1] * 1000 for r in results]
    totals = [r[2] * 1000 for r in results]
    print(
        f"| {scenario} | {streams} ({concurrency} at once) | {dict(sorted(endings.items()))} | "
        f"{statistics.median(firsts):.0f} / {percentile(firsts, 0.99):.0f} ms | "
        f"{statistics.median(totals):.0f} / {percentile(totals, 0.99):.0f} ms | {seconds:.1f} s | {peak_mib:.0f} MiB |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--slow-ms", type=float, default=20.0, help="delay between chunks in the slow scenario")
    args = parser.parse_args()
    print("| backend | streams | endings | first event p50 / p99 | whole stream p50 / p99 | wall | peak RSS |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for scenario in ("fast", "slow", "failing"):
        run(scenario, args.streams, args.concurrency, args.slow_ms / 1000)


if __name__ == "__main__":
    main()
