"""Turn pools into candidate records, driven by one explicit ``random.Random``.

Samplers never touch the global ``random`` module and never iterate over sets, so the same pools,
templates, seed and options give the same candidates on any machine and any ``PYTHONHASHSEED``.
Balanced choices (which input, which sentence, which instruction) are dealt from shuffled decks,
so no phrase dominates by chance; the challenges themselves are drawn at random.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import product
from math import comb, perm
from typing import Any, Generic, TypeVar

import orjson

from .formats import format_recommendation
from .models import Challenge, Recommendation, Task
from .pools import MessageItem, Phrase, PoolChallenge, Pools
from .templates import Template, Templates, render_phrase
from .text import FEEDBACK_LIMIT, trim

T = TypeVar("T")


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


@dataclass(frozen=True)
class Candidate:
    """A rendered record before the checks, with what made it (for the metadata sidecar)."""

    task: Task
    instruction: str
    input: str
    output: str
    key: Hashable  # two candidates with the same key count as the same record
    meta: dict[str, Any]

    def model_record(self) -> dict[str, str]:
        return {"instruction": self.instruction, "input": self.input, "output": self.output}


@dataclass
class Sampler:
    """Holds the decks that keep choices balanced; every draw goes through ``rng``."""

    pools: Pools
    templates: Templates
    rng: random.Random
    challenges_per_output: int = 3
    feedback_limit: int = FEEDBACK_LIMIT
    _decks: dict[str, Deck[Any]] = field(default_factory=dict)

    _fitting: dict[Hashable, list[PoolChallenge]] = field(default_factory=dict)

    def deck(self, name: str, items: Callable[[], Sequence[Any]]) -> Deck[Any]:
        """The named deck, built from ``items()`` the first time it is asked for."""
        if name not in self._decks:
            self._decks[name] = Deck(items(), self.rng)
        return self._decks[name]

    def fitting(self, key: Hashable, find: Callable[[], list[PoolChallenge]]) -> list[PoolChallenge]:
        if key not in self._fitting:
            self._fitting[key] = find()
        return self._fitting[key]

    def draw(self, task: Task) -> Candidate:
        if task == "base_info":
            return self.draw_base_info()
        if task == "free_text":
            return self.draw_free_text()
        return self.draw_feedback()

    def _instruction(self, task: Task) -> Phrase:
        phrase: Phrase = self.deck(f"instruction:{task}", lambda: self.pools.instructions[task]).deal()
        return phrase

    def _recommendation(self, recommend: str, chosen: Sequence[PoolChallenge]) -> str:
        challenges = [Challenge(title=c.title, description=c.description) for c in chosen]
        return format_recommendation(Recommendation(recommend=recommend, challenges=challenges))

    def draw_base_info(self) -> Candidate:
        pools = self.pools
        triples = self.deck("base_info:input", lambda: base_info_inputs(pools, self.challenges_per_output))
        location, work_type, category = triples.deal()
        name = pools.category_name(category)
        fitting = self.fitting(
            (location, work_type, category), lambda: pools.challenges_for(category, location, work_type)
        )
        chosen = self.rng.sample(fitting, self.challenges_per_output)
        sentence: Phrase = self.deck("base_info:sentence", lambda: pools.base_info_sentences).deal()
        recommend = render_phrase(sentence.text, location=location, work_type=work_type, category=name)
        instruction = self._instruction("base_info")
        input_text = self.templates.base_info_input.render(location=location, work_type=work_type, category=name)
        return Candidate(
            task="base_info",
            instruction=instruction.text,
            input=input_text,
            output=self._recommendation(recommend, chosen),
            key=("base_info", input_text, frozenset(c.title for c in chosen)),
            meta={
                "task": "base_info",
                "location": location,
                "work_type": work_type,
                "category": category,
                "template": self.templates.base_info_input.name,
                "instruction": str(instruction.source),
                "recommend": str(sentence.source),
                "challenges": [str(c.source) for c in chosen],
            },
        )

    def draw_free_text(self) -> Candidate:
        pools = self.pools
        messages = self.deck("free_text:message", lambda: free_text_messages(pools, self.challenges_per_output))
        message: MessageItem = messages.deal()
        fitting = self.fitting(message, lambda: pools.challenges_for_message(message))
        chosen = self.rng.sample(fitting, self.challenges_per_output)
        sentence: Phrase = self.deck(
            f"free_text:reply:{message.mood}", lambda: reply_sentences(pools, message.mood)
        ).deal()
        instruction = self._instruction("free_text")
        input_text = self.templates.free_text_input.render(message=message.text)
        return Candidate(
            task="free_text",
            instruction=instruction.text,
            input=input_text,
            output=self._recommendation(render_phrase(sentence.text), chosen),
            key=("free_text", input_text, frozenset(c.title for c in chosen)),
            meta={
                "task": "free_text",
                "mood": message.mood,
                "categories": sorted({c.category for c in chosen}),
                "template": self.templates.free_text_input.name,
                "instruction": str(instruction.source),
                "message": str(message.source),
                "recommend": str(sentence.source),
                "challenges": [str(c.source) for c in chosen],
            },
        )

    def draw_feedback(self) -> Candidate:
        week = sample_week(self.pools, self.rng)
        plan = plan_feedback(week, self.pools, self.rng)
        layout: Template = self.deck("feedback:layout", lambda: self.templates.feedback_layouts).deal()
        # Phrases are written to fit; trimming is the safety net for a pool a user grew too long.
        output = trim(layout.render(**plan.values), self.feedback_limit)
        instruction = self._instruction("feedback")
        return Candidate(
            task="feedback",
            instruction=instruction.text,
            input=week.to_json(),
            output=output,
            key=("feedback", week.signature(), output),
            meta={
                "task": "feedback",
                "personal": len(week.personal),
                "group": len(week.group),
                "template": f"feedback/{layout.name}",
                "instruction": str(instruction.source),
                "phrases": plan.sources,
            },
        )


def base_info_inputs(pools: Pools, needed: int) -> list[tuple[str, str, str]]:
    """Every (location, work type, category) with enough fitting challenges, in pool order."""
    return [
        (location, work_type, category.key)
        for location, work_type, category in product(pools.locations, pools.work_types, pools.categories)
        if len(pools.challenges_for(category.key, location, work_type)) >= needed
    ]


def free_text_messages(pools: Pools, needed: int) -> list[MessageItem]:
    return [m for m in pools.messages if len(pools.challenges_for_message(m)) >= needed]


def reply_sentences(pools: Pools, mood: str) -> tuple[Phrase, ...]:
    """Replies that answer the message's mood; general replies for messages without one.

    Mixing general replies into every mood would make each general sentence several times more
    frequent than any mood sentence (a monotony the team saw), so the two stay apart.
    """
    return pools.replies_for(mood)


# ---------------------------------------------------------------- feedback


@dataclass(frozen=True)
class PersonalEntry:
    id: int
    title: str
    is_success: bool


@dataclass(frozen=True)
class GroupEntry:
    id: int
    title: str
    start: datetime
    end: datetime
    submissions: tuple[tuple[bool, datetime], ...]

    @property
    def successes(self) -> int:
        return sum(1 for ok, _ in self.submissions if ok)


@dataclass(frozen=True)
class Week:
    member_id: int
    personal: tuple[PersonalEntry, ...]
    group: tuple[GroupEntry, ...]

    def to_json(self) -> str:
        data = {
            "memberId": self.member_id,
            "personalChallenges": [{"id": p.id, "title": p.title, "isSuccess": p.is_success} for p in self.personal],
            "groupChallenges": [
                {
                    "id": g.id,
                    "title": g.title,
                    "startDate": g.start.isoformat(),
                    "endDate": g.end.isoformat(),
                    "submissions": [{"isSuccess": ok, "submittedAt": at.isoformat()} for ok, at in g.submissions],
                }
                for g in self.group
            ],
        }
        return orjson.dumps(data).decode()

    def signature(self) -> Hashable:
        """What the feedback depends on: titles and outcomes, not ids or dates."""
        return (
            tuple((p.title, p.is_success) for p in self.personal),
            tuple((g.title, g.successes, len(g.submissions)) for g in self.group),
        )


def sample_week(pools: Pools, rng: random.Random) -> Week:
    """A realistic week: 0-3 personal and 0-2 group challenges, dates inside one week."""
    shape = pools.week
    monday = date.fromisoformat(shape.first_monday) + timedelta(weeks=rng.randrange(shape.weeks))
    week_start = datetime(monday.year, monday.month, monday.day)
    week_end = week_start + timedelta(days=6, hours=23, minutes=59, seconds=59)
    n_personal = rng.randint(0, shape.max_personal)
    n_group = rng.randint(0, shape.max_group)
    if n_personal + n_group == 0 and rng.random() < 0.5:
        # Empty weeks happen, but half as often as a uniform draw would make them.
        n_personal = 1
    titles = rng.sample([c.title for c in pools.challenges], n_personal + n_group)
    ids = rng.sample(range(1, 10000), n_personal + n_group)
    personal = tuple(
        PersonalEntry(id=ids[i], title=titles[i], is_success=rng.random() < 0.65) for i in range(n_personal)
    )
    group = tuple(
        _sample_group(ids[i], titles[i], week_start, week_end, shape.max_submissions, rng)
        for i in range(n_personal, n_personal + n_group)
    )
    return Week(member_id=rng.randint(1, shape.member_id_max), personal=personal, group=group)


def _sample_group(
    challenge_id: int,
    title: str,
    week_start: datetime,
    week_end: datetime,
    max_submissions: int,
    rng: random.Random,
) -> GroupEntry:
    start = week_start - timedelta(days=rng.randint(0, 14))
    end = week_start + timedelta(days=rng.randint(3, 20), hours=23, minutes=59, seconds=59)
    window_start, window_end = max(start, week_start), min(end, week_end)
    window_seconds = int((window_end - window_start).total_seconds())
    count = rng.choice([0, 0, *range(1, max_submissions + 1)])
    times = sorted(window_start + timedelta(seconds=rng.randint(0, window_seconds)) for _ in range(count))
    submissions = tuple((rng.random() < 0.85, at) for at in times)
    return GroupEntry(id=challenge_id, title=title, start=start, end=end, submissions=submissions)


@dataclass(frozen=True)
class FeedbackPlan:
    values: dict[str, str]
    sources: list[str]


def plan_feedback(week: Week, pools: Pools, rng: random.Random) -> FeedbackPlan:
    """Pick what the feedback says: praise first, then comfort or a nudge, within 100 characters."""
    phrases, emoji = pools.feedback_phrases, pools.feedback_emoji
    points: list[tuple[str, str, dict[str, Any]]] = []  # (kind, emoji mood, slot values)
    points += [("success", "celebrate", {"title": p.title}) for p in week.personal if p.is_success]
    points += [
        ("group_active", "celebrate", {"title": g.title, "count": g.successes}) for g in week.group if g.successes
    ]
    points += [("failure", "comfort", {"title": p.title}) for p in week.personal if not p.is_success]
    # A group challenge whose submissions all failed gets comfort; one with none yet gets a nudge.
    points += [("failure", "comfort", {"title": g.title}) for g in week.group if g.submissions and not g.successes]
    points += [("group_idle", "encourage", {"title": g.title}) for g in week.group if not g.submissions]
    if not points:
        points = [("empty_week", "encourage", {})]
    lead = points[0]
    rest = [p for p in points[1:] if p[0] != lead[0]] or points[1:]
    follow = rng.choice(rest) if rest else None
    chosen = [lead] if follow is None else [lead, follow]
    rendered: list[str] = []
    sources: list[str] = []
    for kind, _, slots in chosen:
        phrase: Phrase = rng.choice(phrases[kind])
        rendered.append(render_phrase(phrase.text, **slots))
        sources.append(str(phrase.source))
    closing = ""
    if follow is None or rng.random() < 0.35:
        closing_phrase = rng.choice(phrases["closing"])
        closing = closing_phrase.text
        sources.append(str(closing_phrase.source))
    end_mood = chosen[-1][1] if follow is not None else "encourage"
    lead_emoji = rng.choice(emoji[lead[1]])
    end_choices = [e for e in emoji[end_mood] if e != lead_emoji] or list(emoji[end_mood])
    values = {
        "lead": rendered[0],
        "follow": rendered[1] if len(rendered) > 1 else "",
        "closing": closing,
        "lead_emoji": lead_emoji,
        "end_emoji": rng.choice(end_choices),
    }
    return FeedbackPlan(values=values, sources=sources)


# ---------------------------------------------------------------- capacity


def capacity(pools: Pools, task: Task, challenges_per_output: int = 3) -> int:
    """How many distinct records (by candidate key) the pools can produce for ``task``."""
    n = challenges_per_output
    if task == "base_info":
        return sum(
            comb(len(pools.challenges_for(category, location, work_type)), n)
            for location, work_type, category in base_info_inputs(pools, n)
        )
    if task == "free_text":
        return sum(comb(len(pools.challenges_for_message(m)), n) for m in free_text_messages(pools, n))
    shape = pools.week
    titles = len(pools.challenges)
    submission_states = (shape.max_submissions + 1) * (shape.max_submissions + 2) // 2
    total = 0
    for n_personal in range(shape.max_personal + 1):
        for n_group in range(shape.max_group + 1):
            if n_personal + n_group <= titles:
                total += perm(titles, n_personal + n_group) * 2**n_personal * submission_states**n_group
    return total


def pool_to_grow(pools: Pools, task: Task) -> str:
    """Which pool file a user should grow when ``task`` runs out of distinct records."""
    return {
        "base_info": "pools/challenges/*.toml (more challenges per category that fit each location and work type)",
        "free_text": "pools/messages.toml (more messages) or pools/challenges/*.toml (more tagged challenges)",
        "feedback": "pools/challenges/*.toml (more titles) and pools/feedback.toml (more phrases)",
    }[task]
