"""Hot queries of tasks (``teamboard db explain``): a read by id, and the lists a board
shows, first page and the page after it (a page with a cursor is another statement)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from teamboard.deps import TeamContext
from teamboard.kit.hot_queries import HotQuery, Sample
from teamboard.kit.pagination import CursorCodec
from teamboard.tasks import service
from teamboard.tasks.listing import TaskQuery


async def _read(ctx: TeamContext, sample: Sample, cursors: CursorCodec) -> object:
    return await service.get_task(ctx, sample.task_id)


async def _two_pages(
    ctx: TeamContext, cursors: CursorCodec, project_id: UUID | None, query: dict[str, Any]
) -> object:
    first = await service.list_tasks(ctx, cursors, project_id, TaskQuery(**query))
    if first["next_cursor"] is None:
        raise ValueError("the sample holds a single page: the cursor's statement is not explained")
    after = TaskQuery(**query, cursor=first["next_cursor"])
    return await service.list_tasks(ctx, cursors, project_id, after)


async def _project_list(ctx: TeamContext, sample: Sample, cursors: CursorCodec) -> object:
    return await _two_pages(ctx, cursors, sample.project_id, {"limit": 20})


async def _project_list_by_number(ctx: TeamContext, sample: Sample, cursors: CursorCodec) -> object:
    return await _two_pages(ctx, cursors, sample.project_id, {"limit": 20, "sort": "number"})


async def _team_list(ctx: TeamContext, sample: Sample, cursors: CursorCodec) -> object:
    return await _two_pages(ctx, cursors, None, {"limit": 20, "sort": "-updated_at"})


QUERIES = [
    HotQuery("task by id", _read),
    HotQuery("tasks of a project, two pages", _project_list),
    HotQuery("tasks of a project by number, two pages", _project_list_by_number),
    HotQuery("tasks of the team by last update, two pages", _team_list),
]
