"""The HTTP layer over ChatService: routes, the gate in front of them, metrics and the OpenAPI document.

- ``/health`` says the process answers (liveness); ``/ready`` says the backend can answer now
  (vLLM lists the model; the local model is loaded), 503 until then (readiness).
- ``/metrics``: Prometheus text format from the app's own registry (ops.Metrics).
- The gate, in order: an API key when one is configured (header ``X-API-Key``, or ``Authorization:
  Bearer``; the GET streams also take ``?apiKey=`` because a browser's EventSource cannot set
  headers), then a token bucket per client (``429`` with ``Retry-After``), then, for POST, a body
  size limit read without buffering past it (``413``). A refused stream is a 200 stream holding one
  ``error`` event, as every stream error is, because EventSource cannot read a non-200 body.
- OpenAPI: the query parameters, the feedback body (WeeklyRecord) and the answers are declared so
  ``/docs`` shows them, while validation stays the service's own: a missing or bad field is a 400
  ``error`` event or JSON body naming the field, never FastAPI's 422.

fastapi is imported inside :func:`create_app` (the ``serve`` extra).
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoint annotations at runtime, and
# ``Request`` and ``Query`` are imported inside create_app, where only evaluated annotations see them.
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, Field

from ..models import WeeklyRecord
from .app import (
    BASE_INFO_PATH,
    FEEDBACK_PATH,
    FREE_TEXT_PATH,
    MAX_FEEDBACK_BODY,
    SSE_HEADERS,
    ChatService,
    error_payload,
)
from .ops import (
    API_KEY_HEADER,
    API_KEY_QUERY,
    GenerationHook,
    Metrics,
    RateLimit,
    RateLimiter,
    body_outcome,
    client_identity,
    key_matches,
    observed,
    presented_key,
    retry_after,
)
from .sse import format_event
from .upstreams import READY_TIMEOUT_S, backend_ready, start_health_checks

ERROR_CODES = (
    "invalid_request",
    "unauthorized",
    "rate_limited",
    "too_large",
    "truncated",
    "no_eos",
    "unparsable",
    "wrong_count",
    "invalid_line",
    "backend_error",
    "backend_unavailable",
    "backend_timeout",
    "internal",
)

STREAM_PROTOCOL = f"""Server-sent events (`text/event-stream`). Every event's data is one JSON object
`{{"status", "message", "data"}}`:

- `challenge`, once per complete and validated challenge line (index 1 to 3):
  `{{"status": 200, "message": "challenge", "data": {{"index", "title", "description", "category", "label"}}}}`;
- then exactly one `close`: `{{"status": 200, "message": "challenges recommended", "data": {{"recommend",
  "challenges": [{{"title", "description", "category", "label"}}, ...]}}}}`;
- or exactly one `error`: `{{"status": <int>, "message": "<text>", "data": {{"code": "<reason>"}}}}`, with code one of
  {", ".join(f"`{code}`" for code in ERROR_CODES)}. An `invalid_request` message starts with the field name;
  `rate_limited` comes with a `Retry-After` header.

Nothing follows `close` or `error`. Errors arrive in a 200 stream, because a browser's EventSource cannot read a
non-200 body. Hangul in a URL must be percent-encoded: `curl -N -G --data-urlencode location=도시 ...` does it."""

API_KEY_DOC = (
    f"When the server has an API key, send it in the `{API_KEY_HEADER}` header "
    f"(or `Authorization: Bearer KEY`); the two GET streams also take `?{API_KEY_QUERY}=KEY`, "
    "because EventSource cannot set headers."
)


# --------------------------------------------------------------------------------------------
# answer shapes, for the OpenAPI document (the service builds the real ones)


class ErrorData(BaseModel):
    code: str = Field(description="a stable reason code: " + ", ".join(ERROR_CODES))


class ErrorBody(BaseModel):
    """An error, as a JSON answer or as the data of an ``error`` event."""

    status: int = Field(description="the HTTP-style status (400, 401, 413, 429, 500, 502, 503, 504)")
    message: str = Field(description="what went wrong; for invalid_request it starts with the field name")
    data: ErrorData


class FeedbackData(BaseModel):
    feedback: str = Field(description="at most 100 characters, checked like the dataset's feedback")


class FeedbackBody(BaseModel):
    status: int = 200
    message: str = "feedback generated"
    data: FeedbackData


class StatusBody(BaseModel):
    status: int
    message: str
    data: dict[str, Any]


# --------------------------------------------------------------------------------------------
# options and the gate


@dataclass(frozen=True)
class HttpOptions:
    """What the operator chose at start: keys, CORS origins, the rate limit and the body limit."""

    api_keys: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    rate_limit: RateLimit | None = None
    max_body_bytes: int = MAX_FEEDBACK_BODY
    ready_timeout_s: float = READY_TIMEOUT_S


@dataclass(frozen=True)
class Refusal:
    """A request turned away before the service saw it."""

    status: int
    code: str
    message: str
    retry_after_s: int | None = None

    def body(self) -> dict[str, Any]:
        return error_payload(self.status, self.message, self.code)

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after_s is None else {"Retry-After": str(self.retry_after_s)}


@dataclass
class Gate:
    """API key, then rate limit; None means the request may go on."""

    options: HttpOptions
    limiter: RateLimiter | None

    def check(
        self, headers: Mapping[str, str], query: Mapping[str, str], host: str | None, *, query_key: bool, limited: bool
    ) -> Refusal | None:
        key = presented_key(headers, query, allow_query=query_key)
        if self.options.api_keys and not key_matches(key, self.options.api_keys):
            where = f"the {API_KEY_HEADER} header" + (f" or ?{API_KEY_QUERY}=" if query_key else "")
            problem = "missing" if not key else "wrong"
            return Refusal(401, "unauthorized", f"{API_KEY_HEADER}: API key {problem}; send it in {where}")
        if limited and self.limiter is not None:
            # By key only when keys are checked: an unchecked key would let a client pick a fresh bucket.
            wait = self.limiter.take(client_identity(key if self.options.api_keys else None, host))
            if wait > 0:
                seconds = retry_after(wait)
                return Refusal(429, "rate_limited", f"too many requests; retry in {seconds} s", seconds)
        return None


def too_large(limit: int) -> Refusal:
    return Refusal(413, "too_large", f"body: larger than {limit} bytes")


async def read_capped(chunks: AsyncIterator[bytes], declared_length: str | None, limit: int) -> bytes | None:
    """The request body, or None as soon as it is known to pass ``limit`` (nothing past it is buffered)."""
    if declared_length is not None and declared_length.isdigit() and int(declared_length) > limit:
        return None
    body = bytearray()
    async for chunk in chunks:
        if len(body) + len(chunk) > limit:
            return None
        body += chunk
    return bytes(body)


async def single_event(event: bytes) -> AsyncIterator[bytes]:
    yield event


# --------------------------------------------------------------------------------------------
# OpenAPI touches FastAPI cannot express from the signatures


def add_request_body(openapi: dict[str, Any], path: str, model: type[BaseModel]) -> None:
    """Document ``model`` as the JSON body of ``POST path`` (the handler reads the raw body itself)."""
    schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    openapi["paths"][path]["post"]["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
    }


def drop_validation_response(openapi: dict[str, Any], path: str) -> None:
    """The stream routes never answer 422: the service validates and sends a 400 ``error`` event."""
    openapi["paths"][path]["get"].get("responses", {}).pop("422", None)


def finish_openapi(openapi: dict[str, Any]) -> dict[str, Any]:
    add_request_body(openapi, FEEDBACK_PATH, WeeklyRecord)
    for path in (BASE_INFO_PATH, FREE_TEXT_PATH):
        drop_validation_response(openapi, path)
    return openapi


# --------------------------------------------------------------------------------------------
# the app


def create_app(
    service: ChatService, options: HttpOptions | None = None, clock: Callable[[], float] = time.monotonic
) -> Any:
    """A FastAPI app over ``service``; the backend's checks start with the app and it is closed at shutdown."""
    from fastapi import Depends, FastAPI, Query, Request
    from fastapi.exception_handlers import request_validation_exception_handler
    from fastapi.exceptions import RequestValidationError
    from fastapi.middleware.cors import CORSMiddleware
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from fastapi.security import APIKeyHeader, APIKeyQuery

    from .page import mount_page

    options = options or HttpOptions()
    metrics = Metrics()
    limiter = RateLimiter(options.rate_limit, clock) if options.rate_limit is not None else None
    gate = Gate(options, limiter)
    service.on_generation = GenerationHook.over(metrics, service.on_generation)

    class EventStream(StreamingResponse):
        media_type = "text/event-stream"

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await start_health_checks(service.backend)
        yield
        await service.backend.aclose()

    app = FastAPI(
        title="kochallenge chatbot",
        description="Eco-challenge recommendations (server-sent events) and weekly feedback. " + API_KEY_DOC,
        lifespan=lifespan,
    )
    if options.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(options.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=[API_KEY_HEADER, "Content-Type", "Authorization", "Last-Event-ID"],
            expose_headers=["Retry-After"],
            max_age=600,
        )

    # Documentation only (auto_error=False: they never refuse); the gate checks the key itself.
    header_key = [Depends(APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description=API_KEY_DOC))]
    query_key = [Depends(APIKeyQuery(name=API_KEY_QUERY, auto_error=False, description=API_KEY_DOC))]
    stream_security = header_key + query_key if options.api_keys else []
    json_security = header_key if options.api_keys else []

    def refusal_for(request: Request, *, query_key: bool, limited: bool = True) -> Refusal | None:
        host = request.client.host if request.client is not None else None
        return gate.check(request.headers, request.query_params, host, query_key=query_key, limited=limited)

    def respond_stream(request: Request, endpoint: str) -> Response:
        refusal = refusal_for(request, query_key=True)
        headers = dict(SSE_HEADERS)
        if refusal is not None:
            events = single_event(format_event("error", refusal.body()))
            headers.update(refusal.headers())
        else:
            # The key never reaches the service (or its logs and prompts).
            params = {k: v for k, v in request.query_params.items() if k != API_KEY_QUERY}
            flow = service.base_info_events if endpoint == "base_info" else service.free_text_events
            events = flow(params)
        return EventStream(observed(events, endpoint, metrics, clock), headers=headers)

    # ---- health ------------------------------------------------------------------------------
    @app.get("/health", summary="Liveness: the process answers", response_model=StatusBody)
    async def health() -> dict[str, Any]:
        data = {"backend": service.backend.name, "sessions": len(service.sessions)}
        return {"status": 200, "message": "ok", "data": data}

    @app.get(
        "/ready",
        summary="Readiness: the backend can answer now",
        description="200 once vLLM lists the served model in /v1/models (every replica is asked), or the local "
        "model is loaded; 503 with code backend_unavailable until then.",
        response_model=StatusBody,
        responses={503: {"model": ErrorBody, "description": "the backend cannot answer yet"}},
    )
    async def ready() -> JSONResponse:
        ok, detail = await backend_ready(service.backend, options.ready_timeout_s)
        if not ok:
            return JSONResponse(error_payload(503, f"not ready: {detail}", "backend_unavailable"), status_code=503)
        data = {"backend": service.backend.name, "detail": detail}
        return JSONResponse({"status": 200, "message": "ready", "data": data})

    @app.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        dependencies=json_security,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, 401: {"model": ErrorBody}},
    )
    async def prometheus_metrics(request: Request) -> Response:
        refusal = refusal_for(request, query_key=False, limited=False)  # scrapes are not rate limited
        if refusal is not None:
            return JSONResponse(refusal.body(), status_code=refusal.status)
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    # ---- the API -----------------------------------------------------------------------------
    categories = ", ".join(f"`{c.key}` ({c.name})" for c in service.pools.categories)
    limits = service.settings
    stream_doc: dict[str, Any] = {
        "response_class": EventStream,
        "dependencies": stream_security,
        "responses": {200: {"description": STREAM_PROTOCOL}},
    }
    session_doc = f"Conversation id chosen by the client (at most {limits.max_session_id_length} characters)."
    SessionId = Annotated[str, Query(alias="sessionId", description=session_doc, examples=["s1"])]

    @app.get(BASE_INFO_PATH, summary="Challenges for a place, a work type and a category", **stream_doc)
    async def base_info(
        request: Request,
        session_id: SessionId,
        location: Annotated[
            str,
            Query(
                description=f"Where the user lives, free text without commas (at most {limits.max_field_length}).",
                examples=["도시"],
            ),
        ],
        work_type: Annotated[
            str,
            Query(
                alias="workType",
                description=f"The user's work, free text without commas (at most {limits.max_field_length}).",
                examples=["사무직"],
            ),
        ],
        category: Annotated[
            str,
            Query(
                description=f"A configured category, by key (any case) or Korean name: {categories}.",
                examples=[service.pools.categories[0].key],
                json_schema_extra={"enum": [c.key for c in service.pools.categories]},
            ),
        ],
    ) -> Response:
        return respond_stream(request, "base_info")

    @app.get(FREE_TEXT_PATH, summary="Challenges for a message in the conversation", **stream_doc)
    async def free_text(
        request: Request,
        session_id: SessionId,
        message: Annotated[
            str,
            Query(
                description=f"What the user wrote ({limits.min_message_length} to {limits.max_message_length} "
                "characters); a category it names becomes the session's.",
                examples=["비건 챌린지 해 보고 싶어요"],
            ),
        ],
    ) -> Response:
        return respond_stream(request, "free_text")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        """A stream request missing a declared parameter: the service answers it (a 400 error event)."""
        route = request.scope.get("route")
        endpoint = getattr(route, "name", None)
        if endpoint in ("base_info", "free_text"):
            return respond_stream(request, endpoint)
        return await request_validation_exception_handler(request, exc)

    @app.post(
        FEEDBACK_PATH,
        summary="Feedback on one member's week",
        description=f"The body is a WeeklyRecord (at most {options.max_body_bytes} bytes). Errors answer with "
        "their status and `data.code`; a bad field is named by its JSON path (`personalChallenges.0.title`).",
        response_model=FeedbackBody,
        dependencies=json_security,
        responses={
            status: {"model": ErrorBody, "description": description}
            for status, description in (
                (400, "invalid_request: a missing or bad field"),
                (401, "unauthorized"),
                (413, "too_large"),
                (429, "rate_limited (see Retry-After)"),
                (502, "the model's feedback failed the dataset checks, or the backend failed"),
                (503, "backend_unavailable"),
                (504, "backend_timeout"),
            )
        },
    )
    async def feedback(request: Request) -> JSONResponse:
        start = clock()
        outcome: tuple[str, int] = ("internal", 500)  # what a bug in the service leaves
        try:
            status, answer, headers = await answer_feedback(request)
            outcome = body_outcome(status, answer)
            return JSONResponse(answer, status_code=status, headers=headers)
        finally:
            metrics.finish("feedback", outcome, clock() - start)

    async def answer_feedback(request: Request) -> tuple[int, dict[str, Any], dict[str, str]]:
        refusal = refusal_for(request, query_key=False)
        if refusal is None:
            length = request.headers.get("content-length")
            body = await read_capped(request.stream(), length, options.max_body_bytes)
            if body is not None:
                status, answer = await service.feedback(body)
                return status, answer, {}
            refusal = too_large(options.max_body_bytes)
        return refusal.status, refusal.body(), refusal.headers()

    original_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        return finish_openapi(original_openapi())

    app.openapi = openapi  # type: ignore[method-assign]
    mount_page(app, service)  # the try-it page at /
    return app
