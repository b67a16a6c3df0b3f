"""The adapter: where it is (its folder, or the ``train --out`` folder that holds it), what each saved
tensor is, and whether it fits the base. Read from adapter_config.json and the safetensors header; no torch."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..doctor import ModelDirError, short
from ..safetensors_header import HeaderError, TensorInfo, read_header

ADAPTER_PREFIX = "base_model.model."
ADAPTER_SUBDIR = "adapter"
TRAIN_CONFIG = "train_config.json"
PROMPT_FILE = "prompt.j2"
"""What ``train`` trained with, beside ``adapter/``; serving reads it from the model folder."""
VOCAB_TENSOR = re.compile(r"(^|\.)(embed_tokens|wte|word_embeddings|tok_embeddings|lm_head|embed_out)\.weight$")
INPUT_EMBEDDING = re.compile(r"(^|\.)(embed_tokens|wte|word_embeddings|tok_embeddings)\.weight$")

# adapter_config.json keys of LoRA variants whose merge is not W + scale * B @ A (use_dora is handled)
UNSUPPORTED_VARIANTS = (
    "alora_invocation_tokens",
    "arrow_config",
    "kasa_config",
    "layer_replication",
    "megatron_config",
    "monteclora_config",
    "target_parameters",
    "use_bdlora",
    "use_qalora",
    "velora_config",
)


@dataclass(frozen=True)
class AdapterTensor:
    """What one saved adapter tensor does to the base: its ``kind`` and the base tensor it changes."""

    key: str
    module: str
    kind: str
    target: str


@dataclass(frozen=True)
class AdapterInfo:
    """An adapter directory read from its files (no torch)."""

    path: Path
    config: Mapping[str, Any]
    weights_file: Path
    tensors: Mapping[str, TensorInfo]

    @property
    def embedding_rows(self) -> int | None:
        """Rows of a saved (resized) input embedding, or of a LoRA on the input embedding."""
        for name, info in self.tensors.items():
            tensor = classify_key(name)
            if tensor.kind == "full" and INPUT_EMBEDDING.search(tensor.target) and info.shape:
                return info.shape[0]
            if tensor.kind == "lora_embedding_A" and len(info.shape) == 2:
                return info.shape[1]
        return None


@dataclass(frozen=True)
class AdapterSource:
    """Where the adapter is, and the train run's config and prompt template beside it when there are."""

    adapter_dir: Path
    train_config: Path | None
    run_dir_given: bool
    prompt: Path | None = None


def module_name(adapter_key: str) -> str:
    """``base_model.model.model.layers.0.q_proj.lora_A.weight`` -> ``model.layers.0.q_proj.lora_A.weight``;
    saved full modules lose PEFT's ``modules_to_save``/``default``/``base_layer`` wrappers."""
    name = adapter_key.removeprefix(ADAPTER_PREFIX)
    name = name.replace(".modules_to_save.default.", ".").replace(".modules_to_save.", ".")
    return name.replace(".original_module.", ".").replace(".base_layer.", ".")


_LORA_AB = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>A|B)(?:\.[^.]+)?\.(?P<param>weight|bias)$")
_LORA_VECTORS = re.compile(
    r"^(?P<module>.+)\.(?P<kind>lora_embedding_A|lora_embedding_B|lora_magnitude_vector)(?:\.[^.]+)?$"
)
_TOKEN_DELTA = re.compile(r"^(?P<module>.+)\.token_adapter\.trainable_tokens_delta(?:\.[^.]+)?$")


def classify_key(adapter_key: str) -> AdapterTensor:
    """Name what a saved adapter tensor is, from PEFT 0.21's key names.

    ``lora_A``/``lora_B`` (``lora_B`` may carry a bias: ``lora_B_bias``), ``lora_embedding_A``/``_B``
    (no ``.weight``), ``lora_magnitude_vector`` (DoRA), ``token_rows`` (``trainable_token_indices``:
    replacement rows of an embedding), ``full`` (``modules_to_save``, resized embeddings, trained biases:
    a whole tensor that replaces the base's) and ``unknown`` (another LoRA variant's tensor).
    """
    name = module_name(adapter_key)
    if m := _LORA_AB.match(name):
        module = m.group("module")
        if m.group("param") == "bias":
            kind = "lora_B_bias" if m.group("ab") == "B" else "unknown"
            return AdapterTensor(adapter_key, module, kind, module + ".bias")
        return AdapterTensor(adapter_key, module, "lora_" + m.group("ab"), module + ".weight")
    if m := _LORA_VECTORS.match(name):
        kind = "magnitude" if m.group("kind") == "lora_magnitude_vector" else m.group("kind")
        return AdapterTensor(adapter_key, m.group("module"), kind, m.group("module") + ".weight")
    if m := _TOKEN_DELTA.match(name):
        return AdapterTensor(adapter_key, m.group("module"), "token_rows", m.group("module") + ".weight")
    if ".lora_" in name or ".token_adapter." in name:
        return AdapterTensor(adapter_key, name, "unknown", name)
    module = name.rsplit(".", 1)[0] if "." in name else name
    return AdapterTensor(adapter_key, module, "full", name)


def read_adapter(path: Path) -> AdapterInfo:
    """Read adapter_config.json and the adapter weights' header; raise :class:`ModelDirError` if unusable."""
    if not path.is_dir():
        raise ModelDirError(f"adapter directory {path} does not exist")
    config_path = path / "adapter_config.json"
    if not config_path.is_file():
        hint = " (it has config.json: a full model, not an adapter)" if (path / "config.json").is_file() else ""
        if (path / TRAIN_CONFIG).is_file():
            hint = f" (it has {TRAIN_CONFIG} but no {ADAPTER_SUBDIR}/adapter_config.json: did training finish?)"
        raise ModelDirError(f"{path} has no adapter_config.json{hint}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise ModelDirError(f"{config_path} is not readable JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ModelDirError(f"{config_path} is not a JSON object")
    weights = path / "adapter_model.safetensors"
    if not weights.is_file():
        raise ModelDirError(
            f"{path} has no adapter_model.safetensors (only safetensors adapters are merged; "
            "re-save with model.save_pretrained(dir))"
        )
    try:
        header = read_header(weights)
    except HeaderError as exc:
        raise ModelDirError(f"{weights}: {exc}") from None
    return AdapterInfo(path=path, config=config, weights_file=weights, tensors=header.tensors)


def locate_adapter(path: Path) -> AdapterSource:
    """Accept the adapter folder or the train output folder (``RUN`` with ``RUN/adapter``).

    The run's ``train_config.json`` and ``prompt.j2`` are the ones in the folder given, or beside the
    adapter folder.
    """
    run_dir_given = (
        not (path / "adapter_config.json").is_file() and (path / ADAPTER_SUBDIR / "adapter_config.json").is_file()
    )
    adapter_dir = path / ADAPTER_SUBDIR if run_dir_given else path
    run_dir = path if run_dir_given else path.parent
    train_config, prompt = run_dir / TRAIN_CONFIG, run_dir / PROMPT_FILE
    return AdapterSource(
        adapter_dir,
        train_config if train_config.is_file() else None,
        run_dir_given,
        prompt if prompt.is_file() else None,
    )


def unsupported_features(adapter: AdapterInfo) -> list[str]:
    """What in the adapter this merge cannot fold into plain weights (empty when it can)."""
    config = adapter.config
    found = [f"{key} ({short(json.dumps(config[key]), 40)})" for key in UNSUPPORTED_VARIANTS if config.get(key)]
    init = config.get("init_lora_weights")
    if isinstance(init, str) and init.lower().startswith("mica"):
        found.append(f"init_lora_weights {init!r} (a LoRA variant)")
    unknown = [t.key for t in map(classify_key, adapter.tensors) if t.kind == "unknown"]
    if unknown:
        found.append(f"{len(unknown)} tensors of an unknown LoRA variant (e.g. {short(unknown[0], 80)!r})")
    return found


def adapter_mismatches(adapter: AdapterInfo, base_tensors: Mapping[str, TensorInfo]) -> list[str]:
    """Every way the adapter's tensors do not fit the base's (empty when it belongs to the base)."""
    problems: list[str] = []
    fan_in_fan_out = bool(adapter.config.get("fan_in_fan_out"))
    tied_head = "lm_head.weight" not in base_tensors and any(INPUT_EMBEDDING.search(n) for n in base_tensors)
    matched = 0
    for key, info in adapter.tensors.items():
        tensor = classify_key(key)
        if tensor.kind == "unknown":
            continue
        base = base_tensors.get(tensor.target)
        if base is None:
            hint = (
                " (the base ties lm_head to the input embedding; a separately trained lm_head does not fit it)"
                if tied_head and tensor.target.endswith("lm_head.weight")
                else ""
            )
            problems.append(f"{short(key, 90)}: the base has no {tensor.target}{hint}")
            continue
        matched += 1
        resizable = VOCAB_TENSOR.search(tensor.target) is not None
        if not _fits(tensor.kind, info.shape, base.shape, resizable=resizable, fan_in_fan_out=fan_in_fan_out):
            problems.append(f"{short(key, 90)}: {list(info.shape)} does not fit base {list(base.shape)}")
    if not matched and adapter.tensors:
        problems.insert(0, "none of the adapter's modules exist in the base: another architecture")
    return problems


def _fits(kind: str, shape: tuple[int, ...], base: tuple[int, ...], *, resizable: bool, fan_in_fan_out: bool) -> bool:
    """Whether an adapter tensor of ``kind`` fits a base tensor (a matrix ``[out, in]``, a vector, ...)."""
    if kind in ("full", "lora_B_bias"):
        return len(shape) == len(base) and shape[1:] == base[1:] and (shape[:1] == base[:1] or resizable)
    if len(base) != 2 or len(shape) < 1:
        return False
    out_features, in_features = (base[1], base[0]) if fan_in_fan_out else base
    if kind == "lora_A":
        return len(shape) == 2 and shape[1] == in_features
    if kind in ("lora_B", "magnitude"):
        return shape[0] == out_features
    if kind == "lora_embedding_B":
        return len(shape) == 2 and shape[0] == base[1]
    if kind == "token_rows":
        return len(shape) == 2 and shape[1] == base[1]
    return kind == "lora_embedding_A" and len(shape) == 2  # its rows follow the (possibly resized) vocabulary
