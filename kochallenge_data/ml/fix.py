"""``fix``: copy the base model's config and tokenizer files over a merged directory, safely.

The team's manual remedy for a merged directory that vLLM rejects, with the checks it lacked: a base
file is copied only where the merged weights agree with it (same shapes as the base config says,
every base token id inside the embedding), every replaced or removed file is backed up first, and
the doctor runs at the end. Reads files only; no torch.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .doctor import (
    FATAL_CODES,
    TOKENIZER_FILES,
    DoctorReport,
    Inspection,
    ModelDirError,
    as_int,
    check_shapes,
    doctor,
    id_list,
    inspect_dir,
)

CONFIG_FILES = ("config.json", "generation_config.json")


@dataclass
class FixAction:
    """One planned change: ``copy`` a base file in (replacing or adding), or ``remove`` a stale one."""

    file: str
    action: str
    reason: str


@dataclass
class FixResult:
    model_dir: Path
    actions: list[FixAction] = field(default_factory=list)
    skipped: list[FixAction] = field(default_factory=list)
    backup: Path | None = None
    report: DoctorReport | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_dir": str(self.model_dir),
            "backup": str(self.backup) if self.backup else None,
            "actions": [vars(a) for a in self.actions],
            "skipped": [vars(a) for a in self.skipped],
            "doctor": self.report.to_dict() if self.report else None,
        }


def _embedding_rows(ins: Inspection) -> int | None:
    for name, info in ins.weights.tensors.items():
        if name.endswith(("embed_tokens.weight", "wte.weight", "word_embeddings.weight", "tok_embeddings.weight")):
            return info.shape[0] if info.shape else None
    return None


def config_agrees(model: Inspection, base: Inspection) -> list[str]:
    """Why the base config.json does not describe the model's weights (empty when it does)."""
    probe = Inspection(model.dir.root)
    probe.config = dict(base.config or {})
    check_shapes(probe)
    return [f.message for f in probe.findings if f.code in ("vocab_size_mismatch", "shape_mismatch", "tensor_missing")]


def plan_fix(model: Inspection, base: Inspection) -> tuple[list[FixAction], list[FixAction]]:
    """The changes that are safe, and the ones skipped with the reason."""
    actions: list[FixAction] = []
    skipped: list[FixAction] = []
    rows = _embedding_rows(model)
    disagreements = config_agrees(model, base)
    config_ok = not disagreements

    def differs(name: str) -> bool:
        if name not in model.dir.files:
            return True
        try:
            return model.dir.files[name].read_bytes() != base.dir.files[name].read_bytes()
        except OSError:
            return True

    if "config.json" in base.dir.files and differs("config.json"):
        if config_ok:
            actions.append(
                FixAction("config.json", "copy", "the weights have the shapes the base config.json describes")
            )
        else:
            skipped.append(
                FixAction(
                    "config.json", "keep", "the weights do not match the base config: " + "; ".join(disagreements[:2])
                )
            )
    base_ids = list(base.tok.token_to_id.values())
    gen = base.dir.json("generation_config.json") if base.dir.has("generation_config.json") else None
    gen_ids = id_list((gen or {}).get("eos_token_id")) + id_list((gen or {}).get("bos_token_id"))
    if "generation_config.json" in base.dir.files and differs("generation_config.json"):
        if rows is not None and all(i < rows for i in gen_ids):
            actions.append(FixAction("generation_config.json", "copy", "base eos/bos ids are inside the embedding"))
        else:
            skipped.append(
                FixAction("generation_config.json", "keep", "the base eos/bos ids are outside the embedding")
            )
    extra_tokens = [t for t in model.tok.token_to_id if t not in base.tok.token_to_id]
    base_vocab = as_int(base.text.get("vocab_size"))
    tokenizer_ok = config_ok and rows is not None and all(i < rows for i in base_ids)
    reason = "the base tokenizer fits the embedding"
    if not tokenizer_ok:
        reason = (
            f"the embedding has {rows} rows but the base config says {base_vocab}: the model was resized for its own "
            "tokenizer, which the base files would replace"
            if config_ok is False
            else "base token ids fall outside the embedding"
        )
    elif extra_tokens and rows is not None and base_vocab is not None and rows > base_vocab:
        tokenizer_ok = False
        reason = f"the model's tokenizer has {len(extra_tokens)} tokens the base lacks and resized weights"
    for name in TOKENIZER_FILES:
        if name in base.dir.files:
            if not differs(name):
                continue
            target = actions if tokenizer_ok else skipped
            target.append(FixAction(name, "copy" if tokenizer_ok else "keep", reason))
        elif name in model.dir.files and name not in ("chat_template.jinja", "chat_template.json"):
            target = actions if tokenizer_ok else skipped
            target.append(
                FixAction(
                    name, "remove" if tokenizer_ok else "keep", "not in the base; it would override the base tokenizer"
                )
            )
    return actions, skipped


def fix_model_dir(
    model_dir: Path | str,
    base_dir: Path | str,
    *,
    dry_run: bool = False,
    backup_dir: Path | str | None = None,
) -> FixResult:
    """Apply :func:`plan_fix` (backing up what changes) and run the doctor afterwards."""
    path, base_path = Path(model_dir), Path(base_dir)
    model = inspect_dir(path)
    base = inspect_dir(base_path, label="base:")
    for ins, what in ((model, "MODEL_DIR"), (base, "--base")):
        fatal = [f for f in ins.findings if f.code in FATAL_CODES]
        if fatal:
            raise ModelDirError(f"{what} {ins.dir.root}: {fatal[0].code}: {fatal[0].message}")
    if any(f.code == "lora_unmerged" for f in model.findings):
        raise ModelDirError(f"{path} holds unmerged LoRA tensors: merge it (python -m kochallenge_data merge) instead")
    if not model.weights.tensors:
        raise ModelDirError(f"{path} has no readable safetensors weights to check the base files against")
    actions, skipped = plan_fix(model, base)
    result = FixResult(model_dir=path, actions=actions, skipped=skipped)
    if dry_run or not actions:
        result.report = doctor(path, base=base_path)
        return result
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    backup = Path(backup_dir) if backup_dir else path.parent / f"{path.name}.fix-backup-{stamp}"
    if backup.exists() and any(backup.iterdir()):
        raise ModelDirError(f"backup folder {backup} exists and is not empty")
    backup.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "model_dir": str(path.resolve()),
        "base": str(base_path.resolve()),
        "created": stamp,
        "files": [],
    }
    for action in actions:
        target = path / action.file
        existed = action.file in model.dir.files
        if existed:
            shutil.copy2(target, backup / action.file)
        manifest["files"].append(
            {"file": action.file, "action": action.action, "backed_up": existed, "reason": action.reason}
        )
    (backup / "fix_manifest.json").write_text(
        json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    for action in actions:
        target = path / action.file
        if action.action == "remove":
            target.unlink()
        else:
            if target.is_symlink():
                target.unlink()
            shutil.copyfile(base.dir.files[action.file], target)
    result.backup = backup
    result.report = doctor(path, base=base_path)
    return result


def format_fix(result: FixResult, *, dry_run: bool = False) -> str:
    lines = []
    verb = "would" if dry_run else "did"
    for a in result.actions:
        lines.append(f"{verb} {a.action:<6} {a.file}: {a.reason}")
    for a in result.skipped:
        lines.append(f"kept        {a.file}: {a.reason}")
    if not result.actions:
        lines.append("nothing to copy: the directory already has the base files that its weights agree with")
    if result.backup:
        lines.append(f"backup of the replaced files: {result.backup}")
    return "\n".join(lines)
