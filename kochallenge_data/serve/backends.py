"""Where answers come from: vLLM over its OpenAI-compatible API, or transformers in-process.

Both take the exact training prompt and yield text pieces that never cut a character (see sse.py).
Every failure becomes a :class:`BackendError` with an HTTP-style status and a message that says
what to do, which the API turns into an ``error`` event.

Every stream ends with one :class:`Finish` after its text: why generation stopped (``stop`` for the
model's own eos, ``length`` for the token limit) and how many tokens it wrote, so the API can refuse
to deliver an answer the limit cut short.

- :class:`OpenAICompletionsBackend` streams ``POST /v1/completions`` (text completions, so the
  prompt is sent as trained, with no chat template). Guided decoding uses vLLM's
  ``structured_outputs: {"regex": ...}`` (or ``{"json": schema}``); the old ``guided_*`` fields were
  removed in vLLM 0.12.
- :class:`TransformersBackend` runs ``generate`` in a worker thread for development and tests.

httpx, torch and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from ..errors import KochallengeError
from .sse import SseParser, StreamDecodeError, TextStream, TokenDecoder, Utf8Decoder

MAX_ERROR_BODY = 2048
MAX_CONNECTIONS = 512


class BackendError(KochallengeError):
    """The backend could not produce an answer; ``status`` is what the API reports."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


class BackendUnavailable(BackendError):
    def __init__(self, message: str) -> None:
        super().__init__(message, status=503)


class BackendTimeout(BackendError):
    def __init__(self, message: str) -> None:
        super().__init__(message, status=504)


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate: the training-layout prompt, a token budget and, optionally, a decoding constraint
    (a regular expression or a JSON schema) for backends that can enforce one."""

    prompt: str
    max_tokens: int = 256
    json_schema: Mapping[str, Any] | None = None
    regex: str | None = None


@dataclass(frozen=True)
class Finish:
    """How a generation ended: ``stop`` (the model's eos or a stop string), ``length`` (the token limit) or
    ``unknown`` (the backend did not say); ``tokens`` is how many it generated, when known."""

    reason: str
    tokens: int | None = None


Piece = str | Finish
"""What a backend stream yields: text pieces, then exactly one Finish."""


class Backend(Protocol):
    name: str

    def stream(self, request: GenerationRequest) -> AsyncIterator[Piece]:
        """Text pieces as they are generated, then one Finish; raises BackendError."""
        ...

    async def aclose(self) -> None: ...


async def collect(backend: Backend, request: GenerationRequest) -> tuple[str, Finish]:
    """The whole answer as one string and how it ended (for feedback, which is not streamed)."""
    pieces: list[str] = []
    finish = Finish("unknown")
    async for piece in backend.stream(request):
        if isinstance(piece, Finish):
            finish = piece
        else:
            pieces.append(piece)
    return "".join(pieces), finish


# --------------------------------------------------------------------------------------------
# vLLM (or any OpenAI-compatible server)


@dataclass(frozen=True)
class HttpTimeouts:
    """Seconds: to connect, between two reads of the stream, and for a whole answer."""

    connect: float = 3.0
    read: float = 30.0
    total: float = 120.0


def completion_body(model: str, request: GenerationRequest) -> dict[str, Any]:
    """The ``/v1/completions`` request: greedy, streamed, with structured output when a schema is given."""
    body: dict[str, Any] = {
        "model": model,
        "prompt": request.prompt,
        "max_tokens": request.max_tokens,
        "temperature": 0.0,
        "stream": True,
        # The last chunk then carries usage.completion_tokens (OpenAI's and vLLM's stream option).
        "stream_options": {"include_usage": True},
    }
    if request.json_schema is not None:
        body["structured_outputs"] = {"json": dict(request.json_schema)}
    elif request.regex is not None:
        body["structured_outputs"] = {"regex": request.regex}
    return body


@dataclass(frozen=True)
class Chunk:
    """One streamed completion chunk: its text, and the finish reason and token count when it carries them."""

    text: str
    finish_reason: str | None = None
    completion_tokens: int | None = None


def parse_chunk(data: str) -> Chunk:
    """One streamed completion chunk; an ``error`` object from the server is raised."""
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BackendError(f"the backend sent an event that is not JSON: {data[:120]!r}") from exc
    if not isinstance(chunk, dict):
        raise BackendError(f"the backend sent a JSON {type(chunk).__name__}, not a completion chunk")
    if "error" in chunk:
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise BackendError(f"the backend reported an error mid-stream: {message}")
    usage = chunk.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    tokens = tokens if isinstance(tokens, int) else None
    choices = chunk.get("choices")
    if isinstance(choices, list) and not choices and tokens is not None:
        return Chunk("", None, tokens)  # the usage-only chunk that include_usage adds at the end
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise BackendError(f"the backend sent a chunk without choices: {data[:120]!r}")
    text = choices[0].get("text", "")
    if not isinstance(text, str):
        raise BackendError("the backend sent a choice whose text is not a string")
    reason = choices[0].get("finish_reason")
    return Chunk(text, reason if isinstance(reason, str) else None, tokens)


def completion_text(data: str) -> str:
    """The text of one streamed completion chunk."""
    return parse_chunk(data).text


def error_message(status: int, body: bytes) -> str:
    """The ``message`` of an OpenAI-style error body, or the start of the body."""
    try:
        data = orjson.loads(body)
        error = data.get("error") if isinstance(data, dict) else None
        message = error.get("message") if isinstance(error, dict) else (data.get("message") if data else None)
        if isinstance(message, str):
            return message
    except orjson.JSONDecodeError:
        pass
    return body[:300].decode("utf-8", errors="replace").strip() or f"HTTP {status}"


class OpenAICompletionsBackend:
    """Streams ``POST {base_url}/v1/completions`` from vLLM with timeouts on every wait."""

    name = "vllm"

    def __init__(self, base_url: str, model: str, timeouts: HttpTimeouts | None = None) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeouts = timeouts or HttpTimeouts()
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            # Waiting for a free connection counts as connecting; vLLM takes hundreds of streams at once.
            timeout=httpx.Timeout(self.timeouts.read, connect=self.timeouts.connect, pool=self.timeouts.connect),
            limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=64),
            trust_env=False,  # a proxy variable must not reroute loopback traffic
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Piece]:
        import httpx

        url = f"{self.base_url}/v1/completions"
        try:
            async for piece in self._stream(request):
                yield piece
        except httpx.ConnectError as exc:
            raise BackendUnavailable(
                f"cannot reach vLLM at {self.base_url} ({exc}); start it with `vllm serve MODEL_DIR` "
                "or pass the right --vllm-url"
            ) from exc
        except httpx.TimeoutException as exc:
            raise BackendTimeout(
                f"vLLM at {url} did not answer in time ({type(exc).__name__}); it may be overloaded or stuck"
            ) from exc
        except httpx.HTTPError as exc:
            raise BackendError(
                f"the connection to vLLM at {url} failed mid-answer ({type(exc).__name__}: {exc})"
            ) from exc
        except StreamDecodeError as exc:
            raise BackendError(str(exc)) from exc

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[Piece]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeouts.total
        body = completion_body(self.model, request)
        async with self._client.stream("POST", "/v1/completions", json=body) as response:
            if response.status_code != 200:
                raw = await _read_capped(response, MAX_ERROR_BODY)
                status = 503 if response.status_code in (502, 503, 504) else 502
                raise BackendError(
                    f"vLLM answered HTTP {response.status_code}: {error_message(response.status_code, raw)}",
                    status=status,
                )
            decoder, parser, text = Utf8Decoder(), SseParser(), TextStream()
            done = False
            reason: str | None = None
            tokens: int | None = None
            async for chunk in response.aiter_raw():
                for event in parser.feed(decoder.feed(chunk)):
                    if event.data.strip() == "[DONE]":
                        done = True
                        break
                    parsed = parse_chunk(event.data)
                    reason = parsed.finish_reason or reason
                    tokens = parsed.completion_tokens if parsed.completion_tokens is not None else tokens
                    ready = text.push(parsed.text)
                    if ready:
                        yield ready
                if done:
                    break
                if loop.time() > deadline:
                    raise BackendTimeout(f"vLLM took longer than {self.timeouts.total:g} s for one answer")
            if not done:
                decoder.finish()
                raise BackendError("vLLM closed the stream before [DONE]: the answer is incomplete")
            tail = text.finish()
            if tail:
                yield tail
            yield Finish(reason or "unknown", tokens)


async def _read_capped(response: Any, limit: int) -> bytes:
    data = b""
    async for chunk in response.aiter_raw():
        data += chunk
        if len(data) >= limit:
            break
    return data[:limit]


# --------------------------------------------------------------------------------------------
# transformers, in-process


_END = object()


def generation_finish(new_ids: list[int], eos: int | None, max_tokens: int) -> Finish:
    """Why ``generate`` stopped, from the tokens it wrote: eos last means the model ended its answer."""
    if new_ids and eos is not None and new_ids[-1] == eos:
        return Finish("stop", len(new_ids))
    if len(new_ids) >= max_tokens:
        return Finish("length", len(new_ids))
    return Finish("cancelled", len(new_ids))


class TransformersBackend:
    """Greedy ``generate`` in a worker thread, one request at a time, stopped when the client leaves."""

    name = "transformers"

    def __init__(self, model: Any, tokenizer: Any, token_timeout_s: float = 60.0) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.token_timeout_s = token_timeout_s
        # One generation at a time per event loop (an asyncio.Lock belongs to the loop that first uses it).
        self._turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()

    @classmethod
    def from_dir(cls, model_dir: Path, token_timeout_s: float = 60.0) -> TransformersBackend:
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise KochallengeError(
                f"--backend transformers needs the train extra ({exc.name} is missing): "
                "pip install torch==2.13.0 -e '.[train,serve]'"
            ) from None
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
            model: Any = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype="auto")
        except Exception as exc:  # loader errors are the user's model files
            raise KochallengeError(
                f"{model_dir}: transformers cannot load the model ({type(exc).__name__}: {exc}); "
                f"run `python -m kochallenge_data doctor {model_dir} --load`"
            ) from exc
        model.eval()
        return cls(model, tokenizer, token_timeout_s)

    async def aclose(self) -> None:
        return None

    def encode(self, prompt: str) -> list[int]:
        """The prompt's ids exactly as training tokenized it (special tokens added, e.g. bos)."""
        ids: list[int] = list(self.tokenizer(prompt, add_special_tokens=True)["input_ids"])
        return ids

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Piece]:
        loop = asyncio.get_running_loop()
        async with self._turns.setdefault(loop, asyncio.Lock()):
            queue: asyncio.Queue[object] = asyncio.Queue()
            stop = threading.Event()
            worker = threading.Thread(
                target=self._generate, args=(request, loop, queue, stop), name="generate", daemon=True
            )
            worker.start()
            decoder = TokenDecoder(lambda ids: str(self.tokenizer.decode(list(ids), skip_special_tokens=True)))
            text = TextStream()
            finish = Finish("unknown")
            try:
                while True:
                    try:
                        item = await asyncio.wait_for(queue.get(), self.token_timeout_s)
                    except TimeoutError as exc:
                        raise BackendTimeout(f"no token in {self.token_timeout_s:g} s from the local model") from exc
                    if item is _END:
                        break
                    if isinstance(item, BaseException):
                        raise BackendError(f"generation failed: {type(item).__name__}: {item}") from item
                    if isinstance(item, Finish):
                        finish = item
                        continue
                    assert isinstance(item, list)
                    ready = text.push(decoder.push(item))
                    if ready:
                        yield ready
                tail = text.finish(decoder.finish())
                if tail:
                    yield tail
                yield finish
            finally:
                stop.set()
                await asyncio.to_thread(worker.join, 5.0)

    def _generate(
        self, request: GenerationRequest, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[object], stop: Any
    ) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        def send(item: object) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the server is shutting down and its loop is closed
                stop.set()

        class QueueStreamer(BaseStreamer):
            """Pushes new token ids to the event loop; the first call carries the prompt and is skipped."""

            def __init__(self) -> None:
                self.seen_prompt = False

            def put(self, value: Any) -> None:
                if not self.seen_prompt:
                    self.seen_prompt = True
                    return
                send([int(i) for i in value.reshape(-1).tolist()])

            def end(self) -> None:
                return None

        class StopWhenAsked(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device)

        try:
            ids = torch.tensor([self.encode(request.prompt)], device=self.model.device)
            eos = self.tokenizer.eos_token_id
            pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
            with torch.no_grad():
                output = self.model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=request.max_tokens,
                    do_sample=False,
                    eos_token_id=eos,
                    pad_token_id=pad,
                    streamer=QueueStreamer(),
                    stopping_criteria=StoppingCriteriaList([StopWhenAsked()]),
                )
            send(generation_finish([int(i) for i in output[0, ids.shape[1] :].tolist()], eos, request.max_tokens))
        except Exception as exc:  # reported to the request as a BackendError
            send(exc)
        finally:
            send(_END)
