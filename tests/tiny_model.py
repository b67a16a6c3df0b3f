"""A tiny Llama and byte-level BPE tokenizer built from a tiny dataset build, for CPU tests.

No hub downloads: the tokenizer is trained here on the records themselves, so Korean text and
emoji tokenize the way a real byte-fallback tokenizer does (a Hangul syllable may span tokens,
which is what the streaming decoder has to survive). The base deliberately has no pad token, like
most Llama bases, so the trainer's "eos as pad only inside the collator" path is exercised.
"""

from __future__ import annotations

import shutil
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


def build_tiny_model(records: list[Record], model_dir: Path, vocab_size: int = 1000) -> Path:
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
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, unk_token=UNK
    )
    fast.save_pretrained(str(model_dir))

    eos_id = tokenizer.token_to_id(EOS)
    config = LlamaConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=HIDDEN,
        intermediate_size=HIDDEN * 2,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=bos_id, eos_token_id=eos_id)  # type: ignore[no-untyped-call]
    model.save_pretrained(str(model_dir))
    return model_dir


def make_tiny_setup(root: Path, size: int = 48) -> TinySetup:
    records = build_tiny_records(size)
    data = write_tiny_dataset(records, root / "data.json")
    model_dir = build_tiny_model(records, root / "tiny-base")
    return TinySetup(data=data, records=records, model_dir=model_dir)


def memorize(base_dir: Path, out_dir: Path, pairs: list[tuple[str, str]], max_steps: int = 400) -> Path:
    """Overfit the tiny model until greedy decoding reproduces each ``(prompt, output)`` pair exactly.

    The tokens are laid out as training lays them out (prompt with bos, output, eos), so a server
    that sends the same prompt gets the same answer back: a real model with a known answer.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    model = AutoModelForCausalLM.from_pretrained(str(base_dir))
    eos = tokenizer.eos_token_id
    examples = []
    for prompt, output in pairs:
        prompt_ids = tokenizer(prompt)["input_ids"]
        completion = tokenizer(output, add_special_tokens=False)["input_ids"] + [eos]
        examples.append((prompt_ids, completion))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(max_steps):
        model.train()
        for prompt_ids, completion in examples:
            ids = torch.tensor([prompt_ids + completion])
            labels = torch.tensor([[-100] * len(prompt_ids) + completion])
            loss = model(input_ids=ids, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if step % 10 == 9 and all(_greedy(model, p, len(c) + 4, eos) == c for p, c in examples):
            model.save_pretrained(str(out_dir))
            for name in ("tokenizer.json", "tokenizer_config.json"):
                shutil.copyfile(base_dir / name, out_dir / name)
            return out_dir
    raise AssertionError(f"the tiny model did not memorize {len(pairs)} answers in {max_steps} steps")


def _greedy(model: object, prompt_ids: list[int], max_new_tokens: int, eos: int) -> list[int]:
    import torch

    model.eval()  # type: ignore[attr-defined]
    with torch.no_grad():
        out = model.generate(  # type: ignore[attr-defined]
            torch.tensor([prompt_ids]),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=eos,
        )
    return [int(i) for i in out[0, len(prompt_ids) :].tolist()]
