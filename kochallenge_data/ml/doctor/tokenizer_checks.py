"""Checks on the tokenizer files.

Which files are there, whether tokenizer.json and tokenizer.model agree, token ids within the vocabulary, the
special-token map, eos, character coverage and newline handling. Each takes an
:class:`~.inspection.Inspection` and adds findings to it.
"""

from __future__ import annotations

import re

from .inspection import Inspection
from .report import Severity
from .values import as_int, id_list, short, token_text, walk

BYTE_PIECES = tuple(f"<0x{b:02X}>" for b in range(256))


def check_tokenizer_files(ins: Inspection) -> None:
    d, tok = ins.dir, ins.tok
    has_json, has_model = d.has("tokenizer.json"), d.has("tokenizer.model")
    has_slow = (d.has("vocab.json") and d.has("merges.txt")) or d.has("vocab.txt") or d.has("tekken.json")
    if not (has_json or has_model or has_slow):
        ins.add(
            "tokenizer_missing",
            "error",
            "tokenizer.json",
            "no tokenizer.json or tokenizer.model: transformers 5 loads silently and returns a 3-token "
            "tokenizer, so every prompt encodes to nothing",
            "copy tokenizer.json (and tokenizer.model) from the base or the adapter directory",
        )
    elif has_model and not has_json and tok.sp is not None:
        ins.add(
            "tokenizer_model_only",
            "warning",
            "tokenizer.model",
            "only tokenizer.model: every load converts it (needs sentencepiece and protobuf in the serving "
            "environment) and transformers 5 re-saves it without tokenizer.model",
            "save tokenizer.json next to it: AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR)",
        )
    if not d.has("tokenizer_config.json") and (has_json or has_model):
        ins.add(
            "tokenizer_config_missing",
            "warning",
            "tokenizer_config.json",
            "no tokenizer_config.json: eos, bos and the tokenizer class fall back to defaults",
            "copy tokenizer_config.json from the base model",
        )
    tok_cfg = d.json("tokenizer_config.json") if d.has("tokenizer_config.json") else None
    for key in ("tokenizer_file", "vocab_file"):
        value = (tok_cfg or {}).get(key)
        if value is None:
            continue
        where = "an absolute path from another machine" if str(value).startswith("/") else "a path"
        ins.add(
            "stale_tokenizer_path",
            "warning",
            "tokenizer_config.json",
            f"{key} = {short(str(value))!r} is {where}: transformers finds tokenizer.json/tokenizer.model "
            "by name; under transformers 4 a stale path breaks loading",
            f'delete the "{key}" key from tokenizer_config.json',
        )
    if tok.sp is not None and tok.tj is not None:
        check_tokenizer_agreement(ins)


def check_tokenizer_agreement(ins: Inspection) -> None:
    sp, tok = ins.tok.sp, ins.tok
    assert sp is not None
    json_ids = {**tok.model_vocab, **tok.added}
    wrong = [(i, p, json_ids.get(p)) for i, (p, kind) in enumerate(sp.pieces) if kind != 5 and json_ids.get(p) != i]
    if wrong:
        i, piece, other = wrong[0]
        ins.add(
            "tokenizer_files_disagree",
            "error",
            "tokenizer.json",
            f"{len(wrong)} of {len(sp.pieces)} tokenizer.model pieces have another id in tokenizer.json "
            f"(e.g. {short(piece)!r}: {i} in tokenizer.model, {other} in tokenizer.json): tools that read "
            "different files encode differently",
            "regenerate tokenizer.json from tokenizer.model, or delete the one that does not belong",
        )


def check_token_ids(ins: Inspection) -> None:
    tok, vocab = ins.tok, as_int(ins.text.get("vocab_size"))
    if vocab is None or not tok.token_to_id:
        return
    beyond = sorted(((i, t) for t, i in tok.token_to_id.items() if i >= vocab), key=lambda x: x[0])
    # special tokens named in the config but absent from the vocabulary get new ids at load time
    next_id = tok.size
    appended: list[tuple[int, str]] = []
    for key in ("eos_token", "bos_token", "unk_token", "pad_token"):
        value = tok.specials.get(key)
        if value is not None and value not in tok.token_to_id and value not in [t for _, t in appended]:
            appended.append((next_id, value))
            next_id += 1
    beyond += [(i, t) for i, t in appended if i >= vocab]
    if beyond:
        shown = ", ".join(f"{short(t, 20)!r}={i}" for i, t in beyond[:5])
        ins.add(
            "token_id_out_of_range",
            "error",
            tok.source or "tokenizer_config.json",
            f"{len(beyond)} token ids are >= config vocab_size {vocab} ({shown}): any prompt that uses them "
            "indexes past the embedding table (IndexError on CPU, 'device-side assert' on GPU)",
            "resize the embeddings to the tokenizer (model.resize_token_embeddings(len(tokenizer))) and "
            "retrain, or restore the base tokenizer",
        )


def eos_ids(ins: Inspection) -> tuple[str | None, int | None, list[int], list[int]]:
    """(tokenizer eos text, its id, config.json eos ids, generation_config.json eos ids)."""
    eos = ins.tok.specials.get("eos_token")
    eos_id = ins.tok.lookup(eos) if eos is not None else None
    gen = ins.dir.json("generation_config.json") if ins.dir.has("generation_config.json") else None
    cfg_ids = id_list((ins.config or {}).get("eos_token_id", ins.text.get("eos_token_id")))
    gen_ids = id_list((gen or {}).get("eos_token_id"))
    return eos, eos_id, cfg_ids, gen_ids


def check_special_map(ins: Inspection) -> None:
    """special_tokens_map.json naming other eos/bos than tokenizer_config.json (tools disagree on which wins)."""
    d = ins.dir
    if not (d.has("special_tokens_map.json") and d.has("tokenizer_config.json")):
        return
    mapped, config = d.json("special_tokens_map.json") or {}, d.json("tokenizer_config.json") or {}
    for key in ("eos_token", "bos_token"):
        a, b = token_text(config.get(key)), token_text(mapped.get(key))
        if a is not None and b is not None and a != b:
            ins.add(
                "eos_inconsistent",
                "error" if key == "eos_token" else "warning",
                "special_tokens_map.json",
                f"{key} is {short(b)!r} here but {short(a)!r} in tokenizer_config.json: transformers 4 and 5 "
                "pick different ones",
                "make special_tokens_map.json agree with tokenizer_config.json (or delete it)",
            )


def check_eos(ins: Inspection) -> None:
    if not ins.tok.token_to_id:
        return
    eos, eos_id, cfg_ids, gen_ids = eos_ids(ins)
    vocab = as_int(ins.text.get("vocab_size"))
    file = "tokenizer_config.json"
    check_special_map(ins)
    if eos is None:
        severity: Severity = "warning" if gen_ids or cfg_ids else "error"
        ins.add(
            "eos_missing",
            severity,
            file,
            "the tokenizer has no eos_token"
            + (
                "; only the ids in config/generation_config stop generation"
                if severity == "warning"
                else ": generation never stops"
            ),
            'set "eos_token" in tokenizer_config.json to the base model\'s eos (e.g. "</s>")',
        )
        return
    if eos.strip() == "":
        ins.add(
            "eos_blank",
            "error",
            file,
            f"eos_token is {eos!r}: after a reload every space encodes to a new id beyond the vocabulary "
            "(device-side assert) and the stop token is never sampled",
            "restore eos_token from the base tokenizer_config.json (python -m kochallenge_data fix DIR --base BASE)",
        )
    elif eos_id is None:
        ins.add(
            "eos_not_in_vocab",
            "error",
            file,
            f"eos_token {short(eos)!r} is not in the vocabulary: loading appends it with id {ins.tok.size}, "
            "which the model never learned (and may be beyond vocab_size)",
            "restore eos_token from the base tokenizer_config.json",
        )
    if vocab is not None:
        bad = [i for i in cfg_ids + gen_ids if i >= vocab or i < 0]
        if bad:
            ins.add(
                "token_id_out_of_range",
                "error",
                "generation_config.json",
                f"eos_token_id {bad} is outside the vocabulary (size {vocab})",
                "restore eos_token_id from the base model",
            )
    if eos_id is None:
        return
    stop_ids = gen_ids or cfg_ids
    if stop_ids and eos_id not in stop_ids:
        ins.add(
            "eos_inconsistent",
            "error",
            "generation_config.json" if gen_ids else "config.json",
            f"the tokenizer's eos {short(eos)!r} is id {eos_id} but eos_token_id is {stop_ids}: transformers' "
            "generate stops only on eos_token_id, so a model trained to emit the tokenizer's eos never stops",
            f"make them agree (eos_token_id {eos_id}, or the base model's values)",
        )
    elif cfg_ids and gen_ids and not set(cfg_ids) <= set(gen_ids):
        ins.add(
            "eos_inconsistent",
            "warning",
            "config.json",
            f"config.json eos_token_id {cfg_ids} differs from generation_config.json {gen_ids} "
            "(vLLM stops on the tokenizer eos plus generation_config.json)",
            "copy eos_token_id from the base model into both files",
        )


def check_char_coverage(ins: Inspection) -> None:
    tok = ins.tok
    if tok.tj is not None:
        model = tok.tj.get("model") or {}
        kind = model.get("type")
        byte_level = any(
            n.get("type") == "ByteLevel" for part in ("pre_tokenizer", "decoder") for n in walk(tok.tj.get(part))
        )
        byte_pieces = sum(1 for p in BYTE_PIECES if p in tok.model_vocab)
        fallback = bool(model.get("byte_fallback")) and byte_pieces == 256
        if kind == "Unigram":
            unk_id = as_int(model.get("unk_id"))
            has_unk = unk_id is not None
        else:
            unk = model.get("unk_token")
            has_unk = isinstance(unk, str) and unk in tok.token_to_id
        if kind in ("BPE", "Unigram", "WordPiece", "WordLevel") and not (byte_level or fallback):
            detail = (
                f"byte_fallback is on but only {byte_pieces} of the 256 <0xXX> pieces exist"
                if model.get("byte_fallback")
                else "no byte fallback"
            )
            if not has_unk:
                ins.add(
                    "tokenizer_drops_chars",
                    "error",
                    "tokenizer.json",
                    f"{detail} and no unk token: characters outside the vocabulary (unseen emoji, rare "
                    "Hangul) are dropped silently, so training data and prompts lose them",
                    "retrain the SentencePiece model with byte_fallback=True (or use a byte-level BPE)",
                )
            else:
                ins.add(
                    "tokenizer_drops_chars",
                    "warning",
                    "tokenizer.json",
                    f"{detail}: characters outside the vocabulary become the unk token, and the model can "
                    "never write them",
                    "retrain the tokenizer with byte_fallback=True (or use a byte-level BPE)",
                )
    elif tok.sp is not None and not tok.sp.byte_fallback:
        ins.add(
            "tokenizer_drops_chars",
            "error",
            "tokenizer.model",
            "SentencePiece model without byte_fallback: sentencepiece maps unseen emoji and rare Hangul to "
            "<unk>, and transformers 5 converts it to a tokenizer that drops them silently",
            "retrain the SentencePiece model with byte_fallback=True",
        )


def check_newlines(ins: Inspection) -> None:
    tok = ins.tok
    if tok.tj is not None:
        for node in walk(tok.tj.get("normalizer")):
            kind = node.get("type")
            if kind == "Replace" and _pattern_matches_newline(node.get("pattern")):
                ins.add(
                    "newline_normalized",
                    "error",
                    "tokenizer.json",
                    "the normalizer replaces newlines: multi-line outputs (one challenge per line) collapse",
                    "remove that Replace from the normalizer, or retrain with identity normalization",
                )
                break
            if kind == "Precompiled":
                ins.add(
                    "newline_normalized",
                    "warning",
                    "tokenizer.json",
                    "a precompiled SentencePiece normalizer (nmt_nfkc by default) maps newlines to spaces; "
                    "it cannot be checked from the file",
                    "run doctor --load to round-trip a probe, or retrain with normalization_rule_name=identity",
                )
                break
        for node in walk(tok.tj.get("pre_tokenizer")):
            if node.get("type") in ("Whitespace", "WhitespaceSplit", "BertPreTokenizer"):
                ins.add(
                    "newline_normalized",
                    "error",
                    "tokenizer.json",
                    f"the {node.get('type')} pre-tokenizer discards spaces and newlines: decode cannot restore them",
                    "use a ByteLevel or Metaspace pre-tokenizer",
                )
                break
    sp = tok.sp
    if sp is not None and sp.normalizer_name.startswith("nmt_"):
        ins.add(
            "newline_normalized",
            "warning" if tok.tj is not None else "error",
            "tokenizer.model",
            f"SentencePiece normalization {sp.normalizer_name!r} turns newlines into spaces wherever "
            "tokenizer.model is used (sentencepiece, transformers 4 slow tokenizers, GGUF conversion)",
            "retrain the SentencePiece model with normalization_rule_name='identity'",
        )


def _pattern_matches_newline(pattern: object) -> bool:
    if not isinstance(pattern, dict):
        return False
    if isinstance(pattern.get("String"), str):
        return "\n" in pattern["String"]
    regex = pattern.get("Regex")
    if isinstance(regex, str):
        try:
            return re.search(regex, "\n") is not None
        except re.error:
            return False
    return False
