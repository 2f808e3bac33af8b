"""Bodies of the notification and follower routes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, StrictBool

from teamboard.auth.schemas import Strict
from teamboard.kit.schemas import Person

NotificationKind = Literal["assigned", "mentioned", "commented"]


class NotificationTask(BaseModel):
    id: UUID
    project_id: UUID
    ref: str  # "ENG-42"
    title: str


class NotificationOut(BaseModel):
    id: UUID
    kind: NotificationKind
    task: NotificationTask
    comment_id: UUID | None  # the comment that mentioned you or was added
    actor: Person
    created_at: datetime
    read_at: datetime | None
    version: int  # raised by every change (read, unread): the ETag of PATCH


class NotificationList(BaseModel):
    items: list[NotificationOut]
    next_cursor: str | None


class NotificationPatch(Strict):
    read: StrictBool


class ReadAllIn(Strict):
    up_to: UUID | None = None


class ReadAllOut(BaseModel):
    updated: int


class UnreadCount(BaseModel):
    unread: int


class FollowerOut(BaseModel):
    user_id: UUID
    display_name: str | None
    followed_at: datetime


class FollowerList(BaseModel):
    items: list[FollowerOut]
    next_cursor: str | None
