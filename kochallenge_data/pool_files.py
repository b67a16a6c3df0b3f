"""The schemas of the pool files: what each TOML file under ``pools/`` may contain, and the slots its phrases fill.

``pools.py`` reads the files through these models and turns them into the generator's data; keeping the file
formats here lets a reader see every field a pool author can write in one place.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from .models import ChallengeTitle

# Slots each kind of phrase may use; checked when the pools are loaded.
BASE_INFO_SLOTS = frozenset({"location", "work_type", "category"})
# A base-info recommend sentence is chosen by the reason its picks show: both the location and the work
# type, one of them, or the category alone. Each reason's sentences may name only what that reason shows.
BASE_INFO_REASON_SLOTS: Mapping[str, frozenset[str]] = {
    "both": BASE_INFO_SLOTS,
    "location": frozenset({"location", "category"}),
    "work_type": frozenset({"work_type", "category"}),
    "category": frozenset({"category"}),
}
FREE_TEXT_SLOTS: frozenset[str] = frozenset()
TOPIC_REPLY_SLOTS = frozenset({"category"})
TOPIC_GROUP = "주제"  # the facet group of the categories: a request that names one keeps every pick in it
FRAME_SLOTS = frozenset({"reason", "want", "topic"})
QUESTION_SLOTS = frozenset({"name"})
FEEDBACK_SLOTS: Mapping[str, frozenset[str]] = {
    "success_habit": frozenset({"title"}),
    "success_once": frozenset({"title"}),
    "group_active": frozenset({"title", "count"}),
    "success_pair": frozenset({"first", "second"}),
    "success_many": frozenset({"count_word"}),
    "failure": frozenset({"title"}),
    "failure_pair": frozenset({"first", "second"}),
    "failure_many": frozenset({"count_word"}),
    "idle": frozenset({"title"}),
    "idle_pair": frozenset({"first", "second"}),
    "idle_many": frozenset({"count_word"}),
    "empty_week": frozenset(),
    "closing": frozenset(),
}
EMOJI_MOODS = ("celebrate", "comfort", "encourage")
# Challenge fields a request facet may test; each holds one value or several.
MATCH_FIELDS = ("category", "places", "work_types", "season", "settings", "company", "needs", "time", "effort", "cost")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Category(_Strict):
    key: str = Field(pattern=r"^[A-Z][A-Z_]*$")
    name: str = Field(min_length=1)
    # How a user names the category in a request ("플로깅 챌린지", "줍깅").
    topics: list[str] = Field(default_factory=list)


class FacetVocabulary(_Strict):
    """The values each challenge facet may take; declared once so a typo in a pool file is caught."""

    seasons: list[str] = Field(min_length=1)
    settings: list[str] = Field(min_length=1)
    company: list[str] = Field(min_length=1)
    needs: list[str] = Field(default_factory=list)
    times: list[str] = Field(min_length=1)
    efforts: list[str] = Field(min_length=1)
    costs: list[str] = Field(min_length=1)


class DomainFile(_Strict):
    locations: list[str] = Field(min_length=1)
    work_types: list[str] = Field(min_length=1)
    facets: FacetVocabulary
    category: list[Category] = Field(min_length=1)


class ChallengeEntry(_Strict):
    title: ChallengeTitle = Field(min_length=1)
    # Challenges a user would read as the same advice share an idea; one answer never holds two of them.
    idea: str | None = Field(default=None, min_length=1)
    descriptions: list[str] = Field(min_length=1)
    places: list[str] = Field(default_factory=list)
    work_types: list[str] = Field(default_factory=list)
    not_work_types: list[str] = Field(default_factory=list)
    season: str | None = None
    settings: list[str] = Field(min_length=1)
    company: list[str] = Field(min_length=1)
    needs: list[str] = Field(default_factory=list)
    time: str
    effort: str
    cost: str
    habit: bool


class ChallengeFile(_Strict):
    category: str
    about: list[str] = Field(default_factory=list)
    challenge: list[ChallengeEntry] = Field(min_length=1)


class InstructionsFile(_Strict):
    base_info: list[str] = Field(min_length=1)
    free_text: list[str] = Field(min_length=1)
    feedback: list[str] = Field(min_length=1)


class BaseInfoSentences(_Strict):
    both: list[str] = Field(min_length=1)
    location: list[str] = Field(min_length=1)
    work_type: list[str] = Field(min_length=1)
    category: list[str] = Field(min_length=1)


class FreeTextReplies(_Strict):
    general: list[str] = Field(min_length=1)
    question: list[str] = Field(min_length=1)
    by_facet: dict[str, list[str]] = Field(default_factory=dict)


class RecommendFile(_Strict):
    base_info: BaseInfoSentences
    free_text: FreeTextReplies


class MessageGroup(_Strict):
    facets: list[str] = Field(default_factory=list)
    # The messages ask what the topic facet is ("플로깅이 뭐예요?"); the reply's first line answers it.
    question: bool = False
    messages: list[str] = Field(min_length=1)


class MessagesFile(_Strict):
    group: list[MessageGroup] = Field(min_length=1)


class FacetEntry(_Strict):
    key: str = Field(min_length=1)
    group: str = Field(min_length=1)
    # What the facet licenses: a challenge that presupposes these may be chosen.
    season: str | None = None
    location: str | None = None
    work_type: str | None = None
    needs: list[str] = Field(default_factory=list)
    commutes: bool = False  # the user goes to work (licenses commute challenges)
    conflicts: list[str] = Field(default_factory=list)  # facets that contradict this one in a request
    # A challenge meets the facet when every field of one condition shares a value with the challenge.
    match: list[dict[str, list[str]]] = Field(min_length=1)
    reason: list[str] = Field(default_factory=list)
    want: list[str] = Field(default_factory=list)


class Frames(_Strict):
    banmal: list[str] = Field(min_length=1)
    jondaemal: list[str] = Field(min_length=1)
    question_banmal: list[str] = Field(min_length=1)
    question_jondaemal: list[str] = Field(min_length=1)
    topics: list[str] = Field(min_length=1)


class RequestShape(_Strict):
    """How composed requests are mixed: hand-written messages' share and the facet counts."""

    handwritten_share: float = Field(default=0.2, ge=0.0, le=1.0)
    question_share: float = Field(default=0.06, ge=0.0, le=1.0)
    topic_share: float = Field(default=0.4, ge=0.0, le=1.0)
    second_facet_share: float = Field(default=0.45, ge=0.0, le=1.0)


class RequestsFile(_Strict):
    shape: RequestShape = RequestShape()
    frames: Frames
    facet: list[FacetEntry] = Field(min_length=1)


class FeedbackPhrases(_Strict):
    success_habit: list[str] = Field(min_length=1)
    success_once: list[str] = Field(min_length=1)
    group_active: list[str] = Field(min_length=1)
    success_pair: list[str] = Field(min_length=1)
    success_many: list[str] = Field(min_length=1)
    failure: list[str] = Field(min_length=1)
    failure_pair: list[str] = Field(min_length=1)
    failure_many: list[str] = Field(min_length=1)
    idle: list[str] = Field(min_length=1)
    idle_pair: list[str] = Field(min_length=1)
    idle_many: list[str] = Field(min_length=1)
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
    weeks: int = Field(default=52, ge=1, le=520)
    member_id_max: int = Field(default=5000, ge=1)
    # Months of each season, for weekly records whose challenges must fit their dates.
    season_months: dict[str, list[int]] = Field(default_factory=dict)


class FeedbackFile(_Strict):
    phrases: FeedbackPhrases
    emoji: FeedbackEmoji
    week: WeekShape = WeekShape()
    # Per phrase kind, words its phrases may not hold: what the weekly record cannot back (how often, how long).
    not_said: dict[str, list[str]] = Field(default_factory=dict)
