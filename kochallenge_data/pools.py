"""Load and validate the phrase pools under ``pools/``.

Pools are TOML files a person edits by hand: one phrase per line inside arrays, comments allowed.
Everything is validated here, once, so a mistake is reported with its file and line before any
record is generated. Lists keep file order (never sets), which keeps builds reproducible.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import PoolError, TemplateError
from .models import TASKS, ChallengeTitle, Task
from .resources import shipped_dir

# Slots each kind of phrase may use; checked when the pools are loaded.
BASE_INFO_SLOTS = frozenset({"location", "work_type", "category"})
FREE_TEXT_SLOTS: frozenset[str] = frozenset()
FEEDBACK_SLOTS: Mapping[str, frozenset[str]] = {
    "success": frozenset({"title"}),
    "failure": frozenset({"title"}),
    "group_active": frozenset({"title", "count"}),
    "group_idle": frozenset({"title"}),
    "empty_week": frozenset(),
    "closing": frozenset(),
}
EMOJI_MOODS = ("celebrate", "comfort", "encourage")


_M = TypeVar("_M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Category(_Strict):
    key: str = Field(pattern=r"^[A-Z][A-Z_]*$")
    name: str = Field(min_length=1)


class DomainFile(_Strict):
    locations: list[str] = Field(min_length=1)
    work_types: list[str] = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)
    moods: list[str] = Field(default_factory=list)
    category: list[Category] = Field(min_length=1)


class ChallengeEntry(_Strict):
    title: ChallengeTitle = Field(min_length=1)
    description: str = Field(min_length=1)
    locations: list[str] = Field(default_factory=list)
    work_types: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)


class ChallengeFile(_Strict):
    category: str
    challenge: list[ChallengeEntry] = Field(min_length=1)


class InstructionsFile(_Strict):
    base_info: list[str] = Field(min_length=1)
    free_text: list[str] = Field(min_length=1)
    feedback: list[str] = Field(min_length=1)


class ReplyGroup(_Strict):
    moods: list[str] = Field(default_factory=list)
    sentences: list[str] = Field(min_length=1)


class RecommendFile(_Strict):
    base_info: list[str] = Field(min_length=1)
    free_text: list[ReplyGroup] = Field(min_length=1)


class MessageGroup(_Strict):
    mood: str = ""
    categories: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    messages: list[str] = Field(min_length=1)


class MessagesFile(_Strict):
    group: list[MessageGroup] = Field(min_length=1)


class FeedbackPhrases(_Strict):
    success: list[str] = Field(min_length=1)
    failure: list[str] = Field(min_length=1)
    group_active: list[str] = Field(min_length=1)
    group_idle: list[str] = Field(min_length=1)
    empty_week: list[str] = Field(min_length=1)
    closing: list[str] = Field(min_length=1)


class FeedbackEmoji(_Strict):
    celebrate: list[str] = Field(min_length=1)
    comfort: list[str] = Field(min_length=1)
    encourage: list[str] = Field(min_length=1)


class WeekShape(_Strict):
    max_personal: int = Field(default=3, ge=0, le=10)
    max_group: int = Field(default=2, ge=0, le=10)
    max_submissions: int = Field(default=4, ge=1, le=7)
    first_monday: str = "2026-03-02"
    weeks: int = Field(default=30, ge=1, le=520)
    member_id_max: int = Field(default=5000, ge=1)


class FeedbackFile(_Strict):
    phrases: FeedbackPhrases
    emoji: FeedbackEmoji
    week: WeekShape = WeekShape()


@dataclass(frozen=True)
class Source:
    """Where a pool item came from, for messages and metadata."""

    file: str
    line: int | None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file


@dataclass(frozen=True)
class PoolChallenge:
    """A challenge with its category and the situations it suits (empty = all)."""

    category: str
    title: str
    description: str
    locations: tuple[str, ...]
    work_types: tuple[str, ...]
    tags: tuple[str, ...]
    source: Source

    def suits(self, location: str, work_type: str) -> bool:
        return (not self.locations or location in self.locations) and (
            not self.work_types or work_type in self.work_types
        )


@dataclass(frozen=True)
class Phrase:
    """One pool phrase (possibly a jinja template string) and where it was written."""

    text: str
    source: Source


@dataclass(frozen=True)
class MessageItem:
    text: str
    mood: str
    categories: tuple[str, ...]
    tags: tuple[str, ...]
    source: Source


@dataclass(frozen=True)
class Pools:
    """Everything the generator samples from, validated and in file order."""

    root: Path
    locations: tuple[str, ...]
    work_types: tuple[str, ...]
    categories: tuple[Category, ...]
    tags: tuple[str, ...]
    moods: tuple[str, ...]
    challenges: tuple[PoolChallenge, ...]
    instructions: Mapping[Task, tuple[Phrase, ...]]
    base_info_sentences: tuple[Phrase, ...]
    free_text_replies: Mapping[str, tuple[Phrase, ...]]  # mood ("" = general) -> sentences
    messages: tuple[MessageItem, ...]
    feedback_phrases: Mapping[str, tuple[Phrase, ...]]
    feedback_emoji: Mapping[str, tuple[str, ...]]
    week: WeekShape
    files: tuple[Path, ...] = field(default=())

    def category_name(self, key: str) -> str:
        for category in self.categories:
            if category.key == key:
                return category.name
        raise KeyError(key)

    def challenges_for(self, category: str, location: str, work_type: str) -> list[PoolChallenge]:
        return [
            challenge
            for challenge in self.challenges
            if challenge.category == category and challenge.suits(location, work_type)
        ]

    def challenges_for_message(self, message: MessageItem) -> list[PoolChallenge]:
        return [
            challenge
            for challenge in self.challenges
            if (not message.categories or challenge.category in message.categories)
            and (not message.tags or set(challenge.tags) & set(message.tags))
        ]

    def replies_for(self, mood: str) -> tuple[Phrase, ...]:
        return self.free_text_replies.get(mood) or self.free_text_replies[""]


def default_pools_dir() -> Path:
    return shipped_dir("pools")


def load_pools(root: Path | str | None = None) -> Pools:
    """Read and validate every pool file under ``root`` (the shipped pools by default)."""
    root_path = Path(root) if root is not None else default_pools_dir()
    if not root_path.is_dir():
        raise PoolError(f"{root_path}: pools folder not found; pass --pools with a folder of pool files")
    domain_path = root_path / "domain.toml"
    domain = _validate(DomainFile, _read_toml(domain_path), domain_path)
    _check_unique([c.key for c in domain.category], domain_path, "category key")
    _check_unique([c.name for c in domain.category], domain_path, "category name")
    _check_unique(domain.locations, domain_path, "location")
    _check_unique(domain.work_types, domain_path, "work type")

    challenge_paths = sorted((root_path / "challenges").glob("*.toml"))
    if not challenge_paths:
        raise PoolError(f"{root_path / 'challenges'}: no challenge files (*.toml) found")
    challenges = tuple(item for path in challenge_paths for item in _load_challenge_file(path, domain, root_path))
    _check_titles_distinct(challenges)

    instructions_path = root_path / "instructions.toml"
    instructions_file = _validate(InstructionsFile, _read_toml(instructions_path), instructions_path)
    instructions = {
        task: _phrases(instructions_path, getattr(instructions_file, task), frozenset(), root_path) for task in TASKS
    }

    recommend_path = root_path / "recommend.toml"
    recommend = _validate(RecommendFile, _read_toml(recommend_path), recommend_path)
    base_info_sentences = _phrases(recommend_path, recommend.base_info, BASE_INFO_SLOTS, root_path)
    replies: dict[str, tuple[Phrase, ...]] = {}
    for group in recommend.free_text:
        phrases = _phrases(recommend_path, group.sentences, FREE_TEXT_SLOTS, root_path)
        for mood in group.moods or [""]:
            _check_member(mood, [*domain.moods, ""], recommend_path, "mood")
            replies[mood] = replies.get(mood, ()) + phrases
    if "" not in replies:
        raise PoolError(f"{recommend_path}: add a [[free_text]] group with no moods (general replies)")

    messages_path = root_path / "messages.toml"
    messages = _load_messages(messages_path, domain, root_path)

    feedback_path = root_path / "feedback.toml"
    feedback = _validate(FeedbackFile, _read_toml(feedback_path), feedback_path)
    feedback_phrases = {
        kind: _phrases(feedback_path, getattr(feedback.phrases, kind), slots, root_path)
        for kind, slots in FEEDBACK_SLOTS.items()
    }
    feedback_emoji = {mood: tuple(getattr(feedback.emoji, mood)) for mood in EMOJI_MOODS}

    pools = Pools(
        root=root_path,
        locations=tuple(domain.locations),
        work_types=tuple(domain.work_types),
        categories=tuple(domain.category),
        tags=tuple(domain.tags),
        moods=tuple(domain.moods),
        challenges=challenges,
        instructions=instructions,
        base_info_sentences=base_info_sentences,
        free_text_replies=replies,
        messages=messages,
        feedback_phrases=feedback_phrases,
        feedback_emoji=feedback_emoji,
        week=feedback.week,
        files=(
            domain_path,
            *challenge_paths,
            instructions_path,
            recommend_path,
            messages_path,
            feedback_path,
        ),
    )
    _check_categories_have_challenges(pools, domain_path)
    return pools


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PoolError(f"{path}: pool file not found") from None
    except UnicodeDecodeError as exc:
        raise PoolError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PoolError(f"{path}: invalid TOML: {exc}") from exc


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
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if needle in line:
                return number
    except OSError:
        return None
    return None


def _source(path: Path, text: str, root: Path) -> Source:
    try:
        shown = str(path.relative_to(root.parent))
    except ValueError:
        shown = str(path)
    return Source(shown, _line_of(path, text))


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


def _load_challenge_file(path: Path, domain: DomainFile, root: Path) -> list[PoolChallenge]:
    data = _validate(ChallengeFile, _read_toml(path), path)
    _check_member(data.category, [c.key for c in domain.category], path, "category")
    items = []
    for entry in data.challenge:
        source = _source(path, entry.title, root)
        for location in entry.locations:
            _check_member(location, domain.locations, path, "location", source)
        for work_type in entry.work_types:
            _check_member(work_type, domain.work_types, path, "work type", source)
        for tag in entry.tags:
            _check_member(tag, domain.tags, path, "tag", source)
        items.append(
            PoolChallenge(
                category=data.category,
                title=entry.title,
                description=entry.description,
                locations=tuple(entry.locations),
                work_types=tuple(entry.work_types),
                tags=tuple(entry.tags),
                source=source,
            )
        )
    return items


def _load_messages(path: Path, domain: DomainFile, root: Path) -> tuple[MessageItem, ...]:
    data = _validate(MessagesFile, _read_toml(path), path)
    keys = [c.key for c in domain.category]
    items = []
    for group in data.group:
        if group.mood:
            _check_member(group.mood, domain.moods, path, "mood")
        for category in group.categories:
            _check_member(category, keys, path, "category")
        for tag in group.tags:
            _check_member(tag, domain.tags, path, "tag")
        for text in group.messages:
            source = _source(path, text, root)
            if text != text.strip() or not text:
                raise PoolError(f"{source}: message is empty or has leading/trailing spaces: {text!r}")
            items.append(MessageItem(text, group.mood, tuple(group.categories), tuple(group.tags), source))
    _check_unique([item.text for item in items], path, "message")
    return tuple(items)


def _check_member(value: str, allowed: Sequence[str], path: Path, what: str, source: Source | None = None) -> None:
    if value not in allowed:
        place = source or Source(str(path), _line_of(path, value))
        choices = ", ".join(a for a in allowed if a) or "(none declared)"
        raise PoolError(f"{place}: unknown {what} {value!r}; declare it in domain.toml or use one of: {choices}")


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


def _check_categories_have_challenges(pools: Pools, domain_path: Path) -> None:
    for category in pools.categories:
        if not any(c.category == category.key for c in pools.challenges):
            raise PoolError(
                f"{domain_path}: category {category.key} has no challenges; "
                f"add pools/challenges/{category.key.lower()}.toml"
            )
