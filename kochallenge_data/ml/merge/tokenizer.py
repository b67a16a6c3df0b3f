"""Which tokenizer the merged model gets: the base's (byte for byte) unless the adapter grew the vocabulary;
a changed eos/bos or a renumbered vocabulary is refused."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..doctor import Inspection, short
from .adapter import AdapterInfo
from .errors import MergeError


@dataclass(frozen=True)
class TokenizerPlan:
    changed: bool
    rows: int
    notes: tuple[str, ...] = ()


def plan_tokenizer(base: Inspection, adapter_dir: Path, adapter: AdapterInfo, base_rows: int) -> TokenizerPlan:
    """Decide which tokenizer OUT gets; raise :class:`MergeError` when the merge would be unsafe."""
    has_tokenizer = any((adapter_dir / n).is_file() for n in ("tokenizer.json", "tokenizer.model", "vocab.json"))
    saved_rows = adapter.embedding_rows
    rows = saved_rows if saved_rows is not None else base_rows
    if not has_tokenizer:
        if saved_rows is not None and saved_rows != base_rows:
            raise MergeError(
                f"the adapter has a resized embedding ({saved_rows} rows, base {base_rows}) but no tokenizer files: "
                "save the training tokenizer into the adapter directory (tokenizer.save_pretrained(ADAPTER))"
            )
        return TokenizerPlan(
            changed=False, rows=rows, notes=("the adapter has no tokenizer: the base tokenizer is kept",)
        )
    theirs = Inspection(adapter_dir).tok
    mine = base.tok
    for key in ("eos_token", "bos_token"):
        old, new = mine.specials.get(key), theirs.specials.get(key)
        if new is not None and old is not None and new != old:
            raise MergeError(
                f"the adapter's tokenizer changes {key} from {old!r} to {new!r}: the served model would stop on "
                "a token it was not trained for. Restore the base special tokens in the adapter's "
                "tokenizer_config.json (or retrain with them)"
            )
    if theirs.token_to_id == mine.token_to_id:
        return TokenizerPlan(changed=False, rows=rows, notes=("the adapter's tokenizer has the base vocabulary",))
    moved = [t for t, i in mine.token_to_id.items() if theirs.token_to_id.get(t) != i]
    if moved:
        raise MergeError(
            f"the adapter's tokenizer is a different vocabulary ({len(moved)} base tokens missing or renumbered, "
            f"e.g. {short(moved[0], 30)!r}): it does not belong to this base"
        )
    added = sorted(i for t, i in theirs.token_to_id.items() if t not in mine.token_to_id)
    if added and added[-1] >= rows:
        raise MergeError(
            f"the adapter's tokenizer adds {len(added)} tokens (ids up to {added[-1]}) but the embedding has "
            f"{rows} rows and the adapter saved no resized embedding: train with "
            "model.resize_token_embeddings(len(tokenizer)) and save_embedding_layers=True"
        )
    return TokenizerPlan(
        changed=True, rows=rows, notes=(f"the adapter adds {len(added)} tokens: its tokenizer is used",)
    )
