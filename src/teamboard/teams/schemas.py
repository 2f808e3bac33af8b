"""Bodies of the team, member and invitation routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, model_validator

from teamboard.auth.schemas import Strict
from teamboard.kit.text import NO_NUL

Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), NO_NUL
]
MemberRole = Literal["owner", "admin", "member", "guest"]
InvitedRole = Literal["admin", "member", "guest"]


#: An IANA time zone name listed by PostgreSQL's ``pg_timezone_names`` (checked there).
TimeZone = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_+\-/]+$")
]


class TeamIn(Strict):
    name: Name
    time_zone: TimeZone = Field(default="UTC", description="Days of the team's dashboards")


class TeamPatch(Strict):
    """The fields to change; left out means unchanged."""

    # The document says what ``_something`` enforces (found by Schemathesis).
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": [field], "properties": {field: {"type": "string"}}}
                for field in ("name", "time_zone")
            ]
        }
    )

    name: Name | None = None
    time_zone: TimeZone | None = None

    @model_validator(mode="after")
    def _something(self) -> TeamPatch:
        if self.name is None and self.time_zone is None:
            raise ValueError("give name, time_zone or both")
        return self


class TeamOut(BaseModel):
    id: UUID
    name: str
    time_zone: str
    role: MemberRole
    created_at: datetime
    updated_at: datetime
    version: int = Field(description="Raised by every change; the ETag of PATCH")


class TeamList(BaseModel):
    items: list[TeamOut]
    next_cursor: str | None


class MemberOut(BaseModel):
    user_id: UUID
    email: str
    display_name: str
    role: MemberRole
    joined_at: datetime
    version: int = Field(description="Raised by every change; the ETag of PATCH")


class MemberList(BaseModel):
    items: list[MemberOut]
    next_cursor: str | None


class MemberPatch(Strict):
    role: MemberRole


class InvitationIn(Strict):
    email: EmailStr
    role: InvitedRole = "member"


class InvitationOut(BaseModel):
    id: UUID
    email: str
    role: InvitedRole
    expires_at: datetime
    created_at: datetime
    accepted_at: datetime | None = None
    revoked_at: datetime | None = None
    token: str | None = None  # only in the answer to the creation


class InvitationList(BaseModel):
    items: list[InvitationOut]
    next_cursor: str | None


class AcceptIn(Strict):
    token: Annotated[str, StringConstraints(min_length=1, max_length=200)]
