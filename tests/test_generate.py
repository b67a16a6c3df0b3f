"""How challenges are chosen: hard rules, fit to the request, honest first lines, feedback that covers the week."""

from __future__ import annotations

import random
import re
from collections import Counter
from functools import lru_cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kochallenge_data.formats import parse_recommendation
from kochallenge_data.generate import Sampler
from kochallenge_data.generate.feedback import COUNT_WORDS, GroupEntry, PersonalEntry, Week, plan_feedback, week_items
from kochallenge_data.generate.requests import FitIndex
from kochallenge_data.generate.selection import Licence, LineUsage, allowed, choose, licence_for, meets
from kochallenge_data.pools import PoolChallenge, Pools, load_pools
from kochallenge_data.templates import Templates, load_templates
from kochallenge_data.text import emoji_in, nfc

from .conftest import FIXTURE_POOLS


@lru_cache(maxsize=2)
def pools_at(root: str | None) -> Pools:
    return load_pools(root)


@lru_cache(maxsize=1)
def templates() -> Templates:
    return load_templates()


def drawn(task: str, seed: int, count: int, root: str | None = None) -> list[tuple[object, Pools]]:
    pools = pools_at(root)
    sampler = Sampler(pools, templates(), random.Random(seed))
    return [(sampler.draw(task), pools) for _ in range(count)]  # type: ignore[arg-type]


def by_title(pools: Pools) -> dict[str, PoolChallenge]:
    return {c.title: c for c in pools.challenges}


@settings(max_examples=6)
@given(seed=st.integers(0, 2**32))
def test_base_info_picks_obey_the_hard_rules_and_the_sentence_claims_only_what_they_show(seed: int) -> None:
    for candidate, pools in drawn("base_info", seed, 120):
        location, work_type, category_name = candidate.input.split(", ")  # type: ignore[attr-defined]
        recommendation = parse_recommendation(candidate.output)  # type: ignore[attr-defined]
        picks = [by_title(pools)[c.title] for c in recommendation.challenges]
        licence = Licence(location=location, work_type=work_type)
        for pick in picks:
            assert allowed(pick, licence), (candidate.input, pick.title)  # type: ignore[attr-defined]
            assert pools.category_name(pick.category) == category_name
            assert pick.season is None and not pick.needs
        assert all(c.description in by_title(pools)[c.title].descriptions for c in recommendation.challenges)
        shows_location = any(location in p.places for p in picks)
        shows_work = any(work_type in p.work_types for p in picks)
        first_line = recommendation.recommend
        if location in first_line and location not in category_name:
            assert shows_location, (first_line, [p.title for p in picks])
        if work_type in first_line:
            assert shows_work, (first_line, [p.title for p in picks])


def test_base_info_usually_includes_a_challenge_for_the_place_or_the_work() -> None:
    records = drawn("base_info", 11, 600)
    specific = 0
    for candidate, pools in records:
        titles = [c.title for c in parse_recommendation(candidate.output).challenges]  # type: ignore[attr-defined]
        specific += any(by_title(pools)[t].places or by_title(pools)[t].work_types for t in titles)
    assert specific / len(records) > 0.9


@settings(max_examples=6)
@given(seed=st.integers(0, 2**32))
def test_free_text_picks_obey_the_hard_rules_and_meet_the_main_facet(seed: int) -> None:
    for candidate, pools in drawn("free_text", seed, 150):
        meta = candidate.meta  # type: ignore[attr-defined]
        facets = [pools.facet(key) for key in meta["request"]["facets"]]
        licence = licence_for(facets)
        titles = [c.title for c in parse_recommendation(candidate.output).challenges]  # type: ignore[attr-defined]
        for title in titles:
            assert allowed(by_title(pools)[title], licence), (candidate.input, title)  # type: ignore[attr-defined]
        if meta["request"]["origin"] == "composed" and facets:
            # A composed request is only made when enough challenges meet all it says: every pick meets the main facet.
            assert all(meets(by_title(pools)[t], facets[0]) for t in titles), (candidate.input, titles)  # type: ignore[attr-defined]
            assert FitIndex(pools).count(facets) >= 3


def test_a_facet_reply_is_used_only_when_every_pick_meets_the_facet() -> None:
    kinds: Counter[str] = Counter()
    for candidate, _ in drawn("free_text", 5, 800):
        meta = candidate.meta  # type: ignore[attr-defined]
        kinds[meta["recommend_reason"]] += 1
        if meta["recommend_reason"] == "facet":
            assert meta["main_met"] and all(meta["main_met"]), candidate.input  # type: ignore[attr-defined]
    assert kinds["facet"] > kinds["general"]


def test_questions_are_answered_on_the_first_line() -> None:
    asked = 0
    for candidate, pools in drawn("free_text", 3, 1500):
        meta = candidate.meta  # type: ignore[attr-defined]
        if meta["request"]["question"]:
            asked += 1
            category = pools.facet(meta["request"]["main"]).category
            first_line = candidate.output.split("\n")[0]  # type: ignore[attr-defined]
            assert any(first_line.startswith(p.text) for p in pools.about[category or ""]), first_line
    assert asked > 20


def test_composed_requests_are_many_and_varied() -> None:
    inputs = Counter(c.input for c, _ in drawn("free_text", 1, 3000))  # type: ignore[attr-defined]
    assert len(inputs) > 1500
    assert inputs.most_common(1)[0][1] < 15


def test_no_challenge_line_takes_more_than_its_share() -> None:
    lines: Counter[str] = Counter()
    for candidate, _ in drawn("free_text", 2, 1500) + drawn("base_info", 2, 1500):
        lines.update(candidate.output.split("\n")[1:])  # type: ignore[attr-defined]
    assert max(lines.values()) / sum(lines.values()) < 0.01


def test_weeks_fit_one_user_and_every_item_is_addressed() -> None:
    for candidate, pools in drawn("feedback", 9, 800):
        meta = candidate.meta  # type: ignore[attr-defined]
        licence = Licence(location=meta["location"], work_type=meta["work_type"], season=meta["season"])
        week = candidate.input  # type: ignore[attr-defined]
        for title in by_title(pools):
            if f'"title":"{title}"' in week:
                assert allowed(by_title(pools)[title], licence), (title, licence)
        assert len(nfc(candidate.output)) <= 100  # type: ignore[attr-defined]
        shown = emoji_in(candidate.output)  # type: ignore[attr-defined]
        assert len(shown) == len(set(shown)), candidate.output  # type: ignore[attr-defined]
        closings = {str(p.source) for p in pools.feedback_phrases["closing"]}
        if any(source in closings for source in meta["phrases"]):
            assert "success" in meta["covered"], candidate.output  # type: ignore[attr-defined]


week_shapes = st.builds(
    lambda personal, group: (personal, group),
    st.lists(st.tuples(st.integers(0, 10**6), st.booleans()), max_size=3),
    st.lists(st.tuples(st.integers(0, 10**6), st.lists(st.booleans(), max_size=4)), max_size=2),
)


@settings(max_examples=60)
@given(shape=week_shapes, seed=st.integers(0, 2**32))
def test_feedback_addresses_every_item_within_the_limit(
    shape: tuple[list[tuple[int, bool]], list[tuple[int, list[bool]]]], seed: int
) -> None:
    from datetime import datetime

    pools = pools_at(str(FIXTURE_POOLS))
    titles = [c.title for c in pools.challenges]
    rng = random.Random(seed)
    chosen = rng.sample(titles, len(shape[0]) + len(shape[1]))
    at = datetime(2026, 3, 2)
    personal = tuple(PersonalEntry(i, chosen[i], ok) for i, (_, ok) in enumerate(shape[0]))
    group = tuple(
        GroupEntry(i, chosen[len(personal) + i], at, at, tuple((ok, at) for ok in subs))
        for i, (_, subs) in enumerate(shape[1])
    )
    week = Week(1, personal, group)
    habits = {c.title: c.habit for c in pools.challenges}
    plan = plan_feedback(week, pools, rng, load_templates().feedback_layouts, 100, habits)
    assert len(nfc(plan.text)) <= 100
    items = week_items(week, habits)
    for kind, found in items.items():
        if found:
            covered = plan.covered[kind]
            assert covered["named"] + covered["aggregated"] == len(found)
            if covered["named"]:
                assert all(item.title in plan.text for item in found)
            else:
                assert re.search(f"{COUNT_WORDS[len(found)]} (개|가지)", plan.text), plan.text
    if not any(items.values()):
        assert plan.covered == {}


def test_one_off_successes_are_not_praised_as_habits() -> None:
    pools = pools_at(str(FIXTURE_POOLS))
    once = next(c for c in pools.challenges if not c.habit)
    habit = next(c for c in pools.challenges if c.habit)
    layouts = load_templates().feedback_layouts
    for challenge, kind in ((once, "success_once"), (habit, "success_habit")):
        week = Week(1, (PersonalEntry(1, challenge.title, True),), ())
        plan = plan_feedback(week, pools, random.Random(0), layouts, 100, {challenge.title: challenge.habit})
        sources = {str(p.source) for p in pools.feedback_phrases[kind]}
        assert plan.sources[0] in sources


@given(
    scores=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 3)), min_size=1, max_size=30),
    count=st.integers(1, 5),
    seed=st.integers(0, 2**32),
)
def test_choose_returns_the_best_fitting_candidates(scores: list[tuple[int, int]], count: int, seed: int) -> None:
    candidates = list(pools_at(None).challenges[: len(scores)])
    score = dict(zip((c.title for c in candidates), scores, strict=True))
    picked = choose(candidates, lambda c: score[c.title], count, random.Random(seed), LineUsage(1.0))
    assert len(picked) == min(count, len(candidates))
    worst_picked = min(score[c.title] for c in picked)
    assert all(score[c.title] <= worst_picked for c in candidates if c not in picked)


def test_hard_rules() -> None:
    pools = pools_at(str(FIXTURE_POOLS))
    get = by_title(pools)
    assert not allowed(get["등산 쓰레기 챙겨 내려오기"], Licence(location="도시"))
    assert allowed(get["등산 쓰레기 챙겨 내려오기"], Licence(location="산"))
    assert not allowed(get["여름 콩국수 해 먹기"], Licence())
    assert allowed(get["여름 콩국수 해 먹기"], Licence(season="여름"))
    assert not allowed(get["아이와 장난감 나누기"], Licence())
    assert allowed(get["아이와 장난감 나누기"], licence_for([pools.facet("아이")]))
    assert not allowed(get["텀블러 들고 출근하기"], Licence(work_type="재택근무"))


@pytest.mark.parametrize("seed", [1, 2])
def test_same_seed_gives_the_same_candidates(seed: int) -> None:
    first = [c.model_record() for c, _ in drawn("free_text", seed, 50)]  # type: ignore[attr-defined]
    second = [c.model_record() for c, _ in drawn("free_text", seed, 50)]  # type: ignore[attr-defined]
    assert first == second
