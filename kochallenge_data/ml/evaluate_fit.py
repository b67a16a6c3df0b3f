"""Fit to the input: which challenges an answer may name, judged from the input text and the pools alone.

A recommendation may name only pool challenges that the hard rules (:func:`~kochallenge_data.generate.selection.
allowed`) allow for its input; feedback may name only challenges of the week it answers. The input is read the way
the generator wrote it: a base-info triple names location, work type and category; a free-text message is either a
hand-written message of the pools (its facets are declared there) or a composed one, whose facets are recognized by
the pool phrases it contains (a reason clause, a modifier, a category's topic or name). On a 3,000-record build of
the shipped pools this recovers the generator's own licence for every free-text record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import FormatError
from ..formats import parse_recommendation
from ..generate.requests import from_message
from ..generate.selection import Licence, allowed, licence_for
from ..models import Task, WeeklyRecord
from ..pool_files import TOPIC_GROUP
from ..pools import Facet, PoolChallenge, Pools, title_key
from ..text import nfc

FIT_CODES = frozenset({"unknown_challenge", "challenge_not_allowed", "repeated_challenge", "not_in_week"})


@dataclass(frozen=True)
class Failure:
    """One reason an answer fails: a stable code (checks/codes.py or EVALUATION_CODES) and what is wrong where."""

    code: str
    message: str


@dataclass
class FitJudge:
    """The pools, indexed once for judging many answers."""

    pools: Pools
    by_key: dict[str, PoolChallenge] = field(init=False)
    messages: dict[str, tuple[Facet, ...]] = field(init=False)
    phrases: list[tuple[str, Facet]] = field(init=False)
    longest_first: list[str] = field(init=False)

    def __post_init__(self) -> None:
        pools = self.pools
        self.by_key = {title_key(c.title): c for c in pools.challenges}
        self.messages = {nfc(m.text): from_message(m, pools).facets for m in pools.messages}
        phrases: list[tuple[str, Facet]] = []
        for facet in pools.facets:
            if facet.group == TOPIC_GROUP:
                topics = pools.category_topics.get(facet.category or "", ())
                phrases += [(nfc(facet.key), facet), *((nfc(p.text), facet) for p in topics)]
            else:
                phrases += [(nfc(p.text), facet) for p in (*facet.reason, *facet.want)]
        self.phrases = phrases
        self.longest_first = sorted((c.title for c in pools.challenges), key=lambda t: (-len(t), t))

    def licence(self, task: Task, text: str) -> Licence | None:
        """What the input licenses, or None when it does not read as an input of this task."""
        if task == "base_info":
            return self.base_info_licence(text)
        return licence_for(self.free_text_facets(text))

    def base_info_licence(self, text: str) -> Licence | None:
        parts = [part.strip() for part in nfc(text).split(",")]
        if len(parts) != 3:
            return None
        location, work_type, category = parts
        key = next((c.key for c in self.pools.categories if category in (c.name, c.key)), None)
        if key is None or location not in self.pools.locations or work_type not in self.pools.work_types:
            return None
        return Licence(location=location, work_type=work_type, category=key)

    def free_text_facets(self, text: str) -> tuple[Facet, ...]:
        """A hand-written message's declared facets, else every facet whose phrase the message contains."""
        message = nfc(text.strip())
        if message in self.messages:
            return self.messages[message]
        found: list[Facet] = []
        for phrase, facet in self.phrases:
            if phrase in message and facet not in found:
                found.append(facet)
        return tuple(found)

    def recommendation_failures(self, titles: Sequence[str], licence: Licence) -> list[Failure]:
        failures: list[Failure] = []
        seen: set[str] = set()
        for title in titles:
            key = title_key(nfc(title))
            challenge = self.by_key.get(key)
            if key in seen:
                failures.append(Failure("repeated_challenge", f"{title!r} appears twice"))
            seen.add(key)
            if challenge is None:
                failures.append(Failure("unknown_challenge", f"{title!r} is not a pool challenge"))
            elif not allowed(challenge, licence):
                failures.append(
                    Failure("challenge_not_allowed", f"{title!r} ({challenge.source}) {why_not(challenge, licence)}")
                )
        return failures

    def feedback_failures(self, answer: str, week: WeeklyRecord) -> list[Failure]:
        """Pool challenges the feedback names that the week does not hold (longest titles first, masked once found)."""
        week_titles = [c.title for c in week.personal_challenges] + [c.title for c in week.group_challenges]
        text = nfc(answer)
        for title in sorted(week_titles, key=len, reverse=True):
            text = text.replace(nfc(title), "\0")
        failures = []
        for title in self.longest_first:
            if title in text:
                failures.append(Failure("not_in_week", f"names {title!r}, which is not in the week's record"))
                text = text.replace(title, "\0")
        return failures


def why_not(challenge: PoolChallenge, licence: Licence) -> str:
    """The first hard rule that rules the challenge out, in words."""
    if licence.category is not None and challenge.category != licence.category:
        return f"is a {challenge.category} challenge; the input asks for {licence.category}"
    if challenge.places and licence.location not in challenge.places:
        return f"needs location {'/'.join(challenge.places)}; the input gives {licence.location}"
    if challenge.work_types and licence.work_type not in challenge.work_types:
        return f"needs work type {'/'.join(challenge.work_types)}; the input gives {licence.work_type}"
    if challenge.not_work_types and licence.work_type in challenge.not_work_types:
        return f"does not fit work type {licence.work_type}"
    if challenge.not_work_types and licence.work_type is None and not licence.commutes:
        return "presumes a commute the input does not mention"
    if challenge.season is not None and challenge.season != licence.season:
        return f"is a {challenge.season} challenge; the input gives season {licence.season}"
    missing = [need for need in challenge.needs if need not in licence.needs]
    return f"presumes {', '.join(missing)}, which the input does not mention"


def judge_fit(
    judge: FitJudge, task: Task, input_text: str, answer: str
) -> tuple[bool | None, bool | None, str | None, list[Failure]]:
    """(parses, fit, why fit was not judged, fit failures) for one answer."""
    if task == "feedback":
        try:
            week = WeeklyRecord.model_validate_json(input_text)
        except ValueError:
            return None, None, "the input is not a weekly record", []
        failures = judge.feedback_failures(answer, week)
        return None, not failures, None, failures
    try:
        recommendation = parse_recommendation(answer)
    except FormatError:
        return False, None, "the answer does not parse", []
    licence = judge.licence(task, input_text)
    if licence is None:
        return True, None, "the input is not a location, work type, category triple of the pools", []
    failures = judge.recommendation_failures([c.title for c in recommendation.challenges], licence)
    return True, not failures, None, failures
