"""Hot queries of projects (``teamboard db explain``)."""

from __future__ import annotations

from teamboard.deps import TeamContext
from teamboard.kit.hot_queries import HotQuery, Sample
from teamboard.kit.pagination import CursorCodec
from teamboard.projects import repository


async def _list(ctx: TeamContext, sample: Sample, cursors: CursorCodec) -> object:
    return await repository.list_projects(ctx.tx, 50, None, False)


QUERIES = [HotQuery("projects list", _list)]
