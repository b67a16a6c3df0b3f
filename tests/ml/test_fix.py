"""fix: copy base files only where the weights agree, back up, then run the doctor."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from kochallenge_data.ml.doctor import format_report
from kochallenge_data.ml.fix import fix_model_dir

from .helpers import edit_json, llama_tensors, make_model_dir, run_cli, write_safetensors

# --- file-only (no torch) -----------------------------------------------------------------------


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    base = make_model_dir(tmp_path / "base")
    model = make_model_dir(tmp_path / "merged")
    return model, base


def test_broken_eos_is_repaired_and_backed_up(pair: tuple[Path, Path], tmp_path: Path) -> None:
    model, base = pair
    edit_json(model / "tokenizer_config.json", lambda c: c.update(eos_token=" ", tokenizer_file="/tmp/x.json"))
    edit_json(model / "config.json", lambda c: c.update(use_cache=False, pad_token_id=2))
    broken = (model / "tokenizer_config.json").read_bytes()
    result = fix_model_dir(model, base)
    assert result.report is not None
    assert result.report.exit_code() == 0, format_report(result.report)
    assert {a.file for a in result.actions} == {"tokenizer_config.json", "config.json"}
    assert (model / "tokenizer_config.json").read_bytes() == (base / "tokenizer_config.json").read_bytes()
    assert result.backup is not None and (result.backup / "tokenizer_config.json").read_bytes() == broken
    manifest = json.loads((result.backup / "fix_manifest.json").read_text())
    assert {f["file"] for f in manifest["files"]} == {"tokenizer_config.json", "config.json"}


def test_missing_tokenizer_is_restored(pair: tuple[Path, Path]) -> None:
    model, base = pair
    (model / "tokenizer.json").unlink()
    (model / "added_tokens.json").write_text('{"<extra>": 272}', encoding="utf-8")
    result = fix_model_dir(model, base)
    actions = {(a.file, a.action) for a in result.actions}
    assert ("tokenizer.json", "copy") in actions and ("added_tokens.json", "remove") in actions
    assert not (model / "added_tokens.json").exists()
    assert result.backup is not None and (result.backup / "added_tokens.json").exists()
    assert result.report is not None and result.report.exit_code() == 0


def test_resized_weights_keep_their_config_and_tokenizer(pair: tuple[Path, Path]) -> None:
    model, base = pair
    write_safetensors(
        model / "model.safetensors", llama_tensors(vocab=384, hidden=32, layers=2, heads=4, kv_heads=2, inter=64)
    )
    edit_json(model / "config.json", lambda c: c.update(vocab_size=384))
    edit_json(model / "tokenizer_config.json", lambda c: c.update(pad_token="</s>"))
    config_before = (model / "config.json").read_bytes()
    result = fix_model_dir(model, base)
    skipped = {a.file: a.reason for a in result.skipped}
    assert "config.json" in skipped and "384" in skipped["config.json"]
    assert "tokenizer_config.json" in skipped
    assert (model / "config.json").read_bytes() == config_before
    assert result.report is not None and result.report.exit_code() == 0


def test_dry_run_changes_nothing(pair: tuple[Path, Path]) -> None:
    model, base = pair
    edit_json(model / "tokenizer_config.json", lambda c: c.update(eos_token=" "))
    before = (model / "tokenizer_config.json").read_bytes()
    code, out, _ = run_cli(["fix", str(model), "--base", str(base), "--dry-run"])
    assert code == 1 and "would copy" in out
    assert (model / "tokenizer_config.json").read_bytes() == before
    assert not list(model.parent.glob("*.fix-backup-*"))


def test_cli_fix_then_sound(pair: tuple[Path, Path], tmp_path: Path) -> None:
    model, base = pair
    edit_json(model / "generation_config.json", lambda c: c.update(eos_token_id=7))
    code, out, _ = run_cli(["fix", str(model), "--base", str(base), "--backup", str(tmp_path / "bk")])
    assert code == 0, out
    assert (tmp_path / "bk" / "generation_config.json").exists()
    code, out, _ = run_cli(["fix", str(model), "--base", str(base), "--json"])
    assert code == 0 and json.loads(out)["actions"] == []


def test_refuses_adapter_and_unmerged_dirs(pair: tuple[Path, Path], tmp_path: Path) -> None:
    model, base = pair
    tensors = llama_tensors(vocab=320, hidden=32, layers=2, heads=4, kv_heads=2, inter=64)
    tensors["model.layers.0.self_attn.q_proj.lora_A.weight"] = ("BF16", (4, 32))
    write_safetensors(model / "model.safetensors", tensors)
    code, _, err = run_cli(["fix", str(model), "--base", str(base)])
    assert code == 2 and "merge" in err
    code, _, err = run_cli(["fix", str(tmp_path / "none"), "--base", str(base)])
    assert code == 2 and "Error:" in err


def test_other_architecture_is_not_overwritten(tmp_path: Path) -> None:
    base = make_model_dir(tmp_path / "base", hidden=64)
    model = make_model_dir(tmp_path / "merged")
    edit_json(model / "tokenizer_config.json", lambda c: c.update(eos_token=" "))
    result = fix_model_dir(model, base)
    assert not result.actions or all(a.file not in ("config.json", "tokenizer_config.json") for a in result.actions)
    assert result.report is not None and result.report.exit_code() == 1


# --- the team's remedy on real merges (train extra) ----------------------------------------------


@pytest.mark.train
def test_fix_repairs_a_real_broken_merge(tiny: Any, copy_of: Any) -> None:
    from transformers import AutoTokenizer

    model = copy_of(tiny.plain_merge, "broken")
    tokenizer = AutoTokenizer.from_pretrained(str(model))
    tokenizer.eos_token = " "
    tokenizer.save_pretrained(str(model))
    assert "eos_blank" in {f.code for f in fix_model_dir(model, tiny.base, dry_run=True).report.errors}  # type: ignore[union-attr]
    result = fix_model_dir(model, tiny.base)
    assert result.report is not None
    assert result.report.exit_code() == 0, format_report(result.report)
    from kochallenge_data.ml.doctor import doctor

    assert doctor(model, load=True).exit_code() == 0


@pytest.mark.train
def test_fix_does_not_break_a_resized_merge(tiny: Any, copy_of: Any) -> None:
    model = copy_of(tiny.resized_plain_merge, "resized")
    config_before = (model / "config.json").read_bytes()
    tokenizer_before = (model / "tokenizer.json").read_bytes()
    result = fix_model_dir(model, tiny.base)
    assert (model / "config.json").read_bytes() == config_before
    assert (model / "tokenizer.json").read_bytes() == tokenizer_before
    assert {a.file for a in result.skipped} >= {"config.json", "tokenizer.json"}
    assert result.report is not None
    assert result.report.exit_code() == 0, format_report(result.report)
    # what the team used to do: copying the base files blindly breaks it
    blind = copy_of(tiny.resized_plain_merge, "blind")
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny.base / name, blind / name)
    from kochallenge_data.ml.doctor import doctor

    assert "vocab_size_mismatch" in {f.code for f in doctor(blind).errors}
