"""What an operator needs around the API: Prometheus metrics, API keys, a per-client rate limit.

Nothing here knows FastAPI; http.py wires these into the routes. prometheus_client is imported
inside :class:`Metrics` (the ``serve`` extra).

- :class:`Metrics` keeps its own registry, so two apps in one process (the tests) never share counts.
- :func:`event_outcome` reads how a stream ended from the bytes ``sse.format_event`` wrote, so the
  metrics need no hook inside ChatService: the wire is the record of what the client saw.
- :class:`RateLimiter` is a token bucket per client: ``N/min`` allows a burst of N, then one request
  every 60/N seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import KochallengeError

API_KEY_HEADER = "X-API-Key"
API_KEY_QUERY = "apiKey"
API_KEY_ENV = "KOCHALLENGE_API_KEY"

# The reason code of each error status, for error bodies that carry no code of their own.
STATUS_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    413: "too_large",
    429: "rate_limited",
    500: "internal",
    502: "backend_error",
    503: "backend_unavailable",
    504: "backend_timeout",
}

# Seconds. Streams: the first event is the first complete challenge, so it waits for a whole line.
FIRST_EVENT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)
TOTAL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
TOKEN_BUCKETS = (16, 32, 64, 96, 128, 192, 256, 384, 512, 1024)

Clock = Callable[[], float]


# --------------------------------------------------------------------------------------------
# outcomes


def error_code(status: int, data: object) -> str:
    """The reason code of an error payload: its own ``data.code``, else the one its status stands for."""
    if isinstance(data, dict) and isinstance(data.get("code"), str):
        return str(data["code"])
    return STATUS_CODES.get(status, f"http_{status}")


def event_outcome(chunk: bytes) -> tuple[str, int] | None:
    """``("close", 200)`` or ``(code, status)`` when ``chunk`` holds a final event; None for ``challenge``."""
    outcome: tuple[str, int] | None = None
    for block in chunk.split(b"\n\n"):
        name, data = b"", b""
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip()
            elif line.startswith(b"data:"):
                data = line[5:].strip()
        if name == b"close":
            outcome = ("close", 200)
        elif name == b"error":
            try:
                body = orjson.loads(data)
            except orjson.JSONDecodeError:
                body = None
            status = body.get("status") if isinstance(body, dict) else None
            status = status if isinstance(status, int) else 500
            outcome = (error_code(status, body.get("data") if isinstance(body, dict) else None), status)
    return outcome


def body_outcome(status: int, body: object) -> tuple[str, int]:
    """How a JSON answer (feedback) ended: ``ok`` or its error code, with its HTTP status."""
    if status < 400:
        return "ok", status
    return error_code(status, body.get("data") if isinstance(body, dict) else None), status


# --------------------------------------------------------------------------------------------
# metrics


class Metrics:
    """Requests by endpoint and outcome, latencies, generated tokens and open streams, in one registry."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kochallenge_requests",
            "Finished requests by endpoint, outcome (close, ok, an error code, or disconnected) and status.",
            ["endpoint", "outcome", "status"],
            registry=self.registry,
        )
        self.first_event = Histogram(
            "kochallenge_first_event_seconds",
            "Seconds from a stream's request to its first event (a challenge, or the error).",
            ["endpoint"],
            buckets=FIRST_EVENT_BUCKETS,
            registry=self.registry,
        )
        self.duration = Histogram(
            "kochallenge_request_seconds",
            "Seconds from a request to its last byte (the close or error event, or the JSON answer).",
            ["endpoint"],
            buckets=TOTAL_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Histogram(
            "kochallenge_generated_tokens",
            "Tokens the model generated per answer (when the backend reports them).",
            ["endpoint"],
            buckets=TOKEN_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "kochallenge_streams_in_flight", "Streams open right now.", ["endpoint"], registry=self.registry
        )

    def finish(self, endpoint: str, outcome: tuple[str, int], seconds: float) -> None:
        code, status = outcome
        self.requests.labels(endpoint, code, str(status)).inc()
        self.duration.labels(endpoint).observe(seconds)

    def observe_generation(self, endpoint: str, tokens: int | None) -> None:
        """ChatService.on_generation: one call per finished generation."""
        if tokens is not None:
            self.tokens.labels(endpoint).observe(tokens)

    def exposition(self) -> tuple[bytes, str]:
        """The text format body and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


@dataclass
class GenerationHook:
    """ChatService.on_generation for one app's metrics, calling on to a hook someone set before (not to an
    earlier app's metrics: a service served again by a new app reports to the new app only)."""

    metrics: Metrics
    then: Callable[[str, int | None], None] | None = None

    @classmethod
    def over(cls, metrics: Metrics, previous: Callable[[str, int | None], None] | None) -> GenerationHook:
        return cls(metrics, previous.then if isinstance(previous, GenerationHook) else previous)

    def __call__(self, endpoint: str, tokens: int | None) -> None:
        self.metrics.observe_generation(endpoint, tokens)
        if self.then is not None:
            self.then(endpoint, tokens)


async def observed(
    events: AsyncIterator[bytes], endpoint: str, metrics: Metrics, clock: Clock = time.monotonic
) -> AsyncIterator[bytes]:
    """``events`` unchanged, recording first-event and total latency and how the stream ended."""
    start = clock()
    outcome: tuple[str, int] = ("disconnected", 499)  # what is left when the client goes before the end
    first = True
    gauge = metrics.in_flight.labels(endpoint)
    gauge.inc()
    try:
        async for chunk in events:
            if first:
                metrics.first_event.labels(endpoint).observe(clock() - start)
                first = False
            outcome = event_outcome(chunk) or outcome
            yield chunk
    except Exception:
        outcome = ("internal", 500)
        raise
    finally:
        gauge.dec()
        metrics.finish(endpoint, outcome, clock() - start)
        # The client left mid-stream: close the service's generator now (it cancels the upstream
        # generation) instead of whenever the garbage collector gets to it.
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()


# --------------------------------------------------------------------------------------------
# API keys


def key_matches(presented: str | None, keys: Iterable[str]) -> bool:
    """Constant-time comparison against every configured key."""
    if not presented:
        return False
    given = presented.encode()
    return any(hmac.compare_digest(given, key.encode()) for key in keys)


def presented_key(headers: Any, query: Any, allow_query: bool) -> str | None:
    """The key a client sent: the X-API-Key header, a bearer token, or (GET streams only) ``?apiKey=``."""
    key = headers.get(API_KEY_HEADER)
    if key:
        return str(key)
    authorization = str(headers.get("authorization") or "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()  # what Prometheus' scrape config sends as credentials
    if allow_query:
        value = query.get(API_KEY_QUERY)
        return str(value) if value else None
    return None


def is_loopback_host(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


# --------------------------------------------------------------------------------------------
# rate limit

RATE_UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0, "hour": 3600.0}


@dataclass(frozen=True)
class RateLimit:
    """``requests`` per ``period_s`` seconds, with a burst of ``requests``."""

    requests: int
    period_s: float

    @property
    def per_second(self) -> float:
        return self.requests / self.period_s


def parse_rate_limit(text: str) -> RateLimit:
    """``60/min`` (also ``/s`` and ``/h``)."""
    found = re.fullmatch(r"\s*(\d+)\s*/\s*([a-z]+)\s*", text.lower())
    if found is None or found.group(2) not in RATE_UNITS or int(found.group(1)) < 1:
        raise KochallengeError(f"--rate-limit {text!r}: write requests per period, e.g. 60/min (or 2/s, 1000/h)")
    return RateLimit(int(found.group(1)), RATE_UNITS[found.group(2)])


@dataclass
class RateLimiter:
    """A token bucket per client; the least recently seen clients are forgotten past ``max_clients``
    (a full bucket and a forgotten one are the same, so only clients hammering right now are kept)."""

    limit: RateLimit
    clock: Clock = time.monotonic
    max_clients: int = 100_000
    buckets: OrderedDict[str, tuple[float, float]] = field(default_factory=OrderedDict)  # client -> (tokens, at)

    def take(self, client: str) -> float:
        """0 when ``client`` may go now (one token taken), else the seconds until it may."""
        now = self.clock()
        tokens, at = self.buckets.pop(client, (float(self.limit.requests), now))
        tokens = min(float(self.limit.requests), tokens + (now - at) * self.limit.per_second)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.limit.per_second
        self.buckets[client] = (tokens, now)
        while len(self.buckets) > self.max_clients:
            self.buckets.popitem(last=False)
        return wait


def client_identity(key: str | None, host: str | None) -> str:
    """Whose bucket a request takes from: its API key (hashed: never kept in memory as sent), else its address."""
    if key:
        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"ip:{host or 'unknown'}"


def retry_after(wait_s: float) -> int:
    """The Retry-After header value: whole seconds, at least 1."""
    return max(1, math.ceil(wait_s))
