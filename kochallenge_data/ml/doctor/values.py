"""Small pure helpers over config and tokenizer values (ids, token texts, dtypes) and message text."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any


def token_text(value: object) -> str | None:
    """A special token from tokenizer_config/special_tokens_map: a string or an AddedToken dict."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        content: str = value["content"]
        return content
    return None


def id_list(value: object) -> list[int]:
    """``eos_token_id`` may be an int, a list of ints or null."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
    return []


def text_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The language-model part of a config (multimodal configs nest it in ``text_config``)."""
    inner = config.get("text_config")
    if "vocab_size" not in config and isinstance(inner, dict):
        return inner
    return config


def as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def config_dtype(config: Mapping[str, Any]) -> str | None:
    value = config.get("dtype", config.get("torch_dtype"))
    if value is None:
        inner = text_config(config)
        value = inner.get("dtype", inner.get("torch_dtype"))
    return value if isinstance(value, str) else None


def short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def show_chars(chars: Iterable[str]) -> str:
    return ", ".join(f"{c!r} (U+{ord(c):04X})" for c in chars)


def walk(node: object) -> Iterator[Mapping[str, Any]]:
    """Every dict inside a tokenizer.json component (normalizers and decoders nest in Sequences)."""
    stack = [node]
    seen = 0
    while stack and seen < 10_000:
        item = stack.pop()
        seen += 1
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
