"""The ``serve`` subcommand: doctor the model, build the backend and the API, run uvicorn.

The main CLI calls :func:`register`. The server binds 127.0.0.1 unless ``--host`` says otherwise:
the API has no authentication, so exposing it is a decision, not a default.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..commands import add_command
from ..errors import KochallengeError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_VLLM_URL = "http://127.0.0.1:8000"

SERVE_EXAMPLE = """example:
  python -m kochallenge_data serve --model runs/merged --backend transformers
  python -m kochallenge_data serve --model runs/merged --vllm-url http://127.0.0.1:8000 --port 8080

vLLM runs in its own environment (pip install 'kochallenge-data[vllm]' there):
  vllm serve runs/merged --host 127.0.0.1 --port 8000 --max-model-len 2048

then:
  curl -N 'http://127.0.0.1:8080/ai/chatbot/recommendation/free-text?sessionId=s1&message=비건 챌린지 해 보고 싶어요'"""


class ModelRefused(KochallengeError):
    """The doctor found errors in the model directory: serving it would fail or misbehave."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class ServePlan:
    """What ``serve`` will do, decided from the arguments before anything is loaded."""

    model_dir: Path
    backend: str  # "vllm" or "transformers"
    vllm_url: str
    served_model_name: str | None  # None: find it in vLLM's /v1/models at start
    host: str
    port: int
    pools: Path | None
    templates: Path | None
    max_sessions: int
    session_ttl_s: float
    max_tokens: int
    json_output: bool
    max_model_len: int | None


def register(subparsers: Any) -> None:
    """Add ``serve`` to an argparse subparsers object."""
    parser = add_command(
        subparsers,
        "serve",
        help="serve the chatbot API (SSE) over vLLM or an in-process transformers model",
        description=(
            "Run the doctor on MODEL_DIR (refusing to start on errors), then serve GET "
            "/ai/chatbot/recommendation/base-info, GET /ai/chatbot/recommendation/free-text (server-sent events) "
            "and POST /ai/feedback, rendering every prompt with the training prompt layout. Needs the serve extra "
            "(and the train extra for --backend transformers)."
        ),
        epilog=SERVE_EXAMPLE,
        run=run_serve,
    )
    parser.add_argument("--model", type=Path, required=True, metavar="MODEL_DIR", help="the merged model directory")
    backend = parser.add_mutually_exclusive_group()
    backend.add_argument(
        "--vllm-url", metavar="URL", help=f"an OpenAI-compatible vLLM server (default {DEFAULT_VLLM_URL})"
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
    parser.add_argument("--max-tokens", type=int, default=256, help="tokens per answer at most (default 256)")
    parser.add_argument(
        "--json-output", action="store_true", help="ask vLLM for the JSON object form (structured outputs)"
    )
    parser.add_argument("--max-model-len", type=int, metavar="N", help="the --max-model-len vLLM serves with")


def plan_from_args(args: argparse.Namespace) -> ServePlan:
    """Check the arguments and decide the backend; nothing is loaded or bound here."""
    if not 0 <= args.port <= 65535:
        raise KochallengeError(f"--port {args.port}: use 0-65535 (0 picks a free port)")
    if args.max_sessions < 1 or args.session_ttl <= 0 or args.max_tokens < 1:
        raise KochallengeError("--max-sessions, --session-ttl and --max-tokens must be positive")
    url = args.vllm_url or DEFAULT_VLLM_URL
    if not url.startswith(("http://", "https://")):
        raise KochallengeError(f"--vllm-url {url!r}: give a URL such as {DEFAULT_VLLM_URL}")
    return ServePlan(
        model_dir=args.model,
        backend=args.backend or "vllm",
        vllm_url=url,
        served_model_name=args.served_model_name,
        host=args.host,
        port=args.port,
        pools=args.pools,
        templates=args.templates,
        max_sessions=args.max_sessions,
        session_ttl_s=args.session_ttl,
        max_tokens=args.max_tokens,
        json_output=args.json_output,
        max_model_len=args.max_model_len,
    )


def check_model(model_dir: Path, max_model_len: int | None = None) -> list[str]:
    """Run the doctor; refuse (raise) on errors, return the warnings as lines to show."""
    from ..ml.doctor import doctor, format_report

    report = doctor(model_dir, max_model_len=max_model_len)
    if report.errors or report.fatal:
        raise ModelRefused(
            f"{model_dir}: the doctor found {len(report.errors)} error(s); not serving it. Fix them "
            f"(python -m kochallenge_data fix / merge again) and retry:\n{format_report(report)}",
            exit_code=max(1, report.exit_code()),
        )
    return [f"warning: {f.code}: {f.file}: {f.message}" for f in report.warnings]


def build_service(plan: ServePlan) -> Any:
    """The backend and the ChatService for ``plan`` (loads the model for the transformers backend)."""
    from ..pools import load_pools
    from ..prompt import load_prompt_layout
    from ..templates import load_templates
    from .app import ChatService, ServeSettings
    from .backends import Backend, OpenAICompletionsBackend, TransformersBackend
    from .sessions import SessionStore

    templates = load_templates(plan.templates)
    # The model's own prompt.j2 (what `train` trained with, copied by `merge`) wins: a chat-template run's prompt is
    # derived from the base's chat template and is not the shipped layout.
    trained_prompt = plan.model_dir / "prompt.j2"
    default_prompt = templates.prompt.path if templates.prompt is not None else None
    layout = load_prompt_layout(trained_prompt if trained_prompt.is_file() else default_prompt)
    backend: Backend
    if plan.backend == "transformers":
        backend = TransformersBackend.from_dir(plan.model_dir)
    else:
        backend = OpenAICompletionsBackend(plan.vllm_url, plan.served_model_name or str(plan.model_dir))
    return ChatService(
        backend=backend,
        pools=load_pools(plan.pools),
        templates=templates,
        layout=layout,
        sessions=SessionStore(max_sessions=plan.max_sessions, max_age_s=plan.session_ttl_s),
        settings=ServeSettings(max_tokens=plan.max_tokens, json_output=plan.json_output),
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


def resolve_served_name(plan: ServePlan) -> tuple[str, str | None]:
    """The model name to request, and a warning to show when it cannot be confirmed."""
    if plan.served_model_name is not None:
        return plan.served_model_name, None
    names = served_models(plan.vllm_url)
    if names is None:
        return str(plan.model_dir), (
            f"warning: vLLM is not answering at {plan.vllm_url} yet; requests get an error event until it is "
            f"(asking for model {str(plan.model_dir)!r}; pass --served-model-name if vllm serve was given another)"
        )
    chosen = choose_served_name(names, plan.model_dir)
    if chosen is None:
        return str(plan.model_dir), (
            f"warning: vLLM at {plan.vllm_url} serves {names}, none of them {plan.model_dir}; "
            "pass --served-model-name, or check that vLLM serves the directory the doctor checked"
        )
    return chosen, None


def run_serve(args: argparse.Namespace) -> int:
    plan = plan_from_args(args)
    for line in check_model(plan.model_dir, plan.max_model_len):
        print(line, file=sys.stderr)
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise KochallengeError(
            f"serve needs the serve extra ({exc.name} is missing): pip install -e '.[serve]'"
        ) from None
    if plan.backend == "vllm":
        name, warning = resolve_served_name(plan)
        if warning:
            print(warning, file=sys.stderr)
        plan = replace(plan, served_model_name=name)
    from .app import create_app

    app = create_app(build_service(plan))
    print(
        f"serving {plan.model_dir} with the {plan.backend} backend on http://{plan.host}:{plan.port}", file=sys.stderr
    )
    uvicorn.run(app, host=plan.host, port=plan.port, log_level="info", timeout_graceful_shutdown=5)
    return 0
