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

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..pools import Facet, PoolChallenge

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


def meets(challenge: PoolChallenge, facet: Facet) -> bool:
    """A challenge meets a facet when every field of one of its conditions shares a value with it
    (and shares none with a ``not_`` field: ``not_company = ["혼자"]`` asks for something made for company)."""
    return any(all(_holds(challenge, name, values) for name, values in condition) for condition in facet.match)


def _holds(challenge: PoolChallenge, name: str, values: frozenset[str]) -> bool:
    if name.startswith("not_"):
        return values.isdisjoint(challenge.values(name[4:]))
    return not values.isdisjoint(challenge.values(name))


@dataclass(frozen=True)
class Pick:
    """A chosen challenge, the description it is shown with, and why it was chosen."""

    challenge: PoolChallenge
    description: str
    reasons: tuple[str, ...]


class LineUsage:
    """How often each challenge line was dealt, so no single line dominates the dataset."""

    def __init__(self, max_share: float) -> None:
        self.max_share = max_share
        self.counts: Counter[tuple[str, str]] = Counter()
        self.lowest: Counter[str] = Counter()  # per title: the count of its least-used description
        self.total = 0

    def cap(self) -> float:
        return max(LINE_CAP_FLOOR, self.max_share * self.total)

    def least_used(self, challenge: PoolChallenge, rng: random.Random) -> str:
        """The challenge's least-used description (ties broken by ``rng``)."""
        counts = [self.counts[(challenge.title, d)] for d in challenge.descriptions]
        low = min(counts)
        choices = [d for d, n in zip(challenge.descriptions, counts, strict=True) if n == low]
        return choices[0] if len(choices) == 1 else rng.choice(choices)

    def capped(self, challenge: PoolChallenge, cap: float) -> bool:
        """Every line of the challenge already holds its share."""
        return self.lowest[challenge.title] >= cap

    def add(self, picks: Sequence[Pick]) -> None:
        for pick in picks:
            title = pick.challenge.title
            self.counts[(title, pick.description)] += 1
            self.lowest[title] = min(self.counts[(title, d)] for d in pick.challenge.descriptions)
        self.total += len(picks)


Score = Callable[[PoolChallenge], tuple[int, ...]]


def flat_score(challenge: PoolChallenge) -> tuple[int, ...]:
    """Every candidate fits equally: chance (and the line cap) alone decide."""
    return ()


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
    cap = usage.cap()
    keyed = [(score(c), usage.capped(c, cap), rng.random(), i) for i, c in enumerate(candidates)]
    # Fit first; among equally fitting candidates, an uncapped line before a capped one, then chance.
    order = sorted(keyed, key=lambda k: (tuple(-s for s in k[0]), k[1], k[2]))
    return [candidates[k[3]] for k in order[:count]]


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


def choose_base_info(
    candidates: Sequence[PoolChallenge], count: int, rng: random.Random, usage: LineUsage, specific_two: float
) -> list[PoolChallenge]:
    """One or two picks bound to the user's location or work type when there are any, the rest general.

    A recommend sentence may then name what the specific picks show; a pick list of only general
    challenges gets a sentence about the category alone.
    """
    specific = [c for c in candidates if c.bound]
    general = [c for c in candidates if not c.bound]
    wanted = 0
    if specific:
        wanted = 2 if len(specific) >= 2 and rng.random() < specific_two else 1
    wanted = max(wanted, count - len(general))
    chosen = choose(specific, flat_score, wanted, rng, usage)
    return chosen + choose(general, flat_score, count - len(chosen), rng, usage)


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
