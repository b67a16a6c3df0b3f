"""Is the backend ready, and which vLLM replica answers next.

- :func:`backend_ready` answers ``/ready``: vLLM is ready when ``GET /v1/models`` lists the served
  model (a vLLM still loading weights does not answer yet); the transformers backend exists only
  once its model is loaded, so it is always ready.
- :class:`RoundRobinBackend` spreads requests over several OpenAI-compatible servers (vLLM
  replicas). A background task asks each ``/v1/models`` every few seconds; an upstream that fails a
  check, or fails a request with 503/504, is skipped until a check passes again. A request refused
  before any text arrived (connection refused, HTTP 503) moves on to the next healthy upstream, so
  a replica that just died costs the client nothing; once text has reached the client it cannot.

httpx is imported inside the functions that need it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import orjson

from .backends import (
    Backend,
    BackendError,
    BackendUnavailable,
    GenerationRequest,
    OpenAICompletionsBackend,
    Piece,
    TransformersBackend,
)

log = logging.getLogger("kochallenge_data.serve")

READY_TIMEOUT_S = 5.0
CHECK_INTERVAL_S = 5.0
RETRY_STATUS = 503  # refused before generating anything: safe to send to another upstream
UNHEALTHY_STATUSES = (503, 504)


def model_names(body: bytes) -> list[str] | None:
    """The ids of an OpenAI ``/v1/models`` answer, or None when it is not one."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    entries = data.get("data") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return None
    return [e["id"] for e in entries if isinstance(e, dict) and isinstance(e.get("id"), str)]


async def openai_ready(backend: OpenAICompletionsBackend, timeout_s: float = READY_TIMEOUT_S) -> tuple[bool, str]:
    """Whether ``backend``'s server answers ``/v1/models`` and lists its model, and what was seen."""
    import httpx

    where = backend.base_url
    try:
        # The backend's own client: the same proxy settings (none) and connection pool as the requests.
        response = await backend._client.get(
            "/v1/models", timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, backend.timeouts.connect))
        )
    except httpx.HTTPError as exc:
        return False, f"{where}: not answering ({type(exc).__name__})"
    if response.status_code != 200:
        return False, f"{where}: /v1/models answered HTTP {response.status_code}"
    names = model_names(response.content)
    if names is None:
        return False, f"{where}: /v1/models is not an OpenAI model list"
    if backend.model not in names:
        return False, f"{where}: serves {names}, not {backend.model!r}"
    return True, f"{where}: serves {backend.model}"


async def backend_ready(backend: Backend, timeout_s: float = READY_TIMEOUT_S) -> tuple[bool, str]:
    """Whether ``backend`` can answer now, and a line saying why (or why not)."""
    if isinstance(backend, RoundRobinBackend):
        return await backend.ready(timeout_s)
    if isinstance(backend, OpenAICompletionsBackend):
        return await openai_ready(backend, timeout_s)
    if isinstance(backend, TransformersBackend):
        return True, "model loaded in this process"
    return True, f"no readiness check for the {backend.name} backend"


async def start_health_checks(backend: Backend) -> None:
    """Start the backend's background checks, if it has any (called when the app starts)."""
    if isinstance(backend, RoundRobinBackend):
        backend.start()


@dataclass
class Upstream:
    """One replica and what the last check or request said about it."""

    backend: OpenAICompletionsBackend
    healthy: bool = True  # until the first check says otherwise: a fresh router serves at once
    detail: str = "not checked yet"

    def mark(self, healthy: bool, detail: str) -> None:
        if healthy != self.healthy:
            log.warning("upstream %s is now %s: %s", self.backend.base_url, "up" if healthy else "down", detail)
        self.healthy, self.detail = healthy, detail


class RoundRobinBackend:
    """Several vLLM replicas behind one Backend: healthy ones in turn, failed ones skipped."""

    name = "vllm"

    def __init__(
        self,
        upstreams: Sequence[OpenAICompletionsBackend],
        check_interval_s: float = CHECK_INTERVAL_S,
        check_timeout_s: float = READY_TIMEOUT_S,
    ) -> None:
        if not upstreams:
            raise ValueError("RoundRobinBackend needs at least one upstream")
        self.upstreams = [Upstream(backend) for backend in upstreams]
        self.check_interval_s = check_interval_s
        self.check_timeout_s = check_timeout_s
        self._turn = 0
        self._checker: asyncio.Task[None] | None = None

    # health ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start (or restart, on a new event loop) the background checks; needs a running loop."""
        loop = asyncio.get_running_loop()
        if self._checker is not None and not self._checker.done() and self._checker.get_loop() is loop:
            return
        self._checker = loop.create_task(self._watch(), name="upstream-health")

    async def _watch(self) -> None:
        while True:
            await self.check_all(self.check_timeout_s)
            await asyncio.sleep(self.check_interval_s)

    async def check_all(self, timeout_s: float) -> None:
        async def check(upstream: Upstream) -> None:
            upstream.mark(*await openai_ready(upstream.backend, timeout_s))

        await asyncio.gather(*(check(u) for u in self.upstreams))

    async def ready(self, timeout_s: float = READY_TIMEOUT_S) -> tuple[bool, str]:
        """Checks every upstream now; ready when at least one is healthy."""
        await self.check_all(timeout_s)
        healthy = sum(u.healthy for u in self.upstreams)
        details = "; ".join(u.detail for u in self.upstreams)
        return healthy > 0, f"{healthy} of {len(self.upstreams)} upstreams ready: {details}"

    # requests -------------------------------------------------------------------------------
    def candidates(self) -> list[Upstream]:
        """The healthy upstreams, starting with the one whose turn it is; the turn moves on."""
        count = len(self.upstreams)
        order = [self.upstreams[(self._turn + i) % count] for i in range(count)]
        self._turn = (self._turn + 1) % count
        return [u for u in order if u.healthy]

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Piece]:
        self.start()
        candidates = self.candidates()
        if not candidates:
            details = "; ".join(u.detail for u in self.upstreams)
            raise BackendUnavailable(f"none of the {len(self.upstreams)} vLLM upstreams is healthy: {details}")
        for number, upstream in enumerate(candidates, start=1):
            started = False
            try:
                async for piece in upstream.backend.stream(request):
                    started = True
                    yield piece
                return
            except BackendError as exc:
                if exc.status in UNHEALTHY_STATUSES:
                    upstream.mark(False, f"{upstream.backend.base_url}: {exc}")
                if started or exc.status != RETRY_STATUS or number == len(candidates):
                    raise
                log.warning("upstream %s refused a request; trying the next one", upstream.backend.base_url)

    async def aclose(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await self._checker
            self._checker = None
        for upstream in self.upstreams:
            await upstream.backend.aclose()
