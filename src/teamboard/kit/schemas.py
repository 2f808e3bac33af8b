"""Response shapes shared by several features."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel


class Person(BaseModel):
    """A user as teammates see them (``display_name`` is null once they left the team)."""

    id: UUID
    display_name: str | None
