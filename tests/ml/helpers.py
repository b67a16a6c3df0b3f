"""Build model directories from plain JSON and hand-written safetensors/protobuf bytes (no torch).

The file-only doctor tests use these, so they run without the train extra.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import struct
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kochallenge_data.errors import KochallengeError
from kochallenge_data.ml.cli import register

DTYPE_BYTES = {"F32": 4, "BF16": 2, "F16": 2, "I64": 8}

# A small Korean + emoji vocabulary in the layout transformers 5 saves a Llama tokenizer.
SPECIALS = ["<unk>", "<s>", "</s>"]
BYTES = [f"<0x{b:02X}>" for b in range(256)]
WORDS = ["▁", "▁안녕", "하세요", "▁오늘", "챌린지", "▁텀블러", "\n", "🌱", "♻️", "▁환경", "을", "를", "▁위한"]


def write_safetensors(
    path: Path,
    tensors: Mapping[str, tuple[str, tuple[int, ...]]],
    *,
    sparse: bool = False,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """A safetensors file of zeros: 8-byte little-endian length, JSON header, data."""
    header: dict[str, Any] = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = math.prod(shape) * DTYPE_BYTES[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        if sparse:
            handle.truncate(8 + len(raw) + offset)
        else:
            handle.write(bytes(offset))


def llama_tensors(
    *,
    vocab: int,
    hidden: int,
    layers: int,
    heads: int,
    kv_heads: int,
    inter: int,
    dtype: str = "BF16",
    head: bool = True,
) -> dict[str, tuple[str, tuple[int, ...]]]:
    head_dim = hidden // heads
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {"model.embed_tokens.weight": (dtype, (vocab, hidden))}
    for i in range(layers):
        p = f"model.layers.{i}."
        tensors.update(
            {
                p + "input_layernorm.weight": (dtype, (hidden,)),
                p + "post_attention_layernorm.weight": (dtype, (hidden,)),
                p + "self_attn.q_proj.weight": (dtype, (heads * head_dim, hidden)),
                p + "self_attn.k_proj.weight": (dtype, (kv_heads * head_dim, hidden)),
                p + "self_attn.v_proj.weight": (dtype, (kv_heads * head_dim, hidden)),
                p + "self_attn.o_proj.weight": (dtype, (hidden, heads * head_dim)),
                p + "mlp.gate_proj.weight": (dtype, (inter, hidden)),
                p + "mlp.up_proj.weight": (dtype, (inter, hidden)),
                p + "mlp.down_proj.weight": (dtype, (hidden, inter)),
            }
        )
    tensors["model.norm.weight"] = (dtype, (hidden,))
    if head:
        tensors["lm_head.weight"] = (dtype, (vocab, hidden))
    return tensors


def tokenizer_json(pieces: list[str], *, byte_fallback: bool = True, unk: str | None = None) -> dict[str, Any]:
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": i,
                "content": t,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for i, t in enumerate(SPECIALS)
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False},
        "post_processor": None,
        "decoder": {
            "type": "Sequence",
            "decoders": [
                {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
            ],
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": unk,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": byte_fallback,
            "ignore_merges": False,
            "vocab": {p: i for i, p in enumerate(pieces)},
            "merges": [],
        },
    }


def make_model_dir(
    path: Path,
    *,
    vocab_size: int = 320,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    inter: int = 64,
    pieces: list[str] | None = None,
    sharded: bool = False,
) -> Path:
    """A healthy tiny Llama directory as transformers 5 writes it, with zero weights."""
    path.mkdir(parents=True, exist_ok=True)
    pieces = pieces if pieces is not None else SPECIALS + BYTES + WORDS
    config = {
        "architectures": ["LlamaForCausalLM"],
        "bos_token_id": 1,
        "dtype": "bfloat16",
        "eos_token_id": 2,
        "head_dim": hidden // heads,
        "hidden_act": "silu",
        "hidden_size": hidden,
        "intermediate_size": inter,
        "max_position_embeddings": 256,
        "model_type": "llama",
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "num_key_value_heads": kv_heads,
        "pad_token_id": None,
        "rms_norm_eps": 1e-06,
        "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
        "tie_word_embeddings": False,
        "transformers_version": "5.24.0",
        "use_cache": True,
        "vocab_size": vocab_size,
    }
    write_json(path / "config.json", config)
    write_json(
        path / "generation_config.json",
        {"_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2, "transformers_version": "5.24.0"},
    )
    write_json(path / "tokenizer.json", tokenizer_json(pieces))
    write_json(
        path / "tokenizer_config.json",
        {
            "backend": "tokenizers",
            "bos_token": "<s>",
            "eos_token": "</s>",
            "unk_token": "<unk>",
            "clean_up_tokenization_spaces": False,
            "model_max_length": 1000000000000000019884624838656,
            "tokenizer_class": "LlamaTokenizer",
        },
    )
    tensors = llama_tensors(vocab=vocab_size, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, inter=inter)
    if sharded:
        names = list(tensors)
        half = len(names) // 2
        parts = {
            "model-00001-of-00002.safetensors": names[:half],
            "model-00002-of-00002.safetensors": names[half:],
        }
        for shard, keys in parts.items():
            write_safetensors(path / shard, {k: tensors[k] for k in keys})
        weight_map = {k: shard for shard, keys in parts.items() for k in keys}
        write_json(path / "model.safetensors.index.json", {"metadata": {"total_size": 0}, "weight_map": weight_map})
    else:
        write_safetensors(path / "model.safetensors", tensors)
    return path


def write_json(path: Path, doc: Any) -> None:
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def edit_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    change(doc)
    write_json(path, doc)


# --- a SentencePiece ModelProto written by hand (the doctor parses it with the stdlib) ---------


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def sentencepiece_bytes(pieces: list[str], *, byte_fallback: bool, normalizer: str = "identity") -> bytes:
    """A minimal tokenizer.model: pieces (unk/control/byte/normal types), trainer and normalizer spec."""
    out = b""
    for piece in pieces:
        kind = 2 if piece == "<unk>" else 3 if piece in ("<s>", "</s>") else 6 if piece.startswith("<0x") else 1
        body = _field(1, piece.encode()) + _varint(2 << 3 | 5) + struct.pack("<f", 0.0) + _field(3, kind)
        out += _field(1, body)
    trainer = _field(3, 2) + _field(4, len(pieces)) + _field(35, int(byte_fallback))
    out += _field(2, trainer)
    out += _field(3, _field(1, normalizer.encode()) + _field(4, 1))
    return out


# --- the CLI through register() on a fresh parser -----------------------------------------------


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """Parse with a fresh parser that only has our subcommands; return (exit code, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="kochallenge_data")
    register(parser.add_subparsers(dest="command", required=True))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            args = parser.parse_args(argv)
            code = int(args.func(args))
        except KochallengeError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            code = exc.exit_code
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()
