"""The tokenizer audit: every record a tokenizer and ``max_length`` would damage, found before training.

Two failures cost GPU time silently. A record longer than ``max_length`` loses its end, and with
it the eos, so the model learns never to stop. A tokenizer without byte fallback drops or maps to
unk the characters it never saw (new emoji, rare Hangul), and SentencePiece's default
normalization turns ``\\n`` into a space, which breaks the newline output format. The audit renders
every record with the prompt layout training uses (prompt + output + eos), measures it, and checks
each distinct character with an encode/decode round trip through the real tokenizer.
"""

from __future__ import annotations

import math
import sys
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import orjson

from .errors import KochallengeError
from .models import Task
from .prompt import PromptLayout
from .text import KEYCAP, VS15, VS16, ZWJ, grapheme_clusters, is_emoji_cluster

DEFAULT_MAX_LENGTH = 1024  # TRL's SFTConfig default
KEEP_SHARE = 0.999
SHOWN = 20
TRAIN_EXTRA_HINT = "pip install 'kochallenge-data[train]'"
NEWLINE_SAMPLE = "첫 줄\n둘째 줄"
BLANK_LINE_SAMPLE = "첫 줄\n\n둘째 줄"

CharacterKind = Literal["hangul", "jamo", "emoji", "other"]
Fate = Literal["ok", "byte_pieces", "unk", "dropped", "altered"]
FATES: tuple[Fate, ...] = get_args(Fate)
LOST_FATES: tuple[Fate, ...] = ("unk", "dropped", "altered")


def load_tokenizer(path: Path) -> Any:
    """A local Hugging Face tokenizer folder, loaded with ``AutoTokenizer`` and no network access."""
    if not path.is_dir():
        raise KochallengeError(
            f"{path}: tokenizer folder not found; pass a local folder holding tokenizer.json or tokenizer.model "
            "(for example one written by tokenizer.save_pretrained)"
        )
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise KochallengeError(f"the tokenizer audit needs transformers; run {TRAIN_EXTRA_HINT}") from exc
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # any failure here is a folder the user chose, not a bug in this tool
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KochallengeError(
            f"{path}: cannot load a tokenizer from this folder ({type(exc).__name__}: {reason}); it needs "
            "tokenizer.json or tokenizer.model, with tokenizer_config.json for the special tokens"
        ) from exc


def distribution(values: Sequence[int]) -> dict[str, float]:
    """min / mean / p50 / p90 / p99 / max with nearest-rank percentiles (values that really occur)."""
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "min": ordered[0],
        "mean": round(sum(ordered) / len(ordered), 1),
        "p50": nearest_rank(ordered, 0.50),
        "p90": nearest_rank(ordered, 0.90),
        "p99": nearest_rank(ordered, 0.99),
        "max": ordered[-1],
    }


def nearest_rank(ordered: Sequence[int], share: float) -> int:
    """The smallest value that at least ``share`` of the (sorted) values do not exceed."""
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


@dataclass(frozen=True)
class Rendered:
    """Each record as training sees it: the rendered prompt and the output (the eos is added as a token)."""

    prompts: list[str]
    outputs: list[str]

    @property
    def texts(self) -> list[str]:
        return [p + o for p, o in zip(self.prompts, self.outputs, strict=True)]


def render_records(records: Sequence[Mapping[str, str]], layout: PromptLayout) -> Rendered:
    return Rendered([layout.render(r["instruction"], r["input"]) for r in records], [r["output"] for r in records])


@dataclass(frozen=True)
class RecordTokens:
    """Token counts of one record as ``train`` builds it: prompt tokens, then output tokens and one eos.

    ``boundary_merged`` is for TRL users of the prompt-completion export: TRL tokenizes prompt and
    output together and starts the completion where that diverges from the prompt alone.
    """

    prompt: int
    completion: int
    total: int
    eos_after_prompt: bool
    boundary_merged: bool


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    length = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        length += 1
    return length


def token_lengths(tokenizer: Any, rendered: Rendered) -> list[RecordTokens]:
    """``tokens(prompt) + tokens(output) + [eos]``: the prompt with the tokenizer's specials, as serving sends it."""
    prompt_ids: list[list[int]] = tokenizer(rendered.prompts, add_special_tokens=True)["input_ids"]
    output_ids: list[list[int]] = tokenizer(rendered.outputs, add_special_tokens=False)["input_ids"]
    joint_ids: list[list[int]] = tokenizer(rendered.texts, add_special_tokens=True)["input_ids"]
    eos = tokenizer.eos_token_id
    eos_count = 0 if eos is None else 1
    lengths = []
    for prompt, output, joint in zip(prompt_ids, output_ids, joint_ids, strict=True):
        eos_after_prompt = eos is not None and bool(prompt) and prompt[-1] == eos
        own_tokens = prompt[:-1] if eos_after_prompt else prompt  # that eos is reported on its own
        lengths.append(
            RecordTokens(
                prompt=len(prompt),
                completion=len(output) + eos_count,
                total=len(prompt) + len(output) + eos_count,
                eos_after_prompt=eos_after_prompt,
                boundary_merged=common_prefix(own_tokens, joint) < len(own_tokens),
            )
        )
    return lengths


def truncation_summary(lengths: Sequence[RecordTokens], max_length: int) -> dict[str, Any]:
    """What a cut after the first ``max_length`` tokens would do to each record.

    TRL truncates like that by default; this project's ``train`` refuses or drops such records instead,
    so the same counts say how many it would refuse.
    """
    eos_only: list[int] = []
    completion_cut: list[int] = []
    prompt_fills: list[int] = []
    for index, tokens in enumerate(lengths):
        if tokens.total <= max_length:
            continue
        if tokens.prompt >= max_length:
            prompt_fills.append(index)
        elif tokens.total - 1 == max_length:
            eos_only.append(index)
        else:
            completion_cut.append(index)
    totals = sorted(t.total for t in lengths)
    lose_eos = sorted(eos_only + completion_cut + prompt_fills)
    return {
        "max_length": max_length,
        "lose_eos": len(lose_eos),
        "eos_only": len(eos_only),
        "completion_cut": len(completion_cut),
        "prompt_fills_max_length": len(prompt_fills),
        "examples": lose_eos[:SHOWN],
        "keep_99_9": nearest_rank(totals, KEEP_SHARE) if totals else 0,
        "keep_all": totals[-1] if totals else 0,
    }


def character_kind(cluster: str) -> CharacterKind:
    first = ord(cluster[0])
    if 0xAC00 <= first <= 0xD7A3:
        return "hangul"
    if 0x1100 <= first <= 0x11FF or 0x3130 <= first <= 0x318F or 0xA960 <= first <= 0xA97F or 0xD7B0 <= first <= 0xD7FF:
        return "jamo"
    if is_emoji_cluster(cluster):
        return "emoji"
    return "other"


def _needs_clustering(char: str) -> bool:
    return (
        char in (ZWJ, VS15, VS16, KEYCAP)
        or unicodedata.category(char) in ("Mn", "Me", "Mc")
        or "\U0001f1e6" <= char <= "\U0001f1ff"
        or "\U0001f3fb" <= char <= "\U0001f3ff"
        or "\U000e0020" <= char <= "\U000e007f"
    )


def clusters_in(text: str) -> set[str]:
    """Distinct user-perceived characters of ``text`` (fast when no character joins its neighbour)."""
    chars = set(text)
    if any(_needs_clustering(c) for c in chars):
        return set(grapheme_clusters(text))
    return chars


@dataclass(frozen=True)
class CharacterCheck:
    cluster: str
    kind: CharacterKind
    fate: Fate
    tokens: int
    became: str


def check_characters(tokenizer: Any, clusters: Sequence[str]) -> list[CharacterCheck]:
    """Encode each character alone and decode it back: unk, dropped, altered, byte pieces, or fine."""
    if not clusters:
        return []
    encoded: list[list[int]] = tokenizer(list(clusters), add_special_tokens=False)["input_ids"]
    decoded = tokenizer.batch_decode(encoded, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    unk = tokenizer.unk_token_id
    checks = []
    for cluster, ids, text in zip(clusters, encoded, decoded, strict=True):
        back = text.strip()
        fate: Fate
        if unk is not None and unk in ids:
            fate = "unk"
        elif back == cluster:
            fate = "byte_pieces" if _split_into_bytes(tokenizer, ids) else "ok"
        elif not back:
            fate = "dropped"
        else:
            fate = "altered"
        checks.append(CharacterCheck(cluster, character_kind(cluster), fate, len(ids), back))
    return checks


def _split_into_bytes(tokenizer: Any, ids: Sequence[int]) -> bool:
    """Some token holds only part of a character's UTF-8 bytes (SentencePiece byte fallback, byte-level BPE)."""
    if len(ids) < 2:
        return False
    pieces = tokenizer.batch_decode([[i] for i in ids], skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return any("\ufffd" in piece for piece in pieces)


def round_trip(tokenizer: Any, text: str) -> str:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    decoded: str = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return decoded


def first_difference(expected: str, got: str) -> dict[str, Any]:
    at = common_prefix([ord(c) for c in expected], [ord(c) for c in got])
    return {"at": at, "expected": expected[max(0, at - 10) : at + 20], "got": got[max(0, at - 10) : at + 20]}


def round_trip_failures(tokenizer: Any, texts: Sequence[str]) -> list[dict[str, Any]]:
    """Records whose whole training text does not survive encode/decode unchanged."""
    encoded: list[list[int]] = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    decoded = tokenizer.batch_decode(encoded, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return [
        dict(first_difference(text, back), index=index)
        for index, (text, back) in enumerate(zip(texts, decoded, strict=True))
        if back != text
    ]


@dataclass
class AuditReport:
    """Everything the audit found; ``exit_code`` is 1 when a record would lose its eos or characters."""

    figures: dict[str, Any] = field(default_factory=dict)
    advice: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        figures = self.figures
        damaged = (
            figures["eos_token"] is None
            or figures["eos_after_prompt"] > 0
            or figures["truncation"]["lose_eos"] > 0
            or figures["characters"]["records_with_lost_characters"] > 0
            or not figures["newline"]["single"]
            or figures["round_trip"]["records_changed"] > 0
        )
        return 1 if damaged else 0

    def to_json(self) -> dict[str, Any]:
        return dict(self.figures, advice=self.advice, exit_code=self.exit_code)


def audit_tokenizer(
    records: Sequence[Mapping[str, str]],
    tasks: Sequence[Task],
    tokenizer: Any,
    layout: PromptLayout,
    max_length: int = DEFAULT_MAX_LENGTH,
    tokenizer_name: str = "",
) -> AuditReport:
    """Audit ``records`` rendered with ``layout`` against ``tokenizer`` and ``max_length``."""
    if max_length < 1:
        raise KochallengeError(f"--max-length must be at least 1, got {max_length}")
    rendered = render_records(records, layout)
    texts = rendered.texts
    lengths = token_lengths(tokenizer, rendered)
    per_record = [clusters_in(text) for text in texts]
    in_records: Counter[str] = Counter(c for clusters in per_record for c in clusters if not c.isspace())
    checks = check_characters(tokenizer, sorted(in_records))
    lost = {c.cluster for c in checks if c.fate in LOST_FATES}
    changed = round_trip_failures(tokenizer, texts)
    newline = {
        "single": round_trip(tokenizer, NEWLINE_SAMPLE) == NEWLINE_SAMPLE,
        "double": round_trip(tokenizer, BLANK_LINE_SAMPLE) == BLANK_LINE_SAMPLE,
        "became": round_trip(tokenizer, NEWLINE_SAMPLE),
    }
    figures: dict[str, Any] = {
        "tokenizer": tokenizer_name,
        "tokenizer_class": type(tokenizer).__name__,
        "vocab_size": len(tokenizer),
        "eos_token": tokenizer.eos_token,
        "unk_token": tokenizer.unk_token,
        "prompt_layout": layout.path.name,
        "records": len(records),
        "tokens": _token_figures(lengths, tasks),
        "truncation": truncation_summary(lengths, max_length),
        "characters": _character_figures(checks, in_records, per_record, lost),
        "newline": newline,
        "round_trip": {"records_changed": len(changed), "examples": changed[:5]},
        "eos_after_prompt": sum(1 for t in lengths if t.eos_after_prompt),
        "boundary_merges": sum(1 for t in lengths if t.boundary_merged),
    }
    return AuditReport(figures, advise(figures))


def _token_figures(lengths: Sequence[RecordTokens], tasks: Sequence[Task]) -> dict[str, Any]:
    per_task: dict[str, Any] = {}
    for task in sorted(set(tasks)):
        mine = [t for t, k in zip(lengths, tasks, strict=True) if k == task]
        per_task[task] = {
            "prompt": distribution([t.prompt for t in mine]),
            "completion": distribution([t.completion for t in mine]),
            "total": distribution([t.total for t in mine]),
        }
    return {
        "prompt": distribution([t.prompt for t in lengths]),
        "completion": distribution([t.completion for t in lengths]),
        "total": distribution([t.total for t in lengths]),
        "per_task": per_task,
    }


def _character_figures(
    checks: Sequence[CharacterCheck],
    in_records: Mapping[str, int],
    per_record: Sequence[set[str]],
    lost: set[str],
) -> dict[str, Any]:
    by_kind: dict[str, dict[str, int]] = {}
    for kind in ("hangul", "jamo", "emoji", "other"):
        mine = [c for c in checks if c.kind == kind]
        by_kind[kind] = {"distinct": len(mine)} | {fate: sum(1 for c in mine if c.fate == fate) for fate in FATES}
    lost_rows = [
        {
            "char": c.cluster,
            "codepoints": " ".join(f"U+{ord(x):04X}" for x in c.cluster),
            "kind": c.kind,
            "fate": c.fate,
            "became": c.became,
            "records": in_records[c.cluster],
        }
        for c in sorted(checks, key=lambda c: (-in_records[c.cluster], c.cluster))
        if c.fate in LOST_FATES
    ]
    byte_rows = [
        {"char": c.cluster, "kind": c.kind, "tokens": c.tokens, "records": in_records[c.cluster]}
        for c in sorted(checks, key=lambda c: (-in_records[c.cluster], c.cluster))
        if c.fate == "byte_pieces"
    ]
    return {
        "distinct": len(checks),
        "by_kind": by_kind,
        "lost": lost_rows,
        "byte_pieces": byte_rows[:SHOWN],
        "byte_pieces_total": len(byte_rows),
        "records_with_lost_characters": sum(1 for clusters in per_record if clusters & lost),
    }


def advise(figures: Mapping[str, Any]) -> list[str]:
    """Concrete next steps, one per problem found, most damaging first."""
    advice = []
    if figures["eos_token"] is None:
        advice.append(
            "the tokenizer has no eos token, so no record teaches the model to stop: set tokenizer.eos_token "
            "(and the model's eos_token_id) before training"
        )
    if figures["eos_after_prompt"]:
        advice.append(
            "the tokenizer appends eos to every text, so each prompt already ends in eos and the model would learn "
            "to stop before answering: use a tokenizer that adds only a bos (most decoder-only models)"
        )
    cut = figures["truncation"]
    if cut["lose_eos"]:
        keep = cut["keep_99_9"]
        advice.append(
            f"{cut['lose_eos']} of {figures['records']} records are longer than max_length {cut['max_length']} and "
            f"would lose their eos ({cut['completion_cut']} with the completion cut, {cut['eos_only']} only the eos, "
            f"{cut['prompt_fills_max_length']} with no completion left): raise max_length to {keep} to keep "
            f"{KEEP_SHARE:.1%} of records whole ({cut['keep_all']} keeps all of them)"
        )
    advice += _character_advice(figures["characters"])
    newline = figures["newline"]
    if not newline["single"] or not newline["double"]:
        advice.append(
            f"'\\n' does not survive encode/decode ({NEWLINE_SAMPLE!r} came back as {newline['became']!r}), so the "
            "newline output format and the prompt's line breaks cannot be learned: use a tokenizer whose "
            "normalizer keeps newlines (SentencePiece trained with normalization_rule_name=identity and "
            "byte_fallback=True, as Llama-family tokenizers are); adding it as a token "
            "(tokenizer.add_tokens([AddedToken('\\n', normalized=False)])) works only where the tokenizer puts no "
            "dummy-prefix space after it, so run this audit again after the change"
        )
    changed = figures["round_trip"]["records_changed"]
    if changed:
        advice.append(
            f"{changed} records do not come back unchanged from encode/decode; the first differences are in the "
            "report's round_trip examples"
        )
    merges = figures["boundary_merges"]
    if merges:
        advice.append(
            f"in {merges} records the prompt's last token merges with the output's first when both are tokenized "
            "together: `train` is not affected (it tokenizes the prompt alone), but TRL on the prompt-completion "
            "export would start those completions inside the prompt"
        )
    return advice


def _character_advice(characters: Mapping[str, Any]) -> list[str]:
    advice = []
    lost_emoji = [row["char"] for row in characters["lost"] if row["kind"] == "emoji"]
    lost_other = [row["char"] for row in characters["lost"] if row["kind"] != "emoji"]
    if lost_emoji:
        advice.append(
            f"this tokenizer cannot represent these emoji ({len(lost_emoji)}): {' '.join(lost_emoji[:SHOWN])}; add "
            "them with tokenizer.add_tokens([...]) and model.resize_token_embeddings(len(tokenizer)) (train the new "
            "embeddings: LoRA needs modules_to_save=['embed_tokens', 'lm_head']), or use a tokenizer with byte fallback"
        )
    if lost_other:
        advice.append(
            f"add these tokens, which this tokenizer maps to unk, drops or changes ({len(lost_other)}): "
            f"{' '.join(lost_other[:SHOWN])}; "
            f"records with a lost character: {characters['records_with_lost_characters']}"
        )
    if characters["byte_pieces_total"]:
        frequent = " ".join(row["char"] for row in characters["byte_pieces"][:10])
        advice.append(
            f"{characters['byte_pieces_total']} characters are spelled in byte pieces (lossless, but 2-4 tokens "
            f"each); the most frequent: {frequent}. Adding them as tokens would shorten records"
        )
    return advice


def format_audit(report: AuditReport) -> str:
    """The audit for a terminal."""
    f = report.figures
    tokens, cut, chars = f["tokens"], f["truncation"], f["characters"]
    lines = [
        f"tokenizer {f['tokenizer']} ({f['tokenizer_class']}, {f['vocab_size']} tokens, eos {f['eos_token']!r}), "
        f"{f['records']} records rendered with {f['prompt_layout']}",
        "tokens          min    p50    p90    p99    max   mean",
    ]
    for part in ("prompt", "completion", "total"):
        d = tokens[part]
        lines.append(f"  {part:<12}{d['min']:>5}{d['p50']:>7}{d['p90']:>7}{d['p99']:>7}{d['max']:>7}{d['mean']:>7}")
    lines.append(
        f"max_length {cut['max_length']}: {cut['lose_eos']} records lose their eos "
        f"({cut['completion_cut']} completion cut, {cut['eos_only']} eos only, "
        f"{cut['prompt_fills_max_length']} prompt fills max_length); {cut['keep_99_9']} keeps 99.9%, "
        f"{cut['keep_all']} keeps all"
    )
    lines.append(f"characters: {chars['distinct']} distinct")
    for kind, counts in chars["by_kind"].items():
        lines.append(
            f"  {kind:<7} {counts['distinct']:>5} distinct: {counts['unk']} unk, {counts['dropped']} dropped, "
            f"{counts['altered']} altered, {counts['byte_pieces']} in byte pieces"
        )
    for row in chars["lost"][:SHOWN]:
        lines.append(
            f"  lost {row['char']} ({row['codepoints']}, {row['kind']}): {row['fate']}"
            f"{' -> ' + repr(row['became']) if row['fate'] == 'altered' else ''} in {row['records']} records"
        )
    lines.append(f"records with a lost character: {chars['records_with_lost_characters']}")
    newline = f["newline"]
    lines.append(f"'\\n' round trip: {'ok' if newline['single'] else 'BROKEN -> ' + repr(newline['became'])}")
    lines.append(f"records changed by encode/decode: {f['round_trip']['records_changed']}")
    lines += [f"advice: {item}" for item in report.advice] or ["advice: none, this tokenizer fits the data"]
    return "\n".join(lines)


def print_audit(report: AuditReport, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(format_audit(report))
