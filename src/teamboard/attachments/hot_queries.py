"""Hot queries of attachments (``teamboard db explain``)."""

from __future__ import annotations

from teamboard.attachments import service
from teamboard.deps import TeamContext
from teamboard.kit.hot_queries import HotQuery, Sample
from teamboard.kit.pagination import CursorCodec


async def _list(ctx: TeamContext, sample: Sample, cursors: CursorCodec) -> object:
    return await service.list_attachments(ctx, sample.task_id, 50, None)


QUERIES = [HotQuery("attachments of a task", _list)]
