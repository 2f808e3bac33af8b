"""Hot queries of task activity (``teamboard db explain``)."""

from __future__ import annotations

from teamboard.activity import service
from teamboard.deps import TeamContext
from teamboard.kit.hot_queries import HotQuery, Sample
from teamboard.kit.pagination import CursorCodec


async def _activity(ctx: TeamContext, sample: Sample, cursors: CursorCodec) -> object:
    return await service.task_activity(ctx, cursors, sample.task_id, 50, None)


QUERIES = [
    HotQuery(
        "task activity",
        _activity,
        unbounded="a task's history spans every month: one index probe per partition",
    )
]
