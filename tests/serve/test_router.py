"""The router apart from the GPU: a folder of config and tokenizer files only, and a train run served as
base plus LoRA adapter through vLLM's ``--enable-lora``.

The folders are copied from the tiny real model; adapters are saved by real peft; the router runs on a real
uvicorn server and forwards to a replayed OpenAI-compatible stream on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kochallenge_data.ml.doctor import METADATA_FILES
from kochallenge_data.ml.fingerprint import base_fingerprint
from kochallenge_data.ml.train.options import TrainOptions
from kochallenge_data.serve import cli as serve_cli
from kochallenge_data.serve.app import BASE_INFO_PATH
from kochallenge_data.serve.http import create_app
from kochallenge_data.serve.model_check import (
    VLLM_LORA_RANKS,
    ModelRefused,
    check_model,
    lora_vllm_command,
    merged_vllm_command,
    router_command,
    serving_hint,
    vllm_lora_problems,
    vllm_max_lora_rank,
)

from ..conftest import FIXTURE_POOLS, ROOT
from ..tiny_model import TinySetup
from .conftest import BASE_INFO_ANSWER, KNOWN_BASE_INFO
from .helpers import ReplayServer, Reply, Stream, completion_stream, read_sse, serve_in_thread

pytestmark = pytest.mark.train

TRAINED_PROMPT = "### 지시:\n{{ instruction }}\n\n### 입력 내용:\n{{ input }}\n\n### 답:\n"
"""A prompt layout other than the shipped one, as a chat-template run would have saved beside its adapter."""


# --------------------------------------------------------------------------------------------
# folders


def tokenizer_only(model_dir: Path, out: Path) -> Path:
    """The model's config and tokenizer files, no weights: what a router host needs."""
    out.mkdir(parents=True)
    for name in METADATA_FILES:
        if (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, out / name)
    assert not list(out.glob("*.safetensors"))
    return out


def save_blank_eos(folder: Path) -> None:
    """The measured failure: eos set to " " and saved by transformers."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tokenizer.eos_token = " "
    tokenizer.save_pretrained(str(folder))


def save_adapter(base: Path, out: Path, **lora: Any) -> Path:
    """A LoRA adapter saved by peft, untrained (vLLM's checks read its config, not its values)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(base))
    config = LoraConfig(task_type="CAUSAL_LM", target_modules=["q_proj", "v_proj"], lora_dropout=0.0, **lora)
    get_peft_model(model, config).save_pretrained(str(out))
    return out


def make_train_run(
    tiny: TinySetup,
    run_dir: Path,
    *,
    recorded_base: Path | None = None,
    prompt: str | None = TRAINED_PROMPT,
    **lora: Any,
) -> Path:
    """A ``train --out`` folder as train leaves it: adapter/, train_config.json (options and the base fingerprint),
    prompt.j2."""
    save_adapter(tiny.model_dir, run_dir / "adapter", **{"r": 4, "lora_alpha": 8, **lora})
    options = TrainOptions(data=tiny.data, base=recorded_base or tiny.model_dir, out=run_dir)
    train_config = {"options": options.model_dump(mode="json"), "base_fingerprint": base_fingerprint(tiny.model_dir)}
    (run_dir / "train_config.json").write_text(json.dumps(train_config, ensure_ascii=False), encoding="utf-8")
    if prompt is not None:
        (run_dir / "prompt.j2").write_text(prompt, encoding="utf-8")
    return run_dir


@pytest.fixture(scope="module")
def lora_run(tiny: TinySetup, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_train_run(tiny, tmp_path_factory.mktemp("runs") / "lora")


# --------------------------------------------------------------------------------------------
# the router against a replayed vLLM


def serve_plan(model_dir: Path, vllm_url: str, *flags: str) -> Any:
    parser = argparse.ArgumentParser(prog="python -m kochallenge_data")
    serve_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        ["serve", "--model", str(model_dir), "--vllm-url", vllm_url, "--pools", str(FIXTURE_POOLS), *flags]
    )
    return serve_cli.plan_from_args(args)


def get_stream(base_url: str, params: dict[str, str]) -> Stream:
    async def go() -> Stream:
        async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(30.0)) as client:
            return await read_sse(client, BASE_INFO_PATH, params)

    return asyncio.run(go())


@pytest.fixture
def replayed_vllm() -> Iterator[ReplayServer]:
    """Every request gets the known answer, streamed in small pieces and ended with finish_reason "stop"."""
    pieces = [BASE_INFO_ANSWER[i : i + 5] for i in range(0, len(BASE_INFO_ANSWER), 5)]
    with ReplayServer(lambda _: Reply(chunks=[completion_stream(pieces)])) as replay:
        yield replay


def route_one_request(model_dir: Path, replay: ReplayServer, *flags: str) -> tuple[Stream, dict[str, Any], Any]:
    """Check the folder as the router does, build the service from a serve plan, answer one base-info request.
    Returns the stream, the completion request vLLM received and the service."""
    check_model(model_dir, weights=False)
    service = serve_cli.build_service(serve_plan(model_dir, replay.url, *flags))
    with serve_in_thread(create_app(service)) as url:
        stream = get_stream(url, KNOWN_BASE_INFO)
    completions = [r for r in replay.requests if "prompt" in r]
    assert len(completions) == 1, replay.requests
    return stream, completions[0], service


def assert_known_answer_closed(stream: Stream) -> None:
    assert stream.status == 200 and stream.names and stream.names[-1] == "close", stream.events
    assert "error" not in stream.names
    close = stream.last()[1]["data"]
    lines = BASE_INFO_ANSWER.split("\n")
    assert close["recommend"] == lines[0]
    assert [f"{c['title']}: {c['description']}" for c in close["challenges"]] == lines[1:]


# --------------------------------------------------------------------------------------------
# a folder of config and tokenizer files


def test_a_tokenizer_only_folder_passes_without_weights_and_is_refused_with_them(
    tiny: TinySetup, tmp_path: Path
) -> None:
    folder = tokenizer_only(tiny.model_dir, tmp_path / "router-model")
    lines = check_model(folder, weights=False)
    assert not [line for line in lines if line.startswith("warning")], lines
    with pytest.raises(ModelRefused) as caught:
        check_model(folder, weights=True)
    assert "weights_missing" in str(caught.value) and "not serving it" in str(caught.value)
    assert caught.value.exit_code == 1


def test_a_blank_eos_is_refused_with_or_without_weights(tiny: TinySetup, tmp_path: Path) -> None:
    folder = tokenizer_only(tiny.model_dir, tmp_path / "router-model")
    save_blank_eos(folder)
    for weights in (False, True):
        with pytest.raises(ModelRefused) as caught:
            check_model(folder, weights=weights)
        assert "eos_blank" in str(caught.value), weights
    full = shutil.copytree(tiny.model_dir, tmp_path / "full")
    save_blank_eos(full)
    with pytest.raises(ModelRefused, match="eos_blank"):
        check_model(full, weights=True)


def test_the_router_serves_from_a_tokenizer_only_folder(
    tiny: TinySetup, tmp_path: Path, replayed_vllm: ReplayServer
) -> None:
    folder = tokenizer_only(tiny.model_dir, tmp_path / "router-model")
    stream, request, service = route_one_request(folder, replayed_vllm, "--served-model-name", "merged")
    assert_known_answer_closed(stream)
    assert request["model"] == "merged"
    assert request["prompt"].startswith("### 지시문:\n") and "### 응답:" in request["prompt"]
    assert service.layout.source == (ROOT / "templates" / "prompt.j2").read_text(encoding="utf-8")


def test_the_serve_command_starts_on_a_tokenizer_only_folder(
    tiny: TinySetup, tmp_path: Path, replayed_vllm: ReplayServer
) -> None:
    """One real subprocess: `serve --vllm-url` checks the folder without weights, starts and answers."""
    folder = tokenizer_only(tiny.model_dir, tmp_path / "router-model")
    code = (
        "import argparse, sys\n"
        "from kochallenge_data.serve.cli import register\n"
        "parser = argparse.ArgumentParser(); register(parser.add_subparsers())\n"
        "args = parser.parse_args(sys.argv[1:]); sys.exit(args.func(args))\n"
    )
    command = [
        sys.executable, "-c", code, "serve", "--model", str(folder), "--vllm-url", replayed_vllm.url,
        "--served-model-name", "merged", "--port", "0", "--pools", str(FIXTURE_POOLS),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stderr is not None
        seen, found = "", None
        while found is None:
            line = process.stderr.readline()
            seen += line
            found = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line)
            if not line and process.poll() is not None:
                break
        assert found, f"the server did not start:\n{seen}"
        stream = get_stream(f"http://127.0.0.1:{found.group(1)}", KNOWN_BASE_INFO)
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert_known_answer_closed(stream)
    assert [r["model"] for r in replayed_vllm.requests if "prompt" in r] == ["merged"]


# --------------------------------------------------------------------------------------------
# a train run: base plus adapter


def test_a_train_run_is_served_as_base_plus_adapter_with_its_own_prompt(
    lora_run: Path, replayed_vllm: ReplayServer
) -> None:
    lines = check_model(lora_run, weights=False)
    notes = [line for line in lines if line.startswith("note:")]
    assert len(notes) == 1 and "--enable-lora" in notes[0], lines
    assert f"--lora-modules lora={lora_run / 'adapter'} --max-lora-rank 8" in notes[0]
    assert "--served-model-name lora" in notes[0]
    assert not [line for line in lines if line.startswith("warning")], lines
    stream, request, service = route_one_request(lora_run, replayed_vllm, "--served-model-name", "eco")
    assert_known_answer_closed(stream)
    assert request["model"] == "eco"
    assert service.layout.source == TRAINED_PROMPT
    assert request["prompt"].startswith("### 지시:\n") and request["prompt"].endswith("### 답:\n")


def test_a_train_run_cannot_be_loaded_in_process(lora_run: Path) -> None:
    with pytest.raises(ModelRefused, match="merge --base BASE --adapter") as caught:
        check_model(lora_run, weights=True)
    assert caught.value.exit_code == 2
    with pytest.raises(ModelRefused, match=f"pass --model {lora_run}"):
        check_model(lora_run / "adapter", weights=False)


def test_a_train_run_whose_base_is_elsewhere_uses_its_own_copies(tiny: TinySetup, tmp_path: Path) -> None:
    run = make_train_run(tiny, tmp_path / "run", recorded_base=tmp_path / "gpu-host-only" / "base")
    with pytest.raises(ModelRefused) as caught:
        check_model(run, weights=False)
    message = str(caught.value)
    assert "not on this host" in message and "config.json" in message and "tokenizer" in message
    assert caught.value.exit_code == 2
    for name in METADATA_FILES:
        if (tiny.model_dir / name).is_file():
            shutil.copyfile(tiny.model_dir / name, run / name)
    lines = check_model(run, weights=False)
    assert any(str(tmp_path / "gpu-host-only" / "base") in line for line in lines if line.startswith("note:"))
    save_blank_eos(run)
    with pytest.raises(ModelRefused, match="eos_blank"):
        check_model(run, weights=False)


def test_a_train_run_checks_the_base_it_names(tiny: TinySetup, tmp_path: Path) -> None:
    """The base on this host is what the doctor reads: a broken base tokenizer refuses the run."""
    base = tokenizer_only(tiny.model_dir, tmp_path / "base")
    run = make_train_run(tiny, tmp_path / "run", recorded_base=base)
    check_model(run, weights=False)
    save_blank_eos(base)
    with pytest.raises(ModelRefused, match="eos_blank"):
        check_model(run, weights=False)


def test_a_train_run_without_its_prompt(tiny: TinySetup, tmp_path: Path) -> None:
    run = make_train_run(tiny, tmp_path / "run", prompt=None)
    assert any("no prompt.j2" in line for line in check_model(run, weights=False))
    config = json.loads((run / "train_config.json").read_text(encoding="utf-8"))
    config["options"]["prompt_mode"] = "chat-template"
    (run / "train_config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ModelRefused, match=r"copy prompt\.j2"):
        check_model(run, weights=False)


def test_a_config_that_is_not_the_trained_base_is_a_warning(tiny: TinySetup, tmp_path: Path) -> None:
    base = tokenizer_only(tiny.model_dir, tmp_path / "base")
    run = make_train_run(tiny, tmp_path / "run", recorded_base=base)
    config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    config["num_hidden_layers"] = 4
    (base / "config.json").write_text(json.dumps(config), encoding="utf-8")
    warnings = [line for line in check_model(run, weights=False) if line.startswith("warning")]
    assert len(warnings) == 1 and "num_hidden_layers" in warnings[0], warnings


def test_an_adapter_vllm_cannot_serve_is_refused(tiny: TinySetup, tmp_path: Path) -> None:
    run = make_train_run(tiny, tmp_path / "run", use_dora=True)
    with pytest.raises(ModelRefused, match=r"DoRA \(use_dora\).*Merge it instead"):
        check_model(run, weights=False)


@pytest.mark.parametrize(
    ("config", "found"),
    [
        ({"r": 8}, []),
        ({"r": 8, "modules_to_save": ["score"]}, []),
        ({"r": 8, "init_lora_weights": "gaussian"}, []),
        ({"r": 8, "modules_to_save": ["lm_head"]}, ["modules_to_save ['lm_head']"]),
        ({"r": 8, "bias": "lora_only"}, ["trained biases"]),
        ({"r": 8, "init_lora_weights": "pissa"}, ["init_lora_weights 'pissa'"]),
        ({"r": 8, "trainable_token_indices": [5, 6]}, ["trainable_token_indices"]),
        ({"r": 8, "use_qalora": True, "layer_replication": [[0, 2]]}, ["layer_replication", "QALoRA"]),
    ],
)
def test_vllm_lora_problems(config: dict[str, Any], found: list[str]) -> None:
    problems = vllm_lora_problems(config)
    assert len(problems) == len(found)
    assert all(any(needle in p for p in problems) for needle in found), problems


# --------------------------------------------------------------------------------------------
# the command lines


@pytest.mark.parametrize(
    ("rank", "flag"), [(1, 1), (2, 8), (4, 8), (8, 8), (9, 16), (16, 16), (17, 32), (64, 64), (300, 320), (512, 512)]
)
def test_max_lora_rank_is_the_smallest_vllm_accepts_that_holds_the_adapter(rank: int, flag: int) -> None:
    assert vllm_max_lora_rank(rank) == flag and flag in VLLM_LORA_RANKS


def test_a_rank_above_what_vllm_serves_is_refused() -> None:
    with pytest.raises(ModelRefused, match="merge the adapter"):
        vllm_max_lora_rank(513)


def test_the_command_lines_of_both_ways() -> None:
    assert merged_vllm_command(Path("runs/merged"), max_model_len=2048) == "vllm serve runs/merged --max-model-len 2048"
    assert (
        lora_vllm_command(Path("models/base"), Path("runs/lora/adapter"), name="eco", rank=16)
        == "vllm serve models/base --enable-lora --lora-modules eco=runs/lora/adapter --max-lora-rank 16"
    )
    assert (
        router_command(Path("runs/lora"), "http://gpu:8000", "eco")
        == "python -m kochallenge_data serve --model runs/lora --vllm-url http://gpu:8000 --served-model-name eco"
    )


def test_the_printed_lora_command_names_the_adapters_largest_rank(tiny: TinySetup, tmp_path: Path) -> None:
    """r=4 with one module at rank 40 (rank_pattern): vLLM compares the largest, so --max-lora-rank 64."""
    run = make_train_run(tiny, tmp_path / "eco", r=4, rank_pattern={"v_proj": 40})
    saved = json.loads((run / "adapter" / "adapter_config.json").read_text(encoding="utf-8"))
    assert saved["r"] == 4 and saved["rank_pattern"] == {"v_proj": 40}
    hint = serving_hint(run, merged_dir=Path("runs/merged"), max_model_len=512)
    assert "vllm serve runs/merged --max-model-len 512" in hint
    lora_line = next(line.strip() for line in hint.splitlines() if "--enable-lora" in line)
    assert lora_line == (
        f"vllm serve {tiny.model_dir} --enable-lora --lora-modules eco={run / 'adapter'} --max-lora-rank 64 "
        "--max-model-len 512"
    )
    assert f"serve --model {run} --vllm-url http://GPU_HOST:8000 --served-model-name eco" in hint
    note = next(line for line in check_model(run, weights=False) if line.startswith("note:"))
    assert "--max-lora-rank 64" in note


def test_the_hint_takes_the_run_its_adapter_folder_or_a_bare_adapter(
    lora_run: Path, tiny: TinySetup, tmp_path: Path
) -> None:
    assert serving_hint(lora_run / "adapter") == serving_hint(lora_run)
    bare = save_adapter(tiny.model_dir, tmp_path / "downloaded", r=16, lora_alpha=32)
    hint = serving_hint(bare, base=Path("models/base"))
    assert f"vllm serve models/base --enable-lora --lora-modules downloaded={bare} --max-lora-rank 16" in hint
    assert "serve --model models/base --vllm-url http://GPU_HOST:8000 --served-model-name downloaded" in hint
    with pytest.raises(ModelRefused, match="not a LoRA adapter"):
        serving_hint(tiny.model_dir)


def test_importing_model_check_loads_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "import kochallenge_data.serve.model_check\n"
        "heavy = ('torch', 'transformers', 'peft', 'fastapi', 'uvicorn', 'httpx')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
