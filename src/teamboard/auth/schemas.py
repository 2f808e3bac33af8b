"""Request and response bodies of the auth routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from teamboard.auth.passwords import MAX_LENGTH
from teamboard.kit.text import NO_NUL

Password = Annotated[str, Field(min_length=1, max_length=MAX_LENGTH * 4)]
DisplayName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), NO_NUL
]


class Strict(BaseModel):
    """Bodies refuse unknown fields: nothing can be slipped in by mass assignment."""

    model_config = ConfigDict(extra="forbid")


class RegisterIn(Strict):
    email: EmailStr
    password: Password
    display_name: DisplayName


class LoginIn(Strict):
    email: EmailStr
    password: Password


class RefreshIn(Strict):
    refresh_token: Annotated[str, Field(min_length=1, max_length=4096)]


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    detail: str


class Me(BaseModel):
    id: UUID
    email: str
    display_name: str
    created_at: datetime
