"""The ``serve`` subcommand: check the model, build the backend and the API, run uvicorn.

The main CLI calls :func:`register`. The server binds 127.0.0.1 unless ``--host`` says otherwise,
and anything but loopback needs an API key (``--api-key`` or ``KOCHALLENGE_API_KEY``): exposing
the API is a decision, not a default. With ``--vllm-url`` the router only renders prompts, so it
checks the model folder's config and tokenizer files, not weights (model_check.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..commands import add_command
from ..errors import KochallengeError
from .ops import API_KEY_ENV, API_KEY_HEADER, RateLimit, is_loopback_host, parse_rate_limit

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_VLLM_URL = "http://127.0.0.1:8000"
DEFAULT_MAX_TOKENS = 256
DEFAULT_MAX_BODY_BYTES = 64 * 1024
DEFAULT_HEALTH_INTERVAL_S = 5.0
# Seconds, as HttpTimeouts has them: to connect, between two reads of vLLM's stream, for a whole answer.
DEFAULT_CONNECT_TIMEOUT_S = 3.0
DEFAULT_READ_TIMEOUT_S = 30.0
DEFAULT_ANSWER_TIMEOUT_S = 120.0
LOCAL_TOKEN_TIMEOUT_S = 60.0  # the transformers backend's wait for one token, unless --read-timeout says

SERVE_EXAMPLE = f"""example:
  python -m kochallenge_data serve --model runs/merged --backend transformers
  python -m kochallenge_data serve --model runs/merged --vllm-url http://127.0.0.1:8000 --port 8080

  # exposed, over two vLLM replicas (the key from the environment; a key is required off loopback):
  {API_KEY_ENV}=change-me python -m kochallenge_data serve --model runs/merged --host 0.0.0.0 \\
    --vllm-url http://gpu1:8000 --vllm-url http://gpu2:8000 --cors-origin https://app.example.com \\
    --rate-limit 60/min

vLLM runs in its own environment (pip install 'kochallenge-data[vllm]' there), serving the merged model:
  vllm serve runs/merged --host 127.0.0.1 --port 8000 --max-model-len 2048
or the base plus the train run's adapter by name (the router gets the run folder):
  vllm serve models/base --enable-lora --lora-modules lora=runs/lora/adapter --max-lora-rank 16
  python -m kochallenge_data serve --model runs/lora --vllm-url http://127.0.0.1:8000 --served-model-name lora

then (curl -G --data-urlencode percent-encodes the Hangul; raw Hangul in a URL is refused):
  curl -N -G http://127.0.0.1:8080/ai/chatbot/recommendation/free-text \\
    --data-urlencode sessionId=s1 --data-urlencode 'message=비건 챌린지 해 보고 싶어요'
  curl -N -G http://127.0.0.1:8080/ai/chatbot/recommendation/base-info \\
    --data-urlencode sessionId=s1 --data-urlencode location=도시 --data-urlencode workType=사무직 \\
    --data-urlencode category=VEGAN
  (with a key, add: -H "{API_KEY_HEADER}: $KOCHALLENGE_API_KEY")

operations: GET /health (alive), GET /ready (the backend answers), GET /metrics (Prometheus), GET /docs"""


@dataclass(frozen=True)
class ServePlan:
    """What ``serve`` will do, decided from the arguments before anything is loaded."""

    model_dir: Path
    backend: str  # "vllm" or "transformers"
    vllm_url: str  # the first (or only) vLLM server
    served_model_name: str | None  # None: find it in vLLM's /v1/models at start
    host: str
    port: int
    pools: Path | None
    templates: Path | None
    max_sessions: int
    session_ttl_s: float
    max_tokens: int | None  # None: MODEL_DIR/train_config.json resolved.max_new_tokens, else the default
    json_output: bool
    max_model_len: int | None
    replica_urls: tuple[str, ...] = ()  # more vLLM servers serving the same model: round robin over all
    guided_decoding: bool = True
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    read_timeout_s: float | None = None  # None: 30 s for vLLM, 60 s per token for transformers
    answer_timeout_s: float = DEFAULT_ANSWER_TIMEOUT_S
    health_interval_s: float = DEFAULT_HEALTH_INTERVAL_S
    api_keys: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    rate_limit: RateLimit | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    @property
    def vllm_urls(self) -> tuple[str, ...]:
        return (self.vllm_url, *self.replica_urls)


def register(subparsers: Any) -> None:
    """Add ``serve`` to an argparse subparsers object."""
    parser = add_command(
        subparsers,
        "serve",
        help="serve the chatbot API (SSE) over vLLM or an in-process transformers model",
        description=(
            "Check MODEL_DIR (refusing to start on errors: the whole model for --backend transformers, its config "
            "and tokenizer files for --vllm-url), then serve GET /ai/chatbot/recommendation/base-info, GET "
            "/ai/chatbot/recommendation/free-text (server-sent events) and POST /ai/feedback, rendering every "
            "prompt with the training prompt layout. Needs the serve extra (and the train extra for --backend "
            "transformers)."
        ),
        epilog=SERVE_EXAMPLE,
        run=run_serve,
    )
    parser.add_argument(
        "--model",
        type=Path,
        required=True,
        metavar="MODEL_DIR",
        help="the merged model directory (with --vllm-url: its config and tokenizer files, or a train --out folder)",
    )
    backend = parser.add_mutually_exclusive_group()
    backend.add_argument(
        "--vllm-url",
        action="append",
        metavar="URL",
        help=f"an OpenAI-compatible vLLM server (default {DEFAULT_VLLM_URL}); repeat it for replicas of one model, "
        "served in turn, each health-checked",
    )
    backend.add_argument(
        "--backend", choices=["transformers"], help="generate in this process instead (development and tests)"
    )
    parser.add_argument(
        "--served-model-name",
        metavar="NAME",
        help="the model name vLLM serves (default: the /v1/models entry that names MODEL_DIR)",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST}: this machine)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks one)")
    parser.add_argument("--pools", type=Path, help="pools folder the model was trained with (default: shipped)")
    parser.add_argument("--templates", type=Path, help="templates folder (default: shipped)")
    parser.add_argument("--max-sessions", type=int, default=10_000, help="sessions kept at most (default 10000)")
    parser.add_argument("--session-ttl", type=float, default=1800.0, help="seconds a session lives idle (default 1800)")
    parser.add_argument(
        "--max-tokens",
        type=int,
        metavar="N",
        help="tokens per answer at most (default: what train recorded in MODEL_DIR/train_config.json as "
        f"resolved.max_new_tokens, else {DEFAULT_MAX_TOKENS})",
    )
    parser.add_argument(
        "--no-guided-decoding",
        dest="guided_decoding",
        action="store_false",
        help="do not ask vLLM to hold the answer to the newline format's regular expression",
    )
    parser.add_argument(
        "--json-output", action="store_true", help="ask vLLM for the JSON object form (structured outputs)"
    )
    parser.add_argument("--max-model-len", type=int, metavar="N", help="the --max-model-len vLLM serves with")
    limits = parser.add_argument_group("timeouts, in seconds")
    limits.add_argument(
        "--connect-timeout",
        type=float,
        default=DEFAULT_CONNECT_TIMEOUT_S,
        metavar="S",
        help=f"to connect to vLLM (default {DEFAULT_CONNECT_TIMEOUT_S:g})",
    )
    limits.add_argument(
        "--read-timeout",
        type=float,
        metavar="S",
        help=f"between two reads of vLLM's stream (default {DEFAULT_READ_TIMEOUT_S:g}); with --backend "
        f"transformers, between two tokens (default {LOCAL_TOKEN_TIMEOUT_S:g})",
    )
    limits.add_argument(
        "--answer-timeout",
        type=float,
        default=DEFAULT_ANSWER_TIMEOUT_S,
        metavar="S",
        help=f"for one whole answer from vLLM (default {DEFAULT_ANSWER_TIMEOUT_S:g})",
    )
    limits.add_argument(
        "--health-interval",
        type=float,
        default=DEFAULT_HEALTH_INTERVAL_S,
        metavar="S",
        help=f"between health checks of each vLLM replica (default {DEFAULT_HEALTH_INTERVAL_S:g})",
    )
    access = parser.add_argument_group("access")
    access.add_argument(
        "--api-key",
        action="append",
        metavar="KEY",
        help=f"clients must send it in the {API_KEY_HEADER} header (or ?apiKey= on the GET streams, for "
        f"EventSource); repeat it to accept several (default: ${API_KEY_ENV}); required unless --host is loopback",
    )
    access.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a browser origin allowed to call the API, e.g. https://app.example.com (repeatable; * for any)",
    )
    access.add_argument(
        "--rate-limit",
        metavar="N/min",
        help="requests per client (API key, else address) per minute, e.g. 60/min (also /s, /h); "
        "a burst of N, then 429 with Retry-After (default: no limit)",
    )
    access.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        metavar="N",
        help=f"largest POST body, 413 past it (default {DEFAULT_MAX_BODY_BYTES})",
    )


def plan_from_args(args: argparse.Namespace, environ: dict[str, str] | None = None) -> ServePlan:
    """Check the arguments and decide the backend; nothing is loaded or bound here."""
    environ = dict(os.environ) if environ is None else environ
    if not 0 <= args.port <= 65535:
        raise KochallengeError(f"--port {args.port}: use 0-65535 (0 picks a free port)")
    if args.max_sessions < 1 or args.session_ttl <= 0 or (args.max_tokens is not None and args.max_tokens < 1):
        raise KochallengeError("--max-sessions, --session-ttl and --max-tokens must be positive")
    urls = check_urls(args.vllm_url or [DEFAULT_VLLM_URL])
    timeouts = (args.connect_timeout, args.read_timeout, args.answer_timeout, args.health_interval)
    if any(value is not None and value <= 0 for value in timeouts):
        raise KochallengeError("--connect-timeout, --read-timeout, --answer-timeout and --health-interval: seconds > 0")
    return ServePlan(
        model_dir=args.model,
        backend=args.backend or "vllm",
        vllm_url=urls[0],
        replica_urls=urls[1:],
        served_model_name=args.served_model_name,
        host=args.host,
        port=args.port,
        pools=args.pools,
        templates=args.templates,
        max_sessions=args.max_sessions,
        session_ttl_s=args.session_ttl,
        max_tokens=args.max_tokens,
        json_output=args.json_output,
        guided_decoding=args.guided_decoding,
        max_model_len=args.max_model_len,
        connect_timeout_s=args.connect_timeout,
        read_timeout_s=args.read_timeout,
        answer_timeout_s=args.answer_timeout,
        health_interval_s=args.health_interval,
        api_keys=api_keys(args.api_key, environ),
        cors_origins=tuple(check_origin(origin) for origin in args.cors_origin),
        rate_limit=parse_rate_limit(args.rate_limit) if args.rate_limit else None,
        max_body_bytes=check_body_limit(args.max_body_bytes),
    )


def check_urls(urls: list[str]) -> tuple[str, ...]:
    seen: list[str] = []
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise KochallengeError(f"--vllm-url {url!r}: give a URL such as {DEFAULT_VLLM_URL}")
        if url.rstrip("/") in seen:
            raise KochallengeError(f"--vllm-url {url!r} is given twice")
        seen.append(url.rstrip("/"))
    return tuple(seen)


def api_keys(flags: list[str] | None, environ: dict[str, str]) -> tuple[str, ...]:
    """The --api-key values, else the environment's (which, unlike a flag, ps does not show)."""
    keys = flags if flags else ([environ[API_KEY_ENV]] if environ.get(API_KEY_ENV) else [])
    for key in keys:
        if not key.strip() or key != key.strip():
            raise KochallengeError("--api-key: a key cannot be blank or start or end with spaces")
    return tuple(keys)


def check_origin(origin: str) -> str:
    """A browser ``Origin`` value: scheme and host (and port), no path, or ``*``."""
    if origin == "*":
        return origin
    scheme, _, rest = origin.partition("://")
    if scheme not in ("http", "https") or not rest or "/" in rest:
        raise KochallengeError(
            f"--cors-origin {origin!r}: give an origin as a browser sends it, e.g. https://app.example.com "
            "(scheme and host, optional port, no path or trailing slash), or *"
        )
    return origin


def check_body_limit(limit: int) -> int:
    from .app import MAX_FEEDBACK_BODY

    if not 1 <= limit <= MAX_FEEDBACK_BODY:
        raise KochallengeError(
            f"--max-body-bytes {limit}: use 1-{MAX_FEEDBACK_BODY} (the feedback service refuses larger bodies)"
        )
    return limit


def refuse_exposed_without_key(plan: ServePlan) -> None:
    """Binding anything but loopback without a key would hand the model to the network."""
    if not plan.api_keys and not is_loopback_host(plan.host):
        raise KochallengeError(
            f"--host {plan.host} exposes the API beyond this machine: give an API key with --api-key KEY or "
            f"{API_KEY_ENV}=KEY (clients send it as {API_KEY_HEADER}), or bind {DEFAULT_HOST}"
        )


def recorded_max_tokens(model_dir: Path) -> int | None:
    """``resolved.max_new_tokens`` from MODEL_DIR/train_config.json (train records it, merge copies it)."""
    from ..ml.answers import TRAIN_CONFIG, read_train_config

    resolved = (read_train_config(model_dir) or {}).get("resolved")
    value = resolved.get("max_new_tokens") if isinstance(resolved, dict) else None
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise KochallengeError(f"{model_dir / TRAIN_CONFIG}: resolved.max_new_tokens must be a positive whole number")
    return value


def resolve_max_tokens(plan: ServePlan) -> tuple[int, str]:
    """The answer budget and a line saying where it came from."""
    if plan.max_tokens is not None:
        return plan.max_tokens, f"max tokens per answer: {plan.max_tokens} (--max-tokens)"
    recorded = recorded_max_tokens(plan.model_dir)
    if recorded is not None:
        return recorded, f"max tokens per answer: {recorded} (train_config.json resolved.max_new_tokens)"
    return DEFAULT_MAX_TOKENS, (
        f"note: {plan.model_dir} records no resolved.max_new_tokens (train_config.json, written by train and copied "
        f"by merge); answering with at most {DEFAULT_MAX_TOKENS} tokens. Pass --max-tokens to choose"
    )


def build_backend(plan: ServePlan) -> Any:
    """The backend ``plan`` names: in-process transformers, one vLLM server, or round robin over several."""
    from .backends import HttpTimeouts, OpenAICompletionsBackend, TransformersBackend
    from .upstreams import RoundRobinBackend

    if plan.backend == "transformers":
        return TransformersBackend.from_dir(
            plan.model_dir, token_timeout_s=plan.read_timeout_s or LOCAL_TOKEN_TIMEOUT_S
        )
    timeouts = HttpTimeouts(
        connect=plan.connect_timeout_s, read=plan.read_timeout_s or DEFAULT_READ_TIMEOUT_S, total=plan.answer_timeout_s
    )
    name = plan.served_model_name or str(plan.model_dir)
    servers = [OpenAICompletionsBackend(url, name, timeouts) for url in plan.vllm_urls]
    if len(servers) == 1:
        return servers[0]
    return RoundRobinBackend(servers, check_interval_s=plan.health_interval_s)


def build_service(plan: ServePlan) -> Any:
    """The backend and the ChatService for ``plan`` (loads the model for the transformers backend)."""
    from ..pools import load_pools
    from ..prompt import load_prompt_layout
    from ..templates import load_templates
    from .app import ChatService, ServeSettings
    from .sessions import SessionStore

    templates = load_templates(plan.templates)
    # The model's own prompt.j2 (what `train` trained with, copied by `merge`) wins: a chat-template run's prompt is
    # derived from the base's chat template and is not the shipped layout.
    trained_prompt = plan.model_dir / "prompt.j2"
    default_prompt = templates.prompt.path if templates.prompt is not None else None
    layout = load_prompt_layout(trained_prompt if trained_prompt.is_file() else default_prompt)
    max_tokens, _ = resolve_max_tokens(plan)
    return ChatService(
        backend=build_backend(plan),
        pools=load_pools(plan.pools),
        templates=templates,
        layout=layout,
        sessions=SessionStore(max_sessions=plan.max_sessions, max_age_s=plan.session_ttl_s),
        settings=ServeSettings(
            max_tokens=max_tokens, json_output=plan.json_output, guided_decoding=plan.guided_decoding
        ),
    )


def http_options(plan: ServePlan) -> Any:
    from .http import HttpOptions

    return HttpOptions(
        api_keys=plan.api_keys,
        cors_origins=plan.cors_origins,
        rate_limit=plan.rate_limit,
        max_body_bytes=plan.max_body_bytes,
    )


def served_models(url: str) -> list[str] | None:
    """The model names vLLM serves (``GET /v1/models``), or None when it is not answering yet."""
    import httpx

    try:
        response = httpx.get(f"{url.rstrip('/')}/v1/models", timeout=2.0, trust_env=False)
        names = [m.get("id") for m in response.json().get("data", [])]
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return [n for n in names if isinstance(n, str)]


def choose_served_name(names: list[str], model_dir: Path) -> str | None:
    """The name under which vLLM serves ``model_dir``: ``vllm serve PATH`` uses PATH as written,
    so ``runs/merged`` and ``/abs/runs/merged`` name the same directory."""
    target = model_dir.resolve()
    for name in names:
        if name == str(model_dir) or Path(name).resolve() == target:
            return name
    return None


def lora_served_name(names: list[str], model_dir: Path) -> str | None:
    """The adapter name a train run is served under by ``vllm serve BASE --enable-lora --lora-modules NAME=...``
    (the name ``merge`` and model_check print for it), when vLLM lists it."""
    from .model_check import lora_name

    name = lora_name(model_dir)
    return name if name in names else None


def resolve_served_name(plan: ServePlan) -> tuple[str, str | None]:
    """The model name to request, and a warning to show when it cannot be confirmed (the first replica that
    answers is asked: every replica must serve the model under the same name)."""
    if plan.served_model_name is not None:
        return plan.served_model_name, None
    answering = ((url, served_models(url)) for url in plan.vllm_urls)
    url, names = next(((u, n) for u, n in answering if n is not None), (plan.vllm_url, None))
    if names is None:
        where = " or ".join(plan.vllm_urls)
        return str(plan.model_dir), (
            f"warning: vLLM is not answering at {where} yet; requests get an error event until it is "
            f"(asking for model {str(plan.model_dir)!r}; pass --served-model-name if vllm serve was given another)"
        )
    chosen = choose_served_name(names, plan.model_dir) or lora_served_name(names, plan.model_dir)
    if chosen is None:
        return str(plan.model_dir), (
            f"warning: vLLM at {url} serves {names}, none of them {plan.model_dir}; "
            "pass --served-model-name, or check that vLLM serves the directory the doctor checked"
        )
    return chosen, None


def run_serve(args: argparse.Namespace) -> int:
    from .model_check import check_model  # raises ModelRefused (exit code from the doctor) on errors

    plan = plan_from_args(args)
    refuse_exposed_without_key(plan)
    for line in check_model(plan.model_dir, weights=plan.backend == "transformers", max_model_len=plan.max_model_len):
        print(line, file=sys.stderr)
    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise KochallengeError(
            f"serve needs the serve extra ({exc.name} is missing): pip install -e '.[serve]'"
        ) from None
    max_tokens, origin = resolve_max_tokens(plan)
    print(origin, file=sys.stderr)
    plan = replace(plan, max_tokens=max_tokens)
    if plan.backend == "vllm":
        name, warning = resolve_served_name(plan)
        if warning:
            print(warning, file=sys.stderr)
        plan = replace(plan, served_model_name=name)
    from .http import create_app

    app = create_app(build_service(plan), http_options(plan))
    backend = plan.backend if len(plan.vllm_urls) == 1 or plan.backend != "vllm" else f"vllm x{len(plan.vllm_urls)}"
    access = "API key required" if plan.api_keys else "no API key (loopback only)"
    print(
        f"serving {plan.model_dir} with the {backend} backend on http://{plan.host}:{plan.port} ({access})",
        file=sys.stderr,
    )
    uvicorn.run(app, host=plan.host, port=plan.port, log_level="info", timeout_graceful_shutdown=5)
    return 0
