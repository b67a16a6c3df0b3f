"""Load and validate the phrase pools under ``pools/``.

Pools are TOML files a person edits by hand: one phrase per line inside arrays, comments allowed.
Everything is validated here, once, so a mistake is reported with its file and line before any
record is generated. Lists keep file order (never sets), which keeps builds reproducible.
"""

from __future__ import annotations

import re
import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .errors import PoolError, TemplateError, where
from .models import TASKS, Task
from .pool_files import (
    BASE_INFO_REASON_SLOTS,
    EMOJI_MOODS,
    FEEDBACK_SLOTS,
    FRAME_SLOTS,
    FREE_TEXT_SLOTS,
    MATCH_FIELDS,
    QUESTION_SLOTS,
    TOPIC_GROUP,
    TOPIC_REPLY_SLOTS,
    Category,
    ChallengeFile,
    DomainFile,
    FeedbackFile,
    InstructionsFile,
    MessagesFile,
    RecommendFile,
    RequestsFile,
    RequestShape,
    WeekShape,
)
from .resources import shipped_dir
from .safe_files import UnsafeFileError, read_user_text
from .templates import LINE_BREAKS
from .text import strings_in

_M = TypeVar("_M", bound=BaseModel)


@dataclass(frozen=True)
class Source:
    """Where a pool item came from, for messages and metadata."""

    file: str
    line: int | None

    def __str__(self) -> str:
        return self.text

    @cached_property
    def text(self) -> str:
        """``file:line``, built once: every record's metadata names the sources of what made it."""
        return f"{self.file}:{self.line}" if self.line is not None else self.file


@dataclass(frozen=True)
class PoolChallenge:
    """A challenge, its descriptions, and the facets that say when it fits (empty = no restriction)."""

    category: str
    title: str
    descriptions: tuple[str, ...]
    idea: str | None
    places: tuple[str, ...]
    work_types: tuple[str, ...]
    not_work_types: tuple[str, ...]
    season: str | None
    settings: tuple[str, ...]
    company: tuple[str, ...]
    needs: tuple[str, ...]
    time: str
    effort: str
    cost: str
    habit: bool
    source: Source

    @property
    def description(self) -> str:
        """The first description: the one a reader sees in messages and lint reports."""
        return self.descriptions[0]

    def values(self, field_name: str) -> tuple[str, ...]:
        """A facet field as a tuple, whether it holds one value or several."""
        value = getattr(self, field_name)
        if value is None:
            return ()
        return (value,) if isinstance(value, str) else tuple(value)

    @property
    def bound(self) -> bool:
        """Bound to a place or a work type: a base-info pick that shows the user's location or work."""
        return bool(self.places or self.work_types)


@dataclass(frozen=True)
class Phrase:
    """One pool phrase (possibly a jinja template string) and where it was written."""

    text: str
    source: Source


@dataclass(frozen=True)
class Facet:
    """Something a request asks for, what it licenses, and how it is said."""

    key: str
    group: str
    match: tuple[tuple[tuple[str, frozenset[str]], ...], ...]
    season: str | None
    location: str | None
    work_type: str | None
    needs: tuple[str, ...]
    commutes: bool
    conflicts: frozenset[str]
    category: str | None
    reason: tuple[Phrase, ...]
    want: tuple[Phrase, ...]
    source: Source


@dataclass(frozen=True)
class MessageItem:
    """A hand-written user message and the facets it states (the first is the main one)."""

    text: str
    facets: tuple[str, ...]
    question: bool
    source: Source


@dataclass(frozen=True)
class Pools:
    """Everything the generator samples from, validated and in file order."""

    root: Path
    locations: tuple[str, ...]
    work_types: tuple[str, ...]
    categories: tuple[Category, ...]
    category_topics: Mapping[str, tuple[Phrase, ...]]  # category key -> how users name it in a request
    challenges: tuple[PoolChallenge, ...]
    about: Mapping[str, tuple[Phrase, ...]]  # category key -> sentences that say what it is
    instructions: Mapping[Task, tuple[Phrase, ...]]
    base_info_sentences: Mapping[str, tuple[Phrase, ...]]  # reason -> sentences
    free_text_replies: Mapping[str, tuple[Phrase, ...]]  # facet key, "general" or "question" -> sentences
    facets: tuple[Facet, ...]
    frames: Mapping[str, tuple[Phrase, ...]]
    topics: tuple[Phrase, ...]
    request_shape: RequestShape
    messages: tuple[MessageItem, ...]
    feedback_phrases: Mapping[str, tuple[Phrase, ...]]
    feedback_emoji: Mapping[str, tuple[str, ...]]
    week: WeekShape
    files: tuple[Path, ...] = field(default=())

    def category_name(self, key: str) -> str:
        return self._category_names[key]  # a KeyError for an unknown key

    @cached_property
    def _category_names(self) -> dict[str, str]:
        """Category key -> name; the first category with a key wins. Every draw names its category."""
        return {category.key: category.name for category in reversed(self.categories)}

    def facet(self, key: str) -> Facet:
        for facet in self.facets:
            if facet.key == key:
                return facet
        raise KeyError(key)

    def replies_for(self, facet: Facet) -> tuple[Phrase, ...] | None:
        """Replies written for this facet, or for its group; None when only general replies fit."""
        return self.free_text_replies.get(facet.key) or self.free_text_replies.get(facet.group)


def default_pools_dir() -> Path:
    return shipped_dir("pools")


def load_pools(root: Path | str | None = None) -> Pools:
    """Read and validate every pool file under ``root`` (the shipped pools by default)."""
    root_path = Path(root) if root is not None else default_pools_dir()
    if not root_path.is_dir():
        raise PoolError(f"{root_path}: pools folder not found; pass --pools with a folder of pool files")
    domain_path = root_path / "domain.toml"
    domain = _validate(DomainFile, _read_toml(domain_path, root_path), domain_path)
    for name in (*domain.locations, *domain.work_types, *(c.name for c in domain.category)):
        _check_pool_text(name, domain_path, MAX_POOL_NAME, "name")
    _check_unique([c.key for c in domain.category], domain_path, "category key")
    _check_unique([c.name for c in domain.category], domain_path, "category name")
    _check_unique(domain.locations, domain_path, "location")
    _check_unique(domain.work_types, domain_path, "work type")

    challenge_paths = sorted((root_path / "challenges").glob("*.toml"))
    if not challenge_paths:
        raise PoolError(f"{root_path / 'challenges'}: no challenge files (*.toml) found")
    challenges: list[PoolChallenge] = []
    about: dict[str, tuple[Phrase, ...]] = {}
    for path in challenge_paths:
        category, items, sentences = _load_challenge_file(path, domain, root_path)
        challenges += items
        about[category] = about.get(category, ()) + sentences
    _check_titles_distinct(challenges)
    _check_ideas_shared(challenges)

    instructions_path = root_path / "instructions.toml"
    instructions_file = _validate(InstructionsFile, _read_toml(instructions_path, root_path), instructions_path)
    instructions = {
        task: _phrases(instructions_path, getattr(instructions_file, task), frozenset(), root_path) for task in TASKS
    }

    requests_path = root_path / "requests.toml"
    requests = _validate(RequestsFile, _read_toml(requests_path, root_path), requests_path)
    facets = _load_facets(requests_path, requests, domain, root_path)
    frames = {
        level: _phrases(requests_path, getattr(requests.frames, level), slots, root_path)
        for level, slots in (
            ("banmal", FRAME_SLOTS),
            ("jondaemal", FRAME_SLOTS),
            ("question_banmal", QUESTION_SLOTS),
            ("question_jondaemal", QUESTION_SLOTS),
        )
    }
    topics = _phrases(requests_path, requests.frames.topics, frozenset(), root_path)
    _check_frames_cover_every_shape(frames, requests_path)

    recommend_path = root_path / "recommend.toml"
    recommend = _validate(RecommendFile, _read_toml(recommend_path, root_path), recommend_path)
    base_info_sentences = {
        reason: _phrases(recommend_path, getattr(recommend.base_info, reason), slots, root_path)
        for reason, slots in BASE_INFO_REASON_SLOTS.items()
    }
    replies = {
        "general": _phrases(recommend_path, recommend.free_text.general, FREE_TEXT_SLOTS, root_path),
        "question": _phrases(recommend_path, recommend.free_text.question, FREE_TEXT_SLOTS, root_path),
    }
    facet_by_key = {f.key: f for f in facets}
    facet_keys = list(facet_by_key)
    groups = list(dict.fromkeys(f.group for f in facets))
    for key, texts in recommend.free_text.by_facet.items():
        _check_member(key, [*facet_keys, *groups], recommend_path, "facet or facet group", declared_in="requests.toml")
        topical = key == TOPIC_GROUP or (key in facet_by_key and facet_by_key[key].category is not None)
        slots = TOPIC_REPLY_SLOTS if topical else FREE_TEXT_SLOTS
        replies[key] = _phrases(recommend_path, texts, slots, root_path)

    messages_path = root_path / "messages.toml"
    messages = _load_messages(messages_path, facet_keys, root_path)

    feedback_path = root_path / "feedback.toml"
    feedback = _validate(FeedbackFile, _read_toml(feedback_path, root_path), feedback_path)
    feedback_phrases = {
        kind: _phrases(feedback_path, getattr(feedback.phrases, kind), slots, root_path)
        for kind, slots in FEEDBACK_SLOTS.items()
    }
    _check_not_said(feedback.not_said, feedback_phrases, feedback_path)
    feedback_emoji = {mood: tuple(getattr(feedback.emoji, mood)) for mood in EMOJI_MOODS}
    for season in feedback.week.season_months:
        _check_member(season, domain.facets.seasons, feedback_path, "season")

    pools = Pools(
        root=root_path,
        locations=tuple(domain.locations),
        work_types=tuple(domain.work_types),
        categories=tuple(domain.category),
        category_topics={
            c.key: _phrases(domain_path, c.topics or [c.name], frozenset(), root_path) for c in domain.category
        },
        challenges=tuple(challenges),
        about=about,
        instructions=instructions,
        base_info_sentences=base_info_sentences,
        free_text_replies=replies,
        facets=facets,
        frames=frames,
        topics=topics,
        request_shape=requests.shape,
        messages=messages,
        feedback_phrases=feedback_phrases,
        feedback_emoji=feedback_emoji,
        week=feedback.week,
        files=(
            domain_path,
            *challenge_paths,
            instructions_path,
            requests_path,
            recommend_path,
            messages_path,
            feedback_path,
        ),
    )
    _check_categories_have_challenges(pools, domain_path)
    return pools


MAX_POOL_TEXT = 500
"""Characters in one pool string: a phrase is a sentence, and the longest shipped one is about 150."""
MAX_POOL_NAME = 50
"""Characters in a location, work type or category name: it fills a slot in every phrase that names it."""


def _read_toml(path: Path, root: Path | None = None) -> dict[str, Any]:
    """A pool file: a regular UTF-8 file whose real location is inside the pools folder, every string in it one
    line of at most MAX_POOL_TEXT characters."""
    try:
        text = read_user_text(path, inside=root if root is not None else path.parent)
    except UnsafeFileError as exc:
        message = str(exc).replace(": no such file", ": pool file not found")
        raise PoolError(message) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PoolError(f"{path}: invalid TOML: {exc}") from exc
    for value in strings_in(data):
        _check_pool_text(value, path, MAX_POOL_TEXT, "string")
    return data


def _check_pool_text(value: str, path: Path, limit: int, what: str) -> None:
    """A pool string fills one line of a record: no line break (it would split a record's line), not huge."""
    if any(char in LINE_BREAKS for char in value):
        first_line = next((part for part in value.splitlines() if part.strip()), "")
        raise PoolError(
            f"{where(path, _line_of(path, first_line))}: {what} {value[:60]!r} has a line break; "
            "a pool string is one line"
        )
    if len(value) > limit:
        raise PoolError(
            f"{where(path, _line_of(path, value[:200]))}: {what} of {len(value):,} characters ({value[:30]!r}...); "
            f"the limit is {limit}"
        )


def _validate(model: type[_M], data: dict[str, Any], path: Path) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"])
        value = error.get("input")
        line = _line_of(path, value) if isinstance(value, str) else None
        location = f"{path}:{line}" if line else str(path)
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise PoolError(f"{location}: {key}: {error['msg']}{more}") from exc


def _line_of(path: Path, needle: str) -> int | None:
    """The first line of ``path`` that contains ``needle``, to point editors at a phrase."""
    if not needle:
        return None
    try:
        lines, quoted = _line_index(path, path.stat().st_mtime_ns)
    except (OSError, UnsafeFileError):
        return None
    if needle in quoted:  # the usual case, a phrase as a TOML string: one lookup, not a scan per phrase
        return quoted[needle]
    return next((number for number, line in enumerate(lines, start=1) if needle in line), None)


QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


@lru_cache(maxsize=64)
def _line_index(path: Path, mtime_ns: int) -> tuple[tuple[str, ...], dict[str, int]]:
    """A pool file's lines, and the first line of every double-quoted string in it (read once per file version,
    so naming the line of each of 200,000 messages stays linear)."""
    lines = tuple(read_user_text(path).splitlines())
    quoted: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        for match in QUOTED.finditer(line):
            quoted.setdefault(match.group(1), number)
    return lines, quoted


def _source(path: Path, text: str, root: Path) -> Source:
    try:
        shown = str(path.relative_to(root.parent))
    except ValueError:
        shown = str(path)
    return Source(shown, _line_of(path, text))


def _check_not_said(not_said: Mapping[str, Sequence[str]], phrases: Mapping[str, Sequence[Phrase]], path: Path) -> None:
    """No phrase of a kind holds a word its ``[not_said]`` list names (a weekly record says whether a challenge
    succeeded, never how often or for how long, so a success phrase may not claim "한 주 내내")."""
    for kind, words in not_said.items():
        if kind not in phrases:
            raise PoolError(
                f"{Source(str(path), _line_of(path, kind))}: [not_said] names {kind!r}, which is not a phrase kind; "
                f"use one of: {', '.join(phrases)}"
            )
        for phrase in phrases[kind]:
            said = next((word for word in words if word in phrase.text), None)
            if said is not None:
                raise PoolError(
                    f"{phrase.source}: a {kind} phrase may not say {said!r} ([not_said] in {path.name}): "
                    f"{phrase.text!r}"
                )


def _phrases(path: Path, texts: Sequence[str], slots: frozenset[str], root: Path) -> tuple[Phrase, ...]:
    from .templates import check_phrase_slots

    phrases = []
    for text in texts:
        source = _source(path, text, root)
        if text != text.strip() or not text:
            raise PoolError(f"{source}: phrase is empty or has leading/trailing spaces: {text!r}")
        try:
            check_phrase_slots(text, slots, str(source))
        except TemplateError as exc:
            raise PoolError(str(exc)) from exc
        phrases.append(Phrase(text, source))
    _check_unique(list(texts), path, "phrase")
    return tuple(phrases)


def _load_challenge_file(
    path: Path, domain: DomainFile, root: Path
) -> tuple[str, list[PoolChallenge], tuple[Phrase, ...]]:
    data = _validate(ChallengeFile, _read_toml(path), path)
    _check_member(data.category, [c.key for c in domain.category], path, "category")
    vocabulary = domain.facets
    items = []
    for entry in data.challenge:
        source = _source(path, entry.title, root)
        allowed: list[tuple[str, Sequence[str], Sequence[str]]] = [
            ("location", entry.places, domain.locations),
            ("work type", [*entry.work_types, *entry.not_work_types], domain.work_types),
            ("season", [entry.season] if entry.season else [], vocabulary.seasons),
            ("setting", entry.settings, vocabulary.settings),
            ("company", entry.company, vocabulary.company),
            ("need", entry.needs, vocabulary.needs),
            ("time", [entry.time], vocabulary.times),
            ("effort", [entry.effort], vocabulary.efforts),
            ("cost", [entry.cost], vocabulary.costs),
        ]
        for what, values, choices in allowed:
            for value in values:
                _check_member(value, choices, path, what, source)
        for description in entry.descriptions:
            if description != description.strip() or not description:
                raise PoolError(f"{source}: description is empty or has leading/trailing spaces: {description!r}")
        _check_unique(entry.descriptions, path, "description")
        items.append(
            PoolChallenge(
                category=data.category,
                title=entry.title,
                descriptions=tuple(entry.descriptions),
                idea=entry.idea,
                places=tuple(entry.places),
                work_types=tuple(entry.work_types),
                not_work_types=tuple(entry.not_work_types),
                season=entry.season,
                settings=tuple(entry.settings),
                company=tuple(entry.company),
                needs=tuple(entry.needs),
                time=entry.time,
                effort=entry.effort,
                cost=entry.cost,
                habit=entry.habit,
                source=source,
            )
        )
    name = next(c.name for c in domain.category if c.key == data.category)
    about = _phrases(path, data.about, frozenset(), root)
    for sentence in about:
        # Each sentence is the first line of an answer to "X가 뭐예요?": it must define X on its own.
        if not sentence.text.startswith(name):
            raise PoolError(f"{sentence.source}: about sentence must start with {name!r} and say what it is")
    return data.category, items, about


def _load_facets(path: Path, requests: RequestsFile, domain: DomainFile, root: Path) -> tuple[Facet, ...]:
    """The request facets of ``requests.toml``, plus one topic facet per category (its name is the key)."""
    vocabulary = domain.facets
    facets: list[Facet] = []
    for entry in requests.facet:
        source = _source(path, f'key = "{entry.key}"', root)
        for field_name in (name for condition in entry.match for name in condition):
            _check_member(
                field_name.removeprefix("not_"), MATCH_FIELDS, path, "match field", source, "the challenge fields"
            )
        if entry.season:
            _check_member(entry.season, vocabulary.seasons, path, "season", source)
        if entry.location:
            _check_member(entry.location, domain.locations, path, "location", source)
        if entry.work_type:
            _check_member(entry.work_type, domain.work_types, path, "work type", source)
        for need in entry.needs:
            _check_member(need, vocabulary.needs, path, "need", source)
        facets.append(
            Facet(
                key=entry.key,
                group=entry.group,
                match=tuple(
                    tuple((name, frozenset(values)) for name, values in sorted(condition.items()))
                    for condition in entry.match
                ),
                season=entry.season,
                location=entry.location,
                work_type=entry.work_type,
                needs=tuple(entry.needs),
                commutes=entry.commutes,
                conflicts=frozenset(entry.conflicts),
                category=None,
                reason=_phrases(path, entry.reason, frozenset(), root),
                want=_phrases(path, entry.want, frozenset(), root),
                source=source,
            )
        )
    domain_path = root / "domain.toml"
    for category in domain.category:
        facets.append(
            Facet(
                key=category.name,
                group=TOPIC_GROUP,
                match=((("category", frozenset({category.key})),),),
                season=None,
                location=None,
                work_type=None,
                needs=(),
                commutes=False,
                conflicts=frozenset(),
                category=category.key,
                reason=(),
                want=(),
                source=_source(domain_path, category.key, root),
            )
        )
    _check_unique([f.key for f in facets], path, "facet key")
    keys = [f.key for f in facets]
    for facet in facets:
        for other in sorted(facet.conflicts):
            _check_member(other, keys, path, "conflicting facet", facet.source, "requests.toml")
    return tuple(facets)


# A request says a topic, and maybe a background clause, a modifier or both: each speech level needs a frame for each.
FRAME_SHAPES = (
    frozenset({"topic"}),
    frozenset({"reason", "topic"}),
    frozenset({"want", "topic"}),
    frozenset({"reason", "want", "topic"}),
)


def _check_frames_cover_every_shape(frames: Mapping[str, tuple[Phrase, ...]], path: Path) -> None:
    from .templates import phrase_slots

    for level in ("banmal", "jondaemal"):
        have = {phrase_slots(p.text) for p in frames[level]}
        for shape in FRAME_SHAPES:
            if shape not in have:
                slots = " ".join("{{ " + slot + " }}" for slot in sorted(shape))
                raise PoolError(f"{path}: frames.{level} needs a frame that uses exactly {slots}")


def _load_messages(path: Path, facet_keys: Sequence[str], root: Path) -> tuple[MessageItem, ...]:
    data = _validate(MessagesFile, _read_toml(path), path)
    items = []
    for group in data.group:
        for key in group.facets:
            _check_member(key, facet_keys, path, "facet", declared_in="requests.toml (or domain.toml for a category)")
        for text in group.messages:
            source = _source(path, text, root)
            if text != text.strip() or not text:
                raise PoolError(f"{source}: message is empty or has leading/trailing spaces: {text!r}")
            items.append(MessageItem(text, tuple(group.facets), group.question, source))
    _check_unique([item.text for item in items], path, "message")
    return tuple(items)


def _check_member(
    value: str,
    allowed: Sequence[str],
    path: Path,
    what: str,
    source: Source | None = None,
    declared_in: str = "domain.toml",
) -> None:
    if value not in allowed:
        place = source or Source(str(path), _line_of(path, value))
        choices = ", ".join(a for a in allowed if a) or "(none declared)"
        raise PoolError(f"{place}: unknown {what} {value!r}; declare it in {declared_in} or use one of: {choices}")


def _check_unique(values: Iterable[str], path: Path, what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            line = _line_of(path, value)
            place = f"{path}:{line}" if line else str(path)
            raise PoolError(f"{place}: duplicate {what} {value!r}; remove one of them")
        seen.add(value)


# Particles that may trail a word in a title; two titles that differ only by them are the same title.
_TITLE_PARTICLES = ("에서", "으로", "을", "를", "이", "가", "은", "는", "로", "에", "과", "와", "도", "의")


def title_key(title: str) -> str:
    """Titles that differ only by spacing or a particle collide: the model cannot tell them apart."""
    words = []
    for word in title.split():
        for particle in _TITLE_PARTICLES:
            if word.endswith(particle) and len(word) > len(particle):
                word = word[: -len(particle)]
                break
        words.append(word)
    return "".join(words)


def _check_titles_distinct(challenges: Sequence[PoolChallenge]) -> None:
    seen: dict[str, PoolChallenge] = {}
    for challenge in challenges:
        key = title_key(challenge.title)
        if key in seen:
            first = seen[key]
            raise PoolError(
                f"{challenge.source}: challenge title {challenge.title!r} repeats "
                f"{first.title!r} ({first.source}); give it a distinct title"
            )
        seen[key] = challenge


def _check_ideas_shared(challenges: Sequence[PoolChallenge]) -> None:
    """An idea names challenges that must not meet in one answer, so one alone is a typo or a leftover."""
    members = Counter(c.idea for c in challenges if c.idea is not None)
    for challenge in challenges:
        if challenge.idea is not None and members[challenge.idea] == 1:
            raise PoolError(
                f"{challenge.source}: idea {challenge.idea!r} of {challenge.title!r} is shared with no other "
                "challenge; give it the idea of the challenge it repeats, or remove the line"
            )


def _check_categories_have_challenges(pools: Pools, domain_path: Path) -> None:
    for category in pools.categories:
        if not any(c.category == category.key for c in pools.challenges):
            raise PoolError(
                f"{domain_path}: category {category.key} has no challenges; "
                f"add pools/challenges/{category.key.lower()}.toml"
            )
