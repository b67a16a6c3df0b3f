"""merge on tiny real models: the result passes the doctor, keeps the base metadata, refuses what is unsafe;
the base fingerprint it checks (no torch)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from kochallenge_data.errors import KochallengeError
from kochallenge_data.ml.doctor import FATAL_CODES, doctor, format_report
from kochallenge_data.ml.fingerprint import (
    SAMPLE_BYTES,
    FingerprintError,
    base_fingerprint,
    compare_fingerprints,
    data_offset,
    normalise_config,
    pick_sample,
    sample_spans,
)
from kochallenge_data.ml.merge import AdapterInfo, adapter_mismatches, module_name
from kochallenge_data.ml.safetensors_header import TensorInfo, read_header

from .helpers import edit_json, llama_tensors, make_model_dir, run_cli, write_safetensors

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
    assert "--enable-lora --lora-modules" in stdout, "both ways to serve are printed: merged, and base plus adapter"
    assert "base not verified" in stdout  # an adapter folder with no train_config.json beside it
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


# --- the train folder, the base fingerprint, token adapters, shards (issue 11) -------------------


# what train writes in --prompt-mode chat-template: exact (no newline added), Korean, no final newline
TRAINED_PROMPT = (
    "{#- exact -#}<|im_start|>system\n{{ instruction }}<|im_end|>\n<|im_start|>user\n{{ input }}<|im_end|>\n"
    "<|im_start|>assistant\n오늘의 챌린지:"
)


def _train_folder(root: Path, adapter: Path, base: Path, *, prompt: str | None = TRAINED_PROMPT) -> Path:
    """What train --out leaves, as far as merge reads it: RUN/adapter, RUN/train_config.json, RUN/prompt.j2."""
    run = root / "run"
    shutil.copytree(adapter, run / "adapter")
    config = {"base": str(base), "base_fingerprint": base_fingerprint(base)}
    (run / "train_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    if prompt is not None:
        (run / "prompt.j2").write_bytes(prompt.encode("utf-8"))
    return run


def _perturbed_adapter(base: Path, out: Path, **lora: Any) -> Path:
    """A LoRA adapter whose every trainable tensor (LoRA, token rows, saved modules, DoRA magnitudes) moved."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    options: dict[str, Any] = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"], **lora}
    peft_model = get_peft_model(model, LoraConfig(init_lora_weights=False, **options))
    with torch.no_grad():
        for param in peft_model.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * (0.3 * float(param.abs().mean()) + 0.05))
    peft_model.save_pretrained(str(out))
    return out


def _probe_token_ids(model_dir: Path) -> list[int]:
    from transformers import AutoTokenizer

    from kochallenge_data.ml.doctor import PROBE

    ids: list[int] = AutoTokenizer.from_pretrained(str(model_dir)).encode(PROBE)[:32]
    return ids


@pytest.fixture(scope="module")
def twin_base(tiny: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second base of exactly the base's shapes and tokenizer, with other weights."""
    from transformers import AutoTokenizer

    from ..tiny_model import make_model, save

    tokenizer = AutoTokenizer.from_pretrained(str(tiny.base))
    return save(make_model(len(tokenizer), seed=1), tokenizer, tmp_path_factory.mktemp("twin") / "twin_base")


@pytest.fixture(scope="module")
def train_run(tiny: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train_folder(tmp_path_factory.mktemp("train"), tiny.adapter, tiny.base)


@pytest.mark.train
def test_merge_takes_the_train_folder_and_verifies_the_base(train_run: Path, tiny: Any, tmp_path: Path) -> None:
    out = tmp_path / "merged"
    code, stdout, err = run_cli(["merge", "--base", str(tiny.base), "--adapter", str(train_run), "--out", str(out)])
    assert code == 0, err
    assert f"using the adapter in {train_run / 'adapter'}" in err
    assert "base verified" in stdout
    report = json.loads((out / "merge_report.json").read_text())
    assert report["adapter"]["path"] == str((train_run / "adapter").resolve())
    check = report["base_check"]
    assert check["status"] == "verified" and check["recorded_in"] == str(train_run / "train_config.json")
    assert check["note"].startswith("base verified")
    # the same merge as from the adapter folder itself: the weights do not depend on how it was found
    from kochallenge_data.ml.merge import merge_adapter

    again = merge_adapter(tiny.base, train_run / "adapter", tmp_path / "again", log=lambda _: None)
    assert again.report["base_check"]["status"] == "verified"
    assert (out / "model.safetensors").read_bytes() == (tmp_path / "again" / "model.safetensors").read_bytes()


@pytest.mark.train
def test_the_trained_prompt_is_carried_into_the_merged_model(train_run: Path, tiny: Any, tmp_path: Path) -> None:
    from kochallenge_data.prompt import load_prompt_layout

    out = tmp_path / "merged"
    code, _, err = run_cli(["merge", "--base", str(tiny.base), "--adapter", str(train_run), "--out", str(out)])
    assert code == 0, err
    assert (out / "prompt.j2").read_bytes() == (train_run / "prompt.j2").read_bytes()
    report = json.loads((out / "merge_report.json").read_text())
    assert report["files"]["from_train_run"] == ["prompt.j2", "train_config.json"]  # serve reads max_new_tokens there
    assert "prompt.j2" not in report["files"]["copied_from_base"]
    assert report["prompt_template"]["from"] == str((train_run / "prompt.j2").resolve())
    checked = doctor(out, base=tiny.base, load=True)
    assert checked.exit_code() == 0 and not checked.warnings, format_report(checked)
    assert not [f for f in checked.findings if "prompt.j2" in f.file], format_report(checked)
    assert load_prompt_layout(out / "prompt.j2").exact  # what serve loads from MODEL_DIR/prompt.j2


@pytest.mark.train
def test_the_trained_prompt_is_found_beside_the_adapter_and_wins_over_the_base_one(
    tiny: Any, copy_of: Any, tmp_path: Path
) -> None:
    from kochallenge_data.ml.merge import merge_adapter

    run = _train_folder(tmp_path, tiny.adapter, tiny.base)
    base = copy_of(tiny.base, "base_with_prompt")
    (base / "prompt.j2").write_text("### 지시문:\n{{ instruction }}\n\n### 입력:\n{{ input }}\n\n### 응답:\n")
    result = merge_adapter(base, run / "adapter", tmp_path / "merged", log=lambda _: None)
    assert (result.out / "prompt.j2").read_bytes() == TRAINED_PROMPT.encode("utf-8")
    assert result.report["files"]["from_train_run"] == ["prompt.j2", "train_config.json"]


@pytest.mark.train
def test_an_adapter_without_a_prompt_gives_no_prompt(merged: Path, tiny: Any, tmp_path: Path) -> None:
    assert not (tiny.adapter.parent / "prompt.j2").exists()
    assert not (merged / "prompt.j2").exists()
    report = json.loads((merged / "merge_report.json").read_text())
    assert report["files"]["from_train_run"] == [] and report["prompt_template"] is None
    # a train folder without prompt.j2 (a run from before train wrote it) merges without one too
    from kochallenge_data.ml.merge import locate_adapter

    assert locate_adapter(_train_folder(tmp_path, tiny.adapter, tiny.base, prompt=None)).prompt is None


@pytest.mark.train
def test_adapter_without_a_recorded_fingerprint_is_merged_as_not_verified(merged: Path) -> None:
    report = json.loads((merged / "merge_report.json").read_text())
    assert report["base_check"]["status"] == "not_verified"
    assert "train_config.json" in report["base_check"]["reason"]
    assert report["base_check"]["note"].startswith("base not verified")


@pytest.mark.train
def test_a_base_of_the_same_shape_with_other_weights_is_refused(
    train_run: Path, twin_base: Path, tmp_path: Path
) -> None:
    out = tmp_path / "merged"
    args = ["merge", "--base", str(twin_base), "--adapter", str(train_run), "--out", str(out)]
    code, _, err = run_cli(args)
    assert code == 1 and "Traceback" not in err
    assert "is not the base the adapter was trained on" in err
    assert "tensor model.embed_tokens.weight has other values" in err
    assert "--allow-base-mismatch" in err
    assert not out.exists()

    code, stdout, err = run_cli([*args, "--allow-base-mismatch"])
    assert code == 0, err
    assert "base MISMATCH allowed" in stdout
    check = json.loads((out / "merge_report.json").read_text())["base_check"]
    assert check["status"] == "mismatch_allowed"
    assert any("tensor lm_head.weight has other values" in d for d in check["differences"])


@pytest.mark.train
def test_a_base_with_another_config_is_refused_naming_the_key(tiny: Any, copy_of: Any, tmp_path: Path) -> None:
    run = _train_folder(tmp_path, tiny.adapter, tiny.base)
    base = copy_of(tiny.base, "base_eps")
    edit_json(base / "config.json", lambda c: c.update(rms_norm_eps=1e-5))
    code, _, err = run_cli(["merge", "--base", str(base), "--adapter", str(run), "--out", str(tmp_path / "o")])
    assert code == 1 and "config.json rms_norm_eps: 1e-06 when trained, 1e-05 here" in err


ADAPTER_KINDS: dict[str, dict[str, Any]] = {
    "trainable_tokens": {},  # the token ids are the probe's, filled in by the fixture
    "modules_to_save": {"modules_to_save": ["lm_head"]},
    "dora": {"use_dora": True},
    "embedding_lora": {"target_modules": ["q_proj", "embed_tokens"]},
    "rslora_alpha_pattern": {"use_rslora": True, "alpha_pattern": {"v_proj": 32}, "rank_pattern": {"v_proj": 2}},
}


@pytest.fixture(scope="module", params=sorted(ADAPTER_KINDS))
def special_merge(request: pytest.FixtureRequest, tiny: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from kochallenge_data.ml.merge import merge_adapter

    kind: str = request.param
    root = tmp_path_factory.mktemp(kind)
    options = dict(ADAPTER_KINDS[kind])
    if kind == "trainable_tokens":
        options["trainable_token_indices"] = sorted(set(_probe_token_ids(tiny.base)))[:5]
    adapter = _perturbed_adapter(tiny.base, root / "adapter", **options)
    result = merge_adapter(tiny.base, adapter, root / "merged", log=lambda _: None)
    return kind, adapter, result


@pytest.mark.train
def test_special_adapters_merge_with_the_unmerged_logits(special_merge: Any, tiny: Any) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    kind, adapter, result = special_merge
    ids = torch.tensor([_probe_token_ids(tiny.base)])
    base = AutoModelForCausalLM.from_pretrained(str(tiny.base), dtype=torch.float32)
    with torch.no_grad():
        before = base(ids).logits
        reference = PeftModel.from_pretrained(base, str(adapter))(ids).logits
        got = AutoModelForCausalLM.from_pretrained(str(result.out), dtype=torch.float32)(ids).logits
    scale = float(reference.abs().max())
    assert float((reference - before).abs().max()) > 0.1 * scale, kind  # the adapter changes the output
    assert float((got - reference).abs().max()) <= 2e-2 + 2e-2 * scale, kind
    assert bool((got.argmax(-1) == reference.argmax(-1)).float().mean() >= 0.9), kind
    assert result.report["verification"]["max_abs_logit_diff"] <= result.report["verification"]["tolerance"]
    assert doctor(result.out, base=tiny.base).exit_code() == 0


@pytest.mark.train
@pytest.mark.parametrize("special_merge", ["modules_to_save", "trainable_tokens"], indirect=True)
def test_token_rows_and_saved_modules_are_exact(special_merge: Any, tiny: Any) -> None:
    import torch
    from safetensors import safe_open

    kind, adapter, result = special_merge
    config = json.loads((adapter / "adapter_config.json").read_text())
    with (
        safe_open(str(result.out / "model.safetensors"), "pt") as merged,
        safe_open(str(tiny.base / "model.safetensors"), "pt") as base,
        safe_open(str(adapter / "adapter_model.safetensors"), "pt") as saved,
    ):
        if kind == "trainable_tokens":
            rows = config["trainable_token_indices"]
            delta = saved.get_tensor("base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta")
            embedding, original = (
                merged.get_tensor("model.embed_tokens.weight"),
                base.get_tensor("model.embed_tokens.weight"),
            )
            assert torch.equal(embedding[rows], delta.to(torch.bfloat16))
            others = [i for i in range(original.shape[0]) if i not in rows]
            assert torch.equal(embedding[others], original[others])
            assert torch.equal(merged.get_tensor("lm_head.weight"), base.get_tensor("lm_head.weight"))
        else:
            head = saved.get_tensor("base_model.model.lm_head.weight")
            assert torch.equal(merged.get_tensor("lm_head.weight"), head.to(torch.bfloat16))
        # tensors the adapter does not touch are copied byte for byte
        assert torch.equal(merged.get_tensor("model.norm.weight"), base.get_tensor("model.norm.weight"))


@pytest.mark.train
def test_max_shard_size_gives_shards_the_doctor_accepts(tiny: Any, merged: Path, tmp_path: Path) -> None:
    import torch
    from safetensors import safe_open

    out = tmp_path / "sharded"
    args = ["merge", "--base", str(tiny.base), "--adapter", str(tiny.adapter), "--out", str(out)]
    code, _, err = run_cli([*args, "--max-shard-size", "20KB"])
    assert code == 0, err
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 3 and not (out / "model.safetensors").exists()
    assert shards == json.loads((out / "merge_report.json").read_text())["shards"]
    report = doctor(out, base=tiny.base, load=True)
    assert report.exit_code() == 0, format_report(report)
    # the same tensors as the one-file merge, bit for bit
    with safe_open(str(merged / "model.safetensors"), "pt") as whole:
        assert sorted(whole.keys()) == sorted(index["weight_map"])
        for name, shard in index["weight_map"].items():
            with safe_open(str(out / shard), "pt") as part:
                assert torch.equal(part.get_tensor(name), whole.get_tensor(name)), name


def test_a_bad_max_shard_size_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = run_cli(
        ["merge", "--base", "b", "--adapter", "a", "--out", str(tmp_path / "o"), "--max-shard-size", "5 gigs"]
    )
    assert code == 2 and "5 gigs" in err and "5GB" in err


def test_sizes_and_shard_plans() -> None:
    from kochallenge_data.ml.merge import parse_size, plan_shards

    assert parse_size("5GB") == 5 * 10**9
    assert parse_size("500mb") == 500 * 10**6
    assert parse_size("2GiB") == 2 * 2**30
    assert parse_size("1.5KB") == 1500
    assert parse_size("4096") == 4096
    for bad in ("", "GB", "-1GB", "0", "5 GBs"):
        with pytest.raises(ValueError):
            parse_size(bad)
    assert plan_shards([4, 4, 4, 4], 8) == [[0, 1], [2, 3]]
    assert plan_shards([3, 20, 3], 8) == [[0], [1], [2]]  # a tensor bigger than the limit gets its own shard
    assert plan_shards([], 8) == [[]]


def test_adapter_keys_of_peft_0_21_are_classified() -> None:
    from kochallenge_data.ml.merge import classify_key

    def kind(key: str) -> tuple[str, str]:
        tensor = classify_key("base_model.model." + key)
        return tensor.kind, tensor.target

    assert kind("model.layers.0.self_attn.q_proj.lora_A.weight") == ("lora_A", "model.layers.0.self_attn.q_proj.weight")
    assert kind("lm_head.lora_B.bias") == ("lora_B_bias", "lm_head.bias")
    assert kind("model.embed_tokens.lora_embedding_A") == ("lora_embedding_A", "model.embed_tokens.weight")
    assert kind("model.layers.0.self_attn.q_proj.lora_magnitude_vector") == (
        "magnitude",
        "model.layers.0.self_attn.q_proj.weight",
    )
    assert kind("model.embed_tokens.token_adapter.trainable_tokens_delta") == (
        "token_rows",
        "model.embed_tokens.weight",
    )
    assert kind("lm_head.weight") == ("full", "lm_head.weight")  # modules_to_save
    assert kind("model.embed_tokens.base_layer.weight") == ("full", "model.embed_tokens.weight")
    assert kind("model.layers.0.self_attn.q_proj.base_layer.bias") == ("full", "model.layers.0.self_attn.q_proj.bias")
    assert kind("model.layers.0.mlp.up_proj.lora_diag") == ("unknown", "model.layers.0.mlp.up_proj.lora_diag")


def test_trainable_token_adapter_fits_the_base_from_headers() -> None:
    base = {
        "model.embed_tokens.weight": TensorInfo("e", "BF16", (400, 32), 0, 25600),
        "lm_head.weight": TensorInfo("h", "BF16", (400, 32), 25600, 51200),
    }

    def adapter(tensors: dict[str, tuple[int, ...]], **config: Any) -> AdapterInfo:
        infos = {k: TensorInfo(k, "F32", shape, 0, 0) for k, shape in tensors.items()}
        return AdapterInfo(Path("."), {"peft_type": "LORA", **config}, Path("x"), infos)

    tokens = adapter({"base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta": (3, 32)})
    assert adapter_mismatches(tokens, base) == []
    wide = adapter({"base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta": (3, 48)})
    assert "does not fit" in adapter_mismatches(wide, base)[0]
    head = adapter({"base_model.model.lm_head.weight": (400, 32)})
    assert adapter_mismatches(head, base) == []
    tied = {"model.embed_tokens.weight": base["model.embed_tokens.weight"]}
    assert any("ties lm_head" in problem for problem in adapter_mismatches(head, tied))


def test_token_indices_and_scaling_follow_peft() -> None:
    from kochallenge_data.ml.merge import lora_scaling, token_indices

    assert token_indices({"trainable_token_indices": [5, 3]}, "model.embed_tokens", 2) == (5, 3)
    spec = {"trainable_token_indices": {"embed_tokens": [1], "lm_head": [2, 4]}}
    assert token_indices(spec, "lm_head", 2) == (2, 4)
    with pytest.raises(KochallengeError, match="2 ids"):
        token_indices({"trainable_token_indices": [1, 2]}, "model.embed_tokens", 3)
    with pytest.raises(KochallengeError, match="trainable_token_indices"):
        token_indices({}, "model.embed_tokens", 1)
    assert lora_scaling({"lora_alpha": 16}, "model.layers.0.self_attn.q_proj", 8) == 2.0
    assert lora_scaling({"lora_alpha": 16, "use_rslora": True}, "x.q_proj", 4) == 8.0
    assert lora_scaling({"lora_alpha": 16, "alpha_pattern": {"v_proj": 4}}, "model.layers.1.self_attn.v_proj", 2) == 2.0


def test_unsupported_lora_variants_are_named() -> None:
    from kochallenge_data.ml.merge import unsupported_features

    plain = AdapterInfo(Path("."), {"peft_type": "LORA", "use_dora": True}, Path("x"), {})
    assert unsupported_features(plain) == []
    replicated = AdapterInfo(Path("."), {"peft_type": "LORA", "layer_replication": [[0, 2]]}, Path("x"), {})
    assert "layer_replication" in unsupported_features(replicated)[0]


def test_the_train_folder_is_found_from_either_path(tmp_path: Path) -> None:
    from kochallenge_data.ml.merge import locate_adapter

    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapter_config.json").write_text("{}")
    (run / "train_config.json").write_text("{}")
    given_run, given_adapter = locate_adapter(run), locate_adapter(run / "adapter")
    assert given_run.adapter_dir == given_adapter.adapter_dir == run / "adapter"
    assert given_run.train_config == given_adapter.train_config == run / "train_config.json"
    assert given_run.run_dir_given and not given_adapter.run_dir_given
    assert given_run.prompt is None
    (run / "prompt.j2").write_text("{{ instruction }} {{ input }}")
    assert locate_adapter(run).prompt == locate_adapter(run / "adapter").prompt == run / "prompt.j2"
    elsewhere = tmp_path / "lora"
    elsewhere.mkdir()
    (elsewhere / "adapter_config.json").write_text("{}")
    assert locate_adapter(elsewhere).train_config is None


def test_a_run_folder_without_its_adapter_says_so(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "train_config.json").write_text("{}")
    code, _, err = run_cli(["merge", "--base", str(tmp_path), "--adapter", str(run), "--out", str(tmp_path / "o")])
    assert code == 2 and "did training finish" in err


# --- the base fingerprint (no torch) ------------------------------------------------------------


def _flip_byte(path: Path, tensor: str, at: int = 0) -> None:
    header = read_header(path)
    position = data_offset(header, header.tensors[tensor]) + at
    with open(path, "r+b") as handle:
        handle.seek(position)
        byte = handle.read(1)
        handle.seek(position)
        handle.write(bytes([byte[0] ^ 0x01]))


def test_the_fingerprint_is_stable_across_key_order_and_writer_details(tmp_path: Path) -> None:
    base = make_model_dir(tmp_path / "base")
    before = base_fingerprint(base)
    config = json.loads((base / "config.json").read_text())
    rewritten = dict(reversed(list(config.items())))
    rewritten.update(transformers_version="4.57.0", _name_or_path="/elsewhere", use_cache=False, pad_token_id=2)
    rewritten["torch_dtype"] = rewritten.pop("dtype")
    (base / "config.json").write_text(json.dumps(rewritten, indent=4))
    after = base_fingerprint(base)
    assert after == before
    assert compare_fingerprints(before, after) == []
    assert json.loads(json.dumps(before)) == before  # JSON-ready, as train writes it


def test_one_changed_byte_of_a_sampled_tensor_is_named(tmp_path: Path) -> None:
    base = make_model_dir(tmp_path / "base")
    before = base_fingerprint(base)
    assert "model.norm.weight" in before["tensors"]
    _flip_byte(base / "model.safetensors", "model.norm.weight", at=5)
    after = base_fingerprint(base)
    assert after["tensors"]["model.norm.weight"]["sha256"] != before["tensors"]["model.norm.weight"]["sha256"]
    differences = compare_fingerprints(before, after)
    assert len(differences) == 1 and "tensor model.norm.weight has other values" in differences[0]


def test_a_config_difference_names_the_key(tmp_path: Path) -> None:
    base = make_model_dir(tmp_path / "base")
    before = base_fingerprint(base)
    edit_json(base / "config.json", lambda c: c.update(rms_norm_eps=1e-5, rope_parameters={"rope_theta": 5e5}))
    differences = compare_fingerprints(before, base_fingerprint(base))
    assert "config.json rms_norm_eps: 1e-06 when trained, 1e-05 here" in differences
    assert any(d.startswith("config.json rope_parameters.rope_theta: 10000.0") for d in differences)
    assert any(
        d.startswith('config.json rope_parameters.rope_type: "default" when trained, absent') for d in differences
    )


def test_a_cast_copy_and_another_architecture_are_told_apart(tmp_path: Path) -> None:
    base = make_model_dir(tmp_path / "base")
    recorded = base_fingerprint(base)
    cast = tmp_path / "cast"
    make_model_dir(cast)
    tensors = llama_tensors(vocab=320, hidden=32, layers=2, heads=4, kv_heads=2, inter=64, dtype="F32")
    write_safetensors(cast / "model.safetensors", tensors)
    assert any("is F32 here, BF16 when trained" in d for d in compare_fingerprints(recorded, base_fingerprint(cast)))
    deeper = make_model_dir(tmp_path / "deeper", layers=4)
    differences = compare_fingerprints(recorded, base_fingerprint(deeper))
    assert "config.json num_hidden_layers: 2 when trained, 4 here" in differences
    assert any("tensors differ in names" in d for d in differences)


def test_sharded_and_single_file_bases_fingerprint_alike(tmp_path: Path) -> None:
    single = base_fingerprint(make_model_dir(tmp_path / "single"))
    sharded = base_fingerprint(make_model_dir(tmp_path / "sharded", sharded=True))
    assert compare_fingerprints(single, sharded) == []


def test_a_7b_base_reads_a_few_mebibytes(tmp_path: Path) -> None:
    base = make_model_dir(tmp_path / "base")
    big = llama_tensors(vocab=32000, hidden=4096, layers=32, heads=32, kv_heads=32, inter=11008)
    write_safetensors(base / "model.safetensors", big, sparse=True)  # 13.5 GB, stored as holes
    fingerprint = base_fingerprint(base)
    assert list(fingerprint["tensors"]) == [
        "model.embed_tokens.weight",
        "model.layers.16.mlp.down_proj.weight",
        "model.norm.weight",
        "lm_head.weight",
    ]
    assert sum(t["bytes_hashed"] for t in fingerprint["tensors"].values()) <= 4 * SAMPLE_BYTES
    assert fingerprint["tensor_count"] == len(big)


def test_samples_and_spans() -> None:
    assert sample_spans(100) == [(0, 100)]
    spans = sample_spans(10**9)
    assert sum(length for _, length in spans) <= SAMPLE_BYTES and spans[0][0] == 0 and sum(spans[-1]) == 10**9
    odd = {n: TensorInfo(n, "F32", (4, 4), 0, 64) for n in ("a.x", "b.y", "c.z", "d.w")}
    assert pick_sample(odd) == ["a.x", "c.z", "d.w"]  # an unknown layout: first, middle, last


def test_normalise_drops_nulls_and_writer_keys_at_every_depth() -> None:
    config = {"b": 1, "a": None, "text_config": {"dtype": "bfloat16", "hidden_size": 8}, "transformers_version": "5"}
    assert normalise_config(config) == {"b": 1, "text_config": {"hidden_size": 8}}


def test_versions_and_missing_weights(tmp_path: Path) -> None:
    assert "cannot be compared" in compare_fingerprints({"version": 0}, {"version": 1})[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    with pytest.raises(FingerprintError, match="no safetensors weights"):
        base_fingerprint(empty)
    with pytest.raises(FingerprintError, match=r"no config\.json"):
        base_fingerprint(tmp_path)
