"""SQL for search over the tasks the caller can see.

A task matches when all words are in its title and description together (``task.search``),
or all in one of its comments (``comment.search``), or when its title contains a word
similar to the query (``tb_similar_task_titles``: pg_trgm, or nothing on servers without
it). Its score is the best of:

* ``ts_rank`` of the task vector: title words weigh 1.0 (A), description words 0.4 (B);
* ``ts_rank`` of its best comment: 0.2 (C);
* the title's word similarity x 0.1.

So a title match always outranks a description match, which outranks comments, which
outrank typo matches. Deleted tasks, deleted comments and deleted projects are left out;
RLS leaves out projects the caller cannot see.

Pages are keyset on ``(score, id)`` descending. The score is a deterministic function of the
stored text, so walking the pages neither repeats nor skips a task unless its text (or its
comments) changes meanwhile; ``id`` breaks ties.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from teamboard.db import Tx
from teamboard.kit.pagination import limit_clause

_SEARCH = (
    "with query as ("
    "  select to_tsquery('simple', %(tsquery)s) as q where %(tsquery)s <> ''),"
    " hit as ("
    "  select t.id as task_id, ts_rank(t.search, query.q) as score, 'task' as source"
    "  from task t, query where t.search @@ query.q and t.deleted_at is null"
    "  union all"
    "  select c.task_id, ts_rank(c.search, query.q), 'comment'"
    "  from comment c, query where c.search @@ query.q and c.deleted_at is null"
    "  union all"
    "  select s.task_id, s.similarity * 0.1::real, 'similar_title'"
    "  from tb_similar_task_titles(%(text)s) s),"
    " ranked as ("
    "  select task_id, max(score)::float8 as score,"
    "   array_agg(distinct source order by source) as matched"
    "  from hit group by task_id)"
    " select t.id, t.project_id, p.key || '-' || t.number as ref, t.title, t.status_id,"
    "  r.score, r.matched"
    " from ranked r"
    " join task t on t.id = r.task_id and t.deleted_at is null"
    " join project p on p.id = t.project_id and p.deleted_at is null"
)


def search_sql(*, after: bool, rows: int) -> str:
    """The statement of a first page, or of a page after ``(%(score)s, %(id)s)``, of
    ``rows`` rows at most (public so that it can be run as is in tests)."""
    keyset = " where (r.score, t.id) < (%(score)s::float8, %(id)s::uuid)" if after else ""
    return _SEARCH + keyset + f" order by r.score desc, t.id desc {limit_clause(rows)}"


async def search_tasks(
    tx: Tx, text: str, tsquery: str, limit: int, after: tuple[float, UUID] | None
) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"text": text, "tsquery": tsquery}
    if after is not None:
        params["score"], params["id"] = after
    return await tx.fetch_all(search_sql(after=after is not None, rows=limit + 1), params)
