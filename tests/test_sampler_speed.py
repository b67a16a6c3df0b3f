"""The sampler's faster paths give exactly what the plain ones give (issue 13: same seed, same bytes).

Each shortcut is compared with what it replaces: the ``random.Random`` methods, a full stable sort, isoformat, the
bit loop, and least_used followed by add.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kochallenge_data.generate import draws
from kochallenge_data.generate.feedback import GroupEntry, PersonalEntry, Week
from kochallenge_data.generate.requests import mask_bits, positions
from kochallenge_data.generate.selection import LineUsage, Pick, lowest_draws
from kochallenge_data.pools import load_pools

from .conftest import FIXTURE_POOLS

seeds = st.integers(0, 2**32)


@settings(max_examples=300)
@given(seed=seeds, low=st.integers(-50, 50), width=st.integers(0, 10_000))
def test_randint_and_choice_draw_as_random_does(seed: int, low: int, width: int) -> None:
    ours, theirs = random.Random(seed), random.Random(seed)
    assert draws.randint(ours, low, low + width) == theirs.randint(low, low + width)
    items = list(range(width + 1))
    assert draws.choice(ours, items) == theirs.choice(items)
    assert ours.getstate() == theirs.getstate()


@settings(max_examples=300)
@given(seed=seeds, size=st.integers(0, 120), data=st.data())
def test_sample_draws_as_random_does(seed: int, size: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(0, min(size, 40)))
    population = tuple(f"item{i}" for i in range(size))
    ours, theirs = random.Random(seed), random.Random(seed)
    assert draws.sample(ours, population, k) == theirs.sample(population, k)
    assert draws.sample(ours, range(1, 10000), k) == theirs.sample(range(1, 10000), k)
    if size >= 2:
        assert list(draws.sample_two(ours, population)) == theirs.sample(population, 2)
    assert ours.getstate() == theirs.getstate()


class OwnFloats(random.Random):
    """A generator with its own random(): random.Random then draws integers from floats, not from bits."""

    def random(self) -> float:
        return super().random()


@settings(max_examples=100)
@given(seed=seeds, size=st.integers(2, 60))
def test_draws_follow_a_generator_that_draws_its_own_way(seed: int, size: int) -> None:
    ours, theirs = OwnFloats(seed), OwnFloats(seed)
    population = list(range(size))
    assert draws.randint(ours, 0, size) == theirs.randint(0, size)
    assert draws.choice(ours, population) == theirs.choice(population)
    assert draws.sample(ours, population, 2) == theirs.sample(population, 2)
    assert list(draws.sample_two(ours, population)) == theirs.sample(population, 2)
    assert ours.getstate() == theirs.getstate()


def test_sample_refuses_what_random_refuses() -> None:
    with pytest.raises(ValueError, match="Sample larger than population"):
        draws.sample(random.Random(0), (1, 2), 3)


@settings(max_examples=300)
@given(
    values=st.lists(st.sampled_from([0.1, 0.2, 0.3, 0.5]), min_size=0, max_size=400),
    needed=st.integers(1, 6),
    data=st.data(),
)
def test_lowest_draws_is_the_prefix_of_a_stable_sort(values: list[float], needed: int, data: st.DataObject) -> None:
    # Few distinct values, so ties are the rule: the stable sort's order among equals is what must hold.
    whole = range(len(values))
    assert lowest_draws(whole, values, needed) == sorted(whole, key=values.__getitem__)[:needed]
    subset = sorted(data.draw(st.sets(st.sampled_from(list(whole)))) if values else set())
    assert lowest_draws(subset, values, needed) == sorted(subset, key=values.__getitem__)[:needed]


@settings(max_examples=200)
@given(masks=st.lists(st.integers(0, 2**900), min_size=1, max_size=5))
def test_positions_read_every_set_bit(masks: list[int]) -> None:
    for mask in masks:
        expected = [i for i in range(mask.bit_length()) if mask >> i & 1]
        assert positions(mask) == expected
        assert mask_bits(mask, 1000).nonzero()[0].tolist() == expected


def test_week_json_writes_dates_as_isoformat() -> None:
    at = datetime(2026, 3, 2)
    group = GroupEntry(7, "텀블러 쓰기", at - timedelta(days=3), at + timedelta(days=6, seconds=86399), ((True, at),))
    week = Week(12, (PersonalEntry(3, "물 마시기", False),), (group,))
    expected = {
        "memberId": 12,
        "personalChallenges": [{"id": 3, "title": "물 마시기", "isSuccess": False}],
        "groupChallenges": [
            {
                "id": 7,
                "title": "텀블러 쓰기",
                "startDate": group.start.isoformat(),
                "endDate": group.end.isoformat(),
                "submissions": [{"isSuccess": True, "submittedAt": at.isoformat()}],
            }
        ],
    }
    assert week.to_json() == orjson.dumps(expected).decode()


@settings(max_examples=100)
@given(seed=seeds, rounds=st.integers(1, 40))
def test_take_is_least_used_then_add(seed: int, rounds: int) -> None:
    challenges = load_pools(FIXTURE_POOLS).challenges[:6]
    pick_rng, ours_rng, theirs_rng = random.Random(seed), random.Random(seed + 1), random.Random(seed + 1)
    ours, theirs = LineUsage(0.01), LineUsage(0.01)
    for _ in range(rounds):
        chosen = pick_rng.sample(list(challenges), 3)
        taken = [ours.take(c, ours_rng) for c in chosen]
        picks = [Pick(c, theirs.least_used(c, theirs_rng), ()) for c in chosen]
        theirs.add(picks)
        assert taken == [p.description for p in picks]
    assert (ours.by_title, ours.lowest, ours.highest_lowest, ours.total) == (
        theirs.by_title,
        theirs.lowest,
        theirs.highest_lowest,
        theirs.total,
    )
    assert ours_rng.getstate() == theirs_rng.getstate()
