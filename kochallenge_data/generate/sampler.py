"""Turn pools into candidate records, driven by one explicit ``random.Random``.

Samplers never touch the global ``random`` module and never iterate over sets, so the same pools,
templates, seed and options give the same candidates on any machine and any ``PYTHONHASHSEED``.
Balanced choices (which input, which sentence, which instruction) are dealt from shuffled decks, so no
phrase dominates by chance; which challenges answer an input is decided in :mod:`.selection`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from itertools import product
from math import perm
from typing import Any, Generic, NamedTuple, TypeVar, cast

import numpy as np

from ..formats import check_field, format_recommendation
from ..models import Challenge, Recommendation, Task
from ..pools import Facet, Phrase, PoolChallenge, Pools
from ..templates import Template, Templates, phrase_slots, render_phrase
from ..text import FEEDBACK_LIMIT
from .feedback import Profile, WeekSampler, plan_feedback
from .requests import Composer, FitIndex, Request, from_message
from .selection import (
    FitGroups,
    Licence,
    LineUsage,
    Pick,
    RuleMasks,
    base_info_reasons,
    base_info_sentence_reason,
    choose_base_info,
    choose_grouped,
    flat_groups,
    idea_free_sets,
    licence_for,
    split_bound,
)

T = TypeVar("T")
# No single challenge line may take more than this share of the recommendation lines.
DEFAULT_MAX_LINE_SHARE = 0.004
# Share of base-info answers with two picks bound to the location or work type (when there are two).
SPECIFIC_TWO_SHARE = 0.35


class Deck(Generic[T]):
    """Deal items in shuffled rounds: every item appears once per round, in a seeded order."""

    def __init__(self, items: Sequence[T], rng: random.Random) -> None:
        if not items:
            raise ValueError("cannot deal from an empty pool")
        self._items = list(items)
        self._rng = rng
        self._hand: list[T] = []

    def deal(self) -> T:
        if not self._hand:
            self._hand = list(self._items)
            self._rng.shuffle(self._hand)
        return self._hand.pop()


class Candidate(NamedTuple):
    """A rendered record before the checks, with what made it (for the metadata sidecar).

    A named tuple: one is built per draw, and a frozen dataclass costs about twice as much to build.
    """

    task: Task
    instruction: str
    input: str
    output: str
    # Two candidates with the same key count as the same record: nested tuples of strings, numbers and booleans,
    # with no set (a set's order follows salted hashes, and the gate digests keys as written).
    key: Hashable
    meta: dict[str, Any]

    def model_record(self) -> dict[str, str]:
        return {"instruction": self.instruction, "input": self.input, "output": self.output}


@dataclass(frozen=True)
class RequestFit:
    """What one set of request facets allows, and how well each allowed challenge fits it.

    It depends only on the pools and the facets, and the same few hundred facet sets come back all
    through a build, so the sampler works it out once per set instead of testing every candidate per draw.
    """

    candidates: list[PoolChallenge]  # allowed by the facets' licence, in pool order
    groups: FitGroups  # candidate indices by fit: the main facet met first, then the most others met
    reasons: tuple[tuple[str, ...], ...]  # per candidate: the keys of the facets it meets, in request order


def request_fit(facets: Sequence[Facet], fit: FitIndex) -> RequestFit:
    """The challenges ``facets`` allow, grouped by :func:`.selection.request_score`, read from ``fit``'s masks.

    Worked out for all candidates at once with numpy: which facets each meets (bit ``j`` of its pattern for
    ``facets[j]``) and its score, the main facet counting more than all the others together.
    """
    allowed = fit.allowed_set(licence_for(facets))
    candidates = allowed.challenges
    if not facets:
        return RequestFit(candidates, flat_groups(candidates), ((),) * len(candidates))
    pattern = np.zeros(len(candidates), dtype=np.int64)
    score = np.zeros(len(candidates), dtype=np.int64)
    for j, facet in enumerate(facets):
        met = fit.meets_bits(facet)[allowed.at]
        pattern |= met.astype(np.int64) << j
        score += met * (len(facets) if j == 0 else 1)
    codes = pattern.tolist()
    why = {code: tuple(f.key for j, f in enumerate(facets) if code >> j & 1) for code in set(codes)}
    reasons = tuple(map(why.__getitem__, codes))
    # request_score's (main met, others met) in score's order; each group in candidate order.
    groups = tuple(tuple(np.flatnonzero(score == s).tolist()) for s in sorted(set(score.tolist()), reverse=True))
    return RequestFit(candidates, groups, reasons)


@dataclass
class Sampler:
    """Holds the decks that keep choices balanced; every draw goes through ``rng``.

    It also caches what depends only on the pools and templates (allowed candidates per licence and per
    weekly user, their fit per request facet set, the bound/general split per base-info input, challenge
    lines as formatted, base-info inputs, phrases rendered with the few values they meet again
    and again, the calendar of weeks): none of it draws from ``rng``, so caching changes no draw. Everything
    cached is bounded by the pools, not by the number of records.
    """

    pools: Pools
    templates: Templates
    rng: random.Random
    challenges_per_output: int = 3
    feedback_limit: int = FEEDBACK_LIMIT
    max_line_share: float = DEFAULT_MAX_LINE_SHARE
    _decks: dict[str, Deck[Any]] = field(default_factory=dict)
    _usage: LineUsage | None = None
    _composer: Composer | None = None
    _fit: FitIndex | None = None
    _fit_by_facet_keys: dict[tuple[str, ...], RequestFit] = field(default_factory=dict)
    _split_by_base_info: dict[tuple[str, str, str], tuple[list[PoolChallenge], list[PoolChallenge]]] = field(
        default_factory=dict
    )
    # (title, description) -> its line of a recommendation, once Challenge and format_recommendation accepted it.
    _formatted_lines: dict[tuple[str, str], str] = field(default_factory=dict)
    _habits: dict[str, bool] | None = None
    _weeks: WeekSampler | None = None
    # Rendering draws nothing, so a text rendered once for the same values is the text rendered again.
    _rendered_phrases: dict[tuple[object, ...], str] = field(default_factory=dict)
    _base_info_inputs: dict[tuple[str, str, str], str] = field(default_factory=dict)
    _allowed_by_profile: dict[tuple[str, str, str | None], list[PoolChallenge]] = field(default_factory=dict)

    @property
    def usage(self) -> LineUsage:
        if self._usage is None:
            self._usage = LineUsage(self.max_line_share)
        return self._usage

    @property
    def fit(self) -> FitIndex:
        if self._fit is None:
            self._fit = FitIndex(self.pools)
        return self._fit

    @property
    def composer(self) -> Composer:
        if self._composer is None:
            self._composer = Composer(self.pools, self.rng, self.deal, self.fit, self.challenges_per_output)
        return self._composer

    @property
    def habits(self) -> dict[str, bool]:
        """Per title: a habit (praised as one) or a one-off action."""
        if self._habits is None:
            self._habits = {c.title: c.habit for c in self.pools.challenges}
        return self._habits

    @property
    def weeks(self) -> WeekSampler:
        if self._weeks is None:
            self._weeks = WeekSampler(self.pools)
        return self._weeks

    def allowed_for_profile(self, profile: Profile) -> list[PoolChallenge]:
        """:meth:`allowed` for a weekly record's user, looked up by plain values (building its licence costs more)."""
        key = (profile.location, profile.work_type, profile.season)
        found = self._allowed_by_profile.get(key)
        if found is None:
            found = self._allowed_by_profile[key] = self.allowed(profile.licence)
        return found

    def deck(self, name: str, items: Callable[[], Sequence[Any]]) -> Deck[Any]:
        """The named deck, built from ``items()`` the first time it is asked for."""
        found = self._decks.get(name)
        if found is None:
            found = self._decks[name] = Deck(items(), self.rng)
        return found

    def deal(self, name: str, items: Callable[[], Sequence[Any]]) -> Any:
        return self.deck(name, items).deal()

    def allowed(self, licence: Licence) -> list[PoolChallenge]:
        """Challenges the hard rules allow for ``licence``, in pool order (computed once per licence)."""
        return self.fit.allowed_set(licence).challenges

    def request_fit(self, facets: Sequence[Facet]) -> RequestFit:
        """:func:`request_fit` for ``facets`` under their licence, computed once per facet set."""
        keys = tuple([f.key for f in facets])
        found = self._fit_by_facet_keys.get(keys)
        if found is None:
            found = request_fit(facets, self.fit)
            self._fit_by_facet_keys[keys] = found
        return found

    def base_info_split(
        self, location: str, work_type: str, category: str
    ) -> tuple[list[PoolChallenge], list[PoolChallenge]]:
        """The allowed candidates of a base-info input, bound and general (computed once per input)."""
        key = (location, work_type, category)
        if key not in self._split_by_base_info:
            licence = Licence(location=location, work_type=work_type, category=category)
            self._split_by_base_info[key] = split_bound(self.allowed(licence))
        return self._split_by_base_info[key]

    def draw(self, task: Task) -> Candidate:
        if task == "base_info":
            return self.draw_base_info()
        if task == "free_text":
            return self.draw_free_text()
        return self.draw_feedback()

    def _instruction(self, task: Task) -> Phrase:
        phrase: Phrase = self.deal(f"instruction:{task}", lambda: self.pools.instructions[task])
        return phrase

    def _picks(self, chosen: Sequence[PoolChallenge], reasons: Sequence[tuple[str, ...]]) -> list[Pick]:
        """Each chosen challenge with its least-used description and why it was chosen."""
        take, rng = self.usage.take, self.rng
        return [Pick(c, take(c, rng), why) for c, why in zip(chosen, reasons, strict=True)]

    def _recommendation(self, recommend: str, picks: Sequence[Pick]) -> str:
        keys = [(p.challenge.title, p.description) for p in picks]
        lines = [self._formatted_lines.get(key) for key in keys]
        if None in lines:
            # A line not met before: the full model and format checks, which raise what a bad line or
            # recommend sentence raises, in the same order.
            challenges = [Challenge(title=title, description=description) for title, description in keys]
            text = format_recommendation(Recommendation(recommend=recommend, challenges=challenges))
            self._formatted_lines.update(zip(keys, text.split("\n")[1:], strict=True))
            return text
        # Every line passed both checks before, so only the recommend sentence is left to check.
        check_field("recommend", recommend)
        return "\n".join([recommend, *cast(list[str], lines)])

    def _rendered(self, text: str, **values: str) -> str:
        """:func:`render_phrase`, remembered per phrase and values: only for the few values a phrase meets
        again and again (a base-info input's names, a category), so the memory stays small."""
        key: tuple[object, ...] = (text, *values.items())
        found = self._rendered_phrases.get(key)
        if found is None:
            found = self._rendered_phrases[key] = render_phrase(text, **values)
        return found

    def draw_base_info(self) -> Candidate:
        pools = self.pools
        triples = self.deck("base_info:input", lambda: base_info_inputs(pools, self.challenges_per_output))
        location, work_type, category = triples.deal()
        name = pools.category_name(category)
        specific, general = self.base_info_split(location, work_type, category)
        chosen = choose_base_info(
            specific, general, self.challenges_per_output, self.rng, self.usage, SPECIFIC_TWO_SHARE
        )
        picks = self._picks(chosen, [base_info_reasons(c) for c in chosen])
        reason = base_info_sentence_reason(picks)
        sentence: Phrase = self.deal(f"base_info:sentence:{reason}", lambda: pools.base_info_sentences[reason])
        recommend = self._rendered(sentence.text, location=location, work_type=work_type, category=name)
        instruction = self._instruction("base_info")
        input_key = (location, work_type, name)
        input_text = self._base_info_inputs.get(input_key)
        if input_text is None:
            input_text = self.templates.base_info_input.render(location=location, work_type=work_type, category=name)
            self._base_info_inputs[input_key] = input_text
        return self._recommendation_candidate(
            "base_info",
            instruction,
            input_text,
            recommend,
            picks,
            {
                "location": location,
                "work_type": work_type,
                "category": category,
                "template": self.templates.base_info_input.name,
                "recommend": sentence.source.text,
                "recommend_reason": reason,
            },
        )

    def draw_free_text(self) -> Candidate:
        pools = self.pools
        if pools.messages and self.rng.random() < pools.request_shape.handwritten_share:
            # The deck holds each message's request (a deck deals positions, whatever the items are).
            request: Request = self.deal("free_text:message", lambda: [from_message(m, pools) for m in pools.messages])
        else:
            request = self.composer.draw()
        facets = request.facets
        fit = self.request_fit(facets)
        chosen = choose_grouped(fit.candidates, fit.groups, self.challenges_per_output, self.rng, self.usage)
        picks = self._picks([fit.candidates[i] for i in chosen], [fit.reasons[i] for i in chosen])
        recommend, recommend_source, reply_kind = self._reply(request, picks)
        instruction = self._instruction("free_text")
        input_text = self.templates.free_text_input.render(message=request.text)
        main = facets[0].key if facets else None
        return self._recommendation_candidate(
            "free_text",
            instruction,
            input_text,
            recommend,
            picks,
            {
                "request": {
                    "origin": request.origin,
                    "facets": [f.key for f in facets],
                    "main": main,
                    "question": request.question,
                },
                "template": self.templates.free_text_input.name,
                # The phrasing a grouped split keeps on one side: the hand-written message or the composed frame.
                "message": request.sources[0],
                "recommend": recommend_source,
                "recommend_reason": reply_kind,
                "phrases": list(request.sources),
                "main_met": [main in p.reasons for p in picks] if main else [],
            },
        )

    def _recommendation_candidate(
        self,
        task: Task,
        instruction: Phrase,
        input_text: str,
        recommend: str,
        picks: Sequence[Pick],
        meta: dict[str, Any],
    ) -> Candidate:
        """A recommendation record; its metadata says which pool items made it and why each pick is there."""
        challenges = [p.challenge for p in picks]
        return Candidate(
            task,
            instruction.text,
            input_text,
            self._recommendation(recommend, picks),
            (task, input_text, *sorted([c.title for c in challenges])),  # the same challenges in any order
            {
                "task": task,
                **meta,
                "instruction": instruction.source.text,
                "challenges": [c.source.text for c in challenges],
                "why": [list(p.reasons) for p in picks],
            },
        )

    def _reply(self, request: Request, picks: Sequence[Pick]) -> tuple[str, str, str]:
        """The first line, its source and kind: an answer to a question ("question"), a reply to the main
        facet that every pick meets ("facet"), or a reply that claims nothing about the message ("general")."""
        pools = self.pools
        main = request.facets[0] if request.facets else None
        if request.question and main is not None and main.category and pools.about.get(main.category):
            about: Phrase = self.deal(f"about:{main.category}", lambda: pools.about[main.category or ""])
            lead: Phrase = self.deal("reply:question", lambda: pools.free_text_replies["question"])
            return f"{about.text} {self._rendered(lead.text)}", f"{about.source} + {lead.source}", "question"
        if main is not None and all(main.key in p.reasons for p in picks):
            phrases = pools.replies_for(main)
            if phrases:
                phrase: Phrase = self.deal(f"reply:{main.key}", lambda: phrases)
                name = pools.category_name(main.category) if main.category else ""
                return self._rendered(phrase.text, category=name), phrase.source.text, "facet"
        general: Phrase = self.deal("reply:general", lambda: pools.free_text_replies["general"])
        return self._rendered(general.text), general.source.text, "general"

    def draw_feedback(self) -> Candidate:
        pools = self.pools
        week, profile = self.weeks.draw(self.rng, self.allowed_for_profile)
        layouts: Sequence[Template] = self.templates.feedback_layouts
        plan = plan_feedback(week, pools, self.rng, layouts, self.feedback_limit, self.habits)
        instruction = self._instruction("feedback")
        return Candidate(
            "feedback",
            instruction.text,
            week.to_json(),
            plan.text,
            ("feedback", week.signature(), plan.text),
            {
                "task": "feedback",
                "location": profile.location,
                "work_type": profile.work_type,
                "season": profile.season,
                "personal": len(week.personal),
                "group": len(week.group),
                "covered": plan.covered,
                "template": plan.layout,
                "instruction": instruction.source.text,
                "phrases": plan.sources,
            },
        )


def base_info_inputs(pools: Pools, needed: int) -> list[tuple[str, str, str]]:
    """Every (location, work type, category) with enough fitting challenges, in pool order."""
    rules = RuleMasks(pools.challenges)
    return [
        (location, work_type, category.key)
        for location, work_type, category in product(pools.locations, pools.work_types, pools.categories)
        if rules.allowed_mask(Licence(location=location, work_type=work_type, category=category.key)).bit_count()
        >= needed
    ]


# ---------------------------------------------------------------- capacity


def capacity(pools: Pools, task: Task, challenges_per_output: int = 3) -> int:
    """How many distinct records (by candidate key) the pools can produce for ``task``.

    For free text this is a lower bound: it counts the hand-written messages and the requests of one
    facet, not the combinations of two facets and a topic.
    """
    n = challenges_per_output
    if task == "base_info":
        rules = RuleMasks(pools.challenges)
        return sum(_base_info_sets(rules, *triple, n) for triple in base_info_inputs(pools, n))
    if task == "free_text":
        return _free_text_capacity(pools, n)
    shape = pools.week
    titles = len(pools.challenges)
    submission_states = (shape.max_submissions + 1) * (shape.max_submissions + 2) // 2
    total = 0
    for n_personal in range(shape.max_personal + 1):
        for n_group in range(shape.max_group + 1):
            if n_personal + n_group <= titles:
                total += perm(titles, n_personal + n_group) * 2**n_personal * submission_states**n_group
    return total


def _base_info_sets(rules: RuleMasks, location: str, work_type: str, category: str, n: int) -> int:
    """Distinct pick sets :func:`choose_base_info` can return: one or two specific picks, the rest general, no
    two of one idea."""
    candidates = rules.allowed_mask(Licence(location=location, work_type=work_type, category=category))
    bound = rules.placed | rules.typed  # a place or a work type
    specific, general = candidates & bound, candidates & ~bound
    if not specific:
        return idea_free_sets([general], rules.by_idea.values(), n)[(n,)]
    by_split = idea_free_sets([specific, general], rules.by_idea.values(), n)
    return sum(by_split.get((k, n - k), 0) for k in (1, 2) if k <= n)


def _free_text_capacity(pools: Pools, n: int) -> int:
    fit = FitIndex(pools)
    ideas = fit.rules.by_idea.values()
    handwritten = sum(
        idea_free_sets([fit.allowed_mask(from_message(m, pools).licence)], ideas, n)[(n,)] for m in pools.messages
    )
    composed = 0
    for facet in pools.facets:
        answers = idea_free_sets([fit.fitting_mask([facet])], ideas, n)[(n,)]
        if not answers:  # fewer than n fitting challenges of different ideas
            continue
        surfaces = 0
        for role in ("reason", "want"):
            phrases = getattr(facet, role)
            if phrases:
                frames = sum(
                    phrase_slots(p.text) == {role, "topic"}
                    for level in ("banmal", "jondaemal")
                    for p in pools.frames[level]
                )
                surfaces += len(phrases) * frames * len(pools.topics)
        composed += surfaces * answers
    return handwritten + composed


def pool_to_grow(pools: Pools, task: Task) -> str:
    """Which pool file a user should grow when ``task`` runs out of distinct records."""
    return {
        "base_info": "pools/challenges/*.toml (more challenges per category that fit each location and work type)",
        "free_text": "pools/requests.toml (more facets and wordings) or pools/challenges/*.toml (more challenges)",
        "feedback": "pools/challenges/*.toml (more titles) and pools/feedback.toml (more phrases)",
    }[task]
