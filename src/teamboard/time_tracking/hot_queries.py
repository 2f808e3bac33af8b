"""Hot queries of time tracking (``teamboard db explain``)."""

from __future__ import annotations

from typing import Any

from teamboard.deps import TeamContext
from teamboard.kit.hot_queries import HotQuery, Sample
from teamboard.kit.pagination import CursorCodec
from teamboard.time_tracking import service

_NO_FILTER: dict[str, Any] = {
    "task": None,
    "project": None,
    "user": None,
    "running": None,
    "from": None,
    "to": None,
}


async def _team(ctx: TeamContext, sample: Sample, cursors: CursorCodec) -> object:
    return await service.list_entries(ctx, _NO_FILTER, 50, None)


async def _task(ctx: TeamContext, sample: Sample, cursors: CursorCodec) -> object:
    return await service.list_entries(ctx, {**_NO_FILTER, "task": sample.task_id}, 50, None)


async def _project_totals(ctx: TeamContext, sample: Sample, cursors: CursorCodec) -> object:
    return await service.project_totals(ctx, sample.project_id, {"from": None, "to": None})


QUERIES = [
    HotQuery("time entries of the team", _team),
    HotQuery("time entries of a task", _task),
    HotQuery("time totals of a project", _project_totals),
]
