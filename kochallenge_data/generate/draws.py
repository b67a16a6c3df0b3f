"""Quicker spellings of the ``random.Random`` draws the sampler makes many times per record.

Each function returns what the ``Random`` method it stands for returns from the same generator state, and
leaves the state where that method leaves it (tests compare the two over many seeds and sizes), so a seed
still gives the same bytes. ``randint``, ``choice``, ``sample`` and ``randrange(n)`` are all built on
``Random._randbelow(n)`` (a uniform integer below ``n``); calling it here directly skips their argument
handling, which in the sampler's inner loops costs more than the draws. This module is the only place that
relies on that: if a Python release changed how those methods draw, the tests of this module would fail.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from math import ceil, log
from typing import TypeVar

T = TypeVar("T")


def randint(rng: random.Random, low: int, high: int) -> int:
    """``rng.randint(low, high)`` for ``low <= high``."""
    return low + rng._randbelow(high - low + 1)  # type: ignore[attr-defined,no-any-return]


def choice(rng: random.Random, items: Sequence[T]) -> T:
    """``rng.choice(items)`` for a non-empty sequence."""
    return items[rng._randbelow(len(items))]  # type: ignore[attr-defined]


def sample(rng: random.Random, population: Sequence[T], k: int) -> list[T]:
    """``rng.sample(population, k)`` for a sequence: the same algorithm, with the same draws in the same order.

    A small population is drawn from a shrinking pool; a large one by drawing positions until ``k`` distinct
    ones came up. Where the two meet depends on ``k`` exactly as in ``random.Random.sample``.
    """
    n = len(population)
    if not 0 <= k <= n:
        raise ValueError("Sample larger than population or is negative")
    below = rng._randbelow  # type: ignore[attr-defined]
    setsize = 21  # the switch-over point random.Random.sample uses
    if k > 5:
        setsize += 4 ** ceil(log(k * 3, 4))
    result: list[T] = []
    if n <= setsize:
        pool = list(population)
        for i in range(k):
            j = below(n - i)
            result.append(pool[j])
            pool[j] = pool[n - i - 1]
        return result
    selected: set[int] = set()
    for _ in range(k):
        j = below(n)
        while j in selected:
            j = below(n)
        selected.add(j)
        result.append(population[j])
    return result


def sample_two(rng: random.Random, population: Sequence[T]) -> tuple[T, T]:
    """``rng.sample(population, 2)`` as a pair; a population of up to 21 items (every emoji pool) in two draws.

    ``sample`` moves the last item into the first pick's place before the second draw from the rest.
    """
    n = len(population)
    if not 2 <= n <= 21:
        first, second = sample(rng, population, 2)
        return first, second
    below = rng._randbelow  # type: ignore[attr-defined]
    at = below(n)
    then = below(n - 1)
    return population[at], population[n - 1 if then == at else then]
