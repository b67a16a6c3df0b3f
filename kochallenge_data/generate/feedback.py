"""Weekly records and the feedback that answers them.

A week belongs to one user: one location, one work type, and dates whose season its challenges fit. The
feedback addresses every success, failure and idle group challenge, by name where there is room and by an
aggregate phrase (두 개 모두 …) where there is not, within the character limit. Each sentence ends with an
emoji of its own mood, and one-off actions are praised differently from habits.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple

import orjson

from ..pools import Phrase, PoolChallenge, Pools
from ..templates import Template, render_phrase, render_phrase_from
from ..text import nfc
from .draws import choice, randint, sample, sample_two
from .selection import Licence

# Native Korean count words before a counter (두 개, 세 개): grammar, not phrasing.
COUNT_WORDS = ("영", "한", "두", "세", "네", "다섯", "여섯", "일곱", "여덟", "아홉", "열")
# The emoji mood of each kind of sentence (a closing line follows a week with a success).
MOODS = {
    "success": "celebrate",
    "failure": "comfort",
    "idle": "encourage",
    "empty": "encourage",
    "closing": "encourage",
}


# The week, its entries, its user and what the feedback addresses are named tuples: a feedback draw makes a
# dozen of them, and a frozen dataclass costs about twice as much to build.


class PersonalEntry(NamedTuple):
    id: int
    title: str
    is_success: bool


class GroupEntry(NamedTuple):
    id: int
    title: str
    start: datetime
    end: datetime
    submissions: tuple[tuple[bool, datetime], ...]

    @property
    def successes(self) -> int:
        return sum(1 for ok, _ in self.submissions if ok)


class Week(NamedTuple):
    member_id: int
    personal: tuple[PersonalEntry, ...]
    group: tuple[GroupEntry, ...]

    def to_json(self) -> str:
        # orjson writes a naive datetime exactly as isoformat() does (a test checks it), without a call per date.
        data = {
            "memberId": self.member_id,
            "personalChallenges": [{"id": p.id, "title": p.title, "isSuccess": p.is_success} for p in self.personal],
            "groupChallenges": [
                {
                    "id": g.id,
                    "title": g.title,
                    "startDate": g.start,
                    "endDate": g.end,
                    "submissions": [{"isSuccess": ok, "submittedAt": at} for ok, at in g.submissions],
                }
                for g in self.group
            ],
        }
        return orjson.dumps(data).decode()

    def signature(self) -> Hashable:
        """What the feedback depends on: titles and outcomes, not ids or dates."""
        return (
            tuple([(p.title, p.is_success) for p in self.personal]),
            tuple([(g.title, g.successes, len(g.submissions)) for g in self.group]),
        )


class Profile(NamedTuple):
    """The user behind a week: where they live, how they work, and the season of the week."""

    location: str
    work_type: str
    season: str | None

    @property
    def licence(self) -> Licence:
        return Licence(location=self.location, work_type=self.work_type, season=self.season)


def seasons_of(day: date, season_months: Mapping[str, Sequence[int]]) -> list[str]:
    return [season for season, months in season_months.items() if day.month in months]


@dataclass(frozen=True)
class WeekDays:
    """One week a record may fall in: its first and last second, and the seasons of its middle day."""

    start: datetime
    end: datetime
    seasons: tuple[str, ...]


@dataclass
class WeekSampler:
    """Realistic weeks: 0-3 personal and 0-2 group challenges that fit one user, dates inside one week. What
    depends only on the pools is worked out once per build, not once per week.

    The calendar is filled lazily, a week the first time it is drawn, so a bad date fails at the same draw
    as it would without the cache. Nothing here draws from the ``rng``.
    """

    pools: Pools
    _calendar: dict[int, WeekDays] = field(default_factory=dict)
    _submission_counts: tuple[int, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        # No submissions is twice as likely as any one count.
        self._submission_counts = (0, 0, *range(1, self.pools.week.max_submissions + 1))

    def days(self, index: int) -> WeekDays:
        found = self._calendar.get(index)
        if found is None:
            shape = self.pools.week
            monday = _parse_date(shape.first_monday) + timedelta(weeks=index)
            start = datetime(monday.year, monday.month, monday.day)
            seasons = tuple(seasons_of(monday + timedelta(days=3), shape.season_months))
            found = WeekDays(start, start + timedelta(days=6, hours=23, minutes=59, seconds=59), seasons)
            self._calendar[index] = found
        return found

    def draw(
        self, rng: random.Random, allowed_for: Callable[[Profile], Sequence[PoolChallenge]]
    ) -> tuple[Week, Profile]:
        """A week and its user; ``allowed_for`` gives the challenges a user could have joined."""
        pools = self.pools
        shape = pools.week
        days = self.days(rng.randrange(shape.weeks))
        seasons = days.seasons
        profile = Profile(
            choice(rng, pools.locations), choice(rng, pools.work_types), choice(rng, seasons) if seasons else None
        )
        # Challenges this user could have joined: their place, work and season; nothing presupposed.
        challenges = allowed_for(profile)
        n_personal = randint(rng, 0, shape.max_personal)
        n_group = randint(rng, 0, shape.max_group)
        if n_personal + n_group == 0 and rng.random() < 0.5:
            # Empty weeks happen, but half as often as a uniform draw would make them.
            n_personal = 1
        titles = [c.title for c in sample(rng, challenges, min(len(challenges), n_personal + n_group))]
        n_personal = min(n_personal, len(titles))
        ids = sample(rng, range(1, 10000), len(titles))
        personal = tuple([PersonalEntry(ids[i], titles[i], rng.random() < 0.65) for i in range(n_personal)])
        group = tuple([self._group(ids[i], titles[i], days, rng) for i in range(n_personal, len(titles))])
        return Week(randint(rng, 1, shape.member_id_max), personal, group), profile

    def _group(self, challenge_id: int, title: str, days: WeekDays, rng: random.Random) -> GroupEntry:
        week_start, week_end = days.start, days.end
        count = choice(rng, self._submission_counts)
        start = week_start - _DAYS_BEFORE[randint(rng, 0, 14)]
        # One without submissions runs past the week: the feedback invites the user to it, and an ended one
        # could not be joined any more.
        end = week_start + _LAST_SECOND_AFTER[randint(rng, 7 if count == 0 else 3, 20)]
        window_start, window_end = max(start, week_start), min(end, week_end)
        window_seconds = int((window_end - window_start).total_seconds())
        # Sorting the offsets sorts the times they make.
        offsets = sorted([randint(rng, 0, window_seconds) for _ in range(count)])
        submissions = tuple([(rng.random() < 0.85, window_start + timedelta(seconds=s)) for s in offsets])
        if submissions and not any(ok for ok, _ in submissions) and end <= week_end:
            # A missed one is offered for a retry next week ("다음 주에 다시 해 봐요"), so it must still be running.
            end = week_start + _LAST_SECOND_AFTER[7]
        return GroupEntry(challenge_id, title, start, end, submissions)


# A group challenge starts up to two weeks before the week and ends 3 to 20 days into it (7 to 20 when it has no
# successful submission), at its last second.
_DAYS_BEFORE = tuple(timedelta(days=days) for days in range(15))
_LAST_SECOND_AFTER = {days: timedelta(days=days, hours=23, minutes=59, seconds=59) for days in range(3, 21)}


@lru_cache(maxsize=16)
def _parse_date(text: str) -> date:
    return date.fromisoformat(text)


class Item(NamedTuple):
    """One thing the feedback must address."""

    title: str
    habit: bool
    group_successes: int  # successful group submissions; 0 for a personal challenge


def week_items(week: Week, habits: Mapping[str, bool]) -> dict[str, list[Item]]:
    """Successes, failures and idle group challenges, in the order the record lists them."""
    items: dict[str, list[Item]] = {"success": [], "failure": [], "idle": []}
    for p in week.personal:
        items["success" if p.is_success else "failure"].append(Item(p.title, habits.get(p.title, True), 0))
    for g in week.group:
        successes = g.successes
        kind = "success" if successes else ("failure" if g.submissions else "idle")
        items[kind].append(Item(g.title, habits.get(g.title, True), successes))
    return items


Option = tuple[str, str, bool]  # (text, phrase source, names every item)


class Wording(NamedTuple):
    """A phrase drawn from ``pool`` for ``slots``; the pool's shortest phrase is its fallback."""

    pool: Sequence[Phrase]
    drawn: Phrase
    slots: Mapping[str, Any]
    names: bool  # the phrase names every item

    def render(self, phrase: Phrase) -> Option:
        return render_phrase_from(phrase.text, self.slots), phrase.source.text, self.names

    def options(self) -> list[Option]:
        """The drawn phrase, then the shortest one when that is another."""
        shortest = self.pool[shortest_wording(tuple(p.text for p in self.pool), tuple(self.slots.items()))]
        return [self.render(self.drawn)] + ([self.render(shortest)] if shortest is not self.drawn else [])


class Part:
    """One sentence of the feedback in its possible wordings, most specific first.

    Only the first wording is rendered up front: most feedback fits at once, and finding each pool's
    shortest wording (the fallbacks) costs more than the rest of the plan. Rendering draws nothing from
    the ``rng``, so when it happens does not change the result.
    """

    __slots__ = ("_options", "first", "kind", "wordings")

    def __init__(self, kind: str, wordings: tuple[Wording, ...], first: Option) -> None:
        self.kind = kind
        self.wordings = wordings
        self.first = first  # the first wording, rendered
        self._options: list[Option] = []  # filled when first asked

    def options(self) -> list[Option]:
        """Every wording: for each drawn phrase, it and then its pool's shortest."""
        if not self._options:
            self._options.extend(option for wording in self.wordings for option in wording.options())
        return self._options

    def at(self, level: int) -> Option:
        """The wording ``level`` steps shorter than the first (the last one past the end)."""
        if level == 0:
            return self.first
        options = self.options()
        return options[min(level, len(options) - 1)]


def _part_of(kind: str, wordings: Sequence[Wording]) -> Part:
    return Part(kind, tuple(wordings), wordings[0].render(wordings[0].drawn))


class FeedbackPlan(NamedTuple):
    text: str
    sources: list[str]
    covered: dict[str, dict[str, int]]  # kind -> {"named": n, "aggregated": n}
    layout: str


def plan_feedback(
    week: Week,
    pools: Pools,
    rng: random.Random,
    layouts: Sequence[Template],
    limit: int,
    habits: Mapping[str, bool],
) -> FeedbackPlan:
    """Address every item of the week within ``limit`` characters, naming items while they fit."""
    items = week_items(week, habits)
    parts = [_part(kind, found, pools, rng) for kind, found in items.items() if found]
    if not parts:
        parts = [_single("empty", pools.feedback_phrases["empty_week"], rng)]
    closing_pool = pools.feedback_phrases["closing"]
    closing_phrase = closing_pool[rng.randrange(len(closing_pool))]
    layout = layouts[rng.randrange(len(layouts))]
    emoji = _emoji_by_kind(pools, rng)
    # Closing lines ("다음 주도 …") follow a week with a success; after an empty or all-missed week they ring false.
    wants_closing = bool(items["success"]) and rng.random() < (0.6 if len(parts) == 1 else 0.3)
    # Rendered only when wanted (rendering draws nothing, so the rest of the stream is the same).
    closing = render_phrase(closing_phrase.text) if wants_closing else ""
    levels = [0] * len(parts)
    while True:
        chosen = [part.at(level) for part, level in zip(parts, levels, strict=True)]
        # Whether the closing echoes the feedback matters only when a closing is wanted.
        closing_fits = wants_closing and not _echoes(closing, [option[0] for option in chosen])
        for with_closing in (True, False) if closing_fits else (False,):
            sentences = [(part.kind, option[0]) for part, option in zip(parts, chosen, strict=True)]
            if with_closing:
                sentences.append(("closing", closing))
            text = _render(layout, sentences, emoji)
            if len(nfc(text)) <= limit:
                sources = [option[1] for option in chosen] + ([closing_phrase.source.text] if with_closing else [])
                return FeedbackPlan(text, sources, _coverage(items, parts, chosen), f"feedback/{layout.name}")
        # Too long: the longest sentence that has a shorter wording gives way first (the first such on a
        # tie). Longest first, so the fallbacks of the shorter sentences are seldom worked out at all.
        by_length = sorted(range(len(parts)), key=lambda i: -len(chosen[i][0]))
        shortened = next((i for i in by_length if levels[i] < len(parts[i].options()) - 1), None)
        if shortened is None:
            break
        levels[shortened] += 1
    # Still too long (very long titles): the most compact wordings, one emoji, no closing.
    chosen = [min(part.options(), key=lambda o: len(o[0])) for part in parts]
    sentences = [(part.kind, option[0]) for part, option in zip(parts, chosen, strict=True)]
    text = " ".join(s for _, s in sentences) + " " + emoji[parts[-1].kind][0]
    return FeedbackPlan(text, [o[1] for o in chosen], _coverage(items, parts, chosen), "compact")


def _echoes(closing: str, sentences: Sequence[str]) -> bool:
    """A closing line that repeats a word of the feedback ("다음 주 … 다음 주도 …") reads as filler."""
    words = {w.strip(".,!?~") for s in sentences for w in s.split()}
    return any(word in words for word in _closing_words(closing))


@lru_cache(maxsize=1024)
def _closing_words(closing: str) -> tuple[str, ...]:
    """The words of a closing line that may echo the feedback: two characters or more, punctuation stripped."""
    return tuple(w.strip(".,!?~") for w in closing.split() if len(w.strip(".,!?~")) >= 2)


def _part(kind: str, found: list[Item], pools: Pools, rng: random.Random) -> Part:
    """The sentence for the items of one kind ("success", "failure" or "idle", also its phrase pools' prefix)."""
    phrases = pools.feedback_phrases
    if len(found) == 1:
        item = found[0]
        if kind == "success" and item.group_successes:
            pool = phrases["group_active"]
        elif kind == "success":
            pool = phrases["success_habit" if item.habit else "success_once"]
        else:
            pool = phrases[kind]
        return _part_of(kind, [_wording(pool, rng, {"title": item.title, "count": item.group_successes}, True)])
    wordings: list[Wording] = []
    if len(found) == 2:
        pair = {"first": found[0].title, "second": found[1].title}
        wordings.append(_wording(phrases[f"{kind}_pair"], rng, pair, names=True))
    count_word = {"count_word": COUNT_WORDS[min(len(found), len(COUNT_WORDS) - 1)]}
    wordings.append(_wording(phrases[f"{kind}_many"], rng, count_word, names=False))
    return _part_of(kind, wordings)


def _wording(pool: Sequence[Phrase], rng: random.Random, slots: dict[str, Any], names: bool) -> Wording:
    """A random wording first, then the shortest one as the fallback when the first does not fit."""
    pool = _without_stacked_topics(pool, slots)
    return Wording(pool, pool[rng.randrange(len(pool))], slots, names)


def _without_stacked_topics(pool: Sequence[Phrase], slots: Mapping[str, Any]) -> Sequence[Phrase]:
    """``pool`` less the phrases that put 은/는 after a title already holding one ("가까운 층은 계단 이용하기는"
    stacks two topics); the whole pool when no title holds one, or when every phrase would stack."""
    topical = {name for name, value in slots.items() if isinstance(value, str) and _holds_topic(value)}
    if not topical:
        return pool
    kept = [phrase for phrase in pool if topical.isdisjoint(_topic_slots(phrase.text))]
    return kept or pool


# A syllable ending in 은 or 는 before a space: the topic particle, or now and then a verb's 는 ("듣는 노래"),
# where avoiding a phrase costs only a little variety.
_TOPIC_INSIDE = re.compile(r"[가-힣][은는] ")
_TOPIC_AFTER_SLOT = re.compile(r'\{\{\s*(\w+)\s*\|\s*josa\("은/는"\)\s*\}\}')


@lru_cache(maxsize=4096)
def _holds_topic(title: str) -> bool:
    return _TOPIC_INSIDE.search(title) is not None


@lru_cache(maxsize=1024)
def _topic_slots(text: str) -> frozenset[str]:
    """The slots a phrase follows with 은/는: ``{{ title | josa("은/는") }}`` gives {"title"}."""
    return frozenset(_TOPIC_AFTER_SLOT.findall(text))


@lru_cache(maxsize=65536)
def shortest_wording(texts: tuple[str, ...], slots: tuple[tuple[str, Any], ...]) -> int:
    """Index of the first of ``texts`` that renders shortest with ``slots``.

    Cached on the phrase texts and the slot values: the same title (or count word) meets the same
    pool again and again, and rendering every wording to measure it is most of a feedback draw.
    """
    values = dict(slots)
    return min(range(len(texts)), key=lambda i: len(render_phrase(texts[i], **values)))


def _single(kind: str, pool: Sequence[Phrase], rng: random.Random) -> Part:
    """One phrase without slots drawn from ``pool``, with no shorter fallback."""
    phrase = pool[rng.randrange(len(pool))]
    return _part_of(kind, [Wording((phrase,), phrase, {}, names=True)])


def _emoji_by_kind(pools: Pools, rng: random.Random) -> dict[str, tuple[str, str]]:
    """Two emoji of the right mood per kind of sentence, never the same emoji for two sentences."""
    used: set[str] = set()
    chosen: dict[str, tuple[str, str]] = {}
    for kind, mood in MOODS.items():
        pool = pools.feedback_emoji[mood]
        # A sample draws the same from a tuple as from a list of the same items.
        free = pool if used.isdisjoint(pool) else ([e for e in pool if e not in used] or pool)
        pair = sample_two(rng, free) if len(free) >= 2 else (free[0], free[0])
        used.update(pair)
        chosen[kind] = pair
    return chosen


def _render(layout: Template, sentences: Sequence[tuple[str, str]], emoji: Mapping[str, tuple[str, str]]) -> str:
    values = [{"text": text, "emoji": emoji[kind][0], "emoji2": emoji[kind][1]} for kind, text in sentences]
    return layout.render(sentences=values)


def _coverage(
    items: Mapping[str, list[Item]], parts: Sequence[Part], chosen: Sequence[Option]
) -> dict[str, dict[str, int]]:
    covered: dict[str, dict[str, int]] = {}
    for part, option in zip(parts, chosen, strict=True):
        if part.kind in items:
            n = len(items[part.kind])
            covered[part.kind] = {"named": n if option[2] else 0, "aggregated": 0 if option[2] else n}
    return covered
