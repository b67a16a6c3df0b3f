"""What OUT holds besides the weights: the base's config and tokenizer files (edited only where the weights
need it), the train run's prompt template, and the facts merge_report.json records; then the atomic move."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from ..doctor import METADATA_FILES, TOKENIZER_FILES, WEIGHT_SUFFIXES, Inspection, ModelDirError, as_int, config_dtype
from ..safetensors_header import TORCH_DTYPE_NAMES
from .adapter import PROMPT_FILE, AdapterInfo, AdapterSource
from .tokenizer import TokenizerPlan


def write_metadata(
    base_path: Path, adapter_path: Path, tmp: Path, plan: TokenizerPlan, base: Inspection
) -> dict[str, Any]:
    """Write the base's config, generation config and tokenizer files (edited only where the weights need it)."""
    copied: list[str] = []
    from_adapter: list[str] = []
    edited: dict[str, Any] = {}
    base_config_bytes = (base_path / "config.json").read_bytes()
    old_vocab = as_int(base.text.get("vocab_size"))
    if old_vocab == plan.rows:
        (tmp / "config.json").write_bytes(base_config_bytes)
        copied.append("config.json")
    else:
        config = json.loads(base_config_bytes)
        target = (
            config["text_config"]
            if "vocab_size" not in config and isinstance(config.get("text_config"), dict)
            else config
        )
        target["vocab_size"] = plan.rows
        (tmp / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        edited["config.json"] = {"vocab_size": [old_vocab, plan.rows]}
    if base.dir.has("generation_config.json"):
        shutil.copyfile(base.dir.files["generation_config.json"], tmp / "generation_config.json")
        copied.append("generation_config.json")
    for name in TOKENIZER_FILES:
        source = adapter_path / name if plan.changed else base_path / name
        if plan.changed and source.is_file():
            shutil.copyfile(source, tmp / name)
            from_adapter.append(name)
        elif base.dir.has(name) and (not plan.changed or name == "tokenizer.model"):
            shutil.copyfile(base.dir.files[name], tmp / name)
            copied.append(name)
    skip = {*METADATA_FILES, "merge_report.json", "adapter_config.json"}
    for name, path in base.dir.files.items():
        if name in skip or name.endswith(WEIGHT_SUFFIXES) or name.endswith(".index.json") or name.startswith("."):
            continue
        with contextlib.suppress(OSError):
            if path.stat().st_size <= 10 * 1024 * 1024 and not (tmp / name).exists():
                shutil.copyfile(path, tmp / name)
                copied.append(name)
    return {"copied_from_base": copied, "from_adapter": from_adapter, "edited": edited}


def copy_trained_prompt(prompt: Path | None, tmp: Path) -> dict[str, Any] | None:
    """Copy the train run's prompt.j2 byte for byte (None when the run has none).

    Serving and evaluation render requests with the model folder's prompt.j2; a ``chat-template`` run's
    prompt is derived from the base's chat template, so the shipped layout would not be what it learned.
    """
    if prompt is None:
        return None
    shutil.copyfile(prompt, tmp / PROMPT_FILE)
    return {"file": PROMPT_FILE, "from": str(prompt.resolve()), "sha256": file_sha256(tmp / PROMPT_FILE)}


def adapter_summary(source: AdapterSource, adapter: AdapterInfo, given: Path) -> dict[str, Any]:
    config = adapter.config
    return {
        "path": str(source.adapter_dir.resolve()),
        "given": str(given.resolve()),
        "train_config": str(source.train_config.resolve()) if source.train_config else None,
        "sha256": file_sha256(adapter.weights_file),
        "base_model_name_or_path": config.get("base_model_name_or_path"),
        "r": config.get("r"),
        "lora_alpha": config.get("lora_alpha"),
        "target_modules": config.get("target_modules"),
        "modules_to_save": config.get("modules_to_save"),
        "trainable_token_indices": config.get("trainable_token_indices"),
        "use_dora": bool(config.get("use_dora")),
    }


def serving_dtype(base: Inspection) -> str:
    """The dtype vLLM should serve in: the config's, else the one most base weights have."""
    saved = config_dtype(base.config or {})
    if saved in ("float32", "bfloat16", "float16"):
        return saved
    counts = base.weights.dtypes()
    dominant = max(counts, key=lambda k: counts[k]) if counts else "F32"
    name = TORCH_DTYPE_NAMES.get(dominant, "float32")
    return name if name in ("float32", "bfloat16", "float16") else "float32"


def file_sha256(path: Path) -> str:
    """Streamed, so a multi-GB adapter is never read into memory at once."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}


def peak_rss_mib() -> float | None:
    """This process's peak resident memory so far (ru_maxrss is KiB on Linux, bytes on macOS; None on Windows)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def move_into_place(tmp: Path, out: Path, *, force: bool) -> None:
    if out.exists():
        if not force:
            raise ModelDirError(f"{out} appeared while merging; pass --force to replace it")
        old = out.parent / f".{out.name}.replaced-{os.getpid()}"
        os.replace(out, old)
        os.replace(tmp, out)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()
    else:
        os.replace(tmp, out)
