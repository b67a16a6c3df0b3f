"""Tiny real models, tokenizers and adapters built on CPU in a few seconds (needs the train extra).

Everything is made here from a small Korean + emoji corpus: no hub downloads.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CORPUS = [
    "안녕하세요 오늘도 환경을 위한 챌린지를 시작해요 🌱",
    "텀블러 사용하기: 일회용 컵 대신 텀블러를 써요",
    "분리수거 잘하기\n플라스틱은 깨끗이 씻어서 버려요 ♻️",
    "대중교통 이용하기 🚌 자전거 타기 🚲",
    "오늘의 챌린지를 성공했어요! 정말 잘했어요 😊",
    "장바구니 챙기기\n비닐봉지 대신 장바구니를 들고 가요",
] * 10

TRAIN_TEXTS = ["안녕하세요 오늘도 환경을 위한 챌린지", "텀블러 사용하기 🌱\n분리수거 잘하기"]


@dataclass
class Tiny:
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


def train_sentencepiece(path: Path, *, byte_fallback: bool, identity: bool = True) -> Path:
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


def byte_level_bpe() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>", pad_token="<|pad|>"
    )


def make_model(vocab: int, *, hidden: int = 32, bos: int | None = 1, eos: int | None = 2, seed: int = 0) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=bos,
        eos_token_id=eos,
        tie_word_embeddings=False,
    )
    model: Any = LlamaForCausalLM(config)
    return model.to(torch.bfloat16)


def save(model: Any, tokenizer: Any, path: Path) -> Path:
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


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


def build(root: Path) -> Tiny:
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
