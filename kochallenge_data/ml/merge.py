"""``merge``: fold a LoRA adapter into its base model so that the result is safe to serve.

What it guarantees, in order:

1. the adapter belongs to the base (every LoRA and saved tensor fits a base tensor, from the
   safetensors headers, before anything is loaded);
2. the tokenizer: unchanged -> the base tokenizer files are copied byte for byte; grown -> the
   adapter's tokenizer and its resized embeddings are used; eos or bos changed -> refused;
3. ``merge_and_unload`` in float32 (on CPU when there is no GPU), then a cast to the base dtype;
4. metadata from the base: config.json byte-identical unless the weights need another vocab_size
   (then only that key changes), generation_config.json byte-identical; no trainer leftovers;
5. verification: the merged directory is reloaded and its logits on a probe are compared with the
   unmerged model's, then :func:`~kochallenge_data.ml.doctor.doctor` must pass;
6. ``merge_report.json`` and the ``vllm serve`` command. OUT is written beside itself and renamed
   into place at the end; an existing OUT is replaced only with ``force``.

torch, transformers and peft are imported inside the functions (the ``train`` extra).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import KochallengeError
from .doctor import (
    METADATA_FILES,
    PROBE,
    TOKENIZER_FILES,
    WEIGHT_SUFFIXES,
    DoctorReport,
    Inspection,
    ModelDirError,
    as_int,
    config_dtype,
    derived_max_len,
    doctor,
    inspect_dir,
    short,
)
from .safetensors_header import TORCH_DTYPE_NAMES, HeaderError, TensorInfo, read_header

ADAPTER_PREFIX = "base_model.model."
VOCAB_TENSOR = re.compile(r"(^|\.)(embed_tokens|wte|word_embeddings|tok_embeddings|lm_head|embed_out)\.weight$")
INSTALL_HINT = "pip install torch==2.13.0 -e '.[train]'"


class MergeError(KochallengeError):
    """The merge was refused or did not verify; nothing was written to OUT."""


@dataclass(frozen=True)
class AdapterInfo:
    """An adapter directory read from its files (no torch)."""

    path: Path
    config: Mapping[str, Any]
    weights_file: Path
    tensors: Mapping[str, TensorInfo]

    @property
    def embedding_rows(self) -> int | None:
        """Rows of a saved (resized) embedding, or of a LoRA on the embedding."""
        for name, info in self.tensors.items():
            module = module_name(name)
            if re.search(r"(^|\.)(embed_tokens|wte|word_embeddings|tok_embeddings)\.weight$", module) and info.shape:
                return info.shape[0]
            if ".lora_embedding_A" in name and len(info.shape) == 2:
                return info.shape[1]
        return None


@dataclass
class MergeResult:
    out: Path
    report: dict[str, Any]
    doctor: DoctorReport
    vllm_command: str
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def module_name(adapter_key: str) -> str:
    """``base_model.model.model.layers.0.q_proj.lora_A.weight`` -> ``model.layers.0.q_proj.lora_A.weight``;
    saved full modules lose PEFT's ``modules_to_save``/``default`` wrappers."""
    name = adapter_key.removeprefix(ADAPTER_PREFIX)
    name = name.replace(".modules_to_save.default.", ".").replace(".modules_to_save.", ".")
    return name.replace(".original_module.", ".")


def read_adapter(path: Path) -> AdapterInfo:
    """Read adapter_config.json and the adapter weights' header; raise :class:`ModelDirError` if unusable."""
    if not path.is_dir():
        raise ModelDirError(f"adapter directory {path} does not exist")
    config_path = path / "adapter_config.json"
    if not config_path.is_file():
        hint = " (it has config.json: a full model, not an adapter)" if (path / "config.json").is_file() else ""
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


def adapter_mismatches(adapter: AdapterInfo, base_tensors: Mapping[str, TensorInfo]) -> list[str]:
    """Every way the adapter's tensors do not fit the base's (empty when it belongs to the base)."""
    problems: list[str] = []
    fan_in_fan_out = bool(adapter.config.get("fan_in_fan_out"))
    matched = 0
    for key, info in adapter.tensors.items():
        name = module_name(key)
        lora = re.search(
            r"\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B|lora_magnitude_vector)(\.[^.]+)?\.weight$", name
        )
        if lora:
            module = name[: lora.start()]
            kind = lora.group(1)
        else:
            module = name.removesuffix(".weight").removesuffix(".bias")
            kind = "full" if name.endswith(".weight") else "other"
        base = base_tensors.get(module + ".weight")
        if base is None:
            problems.append(f"{short(key, 90)}: the base has no {module}.weight")
            continue
        matched += 1
        if fan_in_fan_out or len(base.shape) != 2 or len(info.shape) < 1:
            continue
        if not _fits(kind, info.shape, base.shape, VOCAB_TENSOR.search(module + ".weight") is not None):
            problems.append(f"{short(key, 90)}: {list(info.shape)} does not fit base {list(base.shape)}")
    if not matched and adapter.tensors:
        problems.insert(0, "none of the adapter's modules exist in the base: another architecture")
    return problems


def _fits(kind: str, shape: tuple[int, ...], base: tuple[int, ...], resizable: bool) -> bool:
    """Whether an adapter tensor of ``kind`` fits a base weight of shape ``[out, in]``."""
    out_features, in_features = base
    if kind == "lora_A":
        return shape[-1] == in_features
    if kind in ("lora_B", "lora_embedding_B"):
        return shape[0] == (out_features if kind == "lora_B" else in_features)
    if kind == "full":
        return shape[1:] == base[1:] and (shape[0] == base[0] or resizable)
    return True


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class TokenizerPlan:
    changed: bool
    rows: int
    notes: tuple[str, ...] = ()


def plan_tokenizer(base: Inspection, adapter_dir: Path, adapter: AdapterInfo, base_rows: int) -> TokenizerPlan:
    """Decide which tokenizer OUT gets; raise :class:`MergeError` when the merge would be unsafe."""
    has_tokenizer = any((adapter_dir / n).is_file() for n in ("tokenizer.json", "tokenizer.model", "vocab.json"))
    saved_rows = adapter.embedding_rows
    rows = saved_rows if saved_rows is not None else base_rows
    if not has_tokenizer:
        if saved_rows is not None and saved_rows != base_rows:
            raise MergeError(
                f"the adapter has a resized embedding ({saved_rows} rows, base {base_rows}) but no tokenizer files: "
                "save the training tokenizer into the adapter directory (tokenizer.save_pretrained(ADAPTER))"
            )
        return TokenizerPlan(
            changed=False, rows=rows, notes=("the adapter has no tokenizer: the base tokenizer is kept",)
        )
    theirs = Inspection(adapter_dir).tok
    mine = base.tok
    for key in ("eos_token", "bos_token"):
        old, new = mine.specials.get(key), theirs.specials.get(key)
        if new is not None and old is not None and new != old:
            raise MergeError(
                f"the adapter's tokenizer changes {key} from {old!r} to {new!r}: the served model would stop on "
                "a token it was not trained for. Restore the base special tokens in the adapter's "
                "tokenizer_config.json (or retrain with them)"
            )
    if theirs.token_to_id == mine.token_to_id:
        return TokenizerPlan(changed=False, rows=rows, notes=("the adapter's tokenizer has the base vocabulary",))
    moved = [t for t, i in mine.token_to_id.items() if theirs.token_to_id.get(t) != i]
    if moved:
        raise MergeError(
            f"the adapter's tokenizer is a different vocabulary ({len(moved)} base tokens missing or renumbered, "
            f"e.g. {short(moved[0], 30)!r}): it does not belong to this base"
        )
    added = sorted(i for t, i in theirs.token_to_id.items() if t not in mine.token_to_id)
    if added and added[-1] >= rows:
        raise MergeError(
            f"the adapter's tokenizer adds {len(added)} tokens (ids up to {added[-1]}) but the embedding has "
            f"{rows} rows and the adapter saved no resized embedding: train with "
            "model.resize_token_embeddings(len(tokenizer)) and save_embedding_layers=True"
        )
    return TokenizerPlan(
        changed=True, rows=rows, notes=(f"the adapter adds {len(added)} tokens: its tokenizer is used",)
    )


def _require_train_extra() -> None:
    missing = []
    for module in ("torch", "transformers", "peft", "safetensors"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ModelDirError(f"merge needs the train extra ({', '.join(missing)} missing): {INSTALL_HINT}")


def merge_adapter(
    base_dir: Path | str,
    adapter_dir: Path | str,
    out_dir: Path | str,
    *,
    force: bool = False,
    device: str | None = None,
    max_model_len: int | None = None,
    log: Callable[[str], None] | None = None,
) -> MergeResult:
    """Merge ``adapter_dir`` into ``base_dir`` and write a verified model to ``out_dir``."""
    start = time.perf_counter()
    say = log or (lambda message: print(message, file=sys.stderr))
    base_path, adapter_path, out = Path(base_dir), Path(adapter_dir), Path(out_dir)
    # 1. everything that can be refused without torch
    if out.exists() and not force:
        raise ModelDirError(f"{out} exists; pass --force to replace it (it is replaced only after the merge verifies)")
    if out.resolve() in (base_path.resolve(), adapter_path.resolve()):
        raise ModelDirError("--out must be a new directory, not the base or the adapter")
    adapter = read_adapter(adapter_path)
    if str(adapter.config.get("peft_type", "")).upper() != "LORA":
        raise MergeError(f"only LoRA adapters are merged; this one is {adapter.config.get('peft_type')!r}")
    base = inspect_dir(base_path)
    fatal = [f for f in base.findings if f.severity == "error"]
    if fatal or base.config is None:
        first = fatal[0] if fatal else None
        raise ModelDirError(
            f"the base {base_path} is not a sound model directory"
            + (f": {first.code}: {first.message}" if first else "")
            + f" (run: python -m kochallenge_data doctor {base_path})"
        )
    problems = adapter_mismatches(adapter, base.weights.tensors)
    if problems:
        recorded = adapter.config.get("base_model_name_or_path")
        raise MergeError(
            f"the adapter does not belong to {base_path} (it was trained on {recorded!r}): "
            + "; ".join(problems[:3])
            + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        )
    rows_name = next((n for n in base.weights.tensors if VOCAB_TENSOR.search(n) and "lm_head" not in n), None)
    base_rows = base.weights.tensors[rows_name].shape[0] if rows_name else as_int(base.text.get("vocab_size")) or 0
    plan = plan_tokenizer(base, adapter_path, adapter, base_rows)
    _require_train_extra()
    for note in plan.notes:
        say(note)

    tmp = out.parent / f".{out.name}.merging-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        merged = _merge_and_save(base_path, adapter_path, tmp, plan, base, device, say)
        files = _write_metadata(base_path, adapter_path, tmp, plan, base)
        say("reloading the merged directory and comparing logits with the unmerged model")
        verification = _verify(tmp, merged)
        saved_dtype, device_used = merged.saved_dtype, merged.device
        say("checking the merged directory with doctor")
        report = doctor(tmp, base=base_path, max_model_len=max_model_len)
        errors = report.errors
        if errors:
            listed = "; ".join(f"{f.code}: {f.message}" for f in errors[:3])
            raise MergeError(f"the merged model fails the doctor ({len(errors)} errors): {listed}")
        length = max_model_len or derived_max_len(base.text) or 0
        final = out.resolve()
        command = f"vllm serve {final} --dtype {saved_dtype}" + (f" --max-model-len {length}" if length else "")
        merge_report = {
            "tool": "kochallenge_data merge",
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "base": {"path": str(base_path.resolve()), "config_sha256": _sha256(base_path / "config.json")},
            "adapter": {
                "path": str(adapter_path.resolve()),
                "sha256": _sha256(adapter.weights_file),
                "base_model_name_or_path": adapter.config.get("base_model_name_or_path"),
                "r": adapter.config.get("r"),
                "lora_alpha": adapter.config.get("lora_alpha"),
                "target_modules": adapter.config.get("target_modules"),
            },
            "out": str(final),
            "device": device_used,
            "merge_dtype": "float32",
            "saved_dtype": saved_dtype,
            "tokenizer_changed": plan.changed,
            "embedding_rows": plan.rows,
            "files": files,
            "verification": verification,
            "doctor": {
                "exit_code": report.exit_code(),
                "warnings": [f"{f.code}: {f.file}: {f.message}" for f in report.warnings],
            },
            "versions": _versions(),
            "seconds": round(time.perf_counter() - start, 2),
            "vllm_command": command,
        }
        (tmp / "merge_report.json").write_text(
            json.dumps(merge_report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        _move_into_place(tmp, out, force=force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.model_dir = str(out)
    return MergeResult(
        out=out,
        report=merge_report,
        doctor=report,
        vllm_command=command,
        seconds=time.perf_counter() - start,
        notes=list(plan.notes),
    )


def _versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}


def _move_into_place(tmp: Path, out: Path, *, force: bool) -> None:
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


def _probe_ids(tokenizer: Any) -> list[int]:
    ids: list[int] = list(tokenizer.encode(PROBE, add_special_tokens=True))
    return ids[:32]


@dataclass
class _Merged:
    """What the verification compares against."""

    ids: list[int]
    reference: Any
    base_logits: Any
    saved_dtype: str
    device: str


def _merge_and_save(
    base_path: Path,
    adapter_path: Path,
    tmp: Path,
    plan: TokenizerPlan,
    base: Inspection,
    device: str | None,
    say: Callable[[str], None],
) -> _Merged:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device_used = device or ("cuda" if torch.cuda.is_available() else "cpu")
    saved_dtype = config_dtype(base.config or {})
    if saved_dtype not in ("float32", "bfloat16", "float16"):
        counts = base.weights.dtypes()
        dominant = max(counts, key=lambda k: counts[k]) if counts else "F32"
        saved_dtype = TORCH_DTYPE_NAMES.get(dominant, "float32")
    target_dtype = getattr(torch, saved_dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_path if plan.changed else base_path))
    ids = _probe_ids(tokenizer)
    if not ids or max(ids) >= plan.rows:
        raise MergeError(f"the probe encodes to ids {ids[:8]} that do not fit {plan.rows} embedding rows")
    say(f"loading {base_path} in float32 on {device_used}")
    model: Any = AutoModelForCausalLM.from_pretrained(str(base_path), dtype=torch.float32)
    if int(model.get_input_embeddings().weight.shape[0]) != plan.rows:
        model.resize_token_embeddings(plan.rows, mean_resizing=False)
    model.to(device_used)
    inputs = torch.tensor([ids], device=device_used)
    with torch.no_grad():
        base_logits = model(inputs).logits.float().cpu()
    say(f"applying {adapter_path} and merging")
    peft_model = PeftModel.from_pretrained(model, str(adapter_path))
    peft_model.train(False)
    with torch.no_grad():
        reference = peft_model(inputs).logits.float().cpu()
    merged = peft_model.merge_and_unload(safe_merge=True)
    merged = merged.to(device="cpu", dtype=target_dtype)
    say(f"saving merged weights as {saved_dtype}")
    merged.save_pretrained(str(tmp), max_shard_size="5GB")
    return _Merged(ids=ids, reference=reference, base_logits=base_logits, saved_dtype=saved_dtype, device=device_used)


def _verify(tmp: Path, merged: _Merged) -> dict[str, Any]:
    """Reload OUT as a server would and compare its logits with the unmerged model's."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tmp))
    if _probe_ids(tokenizer) != merged.ids:
        raise MergeError("the merged directory's tokenizer encodes the probe differently from the training tokenizer")
    reloaded: Any = AutoModelForCausalLM.from_pretrained(str(tmp), dtype=torch.float32)
    with torch.no_grad():
        got = reloaded(torch.tensor([merged.ids])).logits.float()
    reference = merged.reference
    diff = float((got - reference).abs().max())
    scale = float(reference.abs().max())
    half = merged.saved_dtype != "float32"
    tolerance = (2e-2 + 5e-2 * scale) if half else (1e-4 + 1e-3 * scale)
    agreement = float((got.argmax(-1) == reference.argmax(-1)).float().mean())
    verification = {
        "probe_tokens": len(merged.ids),
        "max_abs_logit_diff": round(diff, 6),
        "tolerance": round(tolerance, 6),
        "top1_agreement": round(agreement, 4),
        "max_abs_change_vs_base": round(float((reference - merged.base_logits).abs().max()), 6),
    }
    if not diff <= tolerance:  # also catches NaN
        raise MergeError(
            f"the reloaded merge does not reproduce the adapter: max logit difference {diff:.4g} > {tolerance:.4g} "
            "(a wrong base, a quantized base, or an unsupported LoRA variant)"
        )
    return verification


def _write_metadata(
    base_path: Path, adapter_path: Path, tmp: Path, plan: TokenizerPlan, base: Inspection
) -> dict[str, Any]:
    """Replace what save_pretrained wrote with the base's files (edited only where the weights need it)."""
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
    generated = tmp / "generation_config.json"
    if base.dir.has("generation_config.json"):
        shutil.copyfile(base.dir.files["generation_config.json"], generated)
        copied.append("generation_config.json")
    elif generated.exists():
        generated.unlink()
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
