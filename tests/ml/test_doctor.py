"""doctor on directories built from JSON and hand-written safetensors (no torch needed),
plus the real-tokenizer checks that need the train extra (marked ``train``)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kochallenge_data.ml.doctor import CODES, FATAL_CODES, Finding, doctor, format_report, parse_sentencepiece
from kochallenge_data.ml.safetensors_header import HeaderError, read_header

from .helpers import (
    BYTES,
    SPECIALS,
    WORDS,
    edit_json,
    llama_tensors,
    make_model_dir,
    run_cli,
    sentencepiece_bytes,
    tokenizer_json,
    write_json,
    write_safetensors,
)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return make_model_dir(tmp_path / "model")


def codes(path: Path, **kwargs: Any) -> set[str]:
    return doctor(path, **kwargs).codes


def errors(path: Path, **kwargs: Any) -> set[str]:
    return {f.code for f in doctor(path, **kwargs).errors}


# --- healthy ------------------------------------------------------------------------------------


def test_healthy_directory_passes(model: Path) -> None:
    report = doctor(model)
    assert report.exit_code() == 0, format_report(report)
    assert not report.errors and not report.warnings
    assert report.facts["vocab_size"] == 320
    assert report.facts["eos_token_id"] == 2
    assert report.facts["max_model_len"] == 256


def test_healthy_sharded_directory_passes(tmp_path: Path) -> None:
    path = make_model_dir(tmp_path / "m", sharded=True)
    report = doctor(path)
    assert report.exit_code() == 0, format_report(report)
    assert len(report.facts["shards"]) == 2


def test_identical_base_has_no_differences(model: Path, tmp_path: Path) -> None:
    base = shutil.copytree(model, tmp_path / "base")
    report = doctor(model, base=base)
    assert report.exit_code() == 0
    assert not report.with_code("base_diff_not_allowed")


def test_every_code_is_documented_snake_case() -> None:
    assert set(CODES) >= FATAL_CODES
    for code in CODES:
        assert code.isidentifier() and code == code.lower()
    with pytest.raises(ValueError):
        Finding("no_such_code", "error", "x", "y")


# --- not a model directory (exit 2) -------------------------------------------------------------


def test_missing_path_is_exit_2(tmp_path: Path) -> None:
    report = doctor(tmp_path / "nope")
    assert report.exit_code() == 2 and "not_a_model_dir" in report.codes


def test_file_instead_of_directory_is_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    assert doctor(path).exit_code() == 2


def test_directory_without_config_is_exit_2(model: Path) -> None:
    (model / "config.json").unlink()
    report = doctor(model)
    assert report.exit_code() == 2 and "not_a_model_dir" in report.codes


def test_malformed_config_is_exit_2(model: Path) -> None:
    (model / "config.json").write_text('{"vocab_size": 3', encoding="utf-8")
    report = doctor(model)
    assert report.exit_code() == 2 and "config_unreadable" in report.codes


def test_adapter_directory_is_exit_2(tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    write_json(adapter / "adapter_config.json", {"peft_type": "LORA", "r": 4})
    write_safetensors(
        adapter / "adapter_model.safetensors",
        {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": ("F32", (4, 32))},
    )
    report = doctor(adapter)
    assert report.exit_code() == 2
    assert "adapter_dir" in report.codes
    assert "merge --base" in report.with_code("adapter_dir")[0].fix


def test_adapter_files_next_to_weights(model: Path) -> None:
    write_json(model / "adapter_config.json", {"peft_type": "LORA"})
    assert "adapter_files_in_model" in errors(model)


# --- weights ------------------------------------------------------------------------------------


def test_missing_shard(tmp_path: Path) -> None:
    path = make_model_dir(tmp_path / "m", sharded=True)
    (path / "model-00002-of-00002.safetensors").unlink()
    assert "shard_missing" in errors(path)


def test_index_pointing_to_wrong_shard(tmp_path: Path) -> None:
    path = make_model_dir(tmp_path / "m", sharded=True)
    edit_json(
        path / "model.safetensors.index.json",
        lambda d: d["weight_map"].update({"model.norm.weight": "model-00001-of-00002.safetensors"}),
    )
    assert "index_mismatch" in errors(path)


def test_index_escaping_the_directory(tmp_path: Path) -> None:
    path = make_model_dir(tmp_path / "m", sharded=True)
    edit_json(path / "model.safetensors.index.json", lambda d: d["weight_map"].update({"x": "../../etc/passwd"}))
    assert "index_mismatch" in errors(path)


def test_unmerged_lora_tensors(model: Path) -> None:
    tensors = llama_tensors(vocab=320, hidden=32, layers=2, heads=4, kv_heads=2, inter=64)
    tensors["model.layers.0.self_attn.q_proj.lora_A.weight"] = ("BF16", (4, 32))
    tensors["model.layers.0.self_attn.q_proj.lora_B.weight"] = ("BF16", (32, 4))
    write_safetensors(model / "model.safetensors", tensors)
    assert "lora_unmerged" in errors(model)


def test_vocab_size_vs_embedding_rows(model: Path) -> None:
    # the measured case: base config says 2000 rows, the resized weights have 2048
    write_safetensors(
        model / "model.safetensors",
        llama_tensors(vocab=2048, hidden=32, layers=2, heads=4, kv_heads=2, inter=64),
    )
    edit_json(model / "config.json", lambda c: c.update(vocab_size=2000))
    report = doctor(model)
    found = report.with_code("vocab_size_mismatch")
    assert len(found) == 2  # embedding and lm_head
    assert "2048" in found[0].message and "2000" in found[0].message


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"hidden_size": 64}, "hidden_size"),
        ({"num_attention_heads": 8, "head_dim": 8}, "num_attention_heads"),
        ({"num_key_value_heads": 4}, "num_key_value_heads"),
        ({"num_hidden_layers": 3}, "num_hidden_layers"),
        ({"intermediate_size": 128}, "intermediate_size"),
    ],
)
def test_config_vs_weight_shapes(model: Path, change: dict[str, int], needle: str) -> None:
    edit_json(model / "config.json", lambda c: c.update(change))
    found = doctor(model).with_code("shape_mismatch")
    assert found and any(needle in f.message for f in found)


def test_missing_lm_head_when_untied(model: Path) -> None:
    tensors = llama_tensors(vocab=320, hidden=32, layers=2, heads=4, kv_heads=2, inter=64, head=False)
    write_safetensors(model / "model.safetensors", tensors)
    assert "tensor_missing" in errors(model)
    edit_json(model / "config.json", lambda c: c.update(tie_word_embeddings=True))
    assert "tensor_missing" not in codes(model)


def test_dtype_mismatch(model: Path) -> None:
    edit_json(model / "config.json", lambda c: c.update(dtype="float32"))
    assert "dtype_mismatch" in codes(model)


def test_no_weights(model: Path) -> None:
    (model / "model.safetensors").unlink()
    assert "weights_missing" in errors(model)
    (model / "pytorch_model.bin").write_bytes(b"PK")
    assert "weights_not_safetensors" in codes(model)


# --- tokenizer ----------------------------------------------------------------------------------


def test_missing_tokenizer(model: Path) -> None:
    (model / "tokenizer.json").unlink()
    assert "tokenizer_missing" in errors(model)


def test_tokenizer_model_only(model: Path) -> None:
    (model / "tokenizer.json").unlink()
    (model / "tokenizer.model").write_bytes(sentencepiece_bytes(SPECIALS + BYTES + WORDS, byte_fallback=True))
    report = doctor(model)
    assert "tokenizer_model_only" in report.codes
    assert "tokenizer_missing" not in report.codes
    assert report.exit_code() == 0, format_report(report)


def test_missing_tokenizer_config(model: Path) -> None:
    (model / "tokenizer_config.json").unlink()
    assert "tokenizer_config_missing" in codes(model)


@pytest.mark.parametrize("key", ["tokenizer_file", "vocab_file"])
def test_stale_tokenizer_path(model: Path, key: str) -> None:
    edit_json(model / "tokenizer_config.json", lambda c: c.update({key: "/home/trainer/run3/tokenizer.json"}))
    found = doctor(model).with_code("stale_tokenizer_path")
    assert found and "absolute path" in found[0].message


def test_added_tokens_without_resize(model: Path) -> None:
    def add(doc: dict[str, Any]) -> None:
        for i, token in enumerate(["<|user|>", "<|bot|>"], start=320):
            doc["added_tokens"].append({"id": i, "content": token, "special": True})

    edit_json(model / "tokenizer.json", add)
    found = doctor(model).with_code("token_id_out_of_range")
    assert found and "<|user|>" in found[0].message


def test_tokenizer_json_and_model_disagree(model: Path) -> None:
    pieces = SPECIALS + BYTES + list(reversed(WORDS))
    (model / "tokenizer.model").write_bytes(sentencepiece_bytes(pieces, byte_fallback=True))
    assert "tokenizer_files_disagree" in errors(model)


def test_matching_tokenizer_model_is_fine(model: Path) -> None:
    (model / "tokenizer.model").write_bytes(sentencepiece_bytes(SPECIALS + BYTES + WORDS, byte_fallback=True))
    assert doctor(model).exit_code() == 0


def test_garbage_tokenizer_model(model: Path) -> None:
    (model / "tokenizer.model").write_bytes(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff")
    assert "tokenizer_invalid" in errors(model)


def test_hand_built_sentencepiece_parses() -> None:
    sp = parse_sentencepiece(
        sentencepiece_bytes(["<unk>", "<s>", "</s>", "▁a"], byte_fallback=True, normalizer="nmt_nfkc")
    )
    assert sp.pieces[3] == ("▁a", 1) and sp.byte_fallback and sp.normalizer_name == "nmt_nfkc"


# --- eos ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("eos", [" ", "", "\n"])
def test_blank_eos(model: Path, eos: str) -> None:
    edit_json(model / "tokenizer_config.json", lambda c: c.update(eos_token=eos))
    report = doctor(model)
    assert "eos_blank" in {f.code for f in report.errors}
    assert report.exit_code() == 1


def test_eos_as_added_token_dict_is_read(model: Path) -> None:
    edit_json(model / "tokenizer_config.json", lambda c: c.update(eos_token={"__type": "AddedToken", "content": " "}))
    assert "eos_blank" in errors(model)


def test_eos_not_in_vocab(model: Path) -> None:
    edit_json(model / "tokenizer_config.json", lambda c: c.update(eos_token="<|end|>"))
    report = doctor(model)
    assert "eos_not_in_vocab" in {f.code for f in report.errors}


def test_eos_appended_beyond_vocab_size(tmp_path: Path) -> None:
    # a tokenizer that fills the whole embedding: the appended eos gets id == vocab_size
    pieces = SPECIALS + BYTES + WORDS
    path = make_model_dir(tmp_path / "m", vocab_size=len(pieces), pieces=pieces)
    edit_json(path / "tokenizer_config.json", lambda c: c.update(eos_token=" "))
    found = doctor(path).with_code("token_id_out_of_range")
    assert found and f"={len(pieces)}" in found[0].message


def test_eos_inconsistent_with_generation_config(model: Path) -> None:
    edit_json(model / "generation_config.json", lambda c: c.update(eos_token_id=5))
    edit_json(model / "config.json", lambda c: c.update(eos_token_id=5))
    assert "eos_inconsistent" in errors(model)


def test_eos_config_vs_generation_config_warning(model: Path) -> None:
    edit_json(model / "config.json", lambda c: c.update(eos_token_id=[2, 5]))
    found = doctor(model).with_code("eos_inconsistent")
    assert found and found[0].severity == "warning"


def test_special_tokens_map_disagrees(model: Path) -> None:
    write_json(model / "special_tokens_map.json", {"eos_token": "<unk>", "bos_token": "<s>"})
    found = doctor(model).with_code("eos_inconsistent")
    assert found and found[0].file == "special_tokens_map.json" and found[0].severity == "error"


def test_generation_config_may_add_stop_ids(model: Path) -> None:
    # Qwen2.5-Instruct style: config.json names one eos, generation_config.json a superset
    edit_json(model / "generation_config.json", lambda c: c.update(eos_token_id=[2, 1]))
    assert "eos_inconsistent" not in codes(model)


def test_eos_missing(model: Path) -> None:
    edit_json(model / "tokenizer_config.json", lambda c: c.pop("eos_token"))
    edit_json(model / "generation_config.json", lambda c: c.pop("eos_token_id"))
    edit_json(model / "config.json", lambda c: c.pop("eos_token_id"))
    assert "eos_missing" in errors(model)


def test_eos_id_beyond_vocab_in_generation_config(model: Path) -> None:
    edit_json(model / "generation_config.json", lambda c: c.update(eos_token_id=[2, 9999]))
    assert "token_id_out_of_range" in errors(model)


# --- characters and newlines ---------------------------------------------------------------------


def test_no_byte_fallback_and_no_unk_drops_characters(model: Path) -> None:
    write_json(model / "tokenizer.json", tokenizer_json(SPECIALS + WORDS, byte_fallback=False))
    found = doctor(model).with_code("tokenizer_drops_chars")
    assert found and found[0].severity == "error"


def test_byte_fallback_flag_without_byte_pieces_drops_characters(model: Path) -> None:
    # what transformers 5 makes of a SentencePiece model trained without byte_fallback
    write_json(model / "tokenizer.json", tokenizer_json(SPECIALS + WORDS, byte_fallback=True))
    found = doctor(model).with_code("tokenizer_drops_chars")
    assert found and "0 of the 256" in found[0].message


def test_unk_without_fallback_is_a_warning(model: Path) -> None:
    write_json(model / "tokenizer.json", tokenizer_json(SPECIALS + WORDS, byte_fallback=False, unk="<unk>"))
    found = doctor(model).with_code("tokenizer_drops_chars")
    assert found and found[0].severity == "warning"


def test_sentencepiece_without_byte_fallback(model: Path) -> None:
    (model / "tokenizer.json").unlink()
    (model / "tokenizer.model").write_bytes(sentencepiece_bytes(SPECIALS + WORDS, byte_fallback=False))
    assert "tokenizer_drops_chars" in errors(model)


def test_newline_replacing_normalizer(model: Path) -> None:
    edit_json(
        model / "tokenizer.json",
        lambda t: t.update(normalizer={"type": "Replace", "pattern": {"Regex": r"\s+"}, "content": " "}),
    )
    assert "newline_normalized" in errors(model)


def test_whitespace_pre_tokenizer_loses_newlines(model: Path) -> None:
    edit_json(model / "tokenizer.json", lambda t: t.update(pre_tokenizer={"type": "Whitespace"}))
    assert "newline_normalized" in errors(model)


def test_sentencepiece_nmt_normalization(model: Path) -> None:
    (model / "tokenizer.json").unlink()
    (model / "tokenizer.model").write_bytes(
        sentencepiece_bytes(SPECIALS + BYTES + WORDS, byte_fallback=True, normalizer="nmt_nfkc")
    )
    assert "newline_normalized" in errors(model)


# --- serving ------------------------------------------------------------------------------------


def test_generation_defaults(model: Path) -> None:
    edit_json(model / "generation_config.json", lambda g: g.update(temperature=0.6, top_p=0.9, max_new_tokens=64))
    found = doctor(model).with_code("generation_defaults")
    assert any("temperature=0.6" in f.message for f in found)
    assert any(f.severity == "warning" and "max_new_tokens=64" in f.message for f in found)


def test_max_model_len_beyond_positions(model: Path) -> None:
    assert "context_length" in errors(model, max_model_len=4096)
    assert "context_length" not in errors(model, max_model_len=256)


def test_rope_scaling_extends_context(model: Path) -> None:
    edit_json(
        model / "config.json",
        lambda c: c.update(rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0}),
    )
    assert doctor(model).facts["max_model_len"] == 1024


def test_new_config_layout(model: Path) -> None:
    found = doctor(model).with_code("config_layout")
    assert found and found[0].severity == "info"
    edit_json(
        model / "config.json", lambda c: c.update(rope_parameters={"rope_theta": 500000.0, "rope_type": "default"})
    )
    found = doctor(model).with_code("config_layout")
    assert found[0].severity == "warning" and "500000" in found[0].message
    edit_json(model / "config.json", lambda c: c.update(torch_dtype="bfloat16", rope_theta=500000.0))
    assert "config_layout" not in codes(model)


def test_trainer_leftovers(model: Path) -> None:
    edit_json(model / "config.json", lambda c: c.update(pad_token_id=2, use_cache=False))
    edit_json(model / "generation_config.json", lambda c: c.update(pad_token_id=2))
    found = doctor(model).with_code("trainer_leftover")
    assert {f.severity for f in found} == {"info", "warning"}
    assert doctor(model).exit_code() == 0  # harmless for serving


# --- against the base ---------------------------------------------------------------------------


def test_allowed_differences_from_base(model: Path, tmp_path: Path) -> None:
    base = shutil.copytree(model, tmp_path / "base")
    edit_json(model / "config.json", lambda c: c.update(pad_token_id=2, use_cache=False, transformers_version="5.30"))
    edit_json(model / "tokenizer_config.json", lambda c: c.update(pad_token="</s>", padding_side="left"))
    report = doctor(model, base=base)
    assert not report.with_code("base_diff_not_allowed"), format_report(report)
    assert {f.file for f in report.with_code("base_diff_allowed")} == {"config.json", "tokenizer_config.json"}


def test_old_layout_base_is_the_same_config(model: Path, tmp_path: Path) -> None:
    base = shutil.copytree(model, tmp_path / "base")

    def old_layout(c: dict[str, Any]) -> None:
        c["torch_dtype"] = c.pop("dtype")
        c["rope_theta"] = c.pop("rope_parameters")["rope_theta"]
        c["transformers_version"] = "4.46.0"

    edit_json(base / "config.json", old_layout)
    report = doctor(model, base=base)
    assert not report.with_code("base_diff_not_allowed"), format_report(report)


def test_not_allowed_differences_from_base(model: Path, tmp_path: Path) -> None:
    base = shutil.copytree(model, tmp_path / "base")
    edit_json(model / "config.json", lambda c: c.update(hidden_act="gelu"))
    edit_json(model / "tokenizer_config.json", lambda c: c.update(eos_token="<s>"))
    edit_json(model / "generation_config.json", lambda c: c.update(eos_token_id=1, temperature=0.2))
    (model / "special_tokens_map.json").write_text("{}", encoding="utf-8")
    report = doctor(model, base=base)
    bad = {(f.file, f.severity) for f in report.with_code("base_diff_not_allowed")}
    assert ("config.json", "error") in bad
    assert ("tokenizer_config.json", "error") in bad
    assert ("generation_config.json", "error") in bad
    assert ("generation_config.json", "warning") in bad
    assert ("special_tokens_map.json", "warning") in bad


def test_resized_vocab_against_base(model: Path, tmp_path: Path) -> None:
    base = shutil.copytree(model, tmp_path / "base")
    write_safetensors(
        model / "model.safetensors", llama_tensors(vocab=384, hidden=32, layers=2, heads=4, kv_heads=2, inter=64)
    )
    edit_json(model / "config.json", lambda c: c.update(vocab_size=384))
    report = doctor(model, base=base)
    assert report.exit_code() == 0, format_report(report)
    assert any("resized" in f.message for f in report.with_code("base_diff_allowed"))
    # copying the base config over it blindly breaks it
    shutil.copy(base / "config.json", model / "config.json")
    assert "vocab_size_mismatch" in errors(model)


def test_tokenizer_model_dropped_by_a_resave_is_allowed(model: Path, tmp_path: Path) -> None:
    base = shutil.copytree(model, tmp_path / "base")
    (base / "tokenizer.model").write_bytes(sentencepiece_bytes(SPECIALS + BYTES + WORDS, byte_fallback=True))
    report = doctor(model, base=base)
    assert [f.file for f in report.with_code("base_diff_allowed")] == ["tokenizer.model"]
    assert report.exit_code() == 0
    (base / "tokenizer.model").write_bytes(sentencepiece_bytes(SPECIALS + WORDS, byte_fallback=True))
    assert "base_diff_not_allowed" in doctor(model, base=base).codes


def test_missing_files_against_base(model: Path, tmp_path: Path) -> None:
    base = shutil.copytree(model, tmp_path / "base")
    (model / "generation_config.json").unlink()
    found = doctor(model, base=base).with_code("base_diff_not_allowed")
    assert any(f.file == "generation_config.json" for f in found)


def test_unusable_base(model: Path, tmp_path: Path) -> None:
    assert "base_unreadable" in errors(model, base=tmp_path / "nothing")


# --- hostile input ------------------------------------------------------------------------------


def _header_file(path: Path, raw: bytes) -> None:
    path.write_bytes(raw)


@pytest.mark.parametrize(
    "raw, needle",
    [
        (b"\x01\x02", "truncated"),
        (struct.pack("<Q", 2**63) + b"{}", "limit"),
        (struct.pack("<Q", 90 * 1024 * 1024) + b"{}", "truncated"),
        (struct.pack("<Q", 0), "length is 0"),
        (struct.pack("<Q", 8) + b"not json", "not a JSON object"),
        (struct.pack("<Q", 8) + b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8", "not UTF-8"),
        (struct.pack("<Q", 8) + b'{"a": 1}', "not an object"),
        (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
    ],
)
def test_broken_safetensors_headers(model: Path, raw: bytes, needle: str) -> None:
    _header_file(model / "model.safetensors", raw)
    report = doctor(model)
    found = report.with_code("safetensors_invalid")
    assert found and needle in found[0].message, found
    assert report.exit_code() == 1


def test_header_offsets_beyond_file_and_wrong_sizes(tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    header = json.dumps({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(10))
    with pytest.raises(HeaderError, match="truncated"):
        read_header(path)
    header = json.dumps({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 60]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(64))
    with pytest.raises(HeaderError, match="needs 64 bytes"):
        read_header(path)
    header = json.dumps(
        {
            "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
            "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
        }
    ).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(24))
    with pytest.raises(HeaderError, match="overlap"):
        read_header(path)
    header = json.dumps({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(HeaderError, match="non-negative"):
        read_header(path)


def test_deeply_nested_json_does_not_crash(model: Path) -> None:
    (model / "tokenizer_config.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    (model / "generation_config.json").write_text('{"a": ' * 50_000 + "1" + "}" * 50_000, encoding="utf-8")
    report = doctor(model)
    assert {f.file for f in report.with_code("json_invalid")} >= {"tokenizer_config.json", "generation_config.json"}
    header = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
    (model / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    assert "safetensors_invalid" in doctor(model).codes


def test_symlink_outside_is_not_followed(model: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.json"
    outside.write_text(json.dumps(tokenizer_json(SPECIALS + BYTES + WORDS)), encoding="utf-8")
    (model / "tokenizer.json").unlink()
    (model / "tokenizer.json").symlink_to(outside)
    report = doctor(model)
    assert "symlink_outside" in {f.code for f in report.errors}
    assert "tokenizer_missing" in report.codes  # not followed


def test_symlink_inside_and_hub_cache_layout_are_followed(tmp_path: Path) -> None:
    snapshot = make_model_dir(tmp_path / "models--org--tiny" / "snapshots" / "abc123")
    blobs = tmp_path / "models--org--tiny" / "blobs"
    blobs.mkdir()
    shutil.move(snapshot / "config.json", blobs / "deadbeef")
    (snapshot / "config.json").symlink_to(Path("../../blobs/deadbeef"))
    report = doctor(snapshot)
    assert report.exit_code() == 0, format_report(report)


def test_symlink_loop_and_broken_link(model: Path) -> None:
    (model / "loop_a").symlink_to(model / "loop_b")
    (model / "loop_b").symlink_to(model / "loop_a")
    (model / "generation_config.json").unlink()
    (model / "generation_config.json").symlink_to(model / "missing.json")
    assert "symlink_outside" in doctor(model).codes


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_fifo_does_not_hang(model: Path) -> None:
    (model / "model.safetensors").unlink()
    os.mkfifo(model / "model.safetensors")
    (model / "tokenizer.json").unlink()
    os.mkfifo(model / "tokenizer.json")
    start = time.perf_counter()
    report = doctor(model)
    assert time.perf_counter() - start < 5
    assert "file_unreadable" in report.codes


def test_directory_named_like_a_file(model: Path) -> None:
    (model / "tokenizer.json").unlink()
    (model / "tokenizer.json").mkdir()
    assert "tokenizer_missing" in doctor(model).codes


def test_huge_json_file_is_refused_without_reading(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import kochallenge_data.ml.doctor as doctor_module

    monkeypatch.setattr(doctor_module, "MAX_JSON_BYTES", 1000)
    assert "file_unreadable" in doctor(model).codes


# --- a 7B-shaped directory (its timing is measured in bench/doctor_bench.py) -----------------------


def make_7b_shaped_dir(tmp_path: Path) -> Path:
    """A Llama-7B-shaped directory with sparse shards: real headers, no real weights."""
    path = tmp_path / "llama7b"
    path.mkdir()
    tensors = llama_tensors(vocab=32000, hidden=4096, layers=32, heads=32, kv_heads=32, inter=11008)
    names = list(tensors)
    weight_map = {}
    for part in range(3):
        shard = f"model-0000{part + 1}-of-00003.safetensors"
        keys = names[part::3]
        write_safetensors(path / shard, {k: tensors[k] for k in keys}, sparse=True)
        weight_map.update(dict.fromkeys(keys, shard))
    write_json(path / "model.safetensors.index.json", {"metadata": {}, "weight_map": weight_map})
    small = make_model_dir(tmp_path / "small")
    for name in ("generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(small / name, path / name)
    config = json.loads((small / "config.json").read_text())
    config.update(
        vocab_size=32000,
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        intermediate_size=11008,
        head_dim=128,
        max_position_embeddings=4096,
    )
    write_json(path / "config.json", config)
    return path


def test_7b_shaped_directory_is_sound(tmp_path: Path) -> None:
    path = make_7b_shaped_dir(tmp_path)
    report = doctor(path, base=path, max_model_len=4096)
    assert report.exit_code() == 0, format_report(report)
    assert report.facts["parameters"] > 6_000_000_000


# --- the CLI ------------------------------------------------------------------------------------


def test_cli_exit_codes_and_json(model: Path, tmp_path: Path) -> None:
    code, out, _ = run_cli(["doctor", str(model)])
    assert code == 0 and "sound" in out
    edit_json(model / "tokenizer_config.json", lambda c: c.update(eos_token=" "))
    code, out, _ = run_cli(["doctor", str(model), "--json"])
    doc = json.loads(out)
    assert code == 1 and doc["exit_code"] == 1
    assert "eos_blank" in {f["code"] for f in doc["findings"]}
    assert all(set(f) == {"code", "severity", "file", "message", "fix"} for f in doc["findings"])
    code, _, _ = run_cli(["doctor", str(tmp_path / "missing")])
    assert code == 2


def test_cli_strict_fails_on_warnings(model: Path) -> None:
    edit_json(model / "config.json", lambda c: c.update(use_cache=False))
    assert run_cli(["doctor", str(model)])[0] == 0
    assert run_cli(["doctor", str(model), "--strict"])[0] == 1


def test_cli_bad_arguments_exit_2_without_traceback(model: Path) -> None:
    code, _, err = run_cli(["doctor", str(model), "--max-model-len", "-5"])
    assert code == 2 and "must be positive" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["doctor", "merge", "fix"])
def test_cli_help_has_an_example(command: str) -> None:
    code, out, _ = run_cli([command, "--help"])
    assert code == 0
    assert f"python -m kochallenge_data {command}" in out


def test_importing_the_tools_does_not_import_torch() -> None:
    script = (
        "import sys, kochallenge_data, kochallenge_data.ml.cli, kochallenge_data.ml.doctor, "
        "kochallenge_data.ml.merge, kochallenge_data.ml.fix\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'safetensors') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# --- with real tokenizers (train extra) ---------------------------------------------------------


@pytest.mark.train
def test_healthy_real_base_passes_with_load(tiny: Any) -> None:
    report = doctor(tiny.base, load=True)
    assert report.exit_code() == 0, format_report(report)


@pytest.mark.train
def test_byte_level_bpe_model_passes_with_load(tiny: Any) -> None:
    report = doctor(tiny.bpe_model, load=True)
    assert report.exit_code() == 0, format_report(report)


@pytest.mark.train
def test_real_sentencepiece_parses_like_the_protobuf(tiny: Any) -> None:
    from sentencepiece import sentencepiece_model_pb2

    for path in (tiny.sp_bf, tiny.sp_no_bf, tiny.sp_nmt):
        data = path.read_bytes()
        proto = sentencepiece_model_pb2.ModelProto()  # type: ignore[attr-defined]
        proto.ParseFromString(data)
        mine = parse_sentencepiece(data)
        assert mine.pieces == [(p.piece, p.type) for p in proto.pieces]
        assert mine.byte_fallback == proto.trainer_spec.byte_fallback
        assert mine.normalizer_name == proto.normalizer_spec.name


@pytest.mark.train
def test_sentencepiece_without_byte_fallback_drops_emoji(tiny: Any) -> None:
    report = doctor(tiny.no_bf_model, load=True)
    assert "tokenizer_drops_chars" in {f.code for f in report.errors}
    found = report.with_code("roundtrip_failed")
    assert found and "뷁" in found[0].message, format_report(report)


@pytest.mark.train
def test_sentencepiece_default_normalization(tiny: Any) -> None:
    report = doctor(tiny.nmt_model)
    assert "newline_normalized" in {f.code for f in report.errors}
    assert "tokenizer_model_only" in report.codes


@pytest.mark.train
def test_eos_space_saved_by_transformers(tiny: Any) -> None:
    report = doctor(tiny.eos_space, base=tiny.base, load=True)
    found = {f.code for f in report.errors}
    assert {"eos_blank", "token_id_out_of_range", "forward_failed"} <= found, format_report(report)
    forward = report.with_code("forward_failed")[0]
    assert "device-side assert" in forward.message


@pytest.mark.train
def test_no_tokenizer_files_load_a_stub(tiny: Any, tmp_path: Path) -> None:
    path = shutil.copytree(tiny.base, tmp_path / "m")
    (path / "tokenizer.json").unlink()
    report = doctor(path, load=True)
    assert "tokenizer_missing" in report.codes
    assert "roundtrip_failed" in report.codes


@pytest.mark.train
def test_real_tokenizer_files_disagree(tiny: Any, tmp_path: Path) -> None:
    path = shutil.copytree(tiny.base, tmp_path / "m")
    shutil.copy(tiny.sp_no_bf, path / "tokenizer.model")
    assert "tokenizer_files_disagree" in errors(path)
    shutil.copy(tiny.sp_bf, path / "tokenizer.model")
    assert "tokenizer_files_disagree" not in codes(path)


@pytest.mark.train
def test_trainer_style_merge_passes_with_allowed_differences(tiny: Any) -> None:
    report = doctor(tiny.plain_merge, base=tiny.base, load=True)
    assert report.exit_code() == 0, format_report(report)
    assert "trainer_leftover" in report.codes
    allowed = {f.file for f in report.with_code("base_diff_allowed")}
    assert {"config.json", "tokenizer_config.json"} <= allowed


# --- weights=False (doctor --no-weights): a router host with config and tokenizer files only ------


def without_weights(path: Path) -> Path:
    for shard in [*path.glob("*.safetensors"), *path.glob("*.safetensors.index.json")]:
        shard.unlink()
    return path


def test_no_weights_passes_a_config_and_tokenizer_folder(model: Path) -> None:
    without_weights(model)
    assert "weights_missing" in errors(model)
    report = doctor(model, weights=False)
    assert report.exit_code() == 0, format_report(report)
    assert not report.errors and not report.warnings
    assert (report.facts["vocab_size"], report.facts["eos_token_id"], report.facts["max_model_len"]) == (320, 2, 256)
    assert all(report.facts[k] is None for k in ("embedding_rows", "weights_dtype", "parameters", "shards"))
    assert report.to_dict()["weights_checked"] is False
    assert "weights not checked" in format_report(report)
    assert doctor(model).to_dict()["weights_checked"] is True


def test_no_weights_does_not_read_the_weight_files(model: Path, tmp_path: Path) -> None:
    edit_json(model / "config.json", lambda c: c.update(intermediate_size=96, dtype="float32"))
    assert {"shape_mismatch"} <= errors(model) and "dtype_mismatch" in codes(model)
    assert doctor(model, weights=False).exit_code() == 0
    (model / "model.safetensors").write_bytes(b"\x01\x02")
    assert "safetensors_invalid" in errors(model)
    assert doctor(model, weights=False).exit_code() == 0
    sharded = make_model_dir(tmp_path / "sharded", sharded=True)
    (sharded / "model-00002-of-00002.safetensors").unlink()
    assert "shard_missing" in errors(sharded)
    assert doctor(sharded, weights=False).exit_code() == 0


@pytest.mark.parametrize(
    ("breakage", "code"),
    [
        ("eos_blank", "eos_blank"),
        ("no_tokenizer", "tokenizer_missing"),
        ("small_vocab", "token_id_out_of_range"),
        ("eos_ids_disagree", "eos_inconsistent"),
        ("newline_normalizer", "newline_normalized"),
    ],
)
def test_no_weights_keeps_every_tokenizer_and_config_check(model: Path, breakage: str, code: str) -> None:
    without_weights(model)
    if breakage == "eos_blank":
        edit_json(model / "tokenizer_config.json", lambda c: c.update(eos_token=" "))
    elif breakage == "no_tokenizer":
        (model / "tokenizer.json").unlink()
    elif breakage == "small_vocab":
        edit_json(model / "config.json", lambda c: c.update(vocab_size=100))
    elif breakage == "eos_ids_disagree":
        edit_json(model / "generation_config.json", lambda c: c.update(eos_token_id=5))
    else:
        pattern = {"String": "\n"}
        edit_json(model / "tokenizer.json", lambda t: t.update(normalizer={"type": "Replace", "pattern": pattern}))
    report = doctor(model, weights=False)
    assert code in {f.code for f in report.errors}, format_report(report)
    assert report.exit_code() == 1


def test_no_weights_keeps_the_context_and_structure_checks(model: Path, tmp_path: Path) -> None:
    without_weights(model)
    assert "context_length" in errors(model, max_model_len=4096, weights=False)
    (model / "config.json").unlink()
    assert doctor(model, weights=False).exit_code() == 2
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    write_json(adapter / "adapter_config.json", {"peft_type": "LORA", "r": 4})
    assert "adapter_dir" in codes(adapter, weights=False)


def test_no_weights_compares_metadata_with_a_base(model: Path, tmp_path: Path) -> None:
    base = shutil.copytree(model, tmp_path / "base")
    without_weights(model)
    report = doctor(model, base=base, weights=False)
    assert report.exit_code() == 0, format_report(report)
    report = doctor(model, base=without_weights(base), weights=False)
    assert report.exit_code() == 0, format_report(report)
    edit_json(model / "config.json", lambda c: c.update(num_hidden_layers=3))
    assert "base_diff_not_allowed" in errors(model, base=base, weights=False)


def test_cli_no_weights(model: Path) -> None:
    without_weights(model)
    code, out, _ = run_cli(["doctor", str(model)])
    assert code == 1 and "weights_missing" in out
    code, out, _ = run_cli(["doctor", str(model), "--no-weights"])
    assert code == 0 and "weights not checked" in out and "sound" in out
    code, out, _ = run_cli(["doctor", str(model), "--no-weights", "--json"])
    assert code == 0 and json.loads(out)["weights_checked"] is False
    edit_json(model / "tokenizer_config.json", lambda c: c.update(eos_token=" "))
    assert run_cli(["doctor", str(model), "--no-weights"])[0] == 1
    assert "--no-weights" in run_cli(["doctor", "--help"])[1]


@pytest.mark.train
def test_no_weights_load_loads_the_tokenizer_only(tiny: Any, tmp_path: Path) -> None:
    path = without_weights(shutil.copytree(tiny.base, tmp_path / "m"))
    report = doctor(path, load=True, weights=False)
    assert report.exit_code() == 0, format_report(report)
    broken = without_weights(shutil.copytree(tiny.eos_space, tmp_path / "eos_space"))
    report = doctor(broken, base=tiny.base, load=True, weights=False)
    found = {f.code for f in report.errors}
    assert {"eos_blank", "token_id_out_of_range"} <= found, format_report(report)
    assert "forward_failed" not in found and "load_failed" not in found
