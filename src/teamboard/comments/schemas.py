"""Bodies of the comment routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, Field, StringConstraints

from teamboard.auth.schemas import Strict
from teamboard.kit.schemas import Person
from teamboard.kit.text import NO_NUL, NOT_BLANK

#: The database checks the same bound (ck_comment_body_length).
COMMENT_MAX_LENGTH = 10_000

#: Markdown source, stored and returned as written (clients render and sanitize it).
CommentBody = Annotated[
    str,
    StringConstraints(min_length=1, max_length=COMMENT_MAX_LENGTH),
    NO_NUL,
    NOT_BLANK,
]


class CommentIn(Strict):
    body: CommentBody


class CommentPatch(Strict):
    body: CommentBody


class CommentOut(BaseModel):
    id: UUID
    task_id: UUID
    author: Person
    body: str
    mentions: list[Person]
    created_at: datetime
    updated_at: datetime
    edited_at: datetime | None
    version: int = Field(description="Raised by every change; the ETag of PATCH")


class CommentList(BaseModel):
    items: list[CommentOut]
    next_cursor: str | None
