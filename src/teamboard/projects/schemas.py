"""Bodies of the project routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, Field, StringConstraints

from teamboard.auth.schemas import Strict
from teamboard.kit.schemas import Patch
from teamboard.kit.text import NO_NUL

Key = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9]{1,9}$")]
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), NO_NUL
]
Description = Annotated[str, StringConstraints(max_length=20_000), NO_NUL]
Visibility = Literal["team", "private"]


class ProjectIn(Strict):
    key: Key
    name: Name
    description: Description = ""
    visibility: Visibility = "team"


class ProjectPatch(Patch):
    """The fields to change; left out means unchanged (``null`` is refused)."""

    name: Name | None = None
    description: Description | None = None
    visibility: Visibility | None = None
    archived: bool | None = None


class ProjectOut(BaseModel):
    id: UUID
    key: str
    name: str
    description: str
    visibility: Visibility
    archived_at: datetime | None
    created_by: UUID
    created_at: datetime
    updated_at: datetime
    version: int


class ProjectList(BaseModel):
    items: list[ProjectOut]
    next_cursor: str | None


class ProjectMemberIn(Strict):
    user_id: UUID


class ProjectMemberOut(BaseModel):
    user_id: UUID
    display_name: str
    added_at: datetime


class ProjectMemberList(BaseModel):
    items: list[ProjectMemberOut]
    next_cursor: str | None


StatusCategory = Literal["backlog", "unstarted", "started", "completed", "canceled"]
StatusName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), NO_NUL
]


class StatusIn(Strict):
    name: StatusName
    category: StatusCategory


class StatusPatch(Strict):
    """Renaming only: a category change would rewrite the completion of existing tasks."""

    name: StatusName


class StatusOrder(Strict):
    """Every status of the project, once, in the new workflow order."""

    status_ids: Annotated[list[UUID], Field(min_length=1, max_length=500)]


class StatusOut(BaseModel):
    id: UUID
    project_id: UUID
    name: str
    category: StatusCategory
    position: int
    created_at: datetime
    updated_at: datetime
    version: int = Field(description="Raised by every change; the ETag of PATCH")


class StatusList(BaseModel):
    items: list[StatusOut]
    next_cursor: str | None


LabelName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50), NO_NUL
]
Color = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^#[0-9a-fA-F]{6}$")
]


class LabelIn(Strict):
    name: LabelName
    color: Color


class LabelPatch(Patch):
    """The fields to change; left out means unchanged (``null`` is refused)."""

    name: LabelName | None = None
    color: Color | None = None


class LabelOut(BaseModel):
    id: UUID
    project_id: UUID
    name: str
    color: str
    created_at: datetime
    updated_at: datetime
    version: int = Field(description="Raised by every change; the ETag of PATCH")


class LabelList(BaseModel):
    items: list[LabelOut]
    next_cursor: str | None
