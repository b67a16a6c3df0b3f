"""Facts about the base read before training: its tokenizer, eos and pad, stop tokens, length limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from ...errors import KochallengeError


def require_train_extra() -> None:
    try:
        import peft  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
        import trl  # noqa: F401
    except ImportError as exc:
        raise KochallengeError(
            f"train needs the train extra ({exc.name} is missing): pip install torch==2.13.0 -e '.[train]'"
        ) from None


def load_base_tokenizer(base: Path, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    if not (base / "config.json").is_file():
        raise KochallengeError(f"{base}: no config.json; pass the base model directory with --base")
    try:
        return AutoTokenizer.from_pretrained(str(base), trust_remote_code=trust_remote_code)
    except Exception as exc:  # loader errors are the user's model files
        hint = (
            " (it ships its own code: pass --trust-remote-code if you trust it)"
            if "trust_remote_code" in str(exc)
            else ""
        )
        raise KochallengeError(
            f"{base}: the tokenizer does not load ({type(exc).__name__}: {exc}){hint}; "
            f"run `python -m kochallenge_data doctor {base}`"
        ) from exc


def eos_and_pad(tokenizer: Any) -> tuple[int, int, str]:
    """The eos id, the id that pads batches, and a sentence saying where the pad came from."""
    eos_id = tokenizer.eos_token_id
    if not isinstance(eos_id, int):
        raise KochallengeError(
            "the base tokenizer has no eos token, so the model could never learn to stop; "
            "set eos_token in the base tokenizer_config.json (run doctor on the base)"
        )
    pad_id = tokenizer.pad_token_id
    if isinstance(pad_id, int):
        return eos_id, pad_id, f"the base pad token {tokenizer.pad_token!r} (id {pad_id})"
    return (
        eos_id,
        eos_id,
        (
            f"the base has no pad token: eos {tokenizer.eos_token!r} (id {eos_id}) pads batches inside the collator "
            "only, masked from attention and loss; no config or tokenizer file is changed"
        ),
    )


def stop_ids(base: Path, eos_id: int) -> set[int]:
    """Tokens generation stops on: the tokenizer's eos and every eos of generation_config.json (chat templates
    end a turn with one of them)."""
    stops = {eos_id}
    try:
        generation = orjson.loads((base / "generation_config.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return stops
    value = generation.get("eos_token_id") if isinstance(generation, dict) else None
    stops.update(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, int))
    return stops


def model_length_limit(base: Path, tokenizer: Any) -> int | None:
    """The base's positions (config.json), or the tokenizer's model_max_length when it is a real number."""
    try:
        config = orjson.loads((base / "config.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        config = {}
    text = config.get("text_config", config) if isinstance(config, dict) else {}
    positions = text.get("max_position_embeddings") if isinstance(text, dict) else None
    limits = [v for v in (positions, getattr(tokenizer, "model_max_length", None)) if isinstance(v, int) and v < 10**7]
    return min(limits) if limits else None


def accelerator_memory_gib() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info()
    return float(free) / 2**30
