"""Session fixtures: a tiny model that knows three answers, its backend, and a live server.

Built once per session (a few seconds on CPU, torch on one thread). The "chat" model is the tiny
random Llama overfitted on three (served prompt, answer) pairs, so the real transformers backend
returns a valid recommendation or feedback for those requests and garbage for every other one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs the train extra")
pytest.importorskip("transformers", reason="needs the train extra")
pytest.importorskip("fastapi", reason="needs the serve extra")
pytest.importorskip("uvicorn", reason="needs the serve extra")
pytest.importorskip("httpx", reason="needs the serve extra")

from kochallenge_data.models import Record
from kochallenge_data.pools import Pools, load_pools
from kochallenge_data.prompt import load_prompt_layout
from kochallenge_data.serve.app import (
    BaseInfoRequest,
    ChatService,
    FreeTextRequest,
    ServeSettings,
    find_category,
    parse_weekly_record,
)
from kochallenge_data.serve.backends import Backend, TransformersBackend
from kochallenge_data.serve.http import create_app
from kochallenge_data.serve.sessions import SessionStore
from kochallenge_data.templates import load_templates

from ..conftest import FIXTURE_POOLS
from ..tiny_model import TinySetup, make_tiny_setup, memorize
from .helpers import serve_in_thread

KNOWN_BASE_INFO = {"sessionId": "known-base", "location": "도시", "workType": "사무직", "category": "VEGAN"}
KNOWN_FREE_TEXT = {"sessionId": "known-free", "message": "비건 챌린지 해 보고 싶어요"}
KNOWN_WEEK = (
    '{"memberId":7,"personalChallenges":[{"id":1,"title":"채식 점심 한 끼","isSuccess":true}],"groupChallenges":[]}'
)
BASE_INFO_ANSWER = (
    "비건 챌린지를 시작하기 좋은 것들을 골라 봤어요.\n"
    "채식 점심 한 끼: 점심 한 끼를 채소 위주로 먹으면 탄소를 줄일 수 있어요.\n"
    "두유 라테 주문하기: 우유 대신 두유를 골라 보면 생각보다 맛있어요.\n"
    "콩고기 요리 해 보기: 저녁에 콩고기로 볶음 요리를 만들어 봐요."
)
FREE_TEXT_ANSWER = (
    "이런 챌린지는 어떠세요?\n"
    "두유 라테 주문하기: 우유 대신 두유를 골라 보면 생각보다 맛있어요.\n"
    "제철 채소 반찬 만들기: 제철 채소로 반찬을 만들어 봐요.\n"
    "나만의 비건 도시락: 좋아하는 채소로 도시락을 싸 봐요."
)
FEEDBACK_ANSWER = "채식 점심 한 끼를 끝까지 해냈네요! 🎉 다음 주도 응원할게요! 💪"


@dataclass(frozen=True)
class ChatModel:
    """The memorized model directory and the service settings it was built for."""

    base: TinySetup
    model_dir: Path


def make_service(backend: Backend, pools: Pools | None = None, **settings: object) -> ChatService:
    templates = load_templates()
    values: dict[str, object] = {"max_tokens": 120}
    values.update(settings)
    return ChatService(
        backend=backend,
        pools=pools or load_pools(FIXTURE_POOLS),
        templates=templates,
        layout=load_prompt_layout(),
        sessions=SessionStore(max_sessions=1000),
        settings=ServeSettings(**values),  # type: ignore[arg-type]
    )


def known_prompts(service: ChatService) -> list[tuple[str, str]]:
    """The served prompts of the three known requests, with the answers the chat model learns."""
    category = find_category("VEGAN", service.pools)
    assert category is not None
    base_info = BaseInfoRequest("s", "도시", "사무직", category)
    free_text = FreeTextRequest("s", KNOWN_FREE_TEXT["message"])
    return [
        (service.base_info_prompt(base_info), BASE_INFO_ANSWER),
        (service.free_text_prompt(free_text), FREE_TEXT_ANSWER),
        (service.feedback_prompt(parse_weekly_record(KNOWN_WEEK.encode())), FEEDBACK_ANSWER),
    ]


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinySetup:
    return make_tiny_setup(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_records(tiny: TinySetup) -> list[Record]:
    return tiny.records


@pytest.fixture(scope="session")
def chat_model(tiny: TinySetup, tmp_path_factory: pytest.TempPathFactory) -> ChatModel:
    pairs = known_prompts(make_service(backend=None))  # type: ignore[arg-type]
    model_dir = memorize(tiny.model_dir, tmp_path_factory.mktemp("chat") / "tiny-chat", pairs)
    return ChatModel(base=tiny, model_dir=model_dir)


@pytest.fixture(scope="session")
def transformers_backend(chat_model: ChatModel) -> TransformersBackend:
    return TransformersBackend.from_dir(chat_model.model_dir, token_timeout_s=30)


@pytest.fixture(scope="session")
def chat_service(transformers_backend: TransformersBackend) -> ChatService:
    return make_service(transformers_backend)


@pytest.fixture(scope="session")
def chat_server(chat_service: ChatService) -> Iterator[str]:
    with serve_in_thread(create_app(chat_service)) as url:
        yield url
