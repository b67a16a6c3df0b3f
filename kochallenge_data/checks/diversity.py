"""Diversity statistics: the numbers that tell a monotonous dataset from a rich one."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from ..errors import FormatError
from ..formats import parse_recommendation
from ..models import Task
from ..text import emoji_in

# Outputs read per Kiwi call: each call gets every new word of this many outputs at once.
KIWI_BATCH = 4096

WordReading = Callable[[], list[tuple[str, ...]]]
# Starts reading words with Kiwi and returns a function that waits for each word's morphemes ("form/tag"): a
# build with worker processes reads in a worker while it goes on.
WordReader = Callable[[list[str]], WordReading]


def morphemes_of_words(words: list[str]) -> list[tuple[str, ...]]:
    """Each word's Kiwi morphemes as "form/tag", the word read alone."""
    from .spacing import get_kiwi

    return [tuple(f"{t.form}/{t.tag}" for t in tokens) for tokens in get_kiwi().tokenize(words)] if words else []


def read_words_here(words: list[str]) -> WordReading:
    """A :data:`WordReader` that reads in this process, at once."""
    read = morphemes_of_words(words)
    return lambda: read


@dataclass(frozen=True)
class _LineGrams:
    length: int  # morphemes
    first_last: tuple[int, int] | tuple[()]  # the first and last morpheme, to join lines; empty for no morphemes
    unigrams: frozenset[int]
    bigrams: frozenset[int]  # two morpheme ids in one int


class DiversityTally:
    """Per-task distinct-1/2 over Kiwi morphemes, emoji variety and the most repeated parts, fed one output at a
    time in flat memory (the n-gram sets grow with the vocabulary, not with the records).

    Each distinct word is read by Kiwi once, on its own, and a text's morphemes are its words' morphemes in order:
    words repeat far more than texts do, so the cost barely grows with the number of records. (A word's reading
    alone can differ from its reading in a sentence; for counting variety that is noise, not bias.)
    """

    def __init__(self, reader: WordReader = read_words_here) -> None:
        self._reader = reader
        # The outputs whose new words are being read, and the reading: counted when the next ones are read.
        self._reading: tuple[list[tuple[Task, str]], list[str], WordReading] | None = None
        self._morpheme_ids: dict[str, int] = {}
        self._word_morphemes: dict[str, tuple[int, ...]] = {}
        self._lines: dict[str, _LineGrams] = {}
        self._waiting: list[tuple[Task, str]] = []
        self._unigrams: dict[Task, set[int]] = {}
        self._bigrams: dict[Task, set[int]] = {}
        self._counts: Counter[tuple[Task, int]] = Counter()  # (task, n) -> n-grams seen
        self._records: Counter[Task] = Counter()
        self._emoji: Counter[str] = Counter()
        self._recommend: dict[Task, Counter[str]] = {}
        self._challenges: dict[Task, Counter[str]] = {}

    def add(self, task: Task, output: str) -> None:
        self._records[task] += 1
        if task == "feedback":
            self._emoji.update(emoji_in(output))
        else:
            self._count_parts(task, output)
        self._waiting.append((task, output))
        if len(self._waiting) >= KIWI_BATCH:
            self._read_waiting()

    def result(self) -> dict[str, Any]:
        self._read_waiting()
        self._count_read()
        stats: dict[str, Any] = {}
        for task in sorted(self._records):
            unigrams, bigrams = self._counts[(task, 1)], self._counts[(task, 2)]
            task_stats: dict[str, Any] = {
                "records": self._records[task],
                "distinct_1": _share(len(self._unigrams.get(task, ())), unigrams),
                "distinct_2": _share(len(self._bigrams.get(task, ())), bigrams),
            }
            if task == "feedback":
                task_stats["emoji_distinct"] = len(self._emoji)
                task_stats["emoji_top"] = self._emoji.most_common(5)
            else:
                sentences, challenges = self._recommend.get(task, Counter()), self._challenges.get(task, Counter())
                task_stats["top_recommend_share"] = _top_share(sentences, self._records[task])
                task_stats["distinct_recommend"] = len(sentences)
                task_stats["top_challenge_share"] = _top_share(challenges, sum(challenges.values()))
                task_stats["distinct_challenges"] = len(challenges)
            stats[task] = task_stats
        return stats

    def _count_parts(self, task: Task, output: str) -> None:
        try:
            parsed = parse_recommendation(output)
        except FormatError:
            return
        self._recommend.setdefault(task, Counter())[parsed.recommend] += 1
        self._challenges.setdefault(task, Counter()).update(c.title for c in parsed.challenges)

    def _read_waiting(self) -> None:
        """Count the outputs whose reading has ended, then start reading the new words of those waiting (one
        Kiwi call for all of them). Every word is read before the first output that holds it is counted, and
        morpheme ids only name morphemes, so the figures are the same however the reading is done."""
        self._count_read()
        new = list(
            dict.fromkeys(
                word
                for _, text in self._waiting
                for line in text.split("\n")
                if line not in self._lines
                for word in line.split()
                if word not in self._word_morphemes
            )
        )
        self._reading = (self._waiting, new, self._reader(new) if new else list)
        self._waiting = []

    def _count_read(self) -> None:
        if self._reading is None:
            return
        outputs, words, reading = self._reading
        self._reading = None
        for word, morphemes in zip(words, reading(), strict=True):
            self._word_morphemes[word] = tuple(self._morpheme_id(m) for m in morphemes)
        for task, text in outputs:
            self._count_grams(task, text)

    def _count_grams(self, task: Task, text: str) -> None:
        unigrams, bigrams = self._unigrams.setdefault(task, set()), self._bigrams.setdefault(task, set())
        last = -1
        for line in text.split("\n"):
            grams = self._lines.get(line) or self._line_grams(line, keep=task != "feedback")
            if not grams.first_last:
                continue
            unigrams.update(grams.unigrams)
            bigrams.update(grams.bigrams)
            self._counts[(task, 1)] += grams.length
            self._counts[(task, 2)] += grams.length - 1
            first, next_last = grams.first_last
            if last >= 0:  # the bigram across the line break
                bigrams.add(last << 32 | first)
                self._counts[(task, 2)] += 1
            last = next_last

    def _line_grams(self, line: str, keep: bool) -> _LineGrams:
        """A line's morpheme n-grams; recommendation lines repeat across records and are kept, feedback is not."""
        ids = [m for word in line.split() for m in self._word_morphemes[word]]
        grams = _LineGrams(
            len(ids), (ids[0], ids[-1]) if ids else (), frozenset(ids), frozenset(a << 32 | b for a, b in pairwise(ids))
        )
        if keep:
            self._lines[line] = grams
        return grams

    def _morpheme_id(self, morpheme: str) -> int:
        return self._morpheme_ids.setdefault(morpheme, len(self._morpheme_ids))


def _share(distinct: int, total: int) -> float:
    """Distinct n-grams over all n-grams (Li et al.'s distinct-n): 1.0 means nothing repeats."""
    return round(distinct / total, 4) if total else 0.0


def diversity_stats(records: Sequence[dict[str, str]], tasks: Sequence[Task]) -> dict[str, Any]:
    """:class:`DiversityTally` over records already in memory."""
    tally = DiversityTally()
    for record, task in zip(records, tasks, strict=True):
        tally.add(task, record["output"])
    return tally.result()


def _top_share(counts: Counter[str], total: int) -> dict[str, Any] | None:
    if not counts or not total:
        return None
    text, count = counts.most_common(1)[0]
    return {"text": text, "count": count, "share": round(count / total, 4)}
