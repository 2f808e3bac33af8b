"""Bodies of the project routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, StringConstraints

from teamboard.auth.schemas import Strict

Key = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9]{1,9}$")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=20_000)]
Visibility = Literal["team", "private"]


class ProjectIn(Strict):
    key: Key
    name: Name
    description: Description = ""
    visibility: Visibility = "team"


class ProjectPatch(Strict):
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
