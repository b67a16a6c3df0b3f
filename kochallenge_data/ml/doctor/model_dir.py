"""Reading a model directory safely: the listing, size limits, symlinks, cached JSON and safetensors headers.

Nothing here raises for a bad file; every problem becomes a :class:`~.report.Finding` on the :class:`ModelDir`.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from ...errors import KochallengeError
from ..safetensors_header import HeaderError, SafetensorsHeader, read_header
from .report import Finding, Severity

MAX_JSON_BYTES = 256 * 1024 * 1024
MAX_TOKENIZER_MODEL_BYTES = 64 * 1024 * 1024
MAX_ENTRIES = 20_000
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


class ModelDirError(KochallengeError):
    """A path that cannot be used as a model directory at all (exit 2)."""

    exit_code = 2


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
        raw = self.read_bytes(name, json_byte_limit())
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


def json_byte_limit() -> int:
    """:data:`MAX_JSON_BYTES` as the package holds it now.

    Read through the package rather than this module so that setting
    ``kochallenge_data.ml.doctor.MAX_JSON_BYTES`` (the tests lower it) still reaches every reader, as it
    did when the doctor was one module.
    """
    from . import MAX_JSON_BYTES as limit

    return limit
