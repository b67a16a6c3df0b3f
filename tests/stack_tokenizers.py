"""Small real tokenizers trained inside the tests on the built corpus (no hub downloads).

Each is saved as a folder the way a model ships it and loaded back with ``AutoTokenizer``, so the
audit sees exactly what a training script would.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import orjson

SPECIALS = ("<unk>", "<s>", "</s>")


def corpus_lines(texts: Iterable[str], leave_out: Sequence[str] = ()) -> list[str]:
    """Training lines (SentencePiece reads one sentence per line) with ``leave_out`` characters removed.

    The audit's own newline probe ("첫 줄 / 둘째 줄") is always in the corpus, so a newline test sees only what the
    tokenizer does to the line break, whatever syllables the built dataset happens to use.
    """
    from kochallenge_data.audit import NEWLINE_SAMPLE

    lines = []
    for text in [*texts, NEWLINE_SAMPLE]:
        for line in text.split("\n"):
            for char in leave_out:
                line = line.replace(char, "")
            if line.strip():
                lines.append(line)
    return lines


def train_sentencepiece(
    folder: Path,
    lines: Sequence[str],
    byte_fallback: bool,
    normalization: str = "nmt_nfkc",
    model_type: str = "unigram",
    llama_class: bool = False,
    vocab_size: int = 1200,
) -> Path:
    """A SentencePiece model as ``tokenizer.model``; ``llama_class`` loads it as transformers' LlamaTokenizer."""
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(lines), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(folder / "tokenizer"),
        vocab_size=vocab_size,
        character_coverage=1.0,
        byte_fallback=byte_fallback,
        normalization_rule_name=normalization,
        model_type=model_type,
        minloglevel=2,
        num_threads=1,
    )
    corpus.unlink()
    (folder / "tokenizer.vocab").unlink()
    if llama_class:
        config = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
        (folder / "tokenizer_config.json").write_bytes(orjson.dumps(config))
    return folder


def train_byte_level_bpe(folder: Path, lines: Sequence[str], vocab_size: int = 1500) -> Path:
    """A GPT-2 style byte-level BPE: every string is representable, rare characters cost byte tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(lines, trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>")  # type: ignore[no-untyped-call]
    wrapped.save_pretrained(str(folder))
    return folder
