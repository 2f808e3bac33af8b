"""Bodies of the search route."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel

MatchSource = Literal["task", "comment", "similar_title"]


class SearchHit(BaseModel):
    id: UUID
    project_id: UUID
    ref: str  # "ENG-42"
    title: str
    status_id: UUID
    score: float  # higher first; see the search route
    matched: list[MatchSource]  # where it matched: title/description, a comment, a typo


class SearchResults(BaseModel):
    items: list[SearchHit]
    next_cursor: str | None
