"""Diversity statistics: the numbers that tell a monotonous dataset from a rich one."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..errors import FormatError
from ..formats import parse_recommendation
from ..models import Task
from ..text import emoji_in


def distinct_n(token_lists: Sequence[Sequence[str]], n: int) -> float:
    """Distinct n-grams over all n-grams (Li et al.'s distinct-n): 1.0 means nothing repeats."""
    grams: Counter[tuple[str, ...]] = Counter()
    for tokens in token_lists:
        grams.update(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    total = sum(grams.values())
    return round(len(grams) / total, 4) if total else 0.0


def morphemes(texts: Sequence[str]) -> list[list[str]]:
    """Kiwi morphemes (form/tag) per text. Lines are analysed once each: built outputs share most
    of their lines (challenge lines repeat across records), which makes this many times faster."""
    from .spacing import get_kiwi

    lines = list(dict.fromkeys(line for text in texts for line in text.split("\n")))
    analysed = {
        line: [f"{t.form}/{t.tag}" for t in tokens]
        for line, tokens in zip(lines, get_kiwi().tokenize(lines), strict=True)
    }
    return [[m for line in text.split("\n") for m in analysed[line]] for text in texts]


def diversity_stats(records: Sequence[dict[str, str]], tasks: Sequence[Task]) -> dict[str, Any]:
    """Per-task distinct-1/2 over Kiwi morphemes, emoji variety and the most repeated parts."""
    stats: dict[str, Any] = {}
    for task in sorted(set(tasks)):
        outputs = [r["output"] for r, t in zip(records, tasks, strict=True) if t == task]
        tokens = morphemes(outputs)
        task_stats: dict[str, Any] = {
            "records": len(outputs),
            "distinct_1": distinct_n(tokens, 1),
            "distinct_2": distinct_n(tokens, 2),
        }
        if task == "feedback":
            counts = Counter(e for o in outputs for e in emoji_in(o))
            task_stats["emoji_distinct"] = len(counts)
            task_stats["emoji_top"] = counts.most_common(5)
        else:
            sentences: Counter[str] = Counter()
            challenges: Counter[str] = Counter()
            for output in outputs:
                try:
                    parsed = parse_recommendation(output)
                except FormatError:
                    continue
                sentences[parsed.recommend] += 1
                challenges.update(c.title for c in parsed.challenges)
            task_stats["top_recommend_share"] = _top_share(sentences, len(outputs))
            task_stats["distinct_recommend"] = len(sentences)
            task_stats["top_challenge_share"] = _top_share(challenges, sum(challenges.values()))
            task_stats["distinct_challenges"] = len(challenges)
        stats[task] = task_stats
    return stats


def _top_share(counts: Counter[str], total: int) -> dict[str, Any] | None:
    if not counts or not total:
        return None
    text, count = counts.most_common(1)[0]
    return {"text": text, "count": count, "share": round(count / total, 4)}
