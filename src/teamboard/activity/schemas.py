"""Bodies of the activity route."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from teamboard.kit.schemas import Person


class ActivityComment(BaseModel):
    id: UUID
    body: str
    edited_at: datetime | None


class ActivityItem(BaseModel):
    id: UUID
    kind: str  # "task.created", "comment.created", ...
    occurred_at: datetime
    actor: Person | None  # null for system events
    payload: dict[str, Any]  # the changed fields
    comment: ActivityComment | None  # comment events: the comment now (null once deleted)


class ActivityList(BaseModel):
    items: list[ActivityItem]
    next_cursor: str | None
