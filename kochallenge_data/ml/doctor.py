"""``doctor``: file-level checks that a model directory will load and behave under vLLM.

Reads JSON configs, tokenizer files and safetensors headers only: no torch, no weights, so a 7B
directory is checked in well under a second. Every problem is a :class:`Finding` with a stable code
from :data:`CODES`, a severity, the file, what breaks and how to fix it. ``load=True`` adds the
checks that need the ``train`` extra (tokenizer loaded as vLLM loads it, a probe round trip and one
CPU forward pass); they live in :func:`load_checks` and import transformers lazily.

Exit codes (:attr:`DoctorReport.exit_code`): 0 sound, 1 problems (errors; warnings too with
``strict``), 2 not a model directory or unreadable.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import KochallengeError
from .safetensors_header import TORCH_DTYPE_NAMES, HeaderError, SafetensorsHeader, TensorInfo, read_header

Severity = Literal["error", "warning", "info"]

CODES: Mapping[str, str] = {
    # the directory itself
    "not_a_model_dir": "the path is missing, not a directory, or has no config.json (exit 2)",
    "config_unreadable": "config.json is malformed or unreadable (exit 2)",
    "adapter_dir": "a PEFT adapter directory was given where a full model is needed (exit 2)",
    "adapter_files_in_model": "adapter_config.json next to full weights: transformers applies it on load",
    "symlink_outside": "a symlink points outside the directory; it was not followed",
    "file_unreadable": "a file is not a regular file, too large, or cannot be read",
    "json_invalid": "a JSON file other than config.json is malformed or has the wrong shape",
    # weights
    "weights_missing": "no weight files at all",
    "weights_not_safetensors": "weights only as .bin/.pt: unsafe to load and not checkable from headers",
    "shard_missing": "the safetensors index names a shard file that is not there",
    "index_mismatch": "the index and the shards disagree on where tensors are",
    "safetensors_invalid": "a safetensors header is truncated, oversized, malformed or inconsistent",
    "lora_unmerged": "LoRA tensors (lora_A/lora_B/base_layer) in the weights: the merge did not happen",
    "tensor_missing": "the token embedding, or lm_head while tie_word_embeddings is false, is missing",
    "vocab_size_mismatch": "config vocab_size differs from the embedding or lm_head rows",
    "shape_mismatch": "hidden_size, heads, head_dim, layers or intermediate_size disagree with the weights",
    "dtype_mismatch": "config dtype differs from the weights' dtype",
    # tokenizer
    "tokenizer_missing": "neither tokenizer.json nor tokenizer.model (transformers 5 loads a 3-token stub)",
    "tokenizer_model_only": "only tokenizer.model: every load converts it and needs sentencepiece and protobuf",
    "tokenizer_config_missing": "no tokenizer_config.json: special tokens fall back to class defaults",
    "tokenizer_invalid": "tokenizer.json or tokenizer.model cannot be parsed",
    "stale_tokenizer_path": "tokenizer_config.json has a tokenizer_file/vocab_file key (breaks transformers 4)",
    "token_id_out_of_range": "a tokenizer id is >= config vocab_size (tokens added without a resize)",
    "tokenizer_files_disagree": "tokenizer.json and tokenizer.model map pieces to different ids",
    "eos_missing": "no eos token anywhere: generation cannot stop",
    "eos_blank": "the eos token is empty or whitespace",
    "eos_not_in_vocab": "the eos token is not in the vocabulary: it is appended at load with a new id",
    "eos_inconsistent": "tokenizer, config.json and generation_config.json name different eos ids",
    "tokenizer_drops_chars": "characters outside the vocabulary are dropped or become <unk> (no byte fallback)",
    "newline_normalized": "the tokenizer turns newlines into spaces or drops whitespace",
    # serving
    "generation_defaults": "generation_config.json values that vLLM turns into server-side defaults",
    "context_length": "context length vs --max-model-len",
    "config_layout": "config.json in the transformers 5 layout that transformers 4 misreads",
    "trainer_leftover": "pad_token_id = eos or use_cache false left by the trainer",
    # against the base
    "base_unreadable": "the --base directory cannot be inspected",
    "base_diff_allowed": "a file differs from the base in a way that is expected and harmless",
    "base_diff_not_allowed": "a file differs from the base in a way that changes behaviour or breaks loading",
    # --load
    "load_failed": "transformers could not load the tokenizer or the model",
    "roundtrip_failed": "the Korean + emoji + newline probe does not survive encode/decode",
    "forward_failed": "one CPU forward pass failed or produced non-finite logits",
}
"""Every finding code with what it means. Codes are a public interface: never rename one."""

FATAL_CODES = frozenset({"not_a_model_dir", "config_unreadable", "adapter_dir"})
"""Codes that make the directory unusable as a model: exit 2."""

PROBE = "안녕하세요! 오늘의 챌린지 🌱♻️\n둘째 줄: 텀블러 쓰기 👍🏽 뷁 읊"
"""Korean, emoji (with a skin-tone modifier), a newline and rare Hangul: what the datasets contain."""

MAX_JSON_BYTES = 256 * 1024 * 1024
MAX_TOKENIZER_MODEL_BYTES = 64 * 1024 * 1024
MAX_ENTRIES = 20_000
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_new_tokens")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "chat_template.jinja",
    "chat_template.json",
)
METADATA_FILES = ("config.json", "generation_config.json", *TOKENIZER_FILES)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf")
BYTE_PIECES = tuple(f"<0x{b:02X}>" for b in range(256))


class ModelDirError(KochallengeError):
    """A path that cannot be used as a model directory at all (exit 2)."""

    exit_code = 2


@dataclass(frozen=True)
class Finding:
    """One problem (or fact) about one file. ``code`` is one of :data:`CODES`."""

    code: str
    severity: Severity
    file: str
    message: str
    fix: str = ""

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unknown finding code {self.code!r}")


@dataclass
class DoctorReport:
    """What :func:`doctor` found. ``facts`` holds the values it read (vocab size, eos, dtype...)."""

    model_dir: str
    findings: list[Finding] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    base_dir: str | None = None
    seconds: float = 0.0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def codes(self) -> set[str]:
        return {f.code for f in self.findings}

    @property
    def fatal(self) -> bool:
        return any(f.code in FATAL_CODES for f in self.findings)

    def exit_code(self, *, strict: bool = False) -> int:
        if self.fatal:
            return 2
        if self.errors or (strict and self.warnings):
            return 1
        return 0

    def with_code(self, code: str) -> list[Finding]:
        return [f for f in self.findings if f.code == code]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_dir": self.model_dir,
            "base_dir": self.base_dir,
            "exit_code": self.exit_code(),
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "seconds": round(self.seconds, 4),
            "facts": self.facts,
            "findings": [asdict(f) for f in self.findings],
        }


# --------------------------------------------------------------------------------------------
# reading a directory safely


@dataclass
class SpModel:
    """What the doctor needs from a SentencePiece ``tokenizer.model``."""

    pieces: list[tuple[str, int]]
    byte_fallback: bool = False
    model_type: int = 1
    unk_id: int = 0
    normalizer_name: str = ""
    remove_extra_whitespaces: bool = True


class ModelDir:
    """A directory listing plus cached, safely parsed files. Problems become findings."""

    def __init__(self, root: Path, label: str = "") -> None:
        self.root = root
        self.label = label
        self.findings: list[Finding] = []
        self.files: dict[str, Path] = {}
        self.exists = root.is_dir()
        self._json: dict[str, Any] = {}
        self._headers: dict[str, SafetensorsHeader | None] = {}
        if self.exists:
            self._scan()

    # findings -------------------------------------------------------------------------------
    def add(self, code: str, severity: Severity, file: str, message: str, fix: str = "") -> None:
        self.findings.append(Finding(code, severity, self.label + file, message, fix))

    # listing --------------------------------------------------------------------------------
    def _scan(self) -> None:
        try:
            real_root = self.root.resolve(strict=True)
            entries = sorted(os.scandir(self.root), key=lambda e: e.name)
        except (OSError, RuntimeError) as exc:
            self.add("not_a_model_dir", "error", ".", f"cannot list the directory: {exc}")
            self.exists = False
            return
        allowed_roots = [real_root, *_hub_cache_roots(real_root)]
        for count, entry in enumerate(entries):
            if count >= MAX_ENTRIES:
                self.add("file_unreadable", "warning", ".", f"more than {MAX_ENTRIES} entries; the rest ignored")
                break
            path = Path(entry.path)
            try:
                if entry.is_symlink():
                    try:
                        target = path.resolve(strict=True)
                    except (OSError, RuntimeError):
                        self.add(
                            "symlink_outside",
                            "error",
                            entry.name,
                            "a broken or looping symlink: loaders see a missing file",
                            "replace it with the real file",
                        )
                        continue
                    if not any(target.is_relative_to(r) for r in allowed_roots):
                        self.add(
                            "symlink_outside",
                            "error",
                            entry.name,
                            f"symlink to {target}, outside the model directory; not followed (the file "
                            "is missing when the folder is copied, uploaded or mounted into a container)",
                            "copy the real file into the directory",
                        )
                        continue
                    mode = target.stat().st_mode
                else:
                    mode = entry.stat(follow_symlinks=False).st_mode
            except OSError as exc:
                self.add("file_unreadable", "error", entry.name, f"cannot stat: {exc.strerror or exc}")
                continue
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                self.add("file_unreadable", "error", entry.name, "not a regular file (a pipe, socket or device)")
                continue
            self.files[entry.name] = path

    def has(self, name: str) -> bool:
        return name in self.files

    def size(self, name: str) -> int:
        try:
            return self.files[name].stat().st_size
        except OSError:
            return -1

    # parsed files ---------------------------------------------------------------------------
    def read_bytes(self, name: str, limit: int) -> bytes | None:
        if name not in self.files:
            return None
        size = self.size(name)
        if size > limit:
            self.add("file_unreadable", "error", name, f"{size:,} bytes, more than the {limit:,}-byte limit")
            return None
        try:
            with open(self.files[name], "rb") as handle:
                return handle.read(limit + 1)[:limit]
        except OSError as exc:
            self.add("file_unreadable", "error", name, f"cannot read: {exc.strerror or exc}")
            return None

    def json(self, name: str) -> dict[str, Any] | None:
        """The JSON object in ``name``, or None when absent or broken (a finding is added once)."""
        if name in self._json:
            value: dict[str, Any] | None = self._json[name]
            return value
        result: dict[str, Any] | None = None
        raw = self.read_bytes(name, MAX_JSON_BYTES)
        if raw is not None:
            try:
                doc = json.loads(raw.decode("utf-8"))
            except (ValueError, RecursionError) as exc:
                self._bad_json(name, f"not valid JSON: {str(exc)[:160]}")
            else:
                if isinstance(doc, dict):
                    result = doc
                else:
                    self._bad_json(name, f"a JSON {type(doc).__name__}, not an object")
        self._json[name] = result
        return result

    def _bad_json(self, name: str, why: str) -> None:
        if name == "config.json":
            self.add("config_unreadable", "error", name, why, "restore config.json from the base model")
        else:
            self.add("json_invalid", "error", name, f"{why}; loaders fail or skip it", "restore it from the base model")

    def header(self, name: str) -> SafetensorsHeader | None:
        if name not in self._headers:
            try:
                self._headers[name] = read_header(self.files[name])
            except HeaderError as exc:
                self.add(
                    "safetensors_invalid",
                    "error",
                    name,
                    f"{exc}; transformers and vLLM fail to load it",
                    "re-save the model (model.save_pretrained) or copy the file again",
                )
                self._headers[name] = None
        return self._headers[name]


def _hub_cache_roots(root: Path) -> list[Path]:
    """A Hugging Face cache snapshot links into ``../../blobs``: allow that one place."""
    if root.parent.name == "snapshots" and root.parent.parent.name.startswith("models--"):
        return [root.parent.parent / "blobs"]
    return []


# --------------------------------------------------------------------------------------------
# small pure helpers


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


def _walk(node: object) -> Iterator[Mapping[str, Any]]:
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


def parse_sentencepiece(data: bytes) -> SpModel:
    """Parse the parts of a SentencePiece ModelProto the doctor needs, with the stdlib only.

    Raises ValueError on anything that is not well-formed protobuf.
    """
    model = SpModel(pieces=[])
    for number, wire, value in _proto_fields(data):
        if number == 1 and wire == 2:
            piece, kind = "", 1
            for n2, w2, v2 in _proto_fields(_as_bytes(value)):
                if n2 == 1 and w2 == 2:
                    piece = _as_bytes(v2).decode("utf-8", errors="replace")
                elif n2 == 3 and w2 == 0:
                    kind = _as_int(v2)
            model.pieces.append((piece, kind))
        elif number == 2 and wire == 2:
            for n2, w2, v2 in _proto_fields(_as_bytes(value)):
                if n2 == 35 and w2 == 0:
                    model.byte_fallback = bool(_as_int(v2))
                elif n2 == 3 and w2 == 0:
                    model.model_type = _as_int(v2)
                elif n2 == 40 and w2 == 0:
                    model.unk_id = _as_int(v2)
        elif number == 3 and wire == 2:
            for n2, w2, v2 in _proto_fields(_as_bytes(value)):
                if n2 == 1 and w2 == 2:
                    model.normalizer_name = _as_bytes(v2).decode("utf-8", errors="replace")
                elif n2 == 4 and w2 == 0:
                    model.remove_extra_whitespaces = bool(_as_int(v2))
    if not model.pieces:
        raise ValueError("no pieces")
    return model


def _as_bytes(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise ValueError("expected a length-delimited field")
    return value


def _as_int(value: int | bytes) -> int:
    if not isinstance(value, int):
        raise ValueError("expected a varint field")
    return value


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _proto_fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated field")
            yield number, wire, data[pos : pos + length]
            pos += length
        elif wire == 5:
            pos += 4
        elif wire == 1:
            pos += 8
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > len(data):
            raise ValueError("truncated field")


def _looks_like_tiktoken(data: bytes) -> bool:
    first = data[:200].split(b"\n", 1)[0]
    return re.fullmatch(rb"[A-Za-z0-9+/=]+ \d+", first) is not None


# --------------------------------------------------------------------------------------------
# one directory, parsed


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

    def __init__(self, root: Path, label: str = "") -> None:
        self.dir = ModelDir(root, label)
        self.config: dict[str, Any] | None = None
        self.weights = Weights()
        self.tok = Tokenizer()
        self.is_adapter = False
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
            if raw is not None and not _looks_like_tiktoken(raw):
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


# --------------------------------------------------------------------------------------------
# checks: each takes an Inspection and adds findings


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


def _find(tensors: Mapping[str, TensorInfo], pattern: str) -> str | None:
    matches = sorted((n for n in tensors if re.search(pattern, n)), key=len)
    return matches[0] if matches else None


def check_shapes(ins: Inspection) -> None:
    cfg, w = ins.text, ins.weights.tensors
    quantized = "quantization_config" in (ins.config or {})
    embed = _find(w, r"(^|\.)(embed_tokens|wte|word_embeddings|tok_embeddings)\.weight$")
    head = _find(w, r"(^|\.)(lm_head|embed_out)\.weight$")
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


def check_tokenizer_files(ins: Inspection) -> None:
    d, tok = ins.dir, ins.tok
    has_json, has_model = d.has("tokenizer.json"), d.has("tokenizer.model")
    has_slow = (d.has("vocab.json") and d.has("merges.txt")) or d.has("vocab.txt") or d.has("tekken.json")
    if not (has_json or has_model or has_slow):
        ins.add(
            "tokenizer_missing",
            "error",
            "tokenizer.json",
            "no tokenizer.json or tokenizer.model: transformers 5 loads silently and returns a 3-token "
            "tokenizer, so every prompt encodes to nothing",
            "copy tokenizer.json (and tokenizer.model) from the base or the adapter directory",
        )
    elif has_model and not has_json and tok.sp is not None:
        ins.add(
            "tokenizer_model_only",
            "warning",
            "tokenizer.model",
            "only tokenizer.model: every load converts it (needs sentencepiece and protobuf in the serving "
            "environment) and transformers 5 re-saves it without tokenizer.model",
            "save tokenizer.json next to it: AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR)",
        )
    if not d.has("tokenizer_config.json") and (has_json or has_model):
        ins.add(
            "tokenizer_config_missing",
            "warning",
            "tokenizer_config.json",
            "no tokenizer_config.json: eos, bos and the tokenizer class fall back to defaults",
            "copy tokenizer_config.json from the base model",
        )
    tok_cfg = d.json("tokenizer_config.json") if d.has("tokenizer_config.json") else None
    for key in ("tokenizer_file", "vocab_file"):
        value = (tok_cfg or {}).get(key)
        if value is None:
            continue
        where = "an absolute path from another machine" if str(value).startswith("/") else "a path"
        ins.add(
            "stale_tokenizer_path",
            "warning",
            "tokenizer_config.json",
            f"{key} = {short(str(value))!r} is {where}: transformers finds tokenizer.json/tokenizer.model "
            "by name; under transformers 4 a stale path breaks loading",
            f'delete the "{key}" key from tokenizer_config.json',
        )
    if tok.sp is not None and tok.tj is not None:
        check_tokenizer_agreement(ins)


def check_tokenizer_agreement(ins: Inspection) -> None:
    sp, tok = ins.tok.sp, ins.tok
    assert sp is not None
    json_ids = {**tok.model_vocab, **tok.added}
    wrong = [(i, p, json_ids.get(p)) for i, (p, kind) in enumerate(sp.pieces) if kind != 5 and json_ids.get(p) != i]
    if wrong:
        i, piece, other = wrong[0]
        ins.add(
            "tokenizer_files_disagree",
            "error",
            "tokenizer.json",
            f"{len(wrong)} of {len(sp.pieces)} tokenizer.model pieces have another id in tokenizer.json "
            f"(e.g. {short(piece)!r}: {i} in tokenizer.model, {other} in tokenizer.json): tools that read "
            "different files encode differently",
            "regenerate tokenizer.json from tokenizer.model, or delete the one that does not belong",
        )


def check_token_ids(ins: Inspection) -> None:
    tok, vocab = ins.tok, as_int(ins.text.get("vocab_size"))
    if vocab is None or not tok.token_to_id:
        return
    beyond = sorted(((i, t) for t, i in tok.token_to_id.items() if i >= vocab), key=lambda x: x[0])
    # special tokens named in the config but absent from the vocabulary get new ids at load time
    next_id = tok.size
    appended: list[tuple[int, str]] = []
    for key in ("eos_token", "bos_token", "unk_token", "pad_token"):
        value = tok.specials.get(key)
        if value is not None and value not in tok.token_to_id and value not in [t for _, t in appended]:
            appended.append((next_id, value))
            next_id += 1
    beyond += [(i, t) for i, t in appended if i >= vocab]
    if beyond:
        shown = ", ".join(f"{short(t, 20)!r}={i}" for i, t in beyond[:5])
        ins.add(
            "token_id_out_of_range",
            "error",
            tok.source or "tokenizer_config.json",
            f"{len(beyond)} token ids are >= config vocab_size {vocab} ({shown}): any prompt that uses them "
            "indexes past the embedding table (IndexError on CPU, 'device-side assert' on GPU)",
            "resize the embeddings to the tokenizer (model.resize_token_embeddings(len(tokenizer))) and "
            "retrain, or restore the base tokenizer",
        )


def eos_ids(ins: Inspection) -> tuple[str | None, int | None, list[int], list[int]]:
    """(tokenizer eos text, its id, config.json eos ids, generation_config.json eos ids)."""
    eos = ins.tok.specials.get("eos_token")
    eos_id = ins.tok.lookup(eos) if eos is not None else None
    gen = ins.dir.json("generation_config.json") if ins.dir.has("generation_config.json") else None
    cfg_ids = id_list((ins.config or {}).get("eos_token_id", ins.text.get("eos_token_id")))
    gen_ids = id_list((gen or {}).get("eos_token_id"))
    return eos, eos_id, cfg_ids, gen_ids


def check_special_map(ins: Inspection) -> None:
    """special_tokens_map.json naming other eos/bos than tokenizer_config.json (tools disagree on which wins)."""
    d = ins.dir
    if not (d.has("special_tokens_map.json") and d.has("tokenizer_config.json")):
        return
    mapped, config = d.json("special_tokens_map.json") or {}, d.json("tokenizer_config.json") or {}
    for key in ("eos_token", "bos_token"):
        a, b = token_text(config.get(key)), token_text(mapped.get(key))
        if a is not None and b is not None and a != b:
            ins.add(
                "eos_inconsistent",
                "error" if key == "eos_token" else "warning",
                "special_tokens_map.json",
                f"{key} is {short(b)!r} here but {short(a)!r} in tokenizer_config.json: transformers 4 and 5 "
                "pick different ones",
                "make special_tokens_map.json agree with tokenizer_config.json (or delete it)",
            )


def check_eos(ins: Inspection) -> None:
    if not ins.tok.token_to_id:
        return
    eos, eos_id, cfg_ids, gen_ids = eos_ids(ins)
    vocab = as_int(ins.text.get("vocab_size"))
    file = "tokenizer_config.json"
    check_special_map(ins)
    if eos is None:
        severity: Severity = "warning" if gen_ids or cfg_ids else "error"
        ins.add(
            "eos_missing",
            severity,
            file,
            "the tokenizer has no eos_token"
            + (
                "; only the ids in config/generation_config stop generation"
                if severity == "warning"
                else ": generation never stops"
            ),
            'set "eos_token" in tokenizer_config.json to the base model\'s eos (e.g. "</s>")',
        )
        return
    if eos.strip() == "":
        ins.add(
            "eos_blank",
            "error",
            file,
            f"eos_token is {eos!r}: after a reload every space encodes to a new id beyond the vocabulary "
            "(device-side assert) and the stop token is never sampled",
            "restore eos_token from the base tokenizer_config.json (python -m kochallenge_data fix DIR --base BASE)",
        )
    elif eos_id is None:
        ins.add(
            "eos_not_in_vocab",
            "error",
            file,
            f"eos_token {short(eos)!r} is not in the vocabulary: loading appends it with id {ins.tok.size}, "
            "which the model never learned (and may be beyond vocab_size)",
            "restore eos_token from the base tokenizer_config.json",
        )
    if vocab is not None:
        bad = [i for i in cfg_ids + gen_ids if i >= vocab or i < 0]
        if bad:
            ins.add(
                "token_id_out_of_range",
                "error",
                "generation_config.json",
                f"eos_token_id {bad} is outside the vocabulary (size {vocab})",
                "restore eos_token_id from the base model",
            )
    if eos_id is None:
        return
    stop_ids = gen_ids or cfg_ids
    if stop_ids and eos_id not in stop_ids:
        ins.add(
            "eos_inconsistent",
            "error",
            "generation_config.json" if gen_ids else "config.json",
            f"the tokenizer's eos {short(eos)!r} is id {eos_id} but eos_token_id is {stop_ids}: transformers' "
            "generate stops only on eos_token_id, so a model trained to emit the tokenizer's eos never stops",
            f"make them agree (eos_token_id {eos_id}, or the base model's values)",
        )
    elif cfg_ids and gen_ids and not set(cfg_ids) <= set(gen_ids):
        ins.add(
            "eos_inconsistent",
            "warning",
            "config.json",
            f"config.json eos_token_id {cfg_ids} differs from generation_config.json {gen_ids} "
            "(vLLM stops on the tokenizer eos plus generation_config.json)",
            "copy eos_token_id from the base model into both files",
        )


def check_char_coverage(ins: Inspection) -> None:
    tok = ins.tok
    if tok.tj is not None:
        model = tok.tj.get("model") or {}
        kind = model.get("type")
        byte_level = any(
            n.get("type") == "ByteLevel" for part in ("pre_tokenizer", "decoder") for n in _walk(tok.tj.get(part))
        )
        byte_pieces = sum(1 for p in BYTE_PIECES if p in tok.model_vocab)
        fallback = bool(model.get("byte_fallback")) and byte_pieces == 256
        if kind == "Unigram":
            unk_id = as_int(model.get("unk_id"))
            has_unk = unk_id is not None
        else:
            unk = model.get("unk_token")
            has_unk = isinstance(unk, str) and unk in tok.token_to_id
        if kind in ("BPE", "Unigram", "WordPiece", "WordLevel") and not (byte_level or fallback):
            detail = (
                f"byte_fallback is on but only {byte_pieces} of the 256 <0xXX> pieces exist"
                if model.get("byte_fallback")
                else "no byte fallback"
            )
            if not has_unk:
                ins.add(
                    "tokenizer_drops_chars",
                    "error",
                    "tokenizer.json",
                    f"{detail} and no unk token: characters outside the vocabulary (unseen emoji, rare "
                    "Hangul) are dropped silently, so training data and prompts lose them",
                    "retrain the SentencePiece model with byte_fallback=True (or use a byte-level BPE)",
                )
            else:
                ins.add(
                    "tokenizer_drops_chars",
                    "warning",
                    "tokenizer.json",
                    f"{detail}: characters outside the vocabulary become the unk token, and the model can "
                    "never write them",
                    "retrain the tokenizer with byte_fallback=True (or use a byte-level BPE)",
                )
    elif tok.sp is not None and not tok.sp.byte_fallback:
        ins.add(
            "tokenizer_drops_chars",
            "error",
            "tokenizer.model",
            "SentencePiece model without byte_fallback: sentencepiece maps unseen emoji and rare Hangul to "
            "<unk>, and transformers 5 converts it to a tokenizer that drops them silently",
            "retrain the SentencePiece model with byte_fallback=True",
        )


def check_newlines(ins: Inspection) -> None:
    tok = ins.tok
    if tok.tj is not None:
        for node in _walk(tok.tj.get("normalizer")):
            kind = node.get("type")
            if kind == "Replace" and _pattern_matches_newline(node.get("pattern")):
                ins.add(
                    "newline_normalized",
                    "error",
                    "tokenizer.json",
                    "the normalizer replaces newlines: multi-line outputs (one challenge per line) collapse",
                    "remove that Replace from the normalizer, or retrain with identity normalization",
                )
                break
            if kind == "Precompiled":
                ins.add(
                    "newline_normalized",
                    "warning",
                    "tokenizer.json",
                    "a precompiled SentencePiece normalizer (nmt_nfkc by default) maps newlines to spaces; "
                    "it cannot be checked from the file",
                    "run doctor --load to round-trip a probe, or retrain with normalization_rule_name=identity",
                )
                break
        for node in _walk(tok.tj.get("pre_tokenizer")):
            if node.get("type") in ("Whitespace", "WhitespaceSplit", "BertPreTokenizer"):
                ins.add(
                    "newline_normalized",
                    "error",
                    "tokenizer.json",
                    f"the {node.get('type')} pre-tokenizer discards spaces and newlines: decode cannot restore them",
                    "use a ByteLevel or Metaspace pre-tokenizer",
                )
                break
    sp = tok.sp
    if sp is not None and sp.normalizer_name.startswith("nmt_"):
        ins.add(
            "newline_normalized",
            "warning" if tok.tj is not None else "error",
            "tokenizer.model",
            f"SentencePiece normalization {sp.normalizer_name!r} turns newlines into spaces wherever "
            "tokenizer.model is used (sentencepiece, transformers 4 slow tokenizers, GGUF conversion)",
            "retrain the SentencePiece model with normalization_rule_name='identity'",
        )


def _pattern_matches_newline(pattern: object) -> bool:
    if not isinstance(pattern, dict):
        return False
    if isinstance(pattern.get("String"), str):
        return "\n" in pattern["String"]
    regex = pattern.get("Regex")
    if isinstance(regex, str):
        try:
            return re.search(regex, "\n") is not None
        except re.error:
            return False
    return False


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


# --------------------------------------------------------------------------------------------
# comparison with the base


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
        if a.stat().st_size > MAX_JSON_BYTES:
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
        elif key == "vocab_size" and isinstance(new, int) and _rows(ins) == new:
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


def _rows(ins: Inspection) -> int | None:
    name = _find(ins.weights.tensors, r"(^|\.)(embed_tokens|wte|word_embeddings|tok_embeddings)\.weight$")
    return ins.weights.tensors[name].shape[0] if name else None


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
        rows = _rows(ins)
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


# --------------------------------------------------------------------------------------------
# entry points


def collect_facts(ins: Inspection) -> dict[str, Any]:
    cfg = ins.text
    eos, eos_id, cfg_ids, gen_ids = eos_ids(ins)
    return {
        "model_type": (ins.config or {}).get("model_type"),
        "architectures": (ins.config or {}).get("architectures"),
        "vocab_size": cfg.get("vocab_size"),
        "embedding_rows": _rows(ins),
        "tokenizer_size": ins.tok.size if ins.tok.token_to_id else None,
        "tokenizer_source": ins.tok.source or None,
        "hidden_size": cfg.get("hidden_size"),
        "num_hidden_layers": cfg.get("num_hidden_layers"),
        "dtype": config_dtype(ins.config or {}),
        "weights_dtype": {TORCH_DTYPE_NAMES.get(k, k): v for k, v in ins.weights.dtypes().items()},
        "parameters": sum(t.numel for t in ins.weights.tensors.values()),
        "shards": ins.weights.files,
        "eos_token": eos,
        "eos_token_id": eos_id,
        "config_eos_token_id": cfg_ids,
        "generation_eos_token_id": gen_ids,
        "max_model_len": derived_max_len(cfg),
    }


def inspect_dir(path: Path, *, max_model_len: int | None = None, label: str = "") -> Inspection:
    """Run every file-level check on one directory."""
    ins = Inspection(path, label)
    if not check_structure(ins):
        return ins
    check_weights(ins)
    check_dtype(ins)
    check_tokenizer_files(ins)
    check_token_ids(ins)
    check_eos(ins)
    check_char_coverage(ins)
    check_newlines(ins)
    check_generation(ins)
    check_context(ins, max_model_len)
    check_layout(ins)
    check_trainer_leftovers(ins)
    return ins


def doctor(
    model_dir: Path | str,
    *,
    base: Path | str | None = None,
    max_model_len: int | None = None,
    load: bool = False,
) -> DoctorReport:
    """Check ``model_dir`` (and compare it with ``base``). ``load`` needs the train extra."""
    start = time.perf_counter()
    path = Path(model_dir)
    ins = inspect_dir(path, max_model_len=max_model_len)
    report = DoctorReport(model_dir=str(path), base_dir=str(base) if base is not None else None)
    findings = list(ins.findings)
    fatal = any(f.code in FATAL_CODES for f in findings)
    if not fatal:
        report.facts = collect_facts(ins)
    if base is not None and not fatal:
        base_ins = inspect_dir(Path(base), label="base:")
        base_fatal = [f for f in base_ins.findings if f.code in FATAL_CODES]
        if base_fatal:
            findings.append(
                Finding(
                    "base_unreadable",
                    "error",
                    str(base),
                    f"the base cannot be inspected: {base_fatal[0].message}",
                    "pass the base model directory (the one with config.json)",
                )
            )
        else:
            before = len(ins.findings)
            compare_with_base(ins, base_ins)
            findings.extend(ins.findings[before:])
    if load and not fatal:
        findings.extend(load_checks(path, report.facts, base=Path(base) if base is not None else None))
    order = {"error": 0, "warning": 1, "info": 2}
    report.findings = sorted(findings, key=lambda f: order[f.severity])
    report.seconds = time.perf_counter() - start
    return report


def load_checks(model_dir: Path, facts: Mapping[str, Any], *, base: Path | None = None) -> list[Finding]:
    """Load the tokenizer as vLLM does, round-trip :data:`PROBE`, run one CPU forward pass."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ModelDirError(
            f"--load needs the train extra ({exc.name} is missing): pip install torch==2.13.0 -e '.[train]'"
        ) from None
    findings: list[Finding] = []

    def add(code: str, severity: Severity, file: str, message: str, fix: str = "") -> None:
        findings.append(Finding(code, severity, file, message, fix))

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    except Exception as exc:  # any loader failure is the finding
        add(
            "load_failed",
            "error",
            "tokenizer",
            f"AutoTokenizer.from_pretrained failed: {_first_line(exc)}",
            "fix the tokenizer findings above",
        )
        return findings
    vocab = facts.get("embedding_rows") or facts.get("vocab_size")
    ids: list[int] = list(tokenizer.encode(PROBE, add_special_tokens=False))
    raw_decoded = tokenizer.decode(ids, skip_special_tokens=True)
    decoded = raw_decoded if isinstance(raw_decoded, str) else "".join(raw_decoded)
    if decoded != PROBE and decoded.lstrip(" ") != PROBE:
        lost = sorted(set(PROBE) - set(decoded))
        unk = getattr(tokenizer, "unk_token_id", None)
        if "\n" in lost:
            add(
                "newline_normalized",
                "error",
                "tokenizer",
                "the probe's newline does not survive encode/decode",
                "retrain the tokenizer with identity normalization",
            )
        if [c for c in lost if c != "\n"] or not lost:
            special_ids = set(getattr(tokenizer, "all_special_ids", None) or [])
            swallowed = sorted(special_ids & set(ids))
            add(
                "roundtrip_failed",
                "error",
                "tokenizer",
                f"the probe decodes to {short(decoded, 80)!r}"
                + (f"; lost {show_chars([c for c in lost if c != chr(10)])}" if lost else "")
                + ("; unk tokens present" if unk is not None and unk in ids else "")
                + (f"; ordinary text encoded to special token ids {swallowed}" if swallowed else ""),
                "restore the base special tokens (a special token matches ordinary text)"
                if swallowed
                else "use a tokenizer with byte_fallback (or byte-level BPE) so every character survives",
            )
    special = [i for i in (tokenizer.eos_token_id, tokenizer.bos_token_id) if isinstance(i, int)]
    if isinstance(vocab, int):
        beyond = sorted({i for i in ids + special if i >= vocab})
        if beyond:
            add(
                "token_id_out_of_range",
                "error",
                "tokenizer",
                f"after loading, ids {beyond[:5]} are >= the {vocab} embedding rows (eos id {tokenizer.eos_token_id})",
                "restore the base tokenizer or resize the embeddings",
            )
    if base is not None:
        try:
            base_tok = AutoTokenizer.from_pretrained(str(base))
            base_ids = list(base_tok.encode(PROBE, add_special_tokens=False))
            if base_ids != ids:
                add(
                    "base_diff_not_allowed",
                    "error",
                    "tokenizer",
                    "the probe encodes to other ids than with the base tokenizer",
                    "restore the base tokenizer files",
                )
        except Exception as exc:  # the base is only a reference here
            add("base_unreadable", "warning", "tokenizer", f"the base tokenizer does not load: {_first_line(exc)}")
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype="auto")
    except Exception as exc:  # any loader failure is the finding
        add(
            "load_failed",
            "error",
            "model",
            f"AutoModelForCausalLM.from_pretrained failed: {_first_line(exc)}",
            "fix the weight findings above",
        )
        return findings
    rows = int(model.get_input_embeddings().weight.shape[0])
    probe_ids = ([tokenizer.bos_token_id] if isinstance(tokenizer.bos_token_id, int) else []) + ids[:16] + special[:1]
    too_big = sorted({i for i in probe_ids if i >= rows})
    if too_big:
        add(
            "forward_failed",
            "error",
            "model",
            f"token ids {too_big} are >= the {rows} embedding rows: the forward pass raises IndexError on CPU and "
            "'CUDA error: device-side assert triggered' on GPU",
            "restore the base tokenizer (eos/added tokens) or resize the embeddings",
        )
        return findings
    try:
        with torch.no_grad():
            logits = model(torch.tensor([probe_ids])).logits
        if not bool(torch.isfinite(logits).all()):
            add(
                "forward_failed",
                "error",
                "model",
                "the forward pass produced NaN or inf logits",
                "check the dtype (float16 overflow?) and the merge",
            )
    except Exception as exc:  # the failure is the finding
        add("forward_failed", "error", "model", f"the forward pass failed: {_first_line(exc)}")
    return findings


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {short(text[0], 200) if text else ''}"


def format_report(report: DoctorReport) -> str:
    """A readable table: severity, code, file, message, then the fix indented."""
    lines = [f"doctor {report.model_dir}" + (f" (base {report.base_dir})" if report.base_dir else "")]
    facts = report.facts
    if facts:
        lines.append(
            "  "
            + ", ".join(
                f"{k}={facts[k]}"
                for k in (
                    "model_type",
                    "vocab_size",
                    "embedding_rows",
                    "tokenizer_size",
                    "dtype",
                    "max_model_len",
                    "eos_token",
                    "eos_token_id",
                )
                if facts.get(k) is not None
            )
        )
    if report.findings:
        width = max(len(f.code) for f in report.findings)
        for f in report.findings:
            lines.append(f"{f.severity.upper():<7} {f.code:<{width}}  {f.file}: {f.message}")
            if f.fix and f.severity != "info":
                lines.append(f"{'':<7} {'':<{width}}  fix: {f.fix}")
    code = report.exit_code()
    verdict = {0: "sound", 1: "problems found", 2: "not a usable model directory"}[code]
    lines.append(
        f"{len(report.errors)} errors, {len(report.warnings)} warnings, "
        f"{len(report.findings) - len(report.errors) - len(report.warnings)} notes in {report.seconds:.2f} s: {verdict}"
    )
    return "\n".join(lines)
