"""Hot queries of search (``teamboard db explain``)."""

from __future__ import annotations

from teamboard.deps import TeamContext
from teamboard.kit.hot_queries import HotQuery, Sample
from teamboard.kit.pagination import CursorCodec
from teamboard.search import service


async def _search(ctx: TeamContext, sample: Sample, cursors: CursorCodec) -> object:
    return await service.search(ctx, cursors, sample.word, 50, None)


QUERIES = [HotQuery("search", _search)]
