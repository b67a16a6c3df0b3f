"""The data shapes shared by the generator, the checks and the model tools."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

Task = Literal["base_info", "free_text", "feedback"]
TASKS: tuple[Task, ...] = ("base_info", "free_text", "feedback")


class Record(BaseModel):
    """One alpaca-style training record: exactly these three string fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instruction: str
    input: str
    output: str


def _reject_colon(value: str) -> str:
    if ":" in value:
        raise ValueError("a challenge title never contains ':' (it separates title and description)")
    return value


ChallengeTitle = Annotated[str, AfterValidator(_reject_colon)]


class Challenge(BaseModel):
    """One challenge line of a recommendation: ``title: description``."""

    model_config = ConfigDict(frozen=True)

    title: ChallengeTitle
    description: str


class Recommendation(BaseModel):
    """A recommend sentence and its challenges, as the service parses them."""

    model_config = ConfigDict(frozen=True)

    recommend: str
    challenges: list[Challenge]


class Submission(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    is_success: bool = Field(alias="isSuccess")
    submitted_at: datetime = Field(alias="submittedAt")


class PersonalChallenge(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    id: int
    title: str
    is_success: bool = Field(alias="isSuccess")


class GroupChallenge(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    id: int
    title: str
    start_date: datetime = Field(alias="startDate")
    end_date: datetime = Field(alias="endDate")
    submissions: list[Submission]


class WeeklyRecord(BaseModel):
    """The feedback task's input: one member's week."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    member_id: int = Field(alias="memberId")
    personal_challenges: list[PersonalChallenge] = Field(alias="personalChallenges")
    group_challenges: list[GroupChallenge] = Field(alias="groupChallenges")


class Finding(BaseModel):
    """One problem in one field of one record. ``code`` is a stable, public snake_case name."""

    model_config = ConfigDict(frozen=True)

    index: int
    field: str
    code: str
    message: str
    span: tuple[int, int] | None = None
    suggestion: str | None = None
