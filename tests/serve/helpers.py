"""Loopback servers and an SSE reader for the serve tests.

- :func:`serve_in_thread` runs a real uvicorn server on 127.0.0.1 with a free port.
- :class:`ReplayServer` is a small raw-HTTP server that replays a recorded OpenAI-compatible
  ``/v1/completions`` byte stream in chosen chunks (so a read can end inside a Hangul syllable), or
  misbehaves on purpose: HTTP 500, a connection dropped mid-stream, a stall.
- :func:`read_sse` reads a stream with httpx and parses it with a parser written here, apart from
  the one under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn

FIXTURES = Path(__file__).parent / "fixtures"


@contextlib.contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """A real uvicorn server for ``app`` on 127.0.0.1; yields its base URL and stops it afterwards."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def closed_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# --------------------------------------------------------------------------------------------
# SSE reading, independent of kochallenge_data.serve.sse


@dataclass
class Stream:
    """A finished SSE response: status, content type, the raw bytes and the parsed events."""

    status: int
    content_type: str
    raw: bytes
    events: list[tuple[str, Any]]

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def last(self) -> tuple[str, Any]:
        return self.events[-1]


def parse_sse(raw: bytes) -> list[tuple[str, Any]]:
    """Events of a complete stream; every data line of this API is one JSON value."""
    events = []
    for block in raw.decode("utf-8").replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        events.append((name, orjson.loads("\n".join(data))))
    return events


async def read_sse(client: httpx.AsyncClient, url: str, params: dict[str, str]) -> Stream:
    async with client.stream("GET", url, params=params) as response:
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    return Stream(response.status_code, response.headers.get("content-type", ""), raw, parse_sse(raw))


# --------------------------------------------------------------------------------------------
# a replaying OpenAI-compatible server


def load_recording(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def split_inside_characters(data: bytes, every: int = 7) -> list[bytes]:
    """Cut ``data`` every few bytes, and always inside each multi-byte UTF-8 character's bytes."""
    cuts = {i for i in range(every, len(data), every)}
    cuts |= {i + 1 for i, b in enumerate(data) if b >= 0xC0}  # just after a lead byte
    points = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


@dataclass
class Reply:
    """How the replay server answers one request."""

    kind: str = "stream"  # stream | http_error | json (a plain JSON answer) | drop | stall
    chunks: Sequence[bytes] = ()
    delay_s: float = 0.002
    status: int = 500
    body: bytes = b'{"error": {"message": "model overloaded", "type": "InternalServerError", "code": 500}}'
    stall_s: float = 2.0


@dataclass
class ReplayServer:
    """Raw HTTP/1.1 on loopback, chunked transfer encoding like uvicorn; records request bodies."""

    choose: Callable[[int], Reply]
    keep_requests: bool = True  # off for load tests, where a growing list would look like a leak
    requests: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0
    port: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.base_events.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ReplayServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("replay server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._server.close()
        for task in asyncio.all_tasks(self._loop):
            task.cancel()
        self._loop.run_until_complete(asyncio.sleep(0))
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = await reader.readexactly(length)
            index, self.count = self.count, self.count + 1
            if self.keep_requests:
                self.requests.append(orjson.loads(body) if body else {})
            await self._answer(self.choose(index), writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _answer(self, reply: Reply, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if reply.kind in ("http_error", "json"):
            reason = "OK" if reply.status == 200 else "Error"
            writer.write(
                f"HTTP/1.1 {reply.status} {reason}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(reply.body)}\r\nconnection: close\r\n\r\n".encode()
                + reply.body
            )
            await writer.drain()
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        )
        chunks = list(reply.chunks)
        if reply.kind == "drop":
            chunks = chunks[: max(1, len(chunks) // 2)]
        if reply.kind == "stall":
            chunks = chunks[:1]
        for chunk in chunks:
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            await writer.drain()
            await asyncio.sleep(reply.delay_s)
        if reply.kind == "drop":
            writer.transport.abort()
            return
        if reply.kind == "stall":
            await asyncio.sleep(reply.stall_s)
            return
        writer.write(b"0\r\n\r\n")
        await writer.drain()


def completion_stream(pieces: Sequence[str], model: str = "runs/merged") -> bytes:
    """An OpenAI-compatible /v1/completions SSE body as vLLM writes it (raw UTF-8, then [DONE])."""
    out = b""
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        chunk = {
            "id": "cmpl-3f9c2a8e5b7d4e0f",
            "object": "text_completion",
            "created": 1790000000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "text": piece,
                    "logprobs": None,
                    "finish_reason": "stop" if last else None,
                    "stop_reason": None,
                }
            ],
            "usage": None,
        }
        out += b"data: " + orjson.dumps(chunk) + b"\n\n"
    return out + b"data: [DONE]\n\n"
