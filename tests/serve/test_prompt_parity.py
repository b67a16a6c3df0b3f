"""The served prompt is the trained prompt: same text, same token ids, an instruction from the dataset."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from kochallenge_data.checks.record import infer_task
from kochallenge_data.ml.train import tokenize_record
from kochallenge_data.models import Record
from kochallenge_data.pools import load_pools
from kochallenge_data.prompt import load_prompt_layout, render_prompt, serving_instruction
from kochallenge_data.serve.app import (
    BASE_INFO_PATH,
    FEEDBACK_PATH,
    FREE_TEXT_PATH,
    BaseInfoRequest,
    ChatService,
    FreeTextRequest,
    find_category,
    parse_weekly_record,
    weekly_record_input,
)
from kochallenge_data.serve.backends import GenerationRequest, TransformersBackend
from kochallenge_data.serve.http import create_app

from ..conftest import FIXTURE_POOLS
from .conftest import make_service
from .helpers import read_sse, serve_in_thread

pytestmark = pytest.mark.train


def served_prompt(service: ChatService, record: Record) -> str:
    """The prompt the server builds for the request a user would send to get ``record``'s answer."""
    task = infer_task(record.model_dump())
    if task == "base_info":
        location, work_type, name = record.input.split(", ")
        category = find_category(name, service.pools)
        assert category is not None
        return service.base_info_prompt(BaseInfoRequest("s", location, work_type, category))
    if task == "free_text":
        return service.free_text_prompt(FreeTextRequest("s", record.input))
    return service.feedback_prompt(parse_weekly_record(record.input.encode()))


def test_the_served_instruction_is_a_dataset_phrasing(tiny_records: list[Record]) -> None:
    pools = load_pools(FIXTURE_POOLS)
    dataset_instructions = {r.instruction for r in tiny_records}
    for task in ("base_info", "free_text", "feedback"):
        instruction = serving_instruction(pools, task)
        assert instruction in [p.text for p in pools.instructions[task]]
        assert instruction in dataset_instructions, f"{task}: the dataset never used the served instruction"


def test_served_prompts_equal_training_prompts_text_and_tokens(
    tiny_records: list[Record], transformers_backend: TransformersBackend
) -> None:
    service = make_service(transformers_backend)
    layout = load_prompt_layout()
    eos = transformers_backend.tokenizer.eos_token_id
    served = [
        r for r in tiny_records if r.instruction == serving_instruction(service.pools, infer_task(r.model_dump()))
    ]
    assert {infer_task(r.model_dump()) for r in served} == {"base_info", "free_text", "feedback"}
    for record in served:
        prompt = served_prompt(service, record)
        assert prompt == render_prompt(record.instruction, record.input, layout)
        example = tokenize_record(transformers_backend.tokenizer, layout, record, eos)
        assert transformers_backend.encode(prompt) == example.input_ids[: example.prompt_length]


def test_feedback_inputs_round_trip_to_the_dataset_bytes(tiny_records: list[Record]) -> None:
    feedback = [r for r in tiny_records if infer_task(r.model_dump()) == "feedback"]
    assert feedback
    for record in feedback:
        assert weekly_record_input(parse_weekly_record(record.input.encode())) == record.input


class RecordingBackend:
    """The real transformers backend, noting each prompt it is asked to complete."""

    name = "recording"

    def __init__(self, inner: TransformersBackend) -> None:
        self.inner = inner
        self.prompts: list[str] = []

    def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        self.prompts.append(request.prompt)
        return self.inner.stream(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_prompts_sent_through_the_http_api_are_training_prompts(
    tiny_records: list[Record], transformers_backend: TransformersBackend
) -> None:
    backend = RecordingBackend(transformers_backend)
    service = make_service(backend, max_tokens=8, feedback_max_tokens=8)
    base_info = next(r for r in tiny_records if infer_task(r.model_dump()) == "base_info")
    free_text = next(r for r in tiny_records if infer_task(r.model_dump()) == "free_text")
    feedback = next(r for r in tiny_records if infer_task(r.model_dump()) == "feedback")
    location, work_type, name = base_info.input.split(", ")

    async def send(url: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            params = {"sessionId": "p", "location": location, "workType": work_type, "category": name}
            await read_sse(client, BASE_INFO_PATH, params)
            await read_sse(client, FREE_TEXT_PATH, {"sessionId": "p", "message": free_text.input})
            await client.post(FEEDBACK_PATH, content=feedback.input.encode())

    with serve_in_thread(create_app(service)) as url:
        asyncio.run(send(url))
    expected = [
        render_prompt(serving_instruction(service.pools, infer_task(record.model_dump())), record.input)
        for record in (base_info, free_text, feedback)
    ]
    assert backend.prompts == expected


def test_serve_sends_the_prompt_the_model_folder_was_trained_with(tmp_path: Path) -> None:
    """A chat-template run saves its own exact prompt.j2; serving the merged folder must use it, not the shipped one."""
    from kochallenge_data.serve.cli import ServePlan, build_service

    model_dir = tmp_path / "merged"
    model_dir.mkdir()
    trained = "{#- exact -#}{% raw %}<|user|>\n{% endraw %}{{ instruction }} {{ input }}{% raw %}</s><|assistant|>{% endraw %}"
    (model_dir / "prompt.j2").write_text(trained, encoding="utf-8")
    plan = ServePlan(
        model_dir=model_dir, backend="vllm", vllm_url="http://127.0.0.1:9", served_model_name="m", host="127.0.0.1",
        port=0, pools=FIXTURE_POOLS, templates=None, max_sessions=4, session_ttl_s=60.0, max_tokens=64,
        json_output=False, max_model_len=None,
    )  # fmt: skip
    service = build_service(plan)
    assert service.layout.source == trained
    assert service.layout.render("지시", "입력") == "<|user|>\n지시 입력</s><|assistant|>", "rendered byte for byte"
    (model_dir / "prompt.j2").unlink()
    assert build_service(plan).layout.source == load_prompt_layout().source
