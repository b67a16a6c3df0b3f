"""Checks on config.json, the weights and the serving settings.

Structure, weight names and shapes, dtype, generation defaults, context length, the config layout and what the
trainer left behind. Each takes an :class:`~.inspection.Inspection` and adds findings to it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..safetensors_header import TORCH_DTYPE_NAMES, TensorInfo
from .inspection import Inspection
from .model_dir import WEIGHT_SUFFIXES
from .report import Severity
from .tokenizer_checks import eos_ids
from .values import as_int, config_dtype, short

SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_new_tokens")


def check_structure(ins: Inspection) -> bool:
    """The fatal checks. Returns False when nothing else can be checked."""
    d = ins.dir
    if not d.exists:
        if not any(f.code == "not_a_model_dir" for f in ins.findings):
            what = "does not exist" if not d.root.exists() else "is not a directory"
            ins.add("not_a_model_dir", "error", ".", f"{d.root} {what}", "pass the folder that holds config.json")
        return False
    has_full = bool(ins.weights.files) or any(
        n.endswith(WEIGHT_SUFFIXES) and not n.startswith(("adapter_", "training_args")) for n in d.files
    )
    if ins.is_adapter and not has_full:
        ins.add(
            "adapter_dir",
            "error",
            "adapter_config.json",
            "this is a LoRA adapter, not a model: vLLM and transformers need merged weights",
            f"merge it first: python -m kochallenge_data merge --base BASE_DIR --adapter {d.root} --out MERGED_DIR",
        )
        return False
    if ins.is_adapter:
        ins.add(
            "adapter_files_in_model",
            "error",
            "adapter_config.json",
            "adapter files next to full weights: transformers loads the adapter on top of its "
            "base_model_name_or_path instead of these weights",
            "delete adapter_config.json and adapter_model.safetensors from the merged directory",
        )
    if not d.has("config.json"):
        ins.add(
            "not_a_model_dir",
            "error",
            "config.json",
            "no config.json: not a model directory",
            "copy config.json from the base model",
        )
        return False
    return ins.config is not None


def check_weights(ins: Inspection) -> None:
    d, w = ins.dir, ins.weights
    if not w.files:
        others = [n for n in d.files if n.endswith((".bin", ".pt", ".pth", ".ckpt"))]
        if others:
            ins.add(
                "weights_not_safetensors",
                "warning",
                others[0],
                "weights only as pickled .bin/.pt: loading runs arbitrary code and shapes cannot be checked",
                "re-save with model.save_pretrained(out) (safetensors is the default)",
            )
        elif not any(f.code in ("shard_missing", "safetensors_invalid") for f in ins.findings):
            ins.add("weights_missing", "error", ".", "no weight files (*.safetensors)", "copy or re-save the weights")
        return
    lora = [
        n
        for n in w.tensors
        if re.search(r"(^|\.)(lora_[AB]|lora_embedding_[AB]|lora_magnitude_vector|base_layer)(\.|$)", n)
    ]
    if lora:
        ins.add(
            "lora_unmerged",
            "error",
            w.shard_of[lora[0]],
            f"{len(lora)} LoRA tensors, e.g. {short(lora[0])!r}: the adapter was saved, not merged; "
            "vLLM fails on the unknown names",
            "merge with: python -m kochallenge_data merge --base BASE_DIR --adapter ADAPTER_DIR --out OUT",
        )
    check_shapes(ins)


def find_tensor(tensors: Mapping[str, TensorInfo], pattern: str) -> str | None:
    matches = sorted((n for n in tensors if re.search(pattern, n)), key=len)
    return matches[0] if matches else None


def check_shapes(ins: Inspection) -> None:
    cfg, w = ins.text, ins.weights.tensors
    quantized = "quantization_config" in (ins.config or {})
    embed = find_tensor(w, r"(^|\.)(embed_tokens|wte|word_embeddings|tok_embeddings)\.weight$")
    head = find_tensor(w, r"(^|\.)(lm_head|embed_out)\.weight$")
    vocab = as_int(cfg.get("vocab_size"))
    hidden = as_int(cfg.get("hidden_size"))
    tied = cfg.get("tie_word_embeddings", (ins.config or {}).get("tie_word_embeddings"))
    shard = ins.weights.shard_of
    if embed is None:
        ins.add(
            "tensor_missing",
            "error",
            ins.weights.files[0],
            "no token embedding tensor (embed_tokens.weight)",
            "re-save the full model",
        )
    if head is None and tied is False:
        ins.add(
            "tensor_missing",
            "error",
            ins.weights.files[0],
            "no lm_head.weight while config.json says tie_word_embeddings: false",
            "re-save the full model, or set tie_word_embeddings only if the base model ties them",
        )
    for name in (embed, head):
        if name is None or quantized:
            continue
        rows = w[name].shape[0] if w[name].shape else -1
        if vocab is not None and rows != vocab:
            ins.add(
                "vocab_size_mismatch",
                "error",
                shard[name],
                f"{name} has {rows} rows but config.json vocab_size is {vocab}: vLLM refuses to load "
                "(or indexes past the table: device-side assert)",
                f"set vocab_size to {rows} if the tokenizer was resized to it, else restore the base config",
            )
        cols = w[name].shape[-1] if w[name].shape else -1
        if hidden is not None and cols != hidden:
            ins.add("shape_mismatch", "error", shard[name], f"{name} has {cols} columns but hidden_size is {hidden}")
    if quantized or embed is None:
        return
    prefix = embed[: embed.rfind(".", 0, len(embed) - len(".weight")) + 1]
    layer_re = re.compile(re.escape(prefix) + r"(?:layers|h|blocks)\.(\d+)\.")
    layers = {int(m.group(1)) for n in w if (m := layer_re.match(n))}
    n_layers = as_int(cfg.get("num_hidden_layers"))
    if n_layers is not None and layers and layers != set(range(n_layers)):
        ins.add(
            "shape_mismatch",
            "error",
            "config.json",
            f"num_hidden_layers is {n_layers} but the weights have layers {_ranges(sorted(layers))}",
            "use the base model's config.json, or re-save the model",
        )
    heads = as_int(cfg.get("num_attention_heads"))
    kv_heads = as_int(cfg.get("num_key_value_heads")) or heads
    head_dim = as_int(cfg.get("head_dim")) or (hidden // heads if hidden and heads else None)
    layer0 = f"{prefix}layers.0."
    checks: list[tuple[str, int, int | None, str]] = [
        (
            "self_attn.q_proj.weight",
            0,
            heads * head_dim if heads and head_dim else None,
            "num_attention_heads x head_dim",
        ),
        (
            "self_attn.k_proj.weight",
            0,
            kv_heads * head_dim if kv_heads and head_dim else None,
            "num_key_value_heads x head_dim",
        ),
        ("self_attn.q_proj.weight", 1, hidden, "hidden_size"),
        ("mlp.gate_proj.weight", 0, as_int(cfg.get("intermediate_size")), "intermediate_size"),
        ("mlp.up_proj.weight", 0, as_int(cfg.get("intermediate_size")), "intermediate_size"),
    ]
    for suffix, axis, expected, what in checks:
        info = w.get(layer0 + suffix)
        if info is None or expected is None or len(info.shape) != 2:
            continue
        if info.shape[axis] != expected:
            ins.add(
                "shape_mismatch",
                "error",
                shard[info.name],
                f"{info.name} has shape {list(info.shape)}; config.json gives {what} = {expected}",
                "this config.json belongs to another model size: use the base model's config.json",
            )


def _ranges(values: list[int]) -> str:
    if not values:
        return "none"
    parts: list[str] = []
    start = prev = values[0]
    for v in [*values[1:], None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return ", ".join(parts)


def check_dtype(ins: Inspection) -> None:
    declared = config_dtype(ins.config or {})
    counts = ins.weights.dtypes()
    if not counts or declared is None:
        return
    dominant = max(counts, key=lambda k: counts[k])
    actual = TORCH_DTYPE_NAMES.get(dominant)
    if actual is not None and declared not in (actual, "auto"):
        ins.add(
            "dtype_mismatch",
            "warning",
            "config.json",
            f"config.json says dtype {declared} but the weights are {actual}: vLLM's --dtype auto follows "
            "config.json (float32 doubles memory; float16 can overflow a bfloat16-trained model)",
            f'set "dtype": "{actual}" in config.json, or pass --dtype explicitly to vllm serve',
        )


def check_generation(ins: Inspection) -> None:
    if not ins.dir.has("generation_config.json"):
        if ins.config is not None:
            ins.add(
                "generation_defaults",
                "info",
                "generation_config.json",
                "no generation_config.json: vLLM stops on the tokenizer eos only and uses its own sampling defaults",
                "copy generation_config.json from the base model",
            )
        return
    gen = ins.dir.json("generation_config.json")
    if gen is None:
        return
    present = {k: gen[k] for k in SAMPLING_FIELDS if gen.get(k) is not None}
    if present:
        ins.add(
            "generation_defaults",
            "info",
            "generation_config.json",
            "vLLM serves these as defaults for requests that omit them: "
            + ", ".join(f"{k}={v}" for k, v in present.items()),
            "change them here or start vllm serve with --generation-config vllm to ignore them",
        )
    limit = as_int(gen.get("max_new_tokens"))
    if limit is not None and limit < 512:
        ins.add(
            "generation_defaults",
            "warning",
            "generation_config.json",
            f"max_new_tokens={limit} becomes vLLM's default max_tokens: longer answers are cut off",
            "remove max_new_tokens or raise it",
        )
    if gen.get("do_sample") is False and "temperature" not in present:
        ins.add(
            "generation_defaults",
            "info",
            "generation_config.json",
            "do_sample=false means greedy in transformers, but vLLM ignores it and samples at temperature 1.0",
            'add "temperature": 0.0 for greedy serving defaults, or set temperature per request',
        )


def derived_max_len(cfg: Mapping[str, Any]) -> int | None:
    """The context length vLLM derives from config.json (the smallest of the length keys, x rope factor)."""
    keys = (
        "max_position_embeddings",
        "n_positions",
        "max_seq_len",
        "seq_length",
        "max_sequence_length",
        "max_seq_length",
        "seq_len",
    )
    values = [v for k in keys if (v := as_int(cfg.get(k))) is not None]
    if not values:
        return None
    length = min(values)
    rope = cfg.get("rope_scaling") or cfg.get("rope_parameters")
    if isinstance(rope, dict):
        kind = rope.get("rope_type", rope.get("type"))
        factor = rope.get("factor")
        if kind not in (None, "default", "su", "longrope", "llama3", "mrope") and isinstance(factor, int | float):
            base = as_int(rope.get("original_max_position_embeddings")) or length
            length = int(base * factor)
    return length


def check_context(ins: Inspection, max_model_len: int | None) -> None:
    length = derived_max_len(ins.text)
    if length is None:
        return
    if max_model_len is not None and max_model_len > length:
        ins.add(
            "context_length",
            "error",
            "config.json",
            f"--max-model-len {max_model_len} is beyond the model's {length} positions: vLLM refuses to start "
            "(and positions past training are garbage)",
            f"use --max-model-len {length} or less",
        )
    elif max_model_len is None:
        ins.add(
            "context_length",
            "info",
            "config.json",
            f"vLLM defaults to max_model_len={length}; its KV cache must fit in GPU memory",
            "pass --max-model-len to vllm serve (and to doctor to check it)",
        )


def check_layout(ins: Inspection) -> None:
    cfg = ins.config or {}
    notes: list[str] = []
    severity: Severity = "info"
    if "dtype" in cfg and "torch_dtype" not in cfg:
        notes.append('"dtype" (4.x reads "torch_dtype" and loads float32)')
    rope = cfg.get("rope_parameters")
    if isinstance(rope, dict) and "rope_theta" not in cfg:
        theta = rope.get("rope_theta")
        notes.append(
            '"rope_parameters" (4.x ignores it and falls back to rope_theta 10000'
            + ("" if theta in (10000, 10000.0) else f" instead of {theta}")
            + ")"
        )
        if (isinstance(theta, int | float) and float(theta) != 10000.0) or rope.get(
            "rope_type", "default"
        ) != "default":
            severity = "warning"
    if notes:
        ins.add(
            "config_layout",
            severity,
            "config.json",
            "written in the transformers 5 layout: " + "; ".join(notes) + ". transformers 4 misreads it silently",
            "serve and load with transformers >= 5 (vLLM 0.33 pins 5.16-5.20), or add rope_theta/torch_dtype "
            "keys for 4.x tools",
        )


def check_trainer_leftovers(ins: Inspection) -> None:
    cfg = ins.config or {}
    _, eos_id, cfg_ids, gen_ids = eos_ids(ins)
    eos_set = set(cfg_ids + gen_ids + ([eos_id] if eos_id is not None else []))
    gen = ins.dir.json("generation_config.json") if ins.dir.has("generation_config.json") else None
    for name, doc in (("config.json", cfg), ("generation_config.json", gen or {})):
        pad = as_int(doc.get("pad_token_id"))
        if pad is not None and pad in eos_set:
            ins.add(
                "trainer_leftover",
                "info",
                name,
                f"pad_token_id = {pad} = eos: set by the trainer (pad = eos); harmless for serving",
                "merge with kochallenge_data merge to keep the base values",
            )
    if cfg.get("use_cache") is False or ins.text.get("use_cache") is False:
        ins.add(
            "trainer_leftover",
            "warning",
            "config.json",
            "use_cache is false (set for gradient checkpointing): transformers' generate recomputes every "
            "step, many times slower",
            'set "use_cache": true (or copy the base config.json)',
        )


def embedding_rows(ins: Inspection) -> int | None:
    name = find_tensor(ins.weights.tensors, r"(^|\.)(embed_tokens|wte|word_embeddings|tok_embeddings)\.weight$")
    return ins.weights.tensors[name].shape[0] if name else None
