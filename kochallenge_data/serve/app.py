"""The chatbot API: two recommendation streams (server-sent events) and weekly feedback.

Every prompt is rendered with the one prompt layout (prompt.py) from the same input templates the
dataset uses, with the first instruction phrasing of the task's pool, so what the server sends
is a prompt the model was trained on.

Recommendation streams send one ``challenge`` event per challenge as soon as its line is complete
and passes the dataset's checks, then exactly one ``close`` with the parsed answer, or one
``error``; nothing follows either. An answer the token limit cut, one without the model's stop,
one that does not parse, has the wrong count or a line that fails the checks ends in ``error``,
never in ``close`` (answer_lines.py). Each event's data is one JSON object ``{"status",
"message", "data"}``: the challenge for ``challenge``, the recommendation for ``close``, ``{"code"}``
for ``error``. Validation errors arrive as an ``error`` event with status 400 in a 200 stream,
because a browser's EventSource cannot read a non-200 body.

The HTTP layer (routes, middleware, OpenAPI) is http.py; fastapi is imported only there, inside ``create_app``.
"""

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from ..checks.record import RecordChecker
from ..errors import FormatError, KochallengeError
from ..formats import parse_recommendation
from ..models import Challenge, Recommendation, Task, WeeklyRecord
from ..pool_files import Category
from ..pools import Pools
from ..prompt import PromptLayout, serving_instruction
from ..templates import Templates
from ..text import FEEDBACK_LIMIT, nfc, trim
from .answer_lines import AnswerError, AnswerLines
from .backends import Backend, BackendError, BackendTimeout, BackendUnavailable, Finish, GenerationRequest, collect
from .guided import recommendation_regex
from .sessions import SessionStore, Turn
from .sse import format_event

log = logging.getLogger("kochallenge_data.serve")

BASE_INFO_PATH = "/ai/chatbot/recommendation/base-info"
FREE_TEXT_PATH = "/ai/chatbot/recommendation/free-text"
FEEDBACK_PATH = "/ai/feedback"
MAX_FEEDBACK_BODY = 64 * 1024
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass(frozen=True)
class ServeSettings:
    """Limits and shapes of the API; the defaults match the dataset (3 challenges, 100-character feedback)."""

    expected_challenges: int = 3
    max_tokens: int = 256
    feedback_max_tokens: int = 200
    min_message_length: int = 5
    max_message_length: int = 500
    max_field_length: int = 40
    max_session_id_length: int = 128
    json_output: bool = False
    guided_decoding: bool = True
    feedback_limit: int = FEEDBACK_LIMIT


class RequestError(KochallengeError):
    """A request field that is missing or invalid (status 400); the message starts with the field."""

    status = 400
    code = "invalid_request"

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True)
class BaseInfoRequest:
    session_id: str
    location: str
    work_type: str
    category: Category


@dataclass(frozen=True)
class FreeTextRequest:
    session_id: str
    message: str


# --------------------------------------------------------------------------------------------
# request validation (pure)


def required_text(params: Mapping[str, str], name: str, max_length: int) -> str:
    """A present, non-blank, single-line field of at most ``max_length`` characters, NFC."""
    value = params.get(name)
    if value is None:
        raise RequestError(name, "is required")
    value = nfc(value).strip()
    if not value:
        raise RequestError(name, "is empty")
    if len(value) > max_length:
        raise RequestError(name, f"is {len(value)} characters; at most {max_length}")
    if any(ord(c) < 32 for c in value):
        raise RequestError(name, "contains a line break or control character")
    return value


def find_category(value: str, pools: Pools) -> Category | None:
    """A configured category by English key (any case) or Korean name."""
    for category in pools.categories:
        if value.upper() == category.key or value == category.name:
            return category
    return None


def category_named_in(text: str, pools: Pools) -> Category | None:
    """The category a message names ("비건 챌린지 해 보고 싶어요" -> VEGAN): the longest name found."""
    named = [c for c in pools.categories if c.name in text or c.key.lower() in text.lower()]
    return max(named, key=lambda c: len(c.name), default=None)


def parse_base_info(params: Mapping[str, str], pools: Pools, settings: ServeSettings) -> BaseInfoRequest:
    session_id = required_text(params, "sessionId", settings.max_session_id_length)
    location = required_text(params, "location", settings.max_field_length)
    work_type = required_text(params, "workType", settings.max_field_length)
    for name, value in (("location", location), ("workType", work_type)):
        if "," in value:
            raise RequestError(name, "cannot contain ',' (it separates the fields of the model's input)")
    raw_category = required_text(params, "category", settings.max_field_length)
    category = find_category(raw_category, pools)
    if category is None:
        choices = ", ".join(f"{c.key} ({c.name})" for c in pools.categories)
        raise RequestError("category", f"{raw_category!r} is not a configured category; use one of {choices}")
    return BaseInfoRequest(session_id, location, work_type, category)


def parse_free_text(params: Mapping[str, str], settings: ServeSettings) -> FreeTextRequest:
    session_id = required_text(params, "sessionId", settings.max_session_id_length)
    message = params.get("message")
    if message is None:
        raise RequestError("message", "is required")
    message = nfc(message).strip()
    if len(message) < settings.min_message_length:
        raise RequestError("message", f"is {len(message)} characters; write at least {settings.min_message_length}")
    if len(message) > settings.max_message_length:
        raise RequestError("message", f"is {len(message)} characters; at most {settings.max_message_length}")
    return FreeTextRequest(session_id, message)


def parse_weekly_record(body: bytes) -> WeeklyRecord:
    """The feedback request body; a bad field is named by its JSON path (``personalChallenges.0.title``)."""
    try:
        return WeeklyRecord.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        place = ".".join(str(p) for p in first["loc"]) or "body"
        raise RequestError(place, str(first["msg"])) from exc


def weekly_record_input(record: WeeklyRecord) -> str:
    """The record as the dataset writes a feedback input (key order, ISO dates, compact JSON)."""
    data = {
        "memberId": record.member_id,
        "personalChallenges": [
            {"id": p.id, "title": p.title, "isSuccess": p.is_success} for p in record.personal_challenges
        ],
        "groupChallenges": [
            {
                "id": g.id,
                "title": g.title,
                "startDate": g.start_date.isoformat(),
                "endDate": g.end_date.isoformat(),
                "submissions": [
                    {"isSuccess": s.is_success, "submittedAt": s.submitted_at.isoformat()} for s in g.submissions
                ],
            }
            for g in record.group_challenges
        ],
    }
    return orjson.dumps(data).decode()


def recommendation_schema(expected_challenges: int) -> dict[str, Any]:
    """The JSON object form as a JSON schema, for vLLM's structured output."""
    challenge = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "description": {"type": "string"}},
        "required": ["title", "description"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "recommend": {"type": "string"},
            "challenges": {
                "type": "array",
                "items": challenge,
                "minItems": expected_challenges,
                "maxItems": expected_challenges,
            },
        },
        "required": ["recommend", "challenges"],
        "additionalProperties": False,
    }


# --------------------------------------------------------------------------------------------
# payloads (pure)


def payload(status: int, message: str, data: object) -> dict[str, Any]:
    return {"status": status, "message": message, "data": data}


def error_payload(status: int, message: str, code: str) -> dict[str, Any]:
    """An error body: ``data.code`` is the stable reason clients branch on (see the module docstring)."""
    return payload(status, message, {"code": code})


def backend_error_code(exc: BackendError) -> str:
    if isinstance(exc, BackendUnavailable):
        return "backend_unavailable"
    if isinstance(exc, BackendTimeout):
        return "backend_timeout"
    return "backend_error"


def challenge_category(title: str, text: str, pools: Pools, current: str | None) -> Category:
    """The pool's category for a known title, else the session's, else one the text names, else the first."""
    for challenge in pools.challenges:
        if challenge.title == title:
            return next(c for c in pools.categories if c.key == challenge.category)
    if current is not None:
        known = find_category(current, pools)
        if known is not None:
            return known
    return category_named_in(text, pools) or pools.categories[0]


def challenge_data(challenge: Challenge, pools: Pools, current: str | None) -> dict[str, Any]:
    """``{"title", "description", "category", "label"}`` for one challenge."""
    category = challenge_category(challenge.title, f"{challenge.title} {challenge.description}", pools, current)
    return {
        "title": challenge.title,
        "description": challenge.description,
        "category": category.key,
        "label": category.name,
    }


def close_data(recommendation: Recommendation, pools: Pools, current: str | None) -> dict[str, Any]:
    """``{"recommend", "challenges": [{"title", "description", "category", "label"}]}``."""
    items = [challenge_data(c, pools, current) for c in recommendation.challenges]
    return {"recommend": recommendation.recommend, "challenges": items}


def json_answer(text: str, finish: Finish, expected: int) -> Recommendation:
    """The JSON object form (``--json-output``), delivered only after a real stop."""
    if finish.reason == "length":
        raise AnswerError("truncated", "the model reached the token limit before finishing its answer")
    if finish.reason != "stop":
        raise AnswerError("no_eos", f"the answer ended without the model's stop token (finish: {finish.reason})")
    try:
        return parse_recommendation(text.strip(), expected)
    except FormatError as exc:
        code = "wrong_count" if "challenges, found" in str(exc) else "unparsable"
        raise AnswerError(code, f"the model's answer is not a valid recommendation: {exc}") from exc


# --------------------------------------------------------------------------------------------
# the service


@dataclass
class ChatService:
    """Everything a request needs: the backend, pools, templates, prompt layout and sessions."""

    backend: Backend
    pools: Pools
    templates: Templates
    layout: PromptLayout
    sessions: SessionStore = field(default_factory=SessionStore)
    settings: ServeSettings = field(default_factory=ServeSettings)
    on_generation: Callable[[str, int | None], None] | None = None
    """Called once per finished generation with the endpoint kind and the tokens generated (metrics)."""
    checker: RecordChecker = field(init=False)

    def __post_init__(self) -> None:
        # The dataset's own checks, minus Kiwi spacing (slow, and a style matter rather than a broken answer).
        self.checker = RecordChecker(check_spacing=False, feedback_limit=self.settings.feedback_limit)

    # prompts ------------------------------------------------------------------------------
    def prompt(self, task: Task, input_text: str) -> str:
        return self.layout.render(serving_instruction(self.pools, task), input_text)

    def base_info_input(self, request: BaseInfoRequest) -> str:
        return self.templates.base_info_input.render(
            location=request.location, work_type=request.work_type, category=request.category.name
        )

    def free_text_input(self, request: FreeTextRequest) -> str:
        return self.templates.free_text_input.render(message=request.message)

    def base_info_prompt(self, request: BaseInfoRequest) -> str:
        return self.prompt("base_info", self.base_info_input(request))

    def free_text_prompt(self, request: FreeTextRequest) -> str:
        return self.prompt("free_text", self.free_text_input(request))

    def feedback_prompt(self, record: WeeklyRecord) -> str:
        return self.prompt("feedback", weekly_record_input(record))

    def generation_request(self, prompt: str) -> GenerationRequest:
        """Greedy, limited to the trained answer length, held to the newline format where the backend can."""
        expected = self.settings.expected_challenges
        if self.settings.json_output:
            return GenerationRequest(prompt, self.settings.max_tokens, json_schema=recommendation_schema(expected))
        regex = recommendation_regex(expected) if self.settings.guided_decoding else None
        return GenerationRequest(prompt=prompt, max_tokens=self.settings.max_tokens, regex=regex)

    def _finished(self, kind: str, finish: Finish | None) -> None:
        if self.on_generation is not None:
            self.on_generation(kind, finish.tokens if finish is not None else None)

    # flows ----------------------------------------------------------------------------------
    async def base_info_events(self, params: Mapping[str, str]) -> AsyncIterator[bytes]:
        try:
            request = parse_base_info(params, self.pools, self.settings)
        except RequestError as exc:
            yield format_event("error", error_payload(exc.status, str(exc), exc.code))
            return
        session = self.sessions.touch(request.session_id)
        session.category = request.category.key
        input_text = self.base_info_input(request)
        async for event in self.recommendation_events(
            self.prompt("base_info", input_text), request.session_id, "base_info", input_text, request.category.key
        ):
            yield event

    async def free_text_events(self, params: Mapping[str, str]) -> AsyncIterator[bytes]:
        try:
            request = parse_free_text(params, self.settings)
        except RequestError as exc:
            yield format_event("error", error_payload(exc.status, str(exc), exc.code))
            return
        session = self.sessions.touch(request.session_id)
        named = category_named_in(request.message, self.pools)
        if named is not None:
            session.category = named.key  # a message may switch the conversation's category
        input_text = self.free_text_input(request)
        async for event in self.recommendation_events(
            self.prompt("free_text", input_text), request.session_id, "free_text", input_text, session.category
        ):
            yield event

    async def recommendation_events(
        self, prompt: str, session_id: str, kind: str, input_text: str, category: str | None
    ) -> AsyncIterator[bytes]:
        """One ``challenge`` event per complete, valid line, then one ``close`` or one ``error``."""
        task: Task = "base_info" if kind == "base_info" else "free_text"
        lines = AnswerLines(self.settings.expected_challenges, task, serving_instruction(self.pools, task), input_text)
        finish: Finish | None = None
        sent = 0
        try:
            if self.settings.json_output:
                text, finish = await collect(self.backend, self.generation_request(prompt))
                recommendation = json_answer(text, finish, self.settings.expected_challenges)
                pending = list(recommendation.challenges)
            else:
                async for piece in self.backend.stream(self.generation_request(prompt)):
                    if isinstance(piece, Finish):
                        finish = piece
                        continue
                    for challenge in lines.push(piece):
                        sent += 1
                        yield self._challenge_event(sent, challenge, category)
                pending, recommendation = lines.finish(finish.reason if finish is not None else "unknown")
            for challenge in pending:
                sent += 1
                yield self._challenge_event(sent, challenge, category)
            data = close_data(recommendation, self.pools, category)
        except BackendError as exc:
            yield format_event("error", error_payload(exc.status, str(exc), backend_error_code(exc)))
            return
        except AnswerError as exc:
            self._finished(kind, finish)
            yield format_event("error", error_payload(502, str(exc), exc.code))
            return
        except Exception:  # a bug: keep its trace in the log, and still end the stream properly
            log.exception("recommendation stream failed")
            yield format_event(
                "error", error_payload(500, "internal error while answering; see the server log", "internal")
            )
            return
        self._finished(kind, finish)
        titles = tuple(item["title"] for item in data["challenges"])
        self.sessions.add_turn(session_id, Turn(kind, input_text, titles))
        yield format_event("close", payload(200, "challenges recommended", data))

    def _challenge_event(self, index: int, challenge: Challenge, category: str | None) -> bytes:
        return format_event(
            "challenge", payload(200, "challenge", {"index": index, **challenge_data(challenge, self.pools, category)})
        )

    async def feedback(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """Status and JSON body for POST /ai/feedback."""
        if len(body) > MAX_FEEDBACK_BODY:
            return 413, error_payload(413, f"body: larger than {MAX_FEEDBACK_BODY} bytes", "too_large")
        try:
            record = parse_weekly_record(body)
        except RequestError as exc:
            return exc.status, error_payload(exc.status, str(exc), exc.code)
        prompt = self.feedback_prompt(record)
        request = GenerationRequest(prompt=prompt, max_tokens=self.settings.feedback_max_tokens)
        try:
            text, finish = await collect(self.backend, request)
        except BackendError as exc:
            return exc.status, error_payload(exc.status, str(exc), backend_error_code(exc))
        self._finished("feedback", finish)
        if finish.reason == "length":
            return 502, error_payload(
                502, "the model reached the token limit before finishing its feedback", "truncated"
            )
        if finish.reason != "stop":
            return 502, error_payload(502, f"the feedback ended without the model's stop ({finish.reason})", "no_eos")
        feedback = trim(text.strip(), self.settings.feedback_limit)
        candidate = {
            "instruction": serving_instruction(self.pools, "feedback"),
            "input": weekly_record_input(record),
            "output": feedback,
        }
        findings = self.checker.check(0, candidate, "feedback")
        if findings:
            problems = "; ".join(f"{f.code}: {f.message}" for f in findings[:3])
            return 502, error_payload(502, f"the model's feedback fails the dataset checks: {problems}", "invalid_line")
        return 200, payload(200, "feedback generated", {"feedback": feedback})
