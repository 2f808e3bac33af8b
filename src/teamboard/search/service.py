"""Search over task titles, descriptions and comments (see ``search.repository``)."""

from __future__ import annotations

from typing import Any

from teamboard.deps import TeamContext
from teamboard.errors import Unprocessable
from teamboard.kit.keyset import as_float, as_uuid, typed_key
from teamboard.kit.pagination import CursorCodec
from teamboard.search import repository
from teamboard.search.query import normalize, to_tsquery_text


async def search(
    ctx: TeamContext, cursors: CursorCodec, q: str, limit: int, cursor: str | None
) -> dict[str, Any]:
    text = normalize(q)
    if not text:
        raise Unprocessable("The query is empty", code="empty_query")
    await ctx.require("guest")
    scope, filters = f"search:{ctx.team_id}", {"q": text}
    after = typed_key(cursors.page(scope, filters, limit, cursor).after, (as_float, as_uuid))
    rows = await repository.search_tasks(
        ctx.tx, text, to_tsquery_text(text), limit, None if after is None else (after[0], after[1])
    )
    return cursors.envelope(scope, filters, rows, limit, ["score", "id"])
