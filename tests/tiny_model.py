"""Every tiny real model, tokenizer and adapter the tests build on CPU (needs the train extra).

No hub downloads: tokenizers are trained here, on the records of a tiny dataset build or on a small Korean + emoji
corpus, so Korean text and emoji tokenize the way a real byte-fallback tokenizer does (a Hangul syllable may span
tokens, which is what the streaming decoder has to survive). Every model comes from ``make_model``, so a change to
the tiny Llama is made once. The dataset-trained base deliberately has no pad token, like most Llama bases, so the
trainer's "eos as pad only inside the collator" path is exercised.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kochallenge_data.build import BuildConfig, build_dataset
from kochallenge_data.models import Record
from kochallenge_data.writer import dataset_bytes

from .conftest import FIXTURE_POOLS

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
ENDOFTEXT, PAD = "<|endoftext|>", "<|pad|>"

CORPUS = [
    "안녕하세요 오늘도 환경을 위한 챌린지를 시작해요 🌱",
    "텀블러 사용하기: 일회용 컵 대신 텀블러를 써요",
    "분리수거 잘하기\n플라스틱은 깨끗이 씻어서 버려요 ♻️",
    "대중교통 이용하기 🚌 자전거 타기 🚲",
    "오늘의 챌린지를 성공했어요! 정말 잘했어요 😊",
    "장바구니 챙기기\n비닐봉지 대신 장바구니를 들고 가요",
] * 10

TRAIN_TEXTS = ["안녕하세요 오늘도 환경을 위한 챌린지", "텀블러 사용하기 🌱\n분리수거 잘하기"]


# --- the tiny Llama ------------------------------------------------------------------------------


def make_model(
    vocab: int,
    *,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    max_positions: int = 256,
    bos: int | None = 1,
    eos: int | None = 2,
    tie_word_embeddings: bool = False,
    seed: int = 0,
    dtype: str = "bfloat16",
) -> Any:
    """A Llama with random weights drawn from ``seed``: the same arguments always give the same tensors.

    The defaults are the model-tool fixtures' (bfloat16, as checkpoints ship); the dataset-trained base asks for
    float32, two heads and room for a whole record.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        bos_token_id=bos,
        eos_token_id=eos,
        tie_word_embeddings=tie_word_embeddings,
    )
    model: Any = LlamaForCausalLM(config)
    return model.to(getattr(torch, dtype))


def save(model: Any, tokenizer: Any, path: Path) -> Path:
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


# --- tokenizers ----------------------------------------------------------------------------------


def train_byte_level(texts: Iterable[str], *, vocab_size: int, special_tokens: list[str]) -> Any:
    """A GPT-2 style byte-level BPE (a ``tokenizers.Tokenizer``): every string is representable."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def records_tokenizer(records: list[Record], vocab_size: int = 1000) -> Any:
    """A Llama-style byte-level BPE trained on the records' text: bos prepended, no pad token."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    corpus = [text for r in records for text in (r.instruction, r.input, r.output)]
    tokenizer = train_byte_level(corpus, vocab_size=vocab_size, special_tokens=[BOS, EOS, UNK])
    bos_id = tokenizer.token_to_id(BOS)
    tokenizer.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, bos_id)])
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, unk_token=UNK
    )


def byte_level_bpe() -> Any:
    """A GPT-2 style tokenizer on the small corpus: bos = eos = <|endoftext|>, its own pad."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = train_byte_level(CORPUS, vocab_size=400, special_tokens=[ENDOFTEXT, PAD])
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer, eos_token=ENDOFTEXT, bos_token=ENDOFTEXT, pad_token=PAD
    )


def train_sentencepiece(path: Path, *, byte_fallback: bool, identity: bool = True) -> Path:
    """A ``tokenizer.model`` on the small corpus; ``identity=False`` keeps SentencePiece's nmt_nfkc normalizer."""
    import sentencepiece as spm

    model = io.BytesIO()
    options: dict[str, Any] = {}
    if identity:
        options["normalization_rule_name"] = "identity"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS),
        model_writer=model,
        vocab_size=400,
        hard_vocab_limit=False,
        model_type="bpe",
        byte_fallback=byte_fallback,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
        **options,
    )
    path.write_bytes(model.getvalue())
    return path


def tokenizer_from_sentencepiece(model_file: Path, work: Path) -> Any:
    """Load a tokenizer.model the way transformers 5 does (converted to a tokenizers backend)."""
    from transformers import AutoTokenizer

    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(model_file, work / "tokenizer.model")
    (work / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}), encoding="utf-8")
    return AutoTokenizer.from_pretrained(str(work))


# --- a base trained on a tiny dataset build (train, evaluate, serve) ------------------------------


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
    """Train a byte-level BPE on the records and save a float32 2-layer Llama with random weights."""
    from transformers import GenerationConfig

    tokenizer = records_tokenizer(records, vocab_size)
    tokenizer.save_pretrained(str(model_dir))
    bos_id, eos_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    model = make_model(len(tokenizer), heads=2, max_positions=1024, bos=bos_id, eos=eos_id, dtype="float32")
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


# --- the model-tool fixtures: bases, broken variants, adapters and merges (tests/ml) --------------


def train_lora(base: Path, tokenizer: Any, *, steps: int, resize_to: int | None = None) -> Any:
    """What the team's trainer does: pad = eos, use_cache off, LoRA on q/v, a few AdamW steps."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    if resize_to is not None:
        model.resize_token_embeddings(resize_to, mean_resizing=False)
    model.config.pad_token_id = tokenizer.eos_token_id
    model.config.use_cache = False
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=2e-2)
    batch = tokenizer(TRAIN_TEXTS, padding=True, return_tensors="pt")
    for _ in range(steps):
        loss = peft_model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return peft_model


@dataclass
class Tiny:
    """The directories the model-tool tests share, built once per session by ``build``."""

    root: Path
    sp_bf: Path
    sp_no_bf: Path
    sp_nmt: Path
    base: Path
    other_base: Path
    bpe_model: Path
    no_bf_model: Path
    nmt_model: Path
    eos_space: Path
    adapter: Path
    adapter_resized: Path
    plain_merge: Path
    resized_plain_merge: Path


def build(root: Path) -> Tiny:
    """Tokenizers, bases, the broken variants the doctor must catch, LoRA adapters and their plain merges."""
    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(1)
    root.mkdir(parents=True, exist_ok=True)
    sp_bf = train_sentencepiece(root / "sp_bf.model", byte_fallback=True)
    sp_no_bf = train_sentencepiece(root / "sp_no_bf.model", byte_fallback=False)
    sp_nmt = train_sentencepiece(root / "sp_nmt.model", byte_fallback=True, identity=False)

    tokenizer = tokenizer_from_sentencepiece(sp_bf, root / "work_bf")
    base = save(make_model(len(tokenizer)), tokenizer, root / "base")
    other_base = save(make_model(len(tokenizer), hidden=48), tokenizer, root / "other_base")

    bpe = byte_level_bpe()
    bpe_model = save(make_model(len(bpe), bos=bpe.bos_token_id, eos=bpe.eos_token_id), bpe, root / "bpe_model")

    no_bf = tokenizer_from_sentencepiece(sp_no_bf, root / "work_no_bf")
    no_bf_model = save(make_model(len(no_bf)), no_bf, root / "no_bf_model")

    nmt_model = root / "nmt_model"
    make_model(len(tokenizer_from_sentencepiece(sp_nmt, root / "work_nmt"))).save_pretrained(str(nmt_model))
    shutil.copy(sp_nmt, nmt_model / "tokenizer.model")
    (nmt_model / "tokenizer_config.json").write_text(
        json.dumps(
            {"tokenizer_class": "LlamaTokenizer", "eos_token": "</s>", "bos_token": "<s>", "unk_token": "<unk>"}
        ),
        encoding="utf-8",
    )

    # the measured failure: eos set to " " and saved by transformers
    eos_space = shutil.copytree(base, root / "eos_space")
    broken = AutoTokenizer.from_pretrained(str(base))
    broken.eos_token = " "
    broken.save_pretrained(str(eos_space))

    # a LoRA adapter as the trainer leaves it, and the merge the team used to do in memory
    tok = AutoTokenizer.from_pretrained(str(base))
    peft_model = train_lora(base, tok, steps=20)
    adapter = root / "adapter"
    peft_model.save_pretrained(str(adapter))
    tok.save_pretrained(str(adapter))
    plain_merge = save(peft_model.merge_and_unload(), tok, root / "plain_merge")

    # an adapter that added tokens and resized the embeddings (saved with the adapter)
    tok = AutoTokenizer.from_pretrained(str(base))
    tok.add_special_tokens({"additional_special_tokens": ["<|user|>", "<|bot|>"]})
    peft_model = train_lora(base, tok, steps=5, resize_to=448)
    adapter_resized = root / "adapter_resized"
    peft_model.save_pretrained(str(adapter_resized), save_embedding_layers=True)
    tok.save_pretrained(str(adapter_resized))
    resized_plain_merge = save(peft_model.merge_and_unload().to(torch.bfloat16), tok, root / "resized_plain_merge")

    return Tiny(
        root=root,
        sp_bf=sp_bf,
        sp_no_bf=sp_no_bf,
        sp_nmt=sp_nmt,
        base=base,
        other_base=other_base,
        bpe_model=bpe_model,
        no_bf_model=no_bf_model,
        nmt_model=nmt_model,
        eos_space=eos_space,
        adapter=adapter,
        adapter_resized=adapter_resized,
        plain_merge=plain_merge,
        resized_plain_merge=resized_plain_merge,
    )
