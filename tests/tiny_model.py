"""A tiny Llama and byte-level BPE tokenizer built from a tiny dataset build, for CPU tests.

No hub downloads: the tokenizer is trained here on the records themselves, so Korean text and
emoji tokenize the way a real byte-fallback tokenizer does (a Hangul syllable may span tokens,
which is what the streaming decoder has to survive). The base deliberately has no pad token, like
most Llama bases, so the trainer's "eos as pad only inside the collator" path is exercised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kochallenge_data.build import BuildConfig, build_dataset
from kochallenge_data.models import Record
from kochallenge_data.writer import dataset_bytes

from .conftest import FIXTURE_POOLS

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
HIDDEN = 32


@dataclass(frozen=True)
class TinySetup:
    """A dataset file and a model directory that passes the doctor."""

    data: Path
    records: list[Record]
    model_dir: Path


def build_tiny_records(size: int = 48, seed: int = 5) -> list[Record]:
    config = BuildConfig(size=size, seed=seed, pools=FIXTURE_POOLS, diversity=False, check_spacing=False)
    return build_dataset(config).records


def write_tiny_dataset(records: list[Record], path: Path) -> Path:
    path.write_bytes(dataset_bytes(r.model_dump() for r in records))
    return path


def build_tiny_model(records: list[Record], model_dir: Path, vocab_size: int = 400) -> Path:
    """Train a byte-level BPE on the records and save a 2-layer Llama with random weights."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    corpus = [text for r in records for text in (r.instruction, r.input, r.output)]
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    bos_id = tokenizer.token_to_id(BOS)
    tokenizer.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, bos_id)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, unk_token=UNK)
    fast.save_pretrained(str(model_dir))

    eos_id = tokenizer.token_to_id(EOS)
    config = LlamaConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=HIDDEN,
        intermediate_size=HIDDEN * 2,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=bos_id, eos_token_id=eos_id)
    model.save_pretrained(str(model_dir))
    return model_dir


def make_tiny_setup(root: Path, size: int = 48) -> TinySetup:
    records = build_tiny_records(size)
    data = write_tiny_dataset(records, root / "data.json")
    model_dir = build_tiny_model(records, root / "tiny-base")
    return TinySetup(data=data, records=records, model_dir=model_dir)
