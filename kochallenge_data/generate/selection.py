"""How a challenge is chosen: hard rules never break, then fit to what was asked, randomness only among equals.

1. **Hard rules** (:func:`allowed`): a challenge bound to a place, a work type or a season, or one that presupposes a
   child, a pet, a car or a yard, is allowed only when the input licenses it; a commute challenge never reaches a
   user who works from home. A request that names a category keeps every pick in it.
2. **Fit** (:func:`choose`): candidates that meet the request's main facet come first, then those that meet more of
   its other facets. A line that already holds its share of the dataset steps back while others remain.
3. **Chance** decides only among candidates that fit equally well, through the one seeded ``random.Random``.

Every pick carries the reasons it was chosen, so the metadata sidecar can say why each line is there.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from itertools import product, repeat, starmap
from math import comb, prod
from typing import NamedTuple

from ..pools import Facet, PoolChallenge
from .draws import choice

# Until this many lines were dealt, no line counts as over its share (early shares are noise).
LINE_CAP_FLOOR = 8


@dataclass(frozen=True)
class Licence:
    """What the input says about the user, and so what a challenge may presuppose."""

    location: str | None = None
    work_type: str | None = None
    season: str | None = None
    needs: frozenset[str] = frozenset()
    category: str | None = None
    # The user goes to work: a commute challenge needs this or a work type it does not exclude.
    commutes: bool = False


def licence_for(facets: Sequence[Facet], **given: str | None) -> Licence:
    """The licence a set of request facets grants, on top of what the input states outright."""
    seasons = {f.season for f in facets if f.season}
    locations = {f.location for f in facets if f.location}
    work_types = {f.work_type for f in facets if f.work_type}
    categories = {f.category for f in facets if f.category}
    return Licence(
        location=given.get("location") or _only(locations),
        work_type=given.get("work_type") or _only(work_types),
        season=given.get("season") or _only(seasons),
        needs=frozenset(need for f in facets for need in f.needs),
        category=given.get("category") or _only(categories),
        commutes=any(f.commutes for f in facets),
    )


def _only(values: set[str]) -> str | None:
    """The single value a request states; two conflicting ones license neither."""
    return next(iter(values)) if len(values) == 1 else None


def allowed(challenge: PoolChallenge, licence: Licence) -> bool:
    """The hard rules: nothing a challenge needs may be missing from what the input licenses."""
    if licence.category is not None and challenge.category != licence.category:
        return False
    if challenge.places and licence.location not in challenge.places:
        return False
    if challenge.work_types and licence.work_type not in challenge.work_types:
        return False
    if challenge.not_work_types and (
        licence.work_type in challenge.not_work_types or (licence.work_type is None and not licence.commutes)
    ):
        # A commute challenge (it excludes 재택근무) reaches only a user who says they go to work.
        return False
    if challenge.season is not None and challenge.season != licence.season:
        return False
    return all(need in licence.needs for need in challenge.needs)


class RuleMasks:
    """The hard rules of :func:`allowed` as bitmasks over ``challenges`` (bit ``i`` is ``challenges[i]``).

    A licence's allowed set is then a few integer operations instead of a test of every challenge, which
    matters because requests bring hundreds of distinct licences. It must agree with :func:`allowed`
    (a property test checks that): change the two together.
    """

    def __init__(self, challenges: Sequence[PoolChallenge]) -> None:
        self.every = (1 << len(challenges)) - 1
        self.by_category = _masks_by_value(challenges, lambda c: (c.category,))
        self.by_place = _masks_by_value(challenges, lambda c: c.places)
        self.by_work_type = _masks_by_value(challenges, lambda c: c.work_types)
        self.by_excluded_work_type = _masks_by_value(challenges, lambda c: c.not_work_types)
        self.by_season = _masks_by_value(challenges, lambda c: (c.season,) if c.season is not None else ())
        self.by_need = _masks_by_value(challenges, lambda c: c.needs)
        self.by_idea = _masks_by_value(challenges, lambda c: (c.idea,) if c.idea is not None else ())
        self.with_idea = _mask_where(challenges, lambda c: c.idea is not None)
        # Challenges bound by each rule at all: outside these masks the rule lets everything through.
        self.placed = _mask_where(challenges, lambda c: bool(c.places))
        self.typed = _mask_where(challenges, lambda c: bool(c.work_types))
        self.commute = _mask_where(challenges, lambda c: bool(c.not_work_types))
        self.seasonal = _mask_where(challenges, lambda c: c.season is not None)

    def distinct_ideas(self, mask: int) -> int:
        """The most challenges of ``mask`` one answer can hold: those without an idea, and one per idea."""
        ideas = sum(1 for idea in self.by_idea.values() if mask & idea)
        return (mask & ~self.with_idea).bit_count() + ideas

    def allowed_mask(self, licence: Licence) -> int:
        mask = self.every
        if licence.category is not None:
            mask &= self.by_category.get(licence.category, 0)
        mask &= ~self.placed | _lookup(self.by_place, licence.location)
        mask &= ~self.typed | _lookup(self.by_work_type, licence.work_type)
        if licence.work_type is None and not licence.commutes:
            mask &= ~self.commute
        else:
            mask &= ~_lookup(self.by_excluded_work_type, licence.work_type)
        mask &= ~self.seasonal | _lookup(self.by_season, licence.season)
        for need, needing in self.by_need.items():
            if need not in licence.needs:
                mask &= ~needing
        return mask


def idea_free_sets(parts: Sequence[int], ideas: Iterable[int], n: int) -> dict[tuple[int, ...], int]:
    """How many sets of ``n`` challenges from the disjoint masks ``parts`` hold no two of one idea (``ideas``: a
    mask per idea), by how many each part gives: ``{(k0, k1, ...): sets}`` for every split with k0 + k1 + ... = n.

    The coefficients of the product of (1 + c1 x1 + c2 x2 + ...) over the ideas (one member at most, c_j of them
    in part j) and (1 + x_j) over each challenge of part j that has no idea.
    """
    zero = (0,) * len(parts)
    grouped: dict[tuple[int, ...], int] = {zero: 1}
    with_idea = 0
    for idea in ideas:
        with_idea |= idea
        counts = [(part & idea).bit_count() for part in parts]
        if not any(counts):
            continue
        grown = dict(grouped)
        for split, ways in grouped.items():
            if sum(split) < n:
                for j, members in enumerate(counts):
                    if members:
                        key = (*split[:j], split[j] + 1, *split[j + 1 :])
                        grown[key] = grown.get(key, 0) + ways * members
        grouped = grown
    singles = [(part & ~with_idea).bit_count() for part in parts]
    found: dict[tuple[int, ...], int] = {}
    for total in product(range(n + 1), repeat=len(parts)):
        if sum(total) != n:
            continue
        found[total] = sum(
            ways * prod(comb(single, k - a) for single, k, a in zip(singles, total, split, strict=True))
            for split, ways in grouped.items()
            if all(a <= k for a, k in zip(split, total, strict=True))
        )
    return found


class MatchMasks:
    """:func:`meets` as bitmasks over ``challenges``: one mask per facet from per-value masks of each field.

    Built for every facet when a sampler starts, so it must be cheap; it must agree with :func:`meets`
    (a property test checks that): change the two together.
    """

    def __init__(self, challenges: Sequence[PoolChallenge]) -> None:
        self.challenges = challenges
        self.every = (1 << len(challenges)) - 1
        self._by_field: dict[str, dict[str, int]] = {}

    def meets_mask(self, facet: Facet) -> int:
        mask = 0
        for condition in facet.match:
            held = self.every
            for name, values in condition:
                field, negated = (name[4:], True) if name.startswith("not_") else (name, False)
                sharing = self._sharing(field, values)
                held &= ~sharing if negated else sharing
            mask |= held
        return mask

    def _sharing(self, field: str, values: frozenset[str]) -> int:
        """Challenges whose ``field`` shares a value with ``values``."""
        if field not in self._by_field:
            self._by_field[field] = _masks_by_value(self.challenges, lambda c: c.values(field))
        by_value = self._by_field[field]
        mask = 0
        for value in values:
            mask |= by_value.get(value, 0)
        return mask


def _masks_by_value(
    challenges: Sequence[PoolChallenge], values: Callable[[PoolChallenge], Sequence[str]]
) -> dict[str, int]:
    """Per value: the mask of challenges that list it."""
    masks: dict[str, int] = {}
    for i, challenge in enumerate(challenges):
        for value in values(challenge):
            masks[value] = masks.get(value, 0) | 1 << i
    return masks


def _mask_where(challenges: Sequence[PoolChallenge], test: Callable[[PoolChallenge], bool]) -> int:
    return sum(1 << i for i, challenge in enumerate(challenges) if test(challenge))


def _lookup(masks: dict[str, int], value: str | None) -> int:
    """The mask for ``value``; nothing lists "not stated"."""
    return masks.get(value, 0) if value is not None else 0


def meets(challenge: PoolChallenge, facet: Facet) -> bool:
    """A challenge meets a facet when every field of one of its conditions shares a value with it
    (and shares none with a ``not_`` field: ``not_company = ["혼자"]`` asks for something made for company)."""
    return any(all(_holds(challenge, name, values) for name, values in condition) for condition in facet.match)


def _holds(challenge: PoolChallenge, name: str, values: frozenset[str]) -> bool:
    if name.startswith("not_"):
        return values.isdisjoint(challenge.values(name[4:]))
    return not values.isdisjoint(challenge.values(name))


class Pick(NamedTuple):
    """A chosen challenge, the description it is shown with, and why it was chosen.

    A named tuple: every recommendation makes three, and a frozen dataclass costs twice as much to build.
    """

    challenge: PoolChallenge
    description: str
    reasons: tuple[str, ...]


class LineUsage:
    """How often each challenge line was dealt, so no single line dominates the dataset."""

    def __init__(self, max_share: float) -> None:
        self.max_share = max_share
        # Per title: how often each of its descriptions was dealt, in description order.
        self.by_title: dict[str, list[int]] = {}
        self.lowest: dict[str, int] = {}  # per title: the count of its least-used description
        # The largest value in ``lowest``: while it is under the cap no line is capped, so nothing needs checking.
        self.highest_lowest = 0
        self.total = 0

    def cap(self) -> float:
        return max(LINE_CAP_FLOOR, self.max_share * self.total)

    def least_used(self, challenge: PoolChallenge, rng: random.Random) -> str:
        """The challenge's least-used description (ties broken by ``rng``)."""
        counts = self.by_title.get(challenge.title)
        choices: Sequence[str] = challenge.descriptions  # never dealt: every description ties at zero
        if counts is not None:
            low = min(counts)
            if counts.count(low) == 1:  # no tie, so no draw
                return challenge.descriptions[counts.index(low)]
            choices = [d for d, n in zip(challenge.descriptions, counts, strict=True) if n == low]
        return choices[0] if len(choices) == 1 else choice(rng, choices)

    def capped(self, challenge: PoolChallenge, cap: float) -> bool:
        """Every line of the challenge already holds its share."""
        return self.lowest.get(challenge.title, 0) >= cap

    def any_capped(self, cap: float) -> bool:
        """Some challenge may be capped (when not, :meth:`capped` is False for every one)."""
        return self.highest_lowest >= cap

    def add(self, picks: Sequence[Pick]) -> None:
        for pick in picks:
            self._count(pick.challenge, pick.description)
        self.total += len(picks)

    def take(self, challenge: PoolChallenge, rng: random.Random) -> str:
        """:meth:`least_used`, counted at once (:meth:`add` of that one pick): every recommendation line."""
        description = self.least_used(challenge, rng)
        self._count(challenge, description)
        self.total += 1
        return description

    def _count(self, challenge: PoolChallenge, description: str) -> None:
        counts = self.by_title.get(challenge.title)
        if counts is None:
            counts = self.by_title[challenge.title] = [0] * len(challenge.descriptions)
        counts[challenge.descriptions.index(description)] += 1
        lowest = min(counts)
        self.lowest[challenge.title] = lowest
        if lowest > self.highest_lowest:
            self.highest_lowest = lowest


Score = Callable[[PoolChallenge], tuple[int, ...]]


def flat_score(challenge: PoolChallenge) -> tuple[int, ...]:
    """Every candidate fits equally: chance (and the line cap) alone decide."""
    return ()


# Candidate indices grouped by how well they fit, best group first, each group in candidate order.
FitGroups = Sequence[Sequence[int]]


def choose(
    candidates: Sequence[PoolChallenge],
    score: Score,
    count: int,
    rng: random.Random,
    usage: LineUsage,
) -> list[PoolChallenge]:
    """The ``count`` best candidates by ``score`` (higher is better), capped lines last within fit.

    Candidates arrive in pool order and each draws one random tie-breaker in that order, so the result
    depends only on the pools and the seed.
    """
    groups = fit_groups([score(c) for c in candidates])
    return [candidates[i] for i in choose_grouped(candidates, groups, count, rng, usage)]


def fit_groups(scores: Sequence[tuple[int, ...]]) -> tuple[tuple[int, ...], ...]:
    """Indices of ``scores`` grouped by score, highest first; ties stay in index order."""
    by_score: dict[tuple[int, ...], list[int]] = {}
    for i, score in enumerate(scores):
        by_score.setdefault(score, []).append(i)
    # Ordered as the negated scores ascending, which is "higher is better" for tuples of any length.
    return tuple(tuple(by_score[score]) for score in sorted(by_score, key=lambda s: tuple(-x for x in s)))


def choose_grouped(
    candidates: Sequence[PoolChallenge],
    groups: FitGroups,
    count: int,
    rng: random.Random,
    usage: LineUsage,
    taken_ideas: Collection[str] = (),
) -> list[int]:
    """Indices of the ``count`` best candidates: the best fit group first, uncapped lines before capped
    ones within a group, then the lowest random tie-breaker; a candidate whose idea is already chosen (or in
    ``taken_ideas``) is passed over, and comes back only when too few others are left to fill the answer.

    Every candidate draws its tie-breaker, in candidate order, whatever is chosen: the random stream
    (and so every later draw) does not depend on how the choice is computed. The result is the prefix
    of a stable sort by (group, capped, tie-breaker), taken one group at a time so no key is built.
    """
    if count < 0:
        # As the sort's ``order[:count]`` did: all but the last -count (choose_base_info can ask for a
        # negative rest when it wants two specific picks of a single one; kept so output stays the same).
        count = max(0, len(candidates) + count)
    cap = usage.cap()
    draws = list(starmap(rng.random, repeat((), len(candidates))))  # one rng.random() per candidate, looped in C
    check_caps = usage.any_capped(cap)
    chosen: list[int] = []
    ideas = set(taken_ideas)
    passed_over: list[int] = []
    for group in groups:
        tiers: Sequence[Sequence[int]] = (group,)
        if check_caps:
            capped = [usage.capped(candidates[i], cap) for i in group]
            tiers = (
                [i for i, c in zip(group, capped, strict=True) if not c],
                [i for i, c in zip(group, capped, strict=True) if c],
            )
        for tier in tiers:
            needed = count - len(chosen)
            if needed <= 0:
                return chosen
            chosen += _new_ideas_first(candidates, tier, draws, needed, ideas, passed_over)
    return chosen + passed_over[: count - len(chosen)]


def _new_ideas_first(
    candidates: Sequence[PoolChallenge],
    tier: Sequence[int],
    draws: list[float],
    needed: int,
    ideas: set[str],
    passed_over: list[int],
) -> list[int]:
    """:func:`lowest_draws`, skipping candidates whose idea is in ``ideas`` (they go to ``passed_over``);
    the ideas chosen join ``ideas``. Most picks have no idea, so the plain answer is tried first."""
    picked = lowest_draws(tier, draws, needed)
    picked_ideas = [idea for i in picked if (idea := candidates[i].idea) is not None]
    if len(set(picked_ideas)) == len(picked_ideas) and ideas.isdisjoint(picked_ideas):
        ideas.update(picked_ideas)
        return picked
    found: list[int] = []
    for i in sorted(tier, key=draws.__getitem__):  # the same order lowest_draws takes them in
        idea = candidates[i].idea
        if idea is not None and idea in ideas:
            passed_over.append(i)
            continue
        if idea is not None:
            ideas.add(idea)
        found.append(i)
        if len(found) == needed:
            break
    return found


# From this many candidates on, the few lowest draws are found faster without sorting them all.
FEW_OF_MANY = 160


def lowest_draws(tier: Sequence[int], draws: list[float], needed: int) -> list[int]:
    """The first ``needed`` of ``tier`` (indices in increasing order) stably sorted by ``draws``.

    A free-text request often allows hundreds of candidates for three picks, and sorting them all costs
    more than drawing their tie-breakers. The ``needed`` lowest values come from a heap instead, and each is
    found at its first place in the tier after the one before it of the same value: the stable sort's order.
    """
    if len(tier) < FEW_OF_MANY or needed >= len(tier):
        return sorted(tier, key=draws.__getitem__)[:needed]
    values = draws if isinstance(tier, range) and tier == range(len(draws)) else [draws[i] for i in tier]
    found: list[int] = []
    previous, at = None, -1
    for value in heapq.nsmallest(needed, values):
        at = values.index(value, at + 1) if value == previous else values.index(value)
        found.append(tier[at])
        previous = value
    return found


def flat_groups(candidates: Sequence[PoolChallenge]) -> FitGroups:
    """Every candidate fits equally: one group (what :func:`flat_score` gives)."""
    return (range(len(candidates)),)


def request_score(facets: Sequence[Facet]) -> Score:
    """Meets the main facet first, then as many of the others as possible."""
    main, others = facets[0], facets[1:]

    def score(challenge: PoolChallenge) -> tuple[int, ...]:
        return (int(meets(challenge, main)), sum(meets(challenge, f) for f in others))

    return score


def base_info_reasons(challenge: PoolChallenge) -> tuple[str, ...]:
    """Why a base-info pick fits: it is bound to the user's location, work type, or only to the category."""
    reasons = []
    if challenge.places:
        reasons.append("location")
    if challenge.work_types:
        reasons.append("work_type")
    return tuple(reasons) or ("category",)


def split_bound(candidates: Sequence[PoolChallenge]) -> tuple[list[PoolChallenge], list[PoolChallenge]]:
    """Candidates bound to a location or work type, and the general ones, each in candidate order."""
    return [c for c in candidates if c.bound], [c for c in candidates if not c.bound]


def choose_base_info(
    specific: Sequence[PoolChallenge],
    general: Sequence[PoolChallenge],
    count: int,
    rng: random.Random,
    usage: LineUsage,
    specific_two: float,
) -> list[PoolChallenge]:
    """One or two picks bound to the user's location or work type when there are any, the rest general.

    ``specific`` and ``general`` are the allowed candidates as :func:`split_bound` splits them. A recommend
    sentence may then name what the specific picks show; a pick list of only general challenges gets a
    sentence about the category alone.
    """
    wanted = 0
    if specific:
        wanted = 2 if len(specific) >= 2 and rng.random() < specific_two else 1
    wanted = max(wanted, count - len(general))
    chosen = [specific[i] for i in choose_grouped(specific, flat_groups(specific), wanted, rng, usage)]
    rest = count - len(chosen)
    taken = [c.idea for c in chosen if c.idea is not None]
    return chosen + [general[i] for i in choose_grouped(general, flat_groups(general), rest, rng, usage, taken)]


def base_info_sentence_reason(picks: Sequence[Pick]) -> str:
    """What the picks show, which decides what the recommend sentence may claim."""
    shown = {reason for pick in picks for reason in pick.reasons}
    if {"location", "work_type"} <= shown:
        return "both"
    if "location" in shown:
        return "location"
    if "work_type" in shown:
        return "work_type"
    return "category"
