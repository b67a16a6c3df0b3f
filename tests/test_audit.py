"""The tokenizer audit against real tokenizers trained here on the built corpus.

Two characters are left out of the training text: the emoji in the most records and the rarest
Hangul syllable. Every figure the audit reports is recomputed here from the data and the
tokenizer files, without the audit's code.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from kochallenge_data.prompt import render_prompt
from kochallenge_data.text import emoji_in

from .stack_helpers import load_records, run_in_process, run_subprocess, sample_dataset
from .stack_tokenizers import corpus_lines, train_byte_level_bpe, train_sentencepiece

__all__ = ["sample_dataset"]

pytest.importorskip("transformers", reason="needs the train extra")
pytest.importorskip("sentencepiece", reason="needs the train extra")

NO_LIMIT = 100_000


@dataclass(frozen=True)
class Corpus:
    dataset: Path
    records: list[dict[str, str]]
    prompts: list[str]
    texts: list[str]
    emoji: str
    syllable: str

    def records_with(self, *chars: str) -> int:
        return sum(1 for text in self.texts if any(c in text for c in chars))


def records_per_character(texts: Sequence[str], chars: set[str]) -> dict[str, int]:
    return {c: sum(1 for t in texts if c in t) for c in sorted(chars)}


@pytest.fixture(scope="module")
def corpus(sample_dataset: Path) -> Corpus:
    records = load_records(sample_dataset)
    prompts = [render_prompt(r["instruction"], r["input"]) for r in records]
    texts = [p + r["output"] for p, r in zip(prompts, records, strict=True)]
    emoji_records = records_per_character(texts, {e for t in texts for e in emoji_in(t) if len(e) == 1})
    hangul_records = records_per_character(texts, {c for t in texts for c in t if "가" <= c <= "힣"})
    emoji = max(emoji_records, key=lambda e: (emoji_records[e], e))
    syllable = min(hangul_records, key=lambda c: (hangul_records[c], c))
    return Corpus(sample_dataset, records, prompts, texts, emoji, syllable)


@pytest.fixture(scope="module")
def tokenizers(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tokenizers")
    lines = corpus_lines(corpus.texts, leave_out=(corpus.emoji, corpus.syllable))
    return {
        "spm_nfkc": train_sentencepiece(root / "spm_nfkc", lines, byte_fallback=False),
        "spm_identity": train_sentencepiece(
            root / "spm_identity", lines, byte_fallback=False, normalization="identity"
        ),
        "spm_bf_nfkc": train_sentencepiece(root / "spm_bf_nfkc", lines, byte_fallback=True),
        "spm_bf_identity": train_sentencepiece(
            root / "spm_bf_identity", lines, byte_fallback=True, normalization="identity"
        ),
        "llama_bpe": train_sentencepiece(
            root / "llama_bpe", lines, byte_fallback=False, model_type="bpe", llama_class=True
        ),
        "byte_bpe": train_byte_level_bpe(root / "byte_bpe", corpus_lines(corpus.texts)),
    }


def audit(corpus: Corpus, tokenizer: Path, max_length: int = NO_LIMIT) -> tuple[int, dict[str, Any]]:
    code, out, err = run_in_process(
        "audit-tokenizer", str(corpus.dataset), "--tokenizer", str(tokenizer), "--max-length", str(max_length), "--json"
    )
    assert code in (0, 1), err
    report: dict[str, Any] = orjson.loads(out)
    assert report["exit_code"] == code
    return code, report


def lost(report: dict[str, Any]) -> dict[str, str]:
    return {row["char"]: row["fate"] for row in report["characters"]["lost"]}


def nfkc_changes(texts: Sequence[str]) -> set[str]:
    """Characters SentencePiece's default nmt_nfkc normalization rewrites (outside the two left out)."""
    return {c for t in texts for c in set(t) if not c.isspace() and unicodedata.normalize("NFKC", c) != c}


def test_sentencepiece_without_byte_fallback_maps_unseen_characters_to_unk(
    corpus: Corpus, tokenizers: dict[str, Path]
) -> None:
    code, report = audit(corpus, tokenizers["spm_nfkc"])
    assert code == 1
    found = lost(report)
    assert found[corpus.emoji] == "unk" and found[corpus.syllable] == "unk"
    assert set(found) == {corpus.emoji, corpus.syllable} | nfkc_changes(corpus.texts)
    rows = {row["char"]: row["records"] for row in report["characters"]["lost"]}
    assert rows[corpus.emoji] == corpus.records_with(corpus.emoji)
    assert rows[corpus.syllable] == corpus.records_with(corpus.syllable)
    assert report["characters"]["records_with_lost_characters"] == corpus.records_with(*found)
    assert any(corpus.emoji in item and "cannot represent these emoji" in item for item in report["advice"])


def test_default_normalization_turns_newlines_into_spaces(corpus: Corpus, tokenizers: dict[str, Path]) -> None:
    _, report = audit(corpus, tokenizers["spm_nfkc"])
    assert report["newline"] == {"single": False, "double": False, "became": "첫 줄 둘째 줄"}
    assert report["round_trip"]["records_changed"] == len(corpus.records)  # every prompt has line breaks
    assert any("'\\n' does not survive" in item for item in report["advice"])


def test_llama_tokenizer_without_byte_fallback_drops_unseen_characters_silently(
    corpus: Corpus, tokenizers: dict[str, Path]
) -> None:
    code, report = audit(corpus, tokenizers["llama_bpe"])
    found = lost(report)
    assert code == 1
    assert found[corpus.emoji] == "dropped" and found[corpus.syllable] == "dropped"
    assert report["characters"]["by_kind"]["emoji"]["unk"] == 0
    assert report["newline"]["single"] is False


def test_identity_normalization_without_byte_fallback_still_loses_newlines_to_unk(
    corpus: Corpus, tokenizers: dict[str, Path]
) -> None:
    code, report = audit(corpus, tokenizers["spm_identity"])
    assert code == 1
    assert lost(report) == {corpus.emoji: "unk", corpus.syllable: "unk"}
    assert report["newline"]["single"] is False and "<unk>" in report["newline"]["became"]


def test_byte_fallback_keeps_every_character_but_nfkc_still_breaks_newlines(
    corpus: Corpus, tokenizers: dict[str, Path]
) -> None:
    code, report = audit(corpus, tokenizers["spm_bf_nfkc"])
    assert code == 1
    assert set(lost(report)) == nfkc_changes(corpus.texts)
    assert report["newline"]["single"] is False
    pieces = {row["char"] for row in report["characters"]["byte_pieces"]}
    assert {corpus.emoji, corpus.syllable} <= pieces


def test_byte_fallback_with_identity_normalization_is_clean(corpus: Corpus, tokenizers: dict[str, Path]) -> None:
    code, report = audit(corpus, tokenizers["spm_bf_identity"])
    assert code == 0, report["advice"]
    assert report["characters"]["lost"] == [] and report["characters"]["records_with_lost_characters"] == 0
    assert report["newline"] == {"single": True, "double": True, "became": "첫 줄\n둘째 줄"}
    assert report["round_trip"]["records_changed"] == 0
    by_tokens = {row["char"]: row["tokens"] for row in report["characters"]["byte_pieces"]}
    assert by_tokens[corpus.emoji] >= 4 and by_tokens[corpus.syllable] >= 3  # UTF-8 bytes (+ a word marker)


def byte_bpe_lengths(corpus: Corpus, folder: Path) -> tuple[list[int], list[int]]:
    """Prompt and prompt + output + eos lengths as `train` builds them, straight from tokenizer.json."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    prompts = [len(tokenizer.encode(p).ids) for p in corpus.prompts]
    outputs = [len(tokenizer.encode(r["output"], add_special_tokens=False).ids) for r in corpus.records]
    return prompts, [p + o + 1 for p, o in zip(prompts, outputs, strict=True)]


def test_truncation_counts_match_the_tokenizer(corpus: Corpus, tokenizers: dict[str, Path]) -> None:
    prompts, totals = byte_bpe_lengths(corpus, tokenizers["byte_bpe"])
    ordered = sorted(totals)
    max_length = ordered[len(ordered) // 2] - 1  # records exactly one token too long exist: they lose only the eos
    code, report = audit(corpus, tokenizers["byte_bpe"], max_length)
    cut = report["truncation"]
    assert code == 1
    assert cut["lose_eos"] == sum(1 for t in totals if t > max_length)
    assert cut["eos_only"] == sum(1 for t in totals if t == max_length + 1) > 0
    assert cut["prompt_fills_max_length"] == sum(1 for p in prompts if p >= max_length)
    assert cut["lose_eos"] == cut["eos_only"] + cut["completion_cut"] + cut["prompt_fills_max_length"]
    assert cut["keep_all"] == ordered[-1]
    assert cut["keep_99_9"] == ordered[math.ceil(len(ordered) * 0.999) - 1]
    assert report["tokens"]["total"]["max"] == ordered[-1] and report["tokens"]["prompt"]["max"] == max(prompts)
    assert any(f"raise max_length to {cut['keep_99_9']}" in item for item in report["advice"])
    code, report = audit(corpus, tokenizers["byte_bpe"], cut["keep_99_9"])
    assert report["truncation"]["lose_eos"] <= len(totals) // 1000


def test_a_byte_level_bpe_with_room_passes(corpus: Corpus, tokenizers: dict[str, Path]) -> None:
    code, report = audit(corpus, tokenizers["byte_bpe"])
    assert code == 0
    assert report["characters"]["lost"] == [] and report["newline"]["single"] is True
    assert report["boundary_merges"] == 0  # the prompt ends in '\n', which byte-level BPE keeps apart


def test_a_tokenizer_without_eos_fails_the_audit(corpus: Corpus, tmp_path: Path) -> None:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    trained = train_byte_level_bpe(tmp_path / "bpe", corpus_lines(corpus.texts))
    backend = Tokenizer.from_file(str(trained / "tokenizer.json"))
    wrapped = PreTrainedTokenizerFast(tokenizer_object=backend)  # type: ignore[no-untyped-call]
    wrapped.save_pretrained(str(tmp_path / "no_eos"))
    code, report = audit(corpus, tmp_path / "no_eos")
    assert code == 1 and report["eos_token"] is None
    assert report["advice"][0].startswith("the tokenizer has no eos token")


def test_a_tokenizer_that_appends_eos_to_every_text_fails_the_audit(corpus: Corpus, tmp_path: Path) -> None:
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    trained = train_byte_level_bpe(tmp_path / "bpe", corpus_lines(corpus.texts))
    backend = Tokenizer.from_file(str(trained / "tokenizer.json"))
    eos = "<|endoftext|>"
    backend.post_processor = processors.TemplateProcessing(
        single=f"$A {eos}", special_tokens=[(eos, backend.token_to_id(eos))]
    )
    wrapped = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=eos)  # type: ignore[no-untyped-call]
    wrapped.save_pretrained(str(tmp_path / "eos_always"))
    code, report = audit(corpus, tmp_path / "eos_always")
    assert code == 1 and report["eos_after_prompt"] == len(corpus.records)
    assert report["advice"][0].startswith("the tokenizer appends eos to every text")


def test_text_output_reads_like_a_report(corpus: Corpus, tokenizers: dict[str, Path]) -> None:
    code, out, _ = run_in_process(
        "audit-tokenizer", str(corpus.dataset), "--tokenizer", str(tokenizers["spm_nfkc"]), "--max-length", "64"
    )
    assert code == 1
    assert f"lost {corpus.emoji}" in out and "max_length 64:" in out and "'\\n' round trip: BROKEN" in out


def test_user_mistakes_are_one_line(corpus: Corpus, tmp_path: Path) -> None:
    code, _, err = run_in_process("audit-tokenizer", str(corpus.dataset), "--tokenizer", str(tmp_path / "none"))
    assert code == 1 and err.startswith("Error: ") and "tokenizer folder not found" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run_in_process("audit-tokenizer", str(corpus.dataset), "--tokenizer", str(tmp_path / "empty"))
    assert code == 1 and err.startswith("Error: ") and "cannot load a tokenizer" in err
    result = run_subprocess(
        "audit-tokenizer", str(corpus.dataset), "--tokenizer", str(tmp_path / "empty"), block=["transformers"]
    )
    assert result.returncode == 1 and "pip install 'kochallenge-data[train]'" in result.stderr
    assert "Traceback" not in result.stderr
