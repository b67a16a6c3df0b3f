"""merge on tiny real models: the result passes the doctor, keeps the base metadata, refuses what is unsafe."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from kochallenge_data.errors import KochallengeError
from kochallenge_data.ml.doctor import FATAL_CODES, doctor, format_report
from kochallenge_data.ml.merge import AdapterInfo, adapter_mismatches, module_name
from kochallenge_data.ml.safetensors_header import TensorInfo

from .helpers import edit_json, run_cli

METADATA = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json")


@pytest.fixture(scope="module")
def merged(tiny: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kochallenge_data.ml.merge import merge_adapter

    out = tmp_path_factory.mktemp("merge") / "merged"
    merge_adapter(tiny.base, tiny.adapter, out, log=lambda _: None)
    return out


@pytest.mark.train
def test_merge_passes_the_doctor(merged: Path, tiny: Any) -> None:
    report = doctor(merged, base=tiny.base, load=True)
    assert report.exit_code() == 0, format_report(report)
    assert not report.warnings, format_report(report)
    assert "trainer_leftover" not in report.codes


@pytest.mark.train
def test_merge_keeps_base_metadata_byte_identical(merged: Path, tiny: Any) -> None:
    for name in METADATA:
        assert (merged / name).read_bytes() == (tiny.base / name).read_bytes(), name
    config = json.loads((merged / "config.json").read_text())
    assert config.get("pad_token_id") is None and config["use_cache"] is True


@pytest.mark.train
def test_merge_casts_to_base_dtype_and_has_no_adapter_files(merged: Path) -> None:
    from safetensors import safe_open

    names = sorted(p.name for p in merged.iterdir())
    assert "adapter_config.json" not in names and "adapter_model.safetensors" not in names
    assert not any(n.startswith(".") for n in names)
    with safe_open(str(merged / "model.safetensors"), "pt") as handle:
        keys = list(handle.keys())
        assert not any("lora" in k for k in keys)
        assert {str(handle.get_slice(k).get_dtype()) for k in keys} == {"BF16"}


@pytest.mark.train
def test_merge_report_records_the_verification(merged: Path, tiny: Any) -> None:
    report = json.loads((merged / "merge_report.json").read_text())
    verification = report["verification"]
    assert verification["max_abs_logit_diff"] <= verification["tolerance"]
    assert verification["max_abs_change_vs_base"] > 0  # the adapter did something
    assert report["tokenizer_changed"] is False
    assert report["saved_dtype"] == "bfloat16"
    assert set(METADATA) <= set(report["files"]["copied_from_base"])
    assert report["vllm_command"].startswith(f"vllm serve {merged.resolve()}")
    assert report["doctor"]["exit_code"] == 0


@pytest.mark.train
def test_merged_logits_match_the_unmerged_adapter(merged: Path, tiny: Any) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(merged))
    ids = torch.tensor([tokenizer.encode("오늘의 챌린지 🌱\n텀블러")])
    base = AutoModelForCausalLM.from_pretrained(str(tiny.base), dtype=torch.float32)
    reference = PeftModel.from_pretrained(base, str(tiny.adapter))(ids).logits
    got = AutoModelForCausalLM.from_pretrained(str(merged), dtype=torch.float32)(ids).logits
    assert torch.allclose(got, reference, atol=2e-2 + 5e-2 * float(reference.abs().max()))
    assert bool((got.argmax(-1) == reference.argmax(-1)).float().mean() > 0.9)


@pytest.mark.train
def test_merge_with_resized_vocabulary(tiny: Any, tmp_path: Path) -> None:
    from kochallenge_data.ml.merge import merge_adapter

    out = tmp_path / "merged"
    result = merge_adapter(tiny.base, tiny.adapter_resized, out, log=lambda _: None)
    assert result.report["tokenizer_changed"] is True
    assert result.report["files"]["edited"] == {"config.json": {"vocab_size": [400, 448]}}
    mine, base = json.loads((out / "config.json").read_text()), json.loads((tiny.base / "config.json").read_text())
    assert {k for k in mine if mine[k] != base.get(k)} == {"vocab_size"}
    assert (out / "generation_config.json").read_bytes() == (tiny.base / "generation_config.json").read_bytes()
    assert (out / "tokenizer.json").read_bytes() == (tiny.adapter_resized / "tokenizer.json").read_bytes()
    report = doctor(out, base=tiny.base, load=True)
    assert report.exit_code() == 0, format_report(report)


@pytest.mark.train
def test_existing_out_is_not_overwritten_without_force(merged: Path, tiny: Any) -> None:
    before = (merged / "model.safetensors").stat().st_mtime_ns
    code, _, err = run_cli(["merge", "--base", str(tiny.base), "--adapter", str(tiny.adapter), "--out", str(merged)])
    assert code == 2 and "--force" in err and "Traceback" not in err
    assert (merged / "model.safetensors").stat().st_mtime_ns == before


@pytest.mark.train
def test_force_replaces_out_and_cli_prints_the_vllm_command(tiny: Any, tmp_path: Path) -> None:
    out = tmp_path / "merged"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    args = ["merge", "--base", str(tiny.base), "--adapter", str(tiny.adapter), "--out", str(out)]
    code, stdout, _ = run_cli([*args, "--force", "--max-model-len", "128"])
    assert code == 0, stdout
    assert "vllm serve" in stdout and "--max-model-len 128" in stdout
    assert not (out / "stale.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


@pytest.mark.train
def test_adapter_of_another_base_is_refused(tiny: Any, tmp_path: Path) -> None:
    args = ["merge", "--base", str(tiny.other_base), "--adapter", str(tiny.adapter), "--out", str(tmp_path / "o")]
    code, _, err = run_cli(args)
    assert code == 1 and "does not belong" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.train
def test_changed_eos_is_refused(tiny: Any, copy_of: Any, tmp_path: Path) -> None:
    adapter = copy_of(tiny.adapter)
    edit_json(adapter / "tokenizer_config.json", lambda c: c.update(eos_token="<unk>"))
    code, _, err = run_cli(["merge", "--base", str(tiny.base), "--adapter", str(adapter), "--out", str(tmp_path / "o")])
    assert code == 1 and "eos_token" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.train
def test_added_tokens_without_resized_embeddings_are_refused(tiny: Any, copy_of: Any, tmp_path: Path) -> None:
    adapter = copy_of(tiny.adapter_resized)
    # the adapter's embedding rows stay 400 (the base's), but the tokenizer grows past them
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(adapter))
    tokenizer.add_tokens([f"<extra_{i}>" for i in range(60)])
    tokenizer.save_pretrained(str(adapter))
    code, _, err = run_cli(["merge", "--base", str(tiny.base), "--adapter", str(adapter), "--out", str(tmp_path / "o")])
    assert code == 1 and "rows" in err


@pytest.mark.train
def test_a_model_is_not_an_adapter(tiny: Any, tmp_path: Path) -> None:
    code, _, err = run_cli(
        ["merge", "--base", str(tiny.base), "--adapter", str(tiny.base), "--out", str(tmp_path / "o")]
    )
    assert code == 2 and "adapter_config.json" in err


def test_adapter_mismatch_is_detected_from_headers() -> None:
    base = {"model.layers.0.self_attn.q_proj.weight": TensorInfo("q", "BF16", (32, 32), 0, 2048)}
    adapter = AdapterInfo(
        path=Path("."),
        config={"peft_type": "LORA"},
        weights_file=Path("x"),
        tensors={
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": TensorInfo("a", "F32", (4, 48), 0, 768),
            "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": TensorInfo(
                "b", "F32", (32, 4), 768, 1280
            ),
        },
    )
    problems = adapter_mismatches(adapter, base)
    assert len(problems) == 1 and "lora_A" in problems[0]
    assert module_name("base_model.model.lm_head.modules_to_save.default.weight") == "lm_head.weight"


@pytest.mark.train
def test_trainer_style_merge_is_what_merge_avoids(tiny: Any, merged: Path) -> None:
    # the in-memory merge the trainer leaves: float32, pad = eos, use_cache false; ours has none of it
    plain = doctor(tiny.plain_merge, base=tiny.base)
    assert "trainer_leftover" in plain.codes
    assert not FATAL_CODES & plain.codes
    assert "trainer_leftover" not in doctor(merged, base=tiny.base).codes


@pytest.mark.train
def test_merge_output_passes_fix_unchanged(merged: Path, tiny: Any, copy_of: Any) -> None:
    from kochallenge_data.ml.fix import fix_model_dir

    target = copy_of(merged, "again")
    result = fix_model_dir(target, tiny.base)
    assert result.actions == [] and result.backup is None
    assert result.report is not None and result.report.exit_code() == 0


def test_missing_train_extra_message_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(KochallengeError) as info:
        from kochallenge_data.ml.merge import read_adapter

        read_adapter(tmp_path / "nope")
    assert "\n" not in str(info.value)
    shutil.rmtree(tmp_path, ignore_errors=True)
