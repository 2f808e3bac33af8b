"""REST route: search."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from teamboard.deps import ServicesDep, TeamCtx
from teamboard.kit.pagination import DEFAULT_LIMIT, Limit
from teamboard.kit.responses import ORJSONResponse
from teamboard.search import service
from teamboard.search.query import MAX_QUERY_LENGTH
from teamboard.search.schemas import SearchResults

router = APIRouter(prefix="/teams/{team_id}", tags=["search"])


@router.get("/search", response_model=SearchResults)
async def search(
    ctx: TeamCtx,
    services: ServicesDep,
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_LENGTH)],
    limit: Limit = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Response:
    """Tasks whose title, description or comments match ``q``, best first.

    Every word must match (the last one as a prefix) within the task's title and
    description, or within one comment; with pg_trgm on the server, titles with a word
    similar to ``q`` (typos) match too, below exact matches. Titles rank above descriptions,
    descriptions above comments. Only visible, undeleted tasks are returned. Pages are
    keyset on ``(score, id)``: stable while the matched texts do not change.
    """
    page = await service.search(ctx, services.cursors, q, limit, cursor)
    return ORJSONResponse(page)
