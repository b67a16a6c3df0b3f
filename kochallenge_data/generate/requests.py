"""Free-text requests: composed from facets through many surface forms, or taken from the hand-written set.

A composed request states one to three facets (a need such as 더위 or 아이, maybe a second one, maybe a topic)
and is only composed when the pools hold enough challenges that meet all of them under the hard rules, so
every request the dataset answers can be answered well. The surface is a frame (반말 or 존댓말) whose slots
take a background clause (``요즘 너무 더운데``), a modifier (``집에서 할 수 있는``) and a topic noun.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from ..pool_files import TOPIC_GROUP
from ..pools import Facet, MessageItem, Phrase, PoolChallenge, Pools
from ..templates import phrase_slots, render_phrase, render_phrase_from
from .draws import choice
from .selection import Licence, MatchMasks, RuleMasks, licence_for

SPEECH_LEVELS = ("banmal", "jondaemal")
# Draws of a second facet or topic before the request goes without it.
COMPOSE_TRIES = 6


class Request(NamedTuple):
    """What a user typed and the facets it states (the first is the main one); one per free-text record."""

    text: str
    facets: tuple[Facet, ...]
    question: bool
    origin: str  # "composed", or the hand-written message's file:line
    sources: tuple[str, ...]  # the pool phrases the text was built from

    @property
    def licence(self) -> Licence:
        return licence_for(self.facets)


# The sampler's ``deal``: the next item of a named, balanced deck (built from the callable the first time).
Deal = Callable[[str, Callable[[], Sequence[Any]]], Any]


@dataclass(frozen=True)
class AllowedSet:
    """The challenges one licence allows, as a list in pool order with each one's pool position."""

    challenges: list[PoolChallenge]
    at: npt.NDArray[np.intp]  # the pool position of each of ``challenges``


class FitIndex:
    """How many challenges can answer a set of facets; bitmasks keep the count cheap at any pool size."""

    def __init__(self, pools: Pools) -> None:
        self.pools = pools
        matches = MatchMasks(pools.challenges)
        self._meets = {f.key: matches.meets_mask(f) for f in pools.facets}
        self.rules = RuleMasks(pools.challenges)
        self._allowed: dict[Licence, int] = {}
        self._meets_bits: dict[str, npt.NDArray[np.bool_]] = {}
        self._allowed_sets: dict[Licence, AllowedSet] = {}
        # Composing a request asks again and again about the same few facet combinations.
        self._count_by_facet_keys: dict[tuple[str, ...], int] = {}

    def allowed_mask(self, licence: Licence) -> int:
        """Challenges the hard rules allow for ``licence`` (:func:`~.selection.allowed`, as a mask)."""
        if licence not in self._allowed:
            self._allowed[licence] = self.rules.allowed_mask(licence)
        return self._allowed[licence]

    def meets_bits(self, facet: Facet) -> npt.NDArray[np.bool_]:
        """Which challenges meet ``facet`` (:func:`~.selection.meets`), one flag per pool position (once per facet)."""
        found = self._meets_bits.get(facet.key)
        if found is None:
            found = self._meets_bits[facet.key] = mask_bits(self._meets[facet.key], len(self.pools.challenges))
        return found

    def allowed_set(self, licence: Licence) -> AllowedSet:
        """:meth:`allowed_mask` with its challenges listed (computed once per licence)."""
        found = self._allowed_sets.get(licence)
        if found is None:
            mask = self.allowed_mask(licence)
            at = positions(mask)
            challenges = [self.pools.challenges[i] for i in at]
            found = self._allowed_sets[licence] = AllowedSet(challenges, np.array(at, dtype=np.intp))
        return found

    def count(self, facets: Sequence[Facet]) -> int:
        """How many challenges of different ideas (:attr:`~..pools.PoolChallenge.idea`) one answer can hold from those
        allowed by the facets' licence that meet every one of them."""
        keys = tuple([f.key for f in facets])
        found = self._count_by_facet_keys.get(keys)
        if found is None:
            found = self._count_by_facet_keys[keys] = self.rules.distinct_ideas(self.fitting_mask(facets))
        return found

    def fitting_mask(self, facets: Sequence[Facet]) -> int:
        """The challenges :meth:`count` counts."""
        mask = self.allowed_mask(licence_for(facets))
        for facet in facets:
            mask &= self._meets[facet.key]
        return mask


def positions(mask: int) -> list[int]:
    """The set bits of ``mask`` (not negative), lowest first."""
    if mask.bit_length() > FEW_BITS:
        return np.flatnonzero(mask_bits(mask, mask.bit_length())).tolist()
    bits = bin(mask)[:1:-1]  # lowest bit first; str.find skips the zeros in C
    found = []
    at = bits.find("1")
    while at >= 0:
        found.append(at)
        at = bits.find("1", at + 1)
    return found


# Up to this many bits a mask is read in a Python loop; beyond, numpy unpacks it faster.
FEW_BITS = 64


def mask_bits(mask: int, size: int) -> npt.NDArray[np.bool_]:
    """The lowest ``size`` bits of ``mask`` (not negative), one flag per bit, lowest first."""
    data = mask.to_bytes((max(size, mask.bit_length()) + 7) // 8, "little")
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")[:size].astype(np.bool_)


def from_message(message: MessageItem, pools: Pools) -> Request:
    facets = tuple(pools.facet(key) for key in message.facets)
    return Request(message.text, facets, message.question, str(message.source), (str(message.source),))


@dataclass
class Composer:
    """Composes requests; every draw goes through the sampler's ``rng`` and decks."""

    pools: Pools
    rng: random.Random
    deal: Deal
    fit: FitIndex
    needed: int = 3
    # The deck of frames per speech level and slot set, named once (the name spells the sorted slots).
    _frame_decks: dict[tuple[str, frozenset[str]], str] = field(default_factory=dict)

    def draw(self) -> Request:
        shape = self.pools.request_shape
        if self.rng.random() < shape.question_share:
            return self._question()
        main = self._main_facet()
        facets = [main]
        if main.group != TOPIC_GROUP and self.rng.random() < shape.second_facet_share:
            facets = self._add(facets, "facet:second", lambda f: f.group != main.group)
        if main.group != TOPIC_GROUP and self.rng.random() < shape.topic_share:
            facets = self._add(facets, "facet:topic", lambda f: f.group == TOPIC_GROUP)
        return self._render(facets)

    def _main_facet(self) -> Facet:
        facet: Facet = self.deal("facet:main", self._feasible_mains)
        return facet

    def _feasible_mains(self) -> tuple[Facet, ...]:
        """Facets that can be said and have enough fitting challenges on their own."""
        return tuple(
            f
            for f in self.pools.facets
            if (f.reason or f.want or f.group == TOPIC_GROUP) and self.fit.count([f]) >= self.needed
        )

    def _add(self, facets: list[Facet], deck: str, fits: Callable[[Facet], bool]) -> list[Facet]:
        keys = [f.key for f in facets]  # facet keys are unique: a key already there is the same facet
        for _ in range(COMPOSE_TRIES):
            candidate: Facet = self.deal(deck, self._every_facet)
            if (
                fits(candidate)
                and candidate.key not in keys
                and not _clashes(candidate, facets)
                and self.fit.count([*facets, candidate]) >= self.needed
            ):
                return [*facets, candidate]
        return facets

    def _every_facet(self) -> tuple[Facet, ...]:
        return self.pools.facets

    def _question(self) -> Request:
        facet: Facet = self.deal(
            "question:topic",
            lambda: [f for f in self.pools.facets if f.group == TOPIC_GROUP and self.pools.about.get(f.category or "")],
        )
        level = choice(self.rng, SPEECH_LEVELS)
        frame: Phrase = self.deal(f"frame:question_{level}", lambda: self.pools.frames[f"question_{level}"])
        text = render_phrase(frame.text, name=facet.key)
        return Request(text, (facet,), True, "composed", (str(frame.source),))

    def _render(self, facets: list[Facet]) -> Request:
        level = choice(self.rng, SPEECH_LEVELS)
        needs = [f for f in facets if f.group != TOPIC_GROUP]
        topic_facet = next((f for f in facets if f.group == TOPIC_GROUP), None) if len(needs) < len(facets) else None
        roles = self._roles(needs)
        if roles is None:  # two needs that cannot share one sentence: keep the main one
            facets = [f for f in facets if f is needs[0] or f.group == TOPIC_GROUP]
            needs = needs[:1]
            roles = self._roles(needs) or {}
        slots = frozenset({*roles, "topic"})
        deck = self._frame_decks.get((level, slots))
        if deck is None:
            deck = self._frame_decks[(level, slots)] = f"frame:{level}:{sorted(slots)}"
        frame: Phrase = self.deal(deck, lambda: _frames_with(self.pools, level, slots))
        values = {role: phrase.text for role, phrase in roles.items()}
        if topic_facet is not None:
            topics = self.pools.category_topics[topic_facet.category or ""]
            topic: Phrase = self.deal(f"topic:{topic_facet.key}", lambda: topics)
        else:
            topic = self.deal("topic:generic", lambda: self.pools.topics)
        values["topic"] = topic.text
        text = render_phrase_from(frame.text, values)
        sources = (frame.source.text, *[p.source.text for p in roles.values()], topic.source.text)
        return Request(text, tuple(facets), False, "composed", sources)

    def _roles(self, needs: Sequence[Facet]) -> dict[str, Phrase] | None:
        """Say each need once: one as the reason clause, the other as the modifier."""
        if not needs:
            return {}
        if len(needs) == 1:
            forms = [role for role in ("reason", "want") if getattr(needs[0], role)]
            role = choice(self.rng, forms)
            return {role: self._phrase(needs[0], role)}
        first, second = needs
        orders = [("reason", "want"), ("want", "reason")]
        self.rng.shuffle(orders)
        for a, b in orders:
            if getattr(first, a) and getattr(second, b):
                return {a: self._phrase(first, a), b: self._phrase(second, b)}
        return None

    def _phrase(self, facet: Facet, role: str) -> Phrase:
        phrase: Phrase = self.deal(f"{role}:{facet.key}", lambda: getattr(facet, role))
        return phrase


def _clashes(candidate: Facet, facets: Sequence[Facet]) -> bool:
    """``candidate`` contradicts one of ``facets`` (either side of a pair may declare it)."""
    return any(facet.key in candidate.conflicts or candidate.key in facet.conflicts for facet in facets)


def _frames_with(pools: Pools, level: str, slots: frozenset[str]) -> tuple[Phrase, ...]:
    found = tuple(p for p in pools.frames[level] if phrase_slots(p.text) == slots)
    if not found:
        raise ValueError(f"requests.toml: no {level} frame uses exactly the slots {sorted(slots)}")
    return found
