"""Hot queries of webhooks (``teamboard db explain``)."""

from __future__ import annotations

from teamboard.deps import TeamContext
from teamboard.kit.hot_queries import HotQuery, Sample
from teamboard.kit.pagination import CursorCodec
from teamboard.webhooks import service


async def _webhooks(ctx: TeamContext, sample: Sample, cursors: CursorCodec) -> object:
    return await service.list_webhooks(ctx, cursors, 50, None)


QUERIES = [HotQuery("webhooks of a team", _webhooks)]
