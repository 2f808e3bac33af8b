"""Hot queries of teams (``teamboard db explain``)."""

from __future__ import annotations

from teamboard.deps import TeamContext
from teamboard.kit.hot_queries import HotQuery, Sample
from teamboard.kit.pagination import CursorCodec
from teamboard.teams import repository


async def _members(ctx: TeamContext, sample: Sample, cursors: CursorCodec) -> object:
    return await repository.list_members(ctx.tx, ctx.team_id, 50, None)


QUERIES = [HotQuery("team members list", _members)]
