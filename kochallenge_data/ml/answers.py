"""Answers to evaluate: from a model loaded in this process, or from an OpenAI-compatible server.

Both send the training prompt exactly as training tokenized it and say how each answer ended, because
an answer cut at the token limit looks like a format error when it is really a length problem.

- :func:`generate_with_model` takes an already loaded transformers or peft model: greedy, batched, left
  padded (a decoder-only model continues from the last position, so padding goes in front), padded with
  eos when the tokenizer has no pad token, without changing or saving the tokenizer.
- :func:`generate_with_server` posts to ``{URL}/v1/completions`` (vLLM and friends), a batch of
  concurrent requests at a time, and reads ``finish_reason``.

torch, transformers, peft and httpx are imported inside the functions that need them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from ..errors import KochallengeError

Finish = Literal["eos", "length", "stop"]
"""How an answer ended: the model's eos (in-process), the token limit, or a server's ``stop``."""

DEFAULT_MAX_NEW_TOKENS = 256
ADAPTER_DIR = "adapter"
TRAIN_CONFIG = "train_config.json"
PROMPT_FILE = "prompt.j2"

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Generation:
    """One answer as generated; ``tokens`` counts the answer's tokens when the generator knows them."""

    text: str
    finish: Finish
    tokens: int | None = None


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to answer, and what its folder records about how it was trained."""

    model: Any
    tokenizer: Any
    description: str
    prompt_file: Path | None  # DIR/prompt.j2, the template training saved, when there is one
    max_new_tokens: int | None  # train_config.json "resolved.max_new_tokens", when recorded


# --------------------------------------------------------------------------------------------
# in-process


def generate_with_model(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    batch_size: int,
    max_new_tokens: int,
    progress: Progress | None = None,
) -> list[Generation]:
    """Greedy answers to ``prompts``, in order, each tokenized with its special tokens as training does."""
    import torch

    if batch_size < 1 or max_new_tokens < 1:
        raise KochallengeError(f"batch size ({batch_size}) and max new tokens ({max_new_tokens}) must be positive")
    stops = stop_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if isinstance(tokenizer.pad_token_id, int) else stops[0]
    device = next(model.parameters()).device
    was_training = bool(getattr(model, "training", False))
    model.eval()
    generations: list[Generation] = []
    try:
        for start in range(0, len(prompts), batch_size):
            batch = [
                list(tokenizer(p, add_special_tokens=True)["input_ids"]) for p in prompts[start : start + batch_size]
            ]
            input_ids, attention_mask = left_pad(batch, pad_id)
            with torch.inference_mode():
                output = model.generate(
                    input_ids=torch.tensor(input_ids, device=device),
                    attention_mask=torch.tensor(attention_mask, device=device),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=stops,
                    pad_token_id=pad_id,
                    use_cache=True,  # a model fresh from training may have it off for gradient checkpointing
                )
            width = len(input_ids[0])
            for row in output[:, width:].tolist():
                generations.append(finish_row([int(i) for i in row], stops, tokenizer))
            if progress is not None:
                progress(len(generations), len(prompts))
    finally:
        if was_training:
            model.train()
    return generations


def stop_ids(model: Any, tokenizer: Any) -> list[int]:
    """The tokenizer's eos (the one training appends) first, then any other eos the generation config lists."""
    ids: list[int] = []
    if isinstance(tokenizer.eos_token_id, int):
        ids.append(tokenizer.eos_token_id)
    config = getattr(model, "generation_config", None)
    configured = getattr(config, "eos_token_id", None)
    for value in configured if isinstance(configured, list) else [configured]:
        if isinstance(value, int) and value not in ids:
            ids.append(value)
    if not ids:
        raise KochallengeError(
            "the tokenizer has no eos token, so no answer could ever end; set eos_token in tokenizer_config.json"
        )
    return ids


def left_pad(batch: Sequence[Sequence[int]], pad_id: int) -> tuple[list[list[int]], list[list[int]]]:
    """Pad in front so every prompt ends at the last position, where generation continues."""
    width = max(len(ids) for ids in batch)
    input_ids = [[pad_id] * (width - len(ids)) + list(ids) for ids in batch]
    attention_mask = [[0] * (width - len(ids)) + [1] * len(ids) for ids in batch]
    return input_ids, attention_mask


def finish_row(new_ids: Sequence[int], stops: Sequence[int], tokenizer: Any) -> Generation:
    """The answer up to its first eos; without one the answer ran into the token limit."""
    end = next((i for i, token in enumerate(new_ids) if token in stops), None)
    kept = new_ids if end is None else new_ids[:end]
    text = str(tokenizer.decode(list(kept), skip_special_tokens=True))
    return Generation(text=text, finish="length" if end is None else "eos", tokens=len(kept))


def load_model(model_dir: Path) -> LoadedModel:
    """A merged model directory, or a ``train --out`` folder (its base plus ``adapter/`` through peft)."""
    config = read_train_config(model_dir)
    prompt_file = model_dir / PROMPT_FILE
    recorded = _recorded_max_new_tokens(config, model_dir)
    if (model_dir / "config.json").is_file():
        tokenizer, model = _load_pretrained(model_dir)
        description = f"{model_dir} (merged model)"
    elif (model_dir / ADAPTER_DIR).is_dir() and config is not None:
        base = _base_dir(config, model_dir)
        tokenizer, model = _load_pretrained(base)
        model = _attach_adapter(model, model_dir / ADAPTER_DIR)
        description = f"{model_dir} (adapter on {base})"
    elif (model_dir / "adapter_config.json").is_file():
        raise KochallengeError(
            f"{model_dir}: this is a bare LoRA adapter; pass the train --out folder that holds it (adapter/ and "
            f"train_config.json), or merge it first with `python -m kochallenge_data merge`"
        )
    else:
        raise KochallengeError(
            f"{model_dir}: not a model directory (no config.json) and not a train --out folder "
            f"(no {ADAPTER_DIR}/ with {TRAIN_CONFIG}); pass --model with one of them"
        )
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        description=description,
        prompt_file=prompt_file if prompt_file.is_file() else None,
        max_new_tokens=recorded,
    )


def read_train_config(model_dir: Path) -> dict[str, Any] | None:
    path = model_dir / TRAIN_CONFIG
    if not path.is_file():
        return None
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise KochallengeError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise KochallengeError(f"{path}: expected a JSON object")
    return data


def _recorded_max_new_tokens(config: dict[str, Any] | None, model_dir: Path) -> int | None:
    resolved = (config or {}).get("resolved")
    value = resolved.get("max_new_tokens") if isinstance(resolved, dict) else None
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise KochallengeError(f"{model_dir / TRAIN_CONFIG}: resolved.max_new_tokens must be a positive whole number")
    return value


def _base_dir(config: dict[str, Any], model_dir: Path) -> Path:
    options = config.get("options")
    base = options.get("base") if isinstance(options, dict) else None
    if not isinstance(base, str) or not base:
        raise KochallengeError(f"{model_dir / TRAIN_CONFIG}: options.base does not name the base model directory")
    path = Path(base)
    # train records the path as given; when the run folder moved with its base, look beside the run too.
    for candidate in (path, model_dir.parent / path):
        if (candidate / "config.json").is_file():
            return candidate
    raise KochallengeError(
        f"{model_dir / TRAIN_CONFIG}: options.base is {base!r}, which has no config.json here; "
        "put the base model there or merge the adapter and pass the merged directory"
    )


def _load_pretrained(model_dir: Path) -> tuple[Any, Any]:
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise KochallengeError(
            f"evaluate --model needs the train extra ({exc.name} is missing): pip install torch==2.13.0 -e '.[train]'"
        ) from None
    cuda = torch.cuda.is_available()
    try:
        tokenizer: Any = AutoTokenizer.from_pretrained(str(model_dir))
        # float32 on CPU: half precision there is slow and its rounding can flip a greedy choice.
        model: Any = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype="auto" if cuda else torch.float32)
    except Exception as exc:  # loader errors are the user's model files
        raise KochallengeError(
            f"{model_dir}: transformers cannot load the model ({type(exc).__name__}: {exc}); "
            f"run `python -m kochallenge_data doctor {model_dir} --load`"
        ) from exc
    if cuda:
        model = model.to("cuda")
    return tokenizer, model


def _attach_adapter(model: Any, adapter_dir: Path) -> Any:
    try:
        from peft import PeftModel
    except ImportError:
        raise KochallengeError("a train --out folder needs peft (the train extra) to load its adapter") from None
    try:
        return PeftModel.from_pretrained(model, str(adapter_dir))
    except Exception as exc:  # loader errors are the user's adapter files
        raise KochallengeError(
            f"{adapter_dir}: peft cannot load the adapter onto its base ({type(exc).__name__}: {exc})"
        ) from exc


# --------------------------------------------------------------------------------------------
# an OpenAI-compatible server


@dataclass(frozen=True)
class ServerSettings:
    url: str
    model_name: str
    max_new_tokens: int
    timeout_s: float = 120.0
    connect_timeout_s: float = 5.0


def generate_with_server(
    settings: ServerSettings,
    prompts: Sequence[str],
    *,
    batch_size: int,
    regexes: Sequence[str | None] | None = None,
    progress: Progress | None = None,
) -> list[Generation]:
    """Greedy answers from ``POST {url}/v1/completions``, ``batch_size`` requests in flight at a time; a regex
    beside a prompt is sent as vLLM's ``structured_outputs.regex`` for it."""
    if batch_size < 1:
        raise KochallengeError(f"--batch-size must be positive (got {batch_size})")
    constraints = list(regexes) if regexes is not None else [None] * len(prompts)
    return asyncio.run(_generate_all(settings, list(zip(prompts, constraints, strict=True)), batch_size, progress))


async def _generate_all(
    settings: ServerSettings, items: Sequence[tuple[str, str | None]], batch_size: int, progress: Progress | None
) -> list[Generation]:
    async with _client(settings) as client:
        generations: list[Generation] = []
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            generations += await asyncio.gather(*(_complete(client, settings, p, r) for p, r in batch))
            if progress is not None:
                progress(len(generations), len(items))
        return generations


def _client(settings: ServerSettings) -> Any:
    import httpx

    return httpx.AsyncClient(
        base_url=settings.url.rstrip("/"),
        timeout=httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
        trust_env=False,  # a proxy variable must not reroute a loopback server
    )


async def _complete(client: Any, settings: ServerSettings, prompt: str, regex: str | None) -> Generation:
    body: dict[str, Any] = {
        "model": settings.model_name,
        "prompt": prompt,
        "max_tokens": settings.max_new_tokens,
        "temperature": 0,
    }
    if regex is not None:
        body["structured_outputs"] = {"regex": regex}
    data = await _request(client, settings, "POST", "/v1/completions", body)
    return completion_generation(data, settings.url)


async def _request(
    client: Any, settings: ServerSettings, method: str, path: str, body: Any = None, hint: str = ""
) -> Any:
    import httpx

    url = settings.url.rstrip("/") + path
    try:
        response = await client.request(method, path, json=body)
    except httpx.ConnectError as exc:
        raise KochallengeError(
            f"cannot reach {url} ({exc}); is the server running (e.g. `vllm serve MODEL_DIR`) and is --url right?"
        ) from exc
    except httpx.TimeoutException as exc:
        raise KochallengeError(
            f"{url} did not answer within {settings.timeout_s:g} s ({type(exc).__name__}); "
            "raise --timeout or lower --batch-size"
        ) from exc
    except httpx.HTTPError as exc:
        raise KochallengeError(f"the request to {url} failed ({type(exc).__name__}: {exc})") from exc
    if response.status_code != 200:
        from ..serve.backends import error_message

        raise KochallengeError(
            f"{url} answered HTTP {response.status_code}: {error_message(response.status_code, response.content)}"
            + hint
        )
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise KochallengeError(f"{url} answered with something that is not JSON: {response.text[:120]!r}") from exc


def completion_generation(data: Any, url: str) -> Generation:
    """The first choice of a ``/v1/completions`` answer; ``finish_reason`` "length" means the limit cut it."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise KochallengeError(f"{url}/v1/completions answered without choices: {str(data)[:160]}")
    choice = choices[0]
    text = choice.get("text")
    if not isinstance(text, str):
        raise KochallengeError(f"{url}/v1/completions answered a choice whose text is not a string")
    finish: Finish = "length" if choice.get("finish_reason") == "length" else "stop"
    usage = data.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return Generation(text=text, finish=finish, tokens=tokens if isinstance(tokens, int) else None)


def server_model_name(url: str, timeout_s: float = 120.0) -> str:
    """The first model the server lists at ``/v1/models``: what to send when --model-name is not given."""
    settings = ServerSettings(url=url, model_name="", max_new_tokens=1, timeout_s=timeout_s)

    async def ask() -> Any:
        async with _client(settings) as client:
            hint = "; pass --model-name with the served model's name"
            return await _request(client, settings, "GET", "/v1/models", hint=hint)

    data = asyncio.run(ask())
    models = data.get("data") if isinstance(data, dict) else None
    first = models[0] if isinstance(models, list) and models else None
    name = first.get("id") if isinstance(first, dict) else None
    if not isinstance(name, str) or not name:
        raise KochallengeError(f"{url}/v1/models lists no model; pass --model-name with the served model's name")
    return name
