"""Comparing a model directory with its base: which file differences are harmless, which change behaviour."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..safetensors_header import TORCH_DTYPE_NAMES
from .config_checks import embedding_rows
from .inspection import Inspection
from .model_dir import METADATA_FILES, TOKENIZER_FILES, WEIGHT_SUFFIXES, json_byte_limit
from .report import Severity
from .values import id_list, short, token_text

CONFIG_ALLOWED = {"transformers_version", "_name_or_path", "_commit_hash"}
GEN_ALLOWED = {"transformers_version", "_from_model_config", "use_cache", "output_attentions", "output_hidden_states"}
TOKCFG_ALLOWED = {
    "pad_token",
    "padding_side",
    "pad_token_type_id",
    "model_max_length",
    "is_local",
    "local_files_only",
    "backend",
    "tokenizer_class",
    "clean_up_tokenization_spaces",
    "extra_special_tokens",
    "additional_special_tokens",
    "legacy",
    "sp_model_kwargs",
    "use_default_system_prompt",
    "spaces_between_special_tokens",
    "truncation_side",
    "name_or_path",
    "tokenizer_file",
    "vocab_file",
    "added_tokens_decoder",
    "model_input_names",
    "split_special_tokens",
}
TOKCFG_BREAKING = {"eos_token", "bos_token", "unk_token"}


def normalize_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """config.json in one layout: ``torch_dtype`` -> ``dtype``, ``rope_theta/rope_scaling`` -> ``rope_parameters``."""
    out = dict(cfg)
    if "torch_dtype" in out:
        out.setdefault("dtype", out.pop("torch_dtype"))
        out.pop("torch_dtype", None)
    theta = out.pop("rope_theta", None)
    scaling = out.pop("rope_scaling", None)
    params = out.get("rope_parameters")
    if not isinstance(params, dict):
        params = {}
        if isinstance(scaling, dict):
            params.update(scaling)
            if "type" in params:
                params.setdefault("rope_type", params.pop("type"))
        if theta is not None:
            params["rope_theta"] = theta
        if params:
            params.setdefault("rope_type", "default")
            out["rope_parameters"] = params
    for key in list(out):
        if out[key] is None:
            del out[key]
    return out


def _key_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def compare_with_base(ins: Inspection, base: Inspection) -> None:
    d, b = ins.dir, base.dir
    names = sorted(
        n
        for n in set(d.files) | set(b.files)
        if not n.endswith(WEIGHT_SUFFIXES)
        and not n.endswith(".index.json")
        and n not in ("merge_report.json", "README.md", ".gitattributes")
        and not n.startswith(".")
    )
    for name in names:
        if name not in d.files:
            _missing_from_model(ins, base, name)
            continue
        if name not in b.files:
            if name in TOKENIZER_FILES or name in METADATA_FILES:
                ins.add(
                    "base_diff_not_allowed",
                    "warning",
                    name,
                    "not in the base: loaders read it and it can change the tokenizer",
                    "delete it unless you added it on purpose",
                )
            continue
        if _same_bytes(d.files[name], b.files[name]):
            continue
        compare = {
            "config.json": _diff_config,
            "generation_config.json": _diff_generation,
            "tokenizer_config.json": _diff_tokenizer_config,
            "special_tokens_map.json": _diff_tokenizer_config,
            "tokenizer.json": _diff_tokenizer_json,
            "tokenizer.model": _diff_tokenizer_model,
        }.get(name)
        if compare is not None:
            compare(ins, base, name)
        elif name.startswith("chat_template"):
            ins.add(
                "base_diff_not_allowed",
                "warning",
                name,
                "the chat template differs: vLLM applies it to /v1/chat/completions",
                "keep the base template unless training used this one",
            )
        else:
            ins.add("base_diff_allowed", "info", name, "differs from the base (not read by loaders)")
    _diff_weights(ins, base)


def _same_bytes(a: Path, b: Path) -> bool:
    try:
        if a.stat().st_size != b.stat().st_size:
            return False
        if a.stat().st_size > json_byte_limit():
            return False
        return a.read_bytes() == b.read_bytes()
    except OSError:
        return False


def _missing_from_model(ins: Inspection, base: Inspection, name: str) -> None:
    if name == "tokenizer.model" and ins.dir.has("tokenizer.json") and base.tok.sp is not None:
        same = all(ins.tok.token_to_id.get(p) == i for i, (p, kind) in enumerate(base.tok.sp.pieces) if kind != 5)
        if same:
            ins.add(
                "base_diff_allowed",
                "info",
                name,
                "missing, but tokenizer.json has the same pieces (transformers 5 re-saves without tokenizer.model)",
                "copy it from the base if tools outside transformers need it (llama.cpp, sentencepiece)",
            )
            return
    if name == "special_tokens_map.json" and ins.dir.has("tokenizer_config.json"):
        ins.add(
            "base_diff_allowed",
            "info",
            name,
            "missing; tokenizer_config.json carries the special tokens (transformers 5)",
        )
        return
    severity: Severity = "error" if name in ("config.json", "tokenizer.json", "tokenizer_config.json") else "warning"
    ins.add(
        "base_diff_not_allowed",
        severity,
        name,
        "in the base but missing here"
        + (": vLLM loses the eos ids and sampling defaults" if name == "generation_config.json" else ""),
        f"copy {name} from the base (python -m kochallenge_data fix DIR --base BASE)",
    )


def _diff_config(ins: Inspection, base: Inspection, name: str) -> None:
    mine, theirs = normalize_config(ins.config or {}), normalize_config(base.config or {})
    keys = _key_diff(mine, theirs)
    if not keys:
        ins.add("base_diff_allowed", "info", name, "same values as the base in another layout (transformers 5 re-save)")
        return
    eos_set = set(id_list(theirs.get("eos_token_id")))
    allowed: list[str] = []
    breaking: list[str] = []
    for key in keys:
        new, old = mine.get(key), theirs.get(key)
        if key in CONFIG_ALLOWED:
            allowed.append(key)
        elif key == "pad_token_id" and (new is None or new in eos_set or old is None):
            allowed.append(f"pad_token_id {old}->{new}")
        elif key == "use_cache":
            allowed.append(f"use_cache {old}->{new}")
        elif key == "dtype":
            allowed.append(f"dtype {old}->{new}")
        elif key == "vocab_size" and isinstance(new, int) and embedding_rows(ins) == new:
            allowed.append(f"vocab_size {old}->{new} (weights resized to match)")
        else:
            breaking.append(f"{key} {short(json.dumps(old), 40)}->{short(json.dumps(new), 40)}")
    if breaking:
        ins.add(
            "base_diff_not_allowed",
            "error",
            name,
            "differs from the base in " + "; ".join(breaking) + ": the architecture or behaviour changed",
            "restore config.json from the base (fix DIR --base BASE copies it when the weights agree)",
        )
    if allowed:
        ins.add("base_diff_allowed", "info", name, "differs from the base only in " + ", ".join(allowed))


def _diff_generation(ins: Inspection, base: Inspection, name: str) -> None:
    mine, theirs = ins.dir.json(name) or {}, base.dir.json(name) or {}
    keys = _key_diff(mine, theirs)
    eos_set = set(id_list(theirs.get("eos_token_id")))
    allowed, changed, breaking = [], [], []
    for key in keys:
        new, old = mine.get(key), theirs.get(key)
        if key in GEN_ALLOWED or (key == "pad_token_id" and (new is None or new in eos_set)):
            allowed.append(key)
        elif key in ("eos_token_id", "bos_token_id", "decoder_start_token_id"):
            breaking.append(f"{key} {old}->{new}")
        else:
            changed.append(f"{key} {old}->{new}")
    if breaking:
        ins.add(
            "base_diff_not_allowed",
            "error",
            name,
            "the stop/start ids changed: " + "; ".join(breaking),
            "copy generation_config.json from the base",
        )
    if changed:
        ins.add(
            "base_diff_not_allowed",
            "warning",
            name,
            "sampling defaults changed (vLLM serves them): " + "; ".join(changed),
            "copy generation_config.json from the base unless this was intended",
        )
    if allowed:
        ins.add("base_diff_allowed", "info", name, "differs from the base only in " + ", ".join(allowed))


def _diff_tokenizer_config(ins: Inspection, base: Inspection, name: str) -> None:
    mine, theirs = ins.dir.json(name) or {}, base.dir.json(name) or {}
    keys = _key_diff(mine, theirs)
    allowed, changed, breaking = [], [], []
    for key in keys:
        new, old = mine.get(key), theirs.get(key)
        if key in TOKCFG_BREAKING:
            if token_text(new) != token_text(old):
                breaking.append(f"{key} {token_text(old)!r}->{token_text(new)!r}")
            else:
                allowed.append(key)
        elif key == "added_tokens_decoder":
            old_map = {str(k): token_text(v) for k, v in (old or {}).items()} if isinstance(old, dict) else {}
            new_map = {str(k): token_text(v) for k, v in (new or {}).items()} if isinstance(new, dict) else {}
            moved = [k for k in old_map if k in new_map and new_map[k] != old_map[k]]
            if moved or any(k not in new_map for k in old_map):
                breaking.append("added_tokens_decoder changes existing ids")
            elif set(new_map) - set(old_map):
                changed.append(f"{len(set(new_map) - set(old_map))} added tokens")
            else:
                allowed.append(key)
        elif key in TOKCFG_ALLOWED:
            allowed.append(key)
        else:
            changed.append(key)
    if breaking:
        ins.add(
            "base_diff_not_allowed",
            "error",
            name,
            "special tokens changed: " + "; ".join(breaking) + " (generation stops on other tokens than trained)",
            "restore the special tokens from the base (python -m kochallenge_data fix DIR --base BASE)",
        )
    if changed:
        ins.add(
            "base_diff_not_allowed",
            "warning",
            name,
            "tokenizer behaviour settings changed: " + ", ".join(changed),
            "check that training used the same values, or copy the base file",
        )
    if allowed:
        ins.add("base_diff_allowed", "info", name, "differs from the base only in " + ", ".join(allowed))


def _diff_tokenizer_json(ins: Inspection, base: Inspection, name: str) -> None:
    mine, theirs = ins.tok.tj or {}, base.tok.tj or {}
    if not mine or not theirs:
        return
    old_vocab, new_vocab = base.tok.token_to_id, ins.tok.token_to_id
    moved = [t for t, i in old_vocab.items() if t in new_vocab and new_vocab[t] != i]
    removed = [t for t in old_vocab if t not in new_vocab]
    added = [t for t in new_vocab if t not in old_vocab]
    other = [k for k in ("normalizer", "pre_tokenizer", "decoder") if mine.get(k) != theirs.get(k)]
    old_model = {k: v for k, v in (theirs.get("model") or {}).items() if k != "vocab"}
    new_model = {k: v for k, v in (mine.get("model") or {}).items() if k != "vocab"}
    if old_model != new_model:
        other.append("model settings/merges")
    if moved or removed:
        ins.add(
            "base_diff_not_allowed",
            "error",
            name,
            f"a different vocabulary: {len(moved)} tokens have new ids, {len(removed)} are gone "
            f"(e.g. {short((moved or removed)[0], 20)!r}); the weights expect the base ids",
            "restore tokenizer.json from the base",
        )
    elif added:
        rows = embedding_rows(ins)
        fits = rows is not None and max(new_vocab.values()) < rows
        ins.add(
            "base_diff_allowed" if fits else "base_diff_not_allowed",
            "info" if fits else "error",
            name,
            f"{len(added)} tokens added (e.g. {short(added[0], 20)!r})"
            + (" and the embeddings were resized for them" if fits else " without resizing the embeddings"),
            "" if fits else "resize the embeddings and retrain, or restore the base tokenizer",
        )
    if other:
        ins.add(
            "base_diff_not_allowed",
            "warning",
            name,
            "the " + ", ".join(other) + " differ from the base: the same text may tokenize differently",
            "run doctor --load --base BASE to compare the probe's ids, or restore tokenizer.json from the base",
        )
    if not (moved or removed or added or other):
        ins.add(
            "base_diff_allowed",
            "info",
            name,
            "same vocabulary and pipeline (padding/truncation/added-token flags differ)",
        )


def _diff_tokenizer_model(ins: Inspection, base: Inspection, name: str) -> None:
    a, b = ins.tok.sp, base.tok.sp
    if a is not None and b is not None and a.pieces == b.pieces:
        ins.add("base_diff_allowed", "info", name, "same pieces as the base (only settings differ)")
        return
    ins.add(
        "base_diff_not_allowed",
        "error",
        name,
        "a different SentencePiece model from the base: the weights expect the base ids",
        "restore tokenizer.model from the base",
    )


def _diff_weights(ins: Inspection, base: Inspection) -> None:
    mine, theirs = ins.weights.tensors, base.weights.tensors
    if not mine or not theirs:
        return
    missing = [n for n in theirs if n not in mine]
    extra = [n for n in mine if n not in theirs]
    reshaped = [n for n in mine if n in theirs and mine[n].shape != theirs[n].shape]
    vocab_like = re.compile(r"(^|\.)(embed_tokens|wte|word_embeddings|tok_embeddings|lm_head|embed_out)\.weight$")
    resized = [n for n in reshaped if vocab_like.search(n) and mine[n].shape[1:] == theirs[n].shape[1:]]
    bad_shapes = [n for n in reshaped if n not in resized]
    tied_head = [n for n in missing + extra if n.endswith("lm_head.weight")]
    missing = [n for n in missing if n not in tied_head]
    extra = [n for n in extra if n not in tied_head]
    file = ins.weights.files[0] if ins.weights.files else "weights"
    if missing or extra or bad_shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} base tensors missing (e.g. {short(missing[0])!r})")
        if extra:
            parts.append(f"{len(extra)} extra tensors (e.g. {short(extra[0])!r})")
        if bad_shapes:
            parts.append(f"{len(bad_shapes)} with other shapes (e.g. {short(bad_shapes[0])!r})")
        ins.add(
            "base_diff_not_allowed",
            "error",
            file,
            "weights do not match the base architecture: " + "; ".join(parts),
            "merge again from the right base",
        )
    if resized:
        rows = {mine[n].shape[0] for n in resized}
        ins.add(
            "base_diff_allowed",
            "info",
            file,
            f"embeddings resized from {theirs[resized[0]].shape[0]} to {sorted(rows)} rows",
        )
    mine_dt, base_dt = ins.weights.dtypes(), base.weights.dtypes()
    if mine_dt and base_dt:
        a = max(mine_dt, key=lambda k: mine_dt[k])
        b = max(base_dt, key=lambda k: base_dt[k])
        if a != b:
            ins.add(
                "base_diff_not_allowed",
                "warning",
                file,
                f"weights are {TORCH_DTYPE_NAMES.get(a, a)}, the base is {TORCH_DTYPE_NAMES.get(b, b)}"
                + (" (twice the memory)" if a == "F32" else ""),
                f"cast to the base dtype (kochallenge_data merge does: it saves in {TORCH_DTYPE_NAMES.get(b, b)})",
            )
