"""Hot queries of notifications (``teamboard db explain``)."""

from __future__ import annotations

from teamboard.deps import TeamContext
from teamboard.kit.hot_queries import HotQuery, Sample
from teamboard.kit.pagination import CursorCodec
from teamboard.notifications import service


async def _all(ctx: TeamContext, sample: Sample, cursors: CursorCodec) -> object:
    return await service.list_notifications(ctx, cursors, 50, None, False)


async def _unread(ctx: TeamContext, sample: Sample, cursors: CursorCodec) -> object:
    return await service.list_notifications(ctx, cursors, 50, None, True)


async def _count(ctx: TeamContext, sample: Sample, cursors: CursorCodec) -> object:
    return await service.unread_count(ctx)


QUERIES = [
    HotQuery("notifications list", _all),
    HotQuery("notifications list unread", _unread),
    HotQuery("notifications unread count", _count),
]
