"""One directory read once: configs, weights (from headers) and the vocabulary as the files describe it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..safetensors_header import TensorInfo
from .model_dir import MAX_TOKENIZER_MODEL_BYTES, ModelDir
from .report import Finding, Severity
from .sentencepiece import SpModel, looks_like_tiktoken, parse_sentencepiece
from .values import as_int, short, text_config, token_text


@dataclass
class Weights:
    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    shard_of: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def dtypes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.tensors.values():
            counts[t.dtype] = counts.get(t.dtype, 0) + t.numel
        return counts


@dataclass
class Tokenizer:
    """The vocabulary as the files describe it."""

    token_to_id: dict[str, int] = field(default_factory=dict)
    model_vocab: dict[str, int] = field(default_factory=dict)
    added: dict[str, int] = field(default_factory=dict)
    tj: dict[str, Any] | None = None
    sp: SpModel | None = None
    specials: dict[str, str | None] = field(default_factory=dict)
    source: str = ""

    def lookup(self, token: str) -> int | None:
        return self.token_to_id.get(token)

    @property
    def size(self) -> int:
        return max(self.token_to_id.values(), default=-1) + 1


class Inspection:
    """A directory read once: configs, weights, tokenizer. Checks are functions over this."""

    def __init__(self, root: Path, label: str = "", *, weights: bool = True) -> None:
        self.dir = ModelDir(root, label)
        self.config: dict[str, Any] | None = None
        self.weights = Weights()
        self.tok = Tokenizer()
        self.is_adapter = False
        # False on a router host apart from vLLM: the weight files are not read at all (not even their headers),
        # so a folder of config and tokenizer files inspects like a full one minus the weight checks.
        self.weights_read = weights
        if self.dir.exists:
            self._read()

    def add(self, code: str, severity: Severity, file: str, message: str, fix: str = "") -> None:
        self.dir.add(code, severity, file, message, fix)

    @property
    def findings(self) -> list[Finding]:
        return self.dir.findings

    @property
    def text(self) -> Mapping[str, Any]:
        return text_config(self.config or {})

    def _read(self) -> None:
        d = self.dir
        self.is_adapter = d.has("adapter_config.json") or d.has("adapter_model.safetensors")
        self.config = d.json("config.json") if d.has("config.json") else None
        if self.weights_read:
            self._read_weights()
        self._read_tokenizer()

    # weights --------------------------------------------------------------------------------
    def _read_weights(self) -> None:
        d = self.dir
        indexes = [n for n in d.files if n.endswith(".safetensors.index.json")]
        shards: list[str] = []
        weight_map: dict[str, str] = {}
        for index in indexes:
            doc = d.json(index)
            if doc is None:
                continue
            raw_map = doc.get("weight_map")
            if not isinstance(raw_map, dict):
                self.add("index_mismatch", "error", index, "no weight_map object", "re-save the model")
                continue
            for tensor, shard in raw_map.items():
                if not isinstance(shard, str) or "/" in shard or "\\" in shard or shard in ("", ".", ".."):
                    self.add(
                        "index_mismatch",
                        "error",
                        index,
                        f"tensor {short(str(tensor))!r} maps to {short(str(shard))!r}, not a file in this directory",
                        "re-save the model",
                    )
                    continue
                weight_map[str(tensor)] = shard
        if indexes:
            listed = sorted(set(weight_map.values()))
            missing = [s for s in listed if s not in d.files]
            for shard in missing:
                count = sum(1 for s in weight_map.values() if s == shard)
                self.add(
                    "shard_missing",
                    "error",
                    shard,
                    f"listed in the index for {count} tensors but not in the directory; loading fails",
                    "copy the missing shard (an interrupted upload or copy?)",
                )
            shards = [s for s in listed if s in d.files and s.endswith(".safetensors")]
        else:
            shards = sorted(n for n in d.files if n.endswith(".safetensors") and not n.startswith("adapter_model"))
        self.weights.files = shards
        for shard in shards:
            header = d.header(shard)
            if header is None:
                continue
            for name, info in header.tensors.items():
                if name in self.weights.tensors:
                    self.add(
                        "index_mismatch",
                        "error",
                        shard,
                        f"tensor {short(name)!r} is also in {self.weights.shard_of[name]}",
                        "re-save the model so that every tensor is stored once",
                    )
                    continue
                self.weights.tensors[name] = info
                self.weights.shard_of[name] = shard
        if weight_map and not any(d.header(s) is None for s in shards):
            wrong = [t for t, s in weight_map.items() if s in d.files and self.weights.shard_of.get(t) != s]
            unlisted = [t for t in self.weights.tensors if t not in weight_map]
            if wrong:
                self.add(
                    "index_mismatch",
                    "error",
                    indexes[0],
                    f"{len(wrong)} tensors are not in the shard the index names, e.g. {short(wrong[0])!r}",
                    "re-save the model; do not mix shards from two saves",
                )
            if unlisted:
                self.add(
                    "index_mismatch",
                    "warning",
                    indexes[0],
                    f"{len(unlisted)} tensors in the shards are not in the index (ignored by loaders), "
                    f"e.g. {short(unlisted[0])!r}",
                    "re-save the model",
                )

    # tokenizer ------------------------------------------------------------------------------
    def _read_tokenizer(self) -> None:
        d, tok = self.dir, self.tok
        if d.has("tokenizer.model"):
            raw = d.read_bytes("tokenizer.model", MAX_TOKENIZER_MODEL_BYTES)
            if raw is not None and not looks_like_tiktoken(raw):
                try:
                    tok.sp = parse_sentencepiece(raw)
                except ValueError as exc:
                    self.add(
                        "tokenizer_invalid",
                        "error",
                        "tokenizer.model",
                        f"not a SentencePiece model ({exc})",
                        "copy tokenizer.model from the base model",
                    )
        if d.has("tokenizer.json"):
            tj = d.json("tokenizer.json")
            if tj is not None:
                model = tj.get("model")
                if not isinstance(model, dict):
                    self.add("tokenizer_invalid", "error", "tokenizer.json", "no 'model' object")
                else:
                    tok.tj = tj
                    tok.model_vocab = _model_vocab(model)
                    tok.source = "tokenizer.json"
                for item in tj.get("added_tokens") or []:
                    if isinstance(item, dict) and isinstance(item.get("content"), str):
                        ident = as_int(item.get("id"))
                        if ident is not None:
                            tok.added[item["content"]] = ident
        if not tok.source and tok.sp is not None:
            tok.model_vocab = {}
            for i, (piece, _) in enumerate(tok.sp.pieces):
                tok.model_vocab.setdefault(piece, i)
            tok.source = "tokenizer.model"
        if not tok.source and d.has("vocab.json"):
            vocab = d.json("vocab.json")
            if vocab is not None:
                tok.model_vocab = {k: v for k, v in vocab.items() if isinstance(v, int)}
                tok.source = "vocab.json"
        extra = d.json("added_tokens.json") if d.has("added_tokens.json") else None
        for content, ident in (extra or {}).items():
            if isinstance(ident, int):
                tok.added.setdefault(content, ident)
        tok_cfg = d.json("tokenizer_config.json") if d.has("tokenizer_config.json") else None
        for key, value in ((tok_cfg or {}).get("added_tokens_decoder") or {}).items():
            text = token_text(value)
            if text is not None and str(key).isdigit():
                tok.added.setdefault(text, int(key))
        tok.token_to_id = {**tok.model_vocab, **tok.added}
        special_map = d.json("special_tokens_map.json") if d.has("special_tokens_map.json") else None
        for key in ("eos_token", "bos_token", "unk_token", "pad_token"):
            value = token_text((tok_cfg or {}).get(key))
            if value is None:
                value = token_text((special_map or {}).get(key))
            tok.specials[key] = value


def _model_vocab(model: Mapping[str, Any]) -> dict[str, int]:
    vocab = model.get("vocab")
    if isinstance(vocab, dict):
        return {k: v for k, v in vocab.items() if isinstance(v, int) and not isinstance(v, bool)}
    if isinstance(vocab, list):  # Unigram: [[piece, score], ...]
        result: dict[str, int] = {}
        for i, item in enumerate(vocab):
            if isinstance(item, list) and item and isinstance(item[0], str):
                result.setdefault(item[0], i)
        return result
    return {}
