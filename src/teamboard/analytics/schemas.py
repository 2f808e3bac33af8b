"""Dashboard answers, the drill-down list, and custom event batches."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from pydantic import AwareDatetime, BaseModel, Field, StringConstraints, field_validator

from teamboard.analytics.period import Bucket
from teamboard.auth.schemas import Strict

#: A batch carries at most this many events.
MAX_BATCH = 1000
#: The properties of one event, serialized as JSON, take at most this many bytes.
MAX_PROPERTIES_BYTES = 4096
CUSTOM_KIND = r"^custom\.[a-z0-9_]+(\.[a-z0-9_]+)*$"


class PeriodOut(BaseModel):
    start: date
    end: date
    time_zone: str
    bucket: Bucket


class KindCount(BaseModel):
    kind: str
    count: int


class EventBucket(BaseModel):
    bucket: date = Field(description="First day of the bucket")
    total: int
    counts: dict[str, int]


class EventDashboard(BaseModel):
    period: PeriodOut
    total: int
    by_kind: list[KindCount]
    series: list[EventBucket]


class ActorBucket(BaseModel):
    bucket: date
    unique_actors: int


class ActorDashboard(BaseModel):
    period: PeriodOut
    unique_actors: int = Field(description="Distinct actors over the whole period")
    series: list[ActorBucket]


class TaskBucket(BaseModel):
    bucket: date
    created: int
    completed: int


class TaskDashboard(BaseModel):
    period: PeriodOut
    created: int
    completed: int
    series: list[TaskBucket]


class AssigneeThroughput(BaseModel):
    assignee_id: UUID | None = Field(description="null: completions with no assignee")
    completed: int


class ThroughputDashboard(BaseModel):
    period: PeriodOut
    completed: int
    by_assignee: list[AssigneeThroughput]


class Percentiles(BaseModel):
    count: int
    p50: float | None = Field(description="Seconds")
    p85: float | None
    p95: float | None


class DurationDashboard(BaseModel):
    period: PeriodOut
    completed: int
    lead_time: Percentiles = Field(description="Completion minus creation")
    cycle_time: Percentiles = Field(description="Completion minus the first start before it")


class FlowBucket(BaseModel):
    bucket: date
    as_of: date = Field(description="The day whose end the counts describe")
    backlog: int
    unstarted: int
    started: int
    completed: int
    canceled: int


class FlowDashboard(BaseModel):
    period: PeriodOut
    series: list[FlowBucket]


class TimeGroup(BaseModel):
    key: UUID | None = Field(description="Project, user or label id (null: no label)")
    seconds: int
    entries: int


class TimeBucket(BaseModel):
    bucket: date
    seconds: int


class TimeDashboard(BaseModel):
    period: PeriodOut
    group_by: Literal["project", "user", "label"]
    total_seconds: int
    entries: int
    groups: list[TimeGroup]
    series: list[TimeBucket]


class EventOut(BaseModel):
    id: UUID
    occurred_at: datetime
    kind: str
    actor_id: UUID | None
    project_id: UUID | None
    subject_id: UUID | None
    payload: dict[str, Any]


class EventList(BaseModel):
    items: list[EventOut]
    next_cursor: str | None


Actor = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
]


class CustomEventIn(Strict):
    """One analytics event. ``actor`` identifies who did it in the client's terms (a
    visitor, an account); the event's ``actor_id`` is always the caller."""

    kind: Annotated[str, StringConstraints(max_length=100, pattern=CUSTOM_KIND)]
    occurred_at: AwareDatetime | None = Field(
        default=None,
        strict=True,
        description="RFC 3339; default: now; at most 30 days ago, 5 minutes ahead",
    )
    actor: Actor | None = None
    project_id: UUID | None = Field(default=None, strict=True)
    properties: dict[str, Any] = Field(default_factory=dict)

    @field_validator("properties")
    @classmethod
    def _bounded_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            encoded = orjson.dumps(value)
        except TypeError as exc:  # integers beyond 64 bits
            raise ValueError("properties must be plain JSON with 64-bit integers") from exc
        if len(encoded) > MAX_PROPERTIES_BYTES:
            raise ValueError(f"properties take at most {MAX_PROPERTIES_BYTES} bytes as JSON")
        if b"\\u0000" in encoded:
            raise ValueError("properties cannot contain NUL characters")
        return value


class CustomEventBatch(Strict):
    events: list[CustomEventIn] = Field(min_length=1, max_length=MAX_BATCH)


class CustomEventsAccepted(BaseModel):
    accepted: int
