"""Bodies of the time-entry routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from teamboard.auth.schemas import Strict
from teamboard.kit.instants import Instant
from teamboard.kit.schemas import Patch
from teamboard.kit.text import NO_NUL

Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000), NO_NUL]


class TimerIn(Strict):
    note: Note = ""


class ManualEntryIn(Strict):
    """A finished entry: ``started_at`` and either ``ended_at`` or ``duration_seconds``."""

    # The document says what ``_one_end`` enforces (found by Schemathesis).
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["ended_at"], "properties": {"ended_at": {"type": "string"}}},
                {
                    "required": ["duration_seconds"],
                    "properties": {"duration_seconds": {"type": "integer"}},
                },
            ]
        }
    )

    started_at: Instant
    ended_at: Instant | None = None
    duration_seconds: int | None = Field(default=None, ge=1)
    note: Note = ""

    @model_validator(mode="after")
    def _one_end(self) -> ManualEntryIn:
        if (self.ended_at is None) == (self.duration_seconds is None):
            raise ValueError("give exactly one of ended_at and duration_seconds")
        return self


class TimeEntryPatch(Patch):
    """The fields to change; left out means unchanged (``null`` is refused)."""

    started_at: Instant | None = None
    ended_at: Instant | None = None
    note: Note | None = None


class TimeEntryOut(BaseModel):
    id: UUID
    task_id: UUID
    project_id: UUID
    user_id: UUID
    started_at: datetime
    ended_at: datetime | None
    duration_seconds: int | None = Field(description="None while the timer runs")
    note: str
    created_at: datetime
    updated_at: datetime
    version: int = Field(description="Raised by every change; the ETag of PATCH")


class TimeEntryList(BaseModel):
    items: list[TimeEntryOut]
    next_cursor: str | None


class UserTotal(BaseModel):
    user_id: UUID
    total_seconds: int
    entry_count: int


class ProjectTotal(BaseModel):
    project_id: UUID
    total_seconds: int
    entry_count: int


class TaskTotals(BaseModel):
    task_id: UUID
    total_seconds: int
    entry_count: int
    by_user: list[UserTotal]


class ProjectTotals(BaseModel):
    project_id: UUID
    total_seconds: int
    entry_count: int
    by_user: list[UserTotal]


class UserTotals(BaseModel):
    user_id: UUID
    total_seconds: int
    entry_count: int
    by_project: list[ProjectTotal]
