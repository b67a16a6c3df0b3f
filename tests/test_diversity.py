"""Diversity figures: the tally reads each distinct word once, and must count what a plain recount counts."""

from __future__ import annotations

import random
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kochallenge_data.checks import diversity
from kochallenge_data.checks.diversity import DiversityTally, WordReading, diversity_stats, morphemes_of_words
from kochallenge_data.checks.spacing import get_kiwi
from kochallenge_data.models import Task

LINES = [
    "가까운 거리는 걸어서 이동해 보세요.",
    "텀블러 챙기기: 카페에서 일회용 컵 대신 써요",
    "계단 이용하기: 가까운 층은 계단으로 다녀요",
    "장바구니 들고 가기: 비닐봉지를 받지 않아요",
]
FEEDBACK = ["텀블러 챙기기를 해냈어요! 🌱", "계단 이용하기, 다음 주에 다시 해 봐요. 💪", "이번 주도 멋져요! 🌿🌱"]


def recount(outputs: list[str]) -> tuple[float, float]:
    """distinct-1 and distinct-2 the slow way: every text's morphemes, word by word, in one list."""
    kiwi = get_kiwi()
    texts = [[f"{t.form}/{t.tag}" for word in o.split() for t in kiwi.tokenize(word)] for o in outputs]
    unigrams = [m for text in texts for m in text]
    bigrams = [pair for text in texts for pair in pairwise(text)]
    return round(len(set(unigrams)) / len(unigrams), 4), round(len(set(bigrams)) / len(bigrams), 4)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.sampled_from(LINES), min_size=1, max_size=4), min_size=1, max_size=12))
def test_recommendation_figures_equal_a_recount(outputs_lines: list[list[str]]) -> None:
    outputs = ["\n".join(lines) for lines in outputs_lines]
    stats = diversity_stats([{"output": o} for o in outputs], ["free_text"] * len(outputs))
    assert (stats["free_text"]["distinct_1"], stats["free_text"]["distinct_2"]) == recount(outputs)


@settings(max_examples=10, deadline=None)
@given(st.lists(st.sampled_from(FEEDBACK), min_size=1, max_size=10), st.randoms(use_true_random=False))
def test_feedback_figures_equal_a_recount_and_do_not_depend_on_order(outputs: list[str], rng: random.Random) -> None:
    tasks: list[Task] = ["feedback"] * len(outputs)
    stats = diversity_stats([{"output": o} for o in outputs], tasks)["feedback"]
    assert (stats["distinct_1"], stats["distinct_2"]) == recount(outputs)
    shuffled = outputs[:]
    rng.shuffle(shuffled)
    again = diversity_stats([{"output": o} for o in shuffled], tasks)["feedback"]
    assert (again["distinct_1"], again["distinct_2"], again["emoji_distinct"]) == (
        stats["distinct_1"],
        stats["distinct_2"],
        stats["emoji_distinct"],
    )


def test_the_tally_counts_repeats_and_the_parts_of_recommendations() -> None:
    tally = DiversityTally()
    for _ in range(3):
        tally.add("base_info", "\n".join(LINES))
    tally.add("feedback", FEEDBACK[0])
    stats = tally.result()
    assert stats["base_info"]["records"] == 3
    assert stats["base_info"]["distinct_recommend"] == 1
    assert stats["base_info"]["top_recommend_share"]["share"] == 1.0
    assert stats["base_info"]["distinct_challenges"] == 3
    assert stats["feedback"]["emoji_top"] == [("🌱", 1)]
    # Three copies of one text: a third of the n-grams are new.
    single = DiversityTally()
    single.add("base_info", "\n".join(LINES))
    once = single.result()["base_info"]
    assert stats["base_info"]["distinct_1"] == round(once["distinct_1"] / 3, 4)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.lists(st.sampled_from(LINES + FEEDBACK), min_size=1, max_size=3), min_size=1, max_size=14))
def test_a_reading_that_ends_later_counts_the_same_and_reads_each_word_once(outputs_lines: list[list[str]]) -> None:
    """A worker build reads words in a worker while it goes on: the figures must not depend on when a reading
    ends, and no word is read twice."""
    outputs = ["\n".join(lines) for lines in outputs_lines]
    asked: list[str] = []

    def read_later(words: list[str]) -> WordReading:
        asked.extend(words)
        return lambda: morphemes_of_words(words)  # read only when the tally asks for it

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(diversity, "KIWI_BATCH", 3)  # several readings in flight over a dozen outputs
        tally = DiversityTally(read_later)
        for output in outputs:
            tally.add("free_text", output)
        stats = tally.result()["free_text"]
    assert len(asked) == len(set(asked))
    assert (stats["distinct_1"], stats["distinct_2"]) == recount(outputs)
