"""What the doctor reports: the finding codes, :class:`Finding`, :class:`DoctorReport` and its text form."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

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
    weights_checked: bool = True

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
            "weights_checked": self.weights_checked,
            "exit_code": self.exit_code(),
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "seconds": round(self.seconds, 4),
            "facts": self.facts,
            "findings": [asdict(f) for f in self.findings],
        }


def format_report(report: DoctorReport) -> str:
    """A readable table: severity, code, file, message, then the fix indented."""
    lines = [
        f"doctor {report.model_dir}"
        + (f" (base {report.base_dir})" if report.base_dir else "")
        + ("" if report.weights_checked else " [config and tokenizer only: weights not checked]")
    ]
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
