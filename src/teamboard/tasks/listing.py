"""Task lists: filters, documented sorts and their keyset SQL.

Sorts (``sort=field`` ascending, ``sort=-field`` descending; default ``-created_at``), each
with ``id`` as the tiebreaker in the same direction:

* ``created_at``, ``updated_at``, ``priority`` (0 none, 1 urgent ... 4 low), ``due_at``
  (tasks without a due date sort as if due at +infinity: last ascending, first descending):
  project and team lists;
* ``number``: project lists only (numbers are per project);
* ``position`` (the manual order of a board column): needs exactly one ``status_id`` filter.

Filters combine with AND; a repeated filter (``status_id=a&status_id=b``) matches any of its
values. Ranges are half-open: ``*_after`` is inclusive, ``*_before`` exclusive. ``q`` matches
titles case-insensitively (substring); the search endpoint does ranked full-text search.

Every sort has an index ``(team_id[, project_id], key, id) WHERE deleted_at IS NULL`` (the
position sort: ``(team_id, status_id, position, id)``), so a page is an index range scan
starting right after the cursor, whatever its depth.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from functools import cached_property
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from orjson import Fragment
from pydantic import BaseModel, Field

from teamboard.db import Tx
from teamboard.errors import Unprocessable
from teamboard.kit.instants import Instant
from teamboard.kit.keyset import as_datetime, as_int, as_uuid, optional
from teamboard.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, CursorCodec, limit_clause
from teamboard.kit.text import NO_NUL
from teamboard.projects.schemas import StatusCategory
from teamboard.tasks.repository import SUMMARY

Sort = Literal[
    "created_at",
    "-created_at",
    "updated_at",
    "-updated_at",
    "due_at",
    "-due_at",
    "priority",
    "-priority",
    "number",
    "-number",
    "position",
    "-position",
]
DEFAULT_SORT: Sort = "-created_at"
MAX_VALUES = 50


@dataclass(frozen=True)
class SortKey:
    column: str  # the output column carried by the cursor
    expression: str  # what the SQL orders on (the index key)
    parameter: str  # the cursor value as the same expression
    convert: Callable[[Any], Any]
    project_only: bool = False
    #: Unique within its scope: ``id`` adds nothing, and the unique index has no ``id``.
    unique: bool = False


SORT_KEYS: dict[str, SortKey] = {
    "created_at": SortKey("created_at", "t.created_at", "%(after)s::timestamptz", as_datetime),
    "updated_at": SortKey("updated_at", "t.updated_at", "%(after)s::timestamptz", as_datetime),
    "due_at": SortKey(
        "due_at",
        "coalesce(t.due_at, 'infinity'::timestamptz)",
        "coalesce(%(after)s::timestamptz, 'infinity'::timestamptz)",
        optional(as_datetime),
    ),
    "priority": SortKey("priority", "t.priority", "%(after)s::smallint", as_int),
    "number": SortKey(
        "number", "t.number", "%(after)s::integer", as_int, project_only=True, unique=True
    ),
    "position": SortKey("position", "t.position", "%(after)s::bigint", as_int),
}


@dataclass(frozen=True)
class TaskFilters:
    status_id: tuple[UUID, ...] = ()
    status_category: tuple[str, ...] = ()
    assignee_id: tuple[UUID, ...] = ()
    label_id: tuple[UUID, ...] = ()
    priority: tuple[int, ...] = ()
    due_after: datetime | None = None
    due_before: datetime | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    parent_id: UUID | None = None
    q: str | None = None

    @cached_property
    def binding(self) -> Mapping[str, Any]:
        """The filters in one canonical form (what a cursor is bound to); not to be
        modified (the filters are frozen, and this is worked out once per instance)."""
        bound: dict[str, Any] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, tuple):
                if value:
                    bound[field.name] = sorted(str(item) for item in value)
            elif isinstance(value, datetime):
                bound[field.name] = value.isoformat()
            elif value is not None:
                bound[field.name] = str(value)
        return bound


#: Filters that keep every task (the usual list): its binding is worked out once.
NO_FILTERS = TaskFilters()
#: The query parameters that are not filters.
_PAGING = frozenset({"sort", "limit", "cursor"})

UuidValues = Annotated[list[UUID], Field(max_length=MAX_VALUES)]
Moment = Instant | None


class TaskQuery(BaseModel):
    """The query parameters of a task list, validated in one pass (a model, rather than
    one FastAPI parameter each, costs a fraction of the per-request work). Datetimes need
    an offset; a repeated value counts once."""

    sort: Sort = DEFAULT_SORT
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT
    cursor: str | None = None
    # Empty lists from a factory: a literal ``[]`` default is deep-copied at every validation
    # (5 ``copy.deepcopy`` calls, two thirds of validating a plain page request).
    status_id: UuidValues = Field(default_factory=list)
    status_category: Annotated[list[StatusCategory], Field(max_length=MAX_VALUES)] = Field(
        default_factory=list
    )
    assignee_id: UuidValues = Field(default_factory=list)
    label_id: UuidValues = Field(default_factory=list)
    priority: Annotated[list[Annotated[int, Field(ge=0, le=4)]], Field(max_length=5)] = Field(
        default_factory=list
    )
    due_after: Moment = None
    due_before: Moment = None
    created_after: Moment = None
    created_before: Moment = None
    updated_after: Moment = None
    updated_before: Moment = None
    parent_id: UUID | None = None
    q: Annotated[str | None, Field(min_length=1, max_length=200), NO_NUL] = None

    def filters(self) -> TaskFilters:
        if self.model_fields_set <= _PAGING:
            return NO_FILTERS
        return TaskFilters(
            status_id=tuple(dict.fromkeys(self.status_id)),
            status_category=tuple(dict.fromkeys(self.status_category)),
            assignee_id=tuple(dict.fromkeys(self.assignee_id)),
            label_id=tuple(dict.fromkeys(self.label_id)),
            priority=tuple(dict.fromkeys(self.priority)),
            due_after=self.due_after,
            due_before=self.due_before,
            created_after=self.created_after,
            created_before=self.created_before,
            updated_after=self.updated_after,
            updated_before=self.updated_before,
            parent_id=self.parent_id,
            q=self.q,
        )


def sort_key(sort: Sort, filters: TaskFilters, *, project: bool) -> SortKey:
    """The key of ``sort``, or 422 where it is not defined."""
    key = SORT_KEYS[sort.lstrip("-")]
    if key.project_only and not project:
        raise Unprocessable(
            f"sort={sort} is only available on project lists", code="unsupported_sort"
        )
    if key.column == "position" and len(filters.status_id) != 1:
        raise Unprocessable(
            "sort=position orders a board column: give exactly one status_id",
            code="position_sort_needs_status",
        )
    return key


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


_RANGES = (
    ("due_after", "t.due_at >= %(due_after)s"),
    ("due_before", "t.due_at < %(due_before)s"),
    ("created_after", "t.created_at >= %(created_after)s"),
    ("created_before", "t.created_at < %(created_before)s"),
    ("updated_after", "t.updated_at >= %(updated_after)s"),
    ("updated_before", "t.updated_at < %(updated_before)s"),
)


def filter_conditions(filters: TaskFilters, params: dict[str, Any]) -> list[str]:
    """The SQL conditions of ``filters`` on ``task t`` (their values added to ``params``;
    ``%(team)s`` must be the team). Shared with GraphQL's task connections."""
    conditions: list[str] = []
    if len(filters.status_id) == 1:  # "=" keeps an ordered index scan possible
        conditions.append("t.status_id = %(status)s")
        params["status"] = filters.status_id[0]
    elif filters.status_id:
        conditions.append("t.status_id = any(%(statuses)s::uuid[])")
        params["statuses"] = list(filters.status_id)
    if filters.status_category:
        conditions.append(
            "t.status_id = any(array(select s.id from status s where s.team_id = %(team)s"
            " and s.category = any(%(categories)s::text[])))"
        )
        params["categories"] = list(filters.status_category)
    if filters.assignee_id:
        conditions.append(
            "exists (select 1 from task_assignee a where a.team_id = t.team_id"
            " and a.project_id = t.project_id and a.task_id = t.id"
            " and a.user_id = any(%(assignees)s::uuid[]))"
        )
        params["assignees"] = list(filters.assignee_id)
    if filters.label_id:
        conditions.append(
            "exists (select 1 from task_label tl where tl.team_id = t.team_id"
            " and tl.project_id = t.project_id and tl.task_id = t.id"
            " and tl.label_id = any(%(labels)s::uuid[]))"
        )
        params["labels"] = list(filters.label_id)
    if filters.priority:
        conditions.append("t.priority = any(%(priorities)s::smallint[])")
        params["priorities"] = list(filters.priority)
    for name, condition in _RANGES:
        value = getattr(filters, name)
        if value is not None:
            conditions.append(condition)
            params[name] = value
    if filters.parent_id is not None:
        conditions.append("t.parent_id = %(parent)s")
        params["parent"] = filters.parent_id
    if filters.q is not None:
        conditions.append("t.title ilike %(q)s")
        params["q"] = _like(filters.q)
    return conditions


def list_query(
    team_id: UUID,
    project_id: UUID | None,
    filters: TaskFilters,
    sort: Sort,
    after: tuple[Any, UUID] | None,
    limit: int,
) -> tuple[str, dict[str, Any]]:
    """One statement for a page (``limit + 1`` rows, to know whether another follows)."""
    key = sort_key(sort, filters, project=project_id is not None)
    descending = sort.startswith("-")
    params: dict[str, Any] = {"team": team_id}
    conditions = ["t.team_id = %(team)s", "t.deleted_at is null"]
    if project_id is not None:
        conditions.append("t.project_id = %(project)s")
        params["project"] = project_id
    conditions += filter_conditions(filters, params)
    comparison = "<" if descending else ">"
    direction = "desc" if descending else "asc"
    if key.unique:
        order = f"{key.expression} {direction}"
        if after is not None:
            conditions.append(f"{key.expression} {comparison} {key.parameter}")
            params["after"] = after[0]
    else:
        order = f"{key.expression} {direction}, t.id {direction}"
        if after is not None:
            conditions.append(
                f"({key.expression}, t.id) {comparison} ({key.parameter}, %(after_id)s::uuid)"
            )
            params["after"], params["after_id"] = after
    sql = (
        f"select {SUMMARY} from task t where {' and '.join(conditions)}"
        f" order by {order} {limit_clause(limit + 1)}"
    )
    return sql, params


async def fetch_page(
    tx: Tx,
    team_id: UUID,
    project_id: UUID | None,
    filters: TaskFilters,
    sort: Sort,
    after: tuple[Any, UUID] | None,
    limit: int,
) -> list[str]:
    """The page's list items (``limit + 1`` of them when another page follows), each the
    JSON text the API answers for it."""
    sql, params = list_query(team_id, project_id, filters, sort, after, limit)
    return await tx.fetch_column(sql, params)


def envelope(
    cursors: CursorCodec,
    scope: str,
    binding: Mapping[str, Any],
    items: list[str],
    limit: int,
    column: str,
) -> dict[str, Any]:
    """The list answer ``{"items": [...], "next_cursor": ...}`` of items fetched with
    ``limit + 1`` (trimmed in place). The cursor holds the last item's sort key and id,
    read from its JSON: the values the item shows are the values the list sorts by."""

    def key(last: str) -> list[Any]:
        shown = orjson.loads(last)
        return [shown[column], shown["id"]]

    cursor = cursors.next_cursor(scope, binding, items, limit, key)
    return {"items": [Fragment(item) for item in items], "next_cursor": cursor}


#: Each sort's cursor converters: the sort key's, then the id's.
_CURSOR_CONVERTERS = {name: (key.convert, as_uuid) for name, key in SORT_KEYS.items()}


def cursor_converters(sort: Sort) -> tuple[Callable[[Any], Any], ...]:
    return _CURSOR_CONVERTERS[sort.lstrip("-")]
