"""The lists GraphQL pages through, each paired with the REST list whose cursors it shares.

Every definition names the same cursor scope, filter binding and key columns as its REST
route (see the routers cited), so cursors pass between the two APIs. The SQL is GraphQL's
own because a level of a query fetches the pages of many parents in one statement (see
``keyset``), and because lists page backwards too; the rows have the REST items' fields
plus ``team_id`` (which team's context nested fields use) and, for tasks, the assignees'
names and the full labels, so that a task level stays one statement.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from teamboard.activity.repository import ACTOR_AND_COMMENT
from teamboard.graphql.keyset import Decoration, Key, ListQuery
from teamboard.graphql.pagination import Keyset, ListScope, Row
from teamboard.kit.keyset import as_datetime, as_int, as_uuid
from teamboard.tasks import listing
from teamboard.tasks.listing import Sort, TaskFilters

ID = Keyset(("id",), (as_uuid,))
USER_ID = Keyset(("user_id",), (as_uuid,))


def convert_activity(row: Row) -> None:
    """A comment event's comment as JSON gives its edit time as text (ISO 8601)."""
    comment = row["comment"]
    if comment is not None and comment["edited_at"] is not None:
        comment["edited_at"] = datetime.fromisoformat(comment["edited_at"])


@dataclass(frozen=True, eq=False)
class ListDef:
    """One list: its query, its key, and where its cursors are valid. Compared by
    identity (a DataLoader key part): definitions with options are made once per set of
    options.

    ``scope(user, team, parent)`` is the REST cursor scope and ``binding`` the filters a
    cursor is bound to; ``parent_binding`` names the filter that the parent is, when REST
    binds it as a filter (a task's time entries).
    """

    query: ListQuery
    keyset: Keyset
    scope: Callable[[UUID, UUID | None, Any], str]
    binding: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    convert: Callable[[Row], None] | None = None
    parent_binding: str | None = None

    def where(self, user: UUID, team: UUID | None, parent: Any) -> ListScope:
        """Where the cursors of ``parent``'s page are valid."""
        binding = self.binding
        if self.parent_binding is not None:
            binding = {**binding, self.parent_binding: parent}
        return ListScope(self.scope(user, team, parent), binding)


# ---------------------------------------------------------------------------------- columns

TEAM_COLUMNS = "t.id as team_id, t.id, t.name, t.created_at, t.updated_at, m.role"
PROJECT_COLUMNS = (
    "p.team_id, p.id, p.key, p.name, p.description, p.visibility, p.archived_at, p.created_by,"
    " p.created_at, p.updated_at, p.version"
)
STATUS_COLUMNS = (
    "s.team_id, s.id, s.project_id, s.name, s.category, s.position, s.created_at, s.updated_at"
)
LABEL_COLUMNS = (
    "l.team_id, l.id, l.project_id, l.name, l.color, l.created_at, l.updated_at, l.version"
)
#: A task without its description (fetched apart, on demand): a REST list item's fields,
#: its key, and its card (migration ``2026-12-06_task_cards``): the assignees' ids and the
#: labels (``[{id, name, color}]``), as :func:`convert_task` completes them.
TASK_COLUMNS = (
    "t.team_id, t.id, t.key, t.number, t.project_id, t.title, t.status_id, t.priority,"
    " t.parent_id, t.due_at, t.estimate, t.position, t.created_by, t.created_at,"
    " t.updated_at, t.completed_at, t.version, t.assignee_ids, t.labels"
)
#: The assignees' names, in the card's order, for the rows of a page once it is cut: one
#: look-up per task. Names and labels travel as plain values, not as JSON built here and
#: parsed again by the driver (on the harness's dashboard, building them as JSON cost
#: PostgreSQL as much as fetching the tasks; see bench/README.md).
TASK_DECORATION = Decoration(
    "(select array_agg(u.display_name order by a.n)"
    " from unnest(tb_page.assignee_ids) with ordinality a (id, n)"
    " left join app_user u on u.id = a.id) as assignee_names",
    "",
)


def convert_task(row: Row) -> None:
    """The REST task's ``assignees`` (by user id, with their names) and ``labels`` (with
    their project) from the card's columns."""
    names = row.pop("assignee_names") or ()
    row["assignees"] = [
        {"id": user, "display_name": name}
        for user, name in zip(row.pop("assignee_ids"), names, strict=True)
    ]
    project = row["project_id"]
    for label in row["labels"]:
        label["project_id"] = project


_PERSON = "json_build_object('id', {id}, 'display_name', {name})"
#: A comment with its author's name, and its mentions (null when there are none: the
#: common case costs no look-up), as :func:`convert_comment` completes them.
COMMENT_COLUMNS = (
    "c.team_id, c.id, c.task_id, c.project_id, c.body, c.created_at, c.updated_at,"
    " c.edited_at, c.version, c.author_id, a.display_name as author_name,"
    " case when c.mentions <> '{}' then (select json_agg(json_build_object('id', m.id,"
    " 'display_name', u.display_name) order by u.display_name, m.id) from unnest(c.mentions)"
    " m(id) left join app_user u on u.id = m.id) end as mentions"
)


def convert_comment(row: Row) -> None:
    """The REST comment's ``author`` and ``mentions`` from the plain columns."""
    row["author"] = {"id": row.pop("author_id"), "display_name": row.pop("author_name")}
    if row["mentions"] is None:
        row["mentions"] = []


ATTACHMENT_COLUMNS = (
    "a.team_id, a.id, a.task_id, a.project_id, a.filename, a.content_type, a.size_bytes,"
    " a.sha256, a.uploaded_by, a.created_at"
)
TIME_ENTRY_COLUMNS = (
    "e.team_id, e.id, e.task_id, e.project_id, e.user_id, e.started_at, e.ended_at,"
    " floor(extract(epoch from e.ended_at - e.started_at))::bigint as duration_seconds,"
    " e.note, e.created_at, e.updated_at"
)
NOTIFICATION_COLUMNS = (
    "n.team_id, n.id, n.kind, n.read_at, n.created_at, n.comment_id,"
    " json_build_object('id', t.id, 'project_id', t.project_id,"
    "  'ref', p.key || '-' || t.number, 'title', t.title) as task,"
    f" {_PERSON.format(id='n.actor_id', name='a.display_name')} as actor"
)
#: REST's activity item (``activity.repository``) with the team.
ACTIVITY_COLUMNS = "e.team_id, e.id, e.kind, e.occurred_at, e.payload," + ACTOR_AND_COMMENT

# ------------------------------------------------------------------------------------ lists

#: The caller's teams (REST ``GET /teams``, scope ``teams:{user}``).
TEAMS = ListDef(
    ListQuery(
        TEAM_COLUMNS,
        "team t join team_member m on m.team_id = t.id and m.user_id = %(user)s",
        ("true",),
        (Key("t.id", "{}::uuid"),),
    ),
    ID,
    lambda user, _team, _parent: f"teams:{user}",
)

#: ``GET /teams/{team}/members``.
MEMBERS = ListDef(
    ListQuery(
        "m.team_id, m.user_id, u.email, u.display_name, m.role, m.created_at as joined_at",
        "team_member m join app_user u on u.id = m.user_id",
        ("true",),
        (Key("m.user_id", "{}::uuid"),),
        parents=(("m.team_id", "uuid"),),
    ),
    USER_ID,
    lambda _user, team, _parent: f"members:{team}",
)


@functools.lru_cache(maxsize=2)
def projects(include_archived: bool) -> ListDef:
    """``GET /teams/{team}/projects?include_archived=``."""
    return ListDef(
        ListQuery(
            PROJECT_COLUMNS,
            "project p",
            ("p.deleted_at is null", "(%(archived)s or p.archived_at is null)"),
            (Key("p.id", "{}::uuid"),),
            parents=(("p.team_id", "uuid"),),
        ),
        ID,
        lambda _user, team, _parent: f"projects:{team}",
        binding={"include_archived": include_archived},
        params={"archived": include_archived},
    )


#: ``GET /projects/{project}/statuses`` (the workflow order).
STATUSES = ListDef(
    ListQuery(
        STATUS_COLUMNS,
        "status s",
        ("s.team_id = %(team)s",),
        (Key("s.position", "{}::integer"), Key("s.id", "{}::uuid")),
        parents=(("s.project_id", "uuid"),),
    ),
    Keyset(("position", "id"), (as_int, as_uuid)),
    lambda _user, team, project: f"statuses:{team}:{project}",
)

#: ``GET /projects/{project}/labels`` (by name).
LABELS = ListDef(
    ListQuery(
        LABEL_COLUMNS,
        "label l",
        ("l.team_id = %(team)s",),
        (Key("l.name", "{}::text"), Key("l.id", "{}::uuid")),
        parents=(("l.project_id", "uuid"),),
    ),
    Keyset(("name", "id"), (str, as_uuid)),
    lambda _user, team, project: f"labels:{team}:{project}",
)

#: ``GET /projects/{project}/members``.
PROJECT_MEMBERS = ListDef(
    ListQuery(
        "pm.team_id, pm.user_id, u.display_name, pm.created_at as added_at",
        "project_member pm join app_user u on u.id = pm.user_id",
        ("pm.team_id = %(team)s",),
        (Key("pm.user_id", "{}::uuid"),),
        parents=(("pm.project_id", "uuid"),),
    ),
    USER_ID,
    lambda _user, _team, project: f"project-members:{project}",
)


@functools.lru_cache(maxsize=256)
def tasks(sort: Sort, filters: TaskFilters, *, project: bool) -> ListDef:
    """``GET /projects/{project}/tasks`` (``project``) or ``GET /tasks``: the same sorts,
    filters, keys and indexes (``teamboard.tasks.listing``); 422 for a sort that the list
    does not offer."""
    key = listing.sort_key(sort, filters, project=project)
    params: dict[str, Any] = {}
    conditions = ["t.team_id = %(team)s", "t.deleted_at is null"]
    conditions += listing.filter_conditions(filters, params)
    keys = (Key(key.expression, key.parameter.replace("%(after)s", "{}")), Key("t.id", "{}::uuid"))
    return ListDef(
        ListQuery(
            TASK_COLUMNS,
            "task t",
            tuple(conditions),
            keys,
            descending=sort.startswith("-"),
            parents=(("t.project_id" if project else "t.team_id", "uuid"),),
            compare_first_only=key.unique,
            decoration=TASK_DECORATION,
        ),
        Keyset((key.column, "id"), listing.cursor_converters(sort)),
        lambda _user, team, parent: f"tasks:{team}:{parent if project else 'team'}",
        binding={"sort": sort, **filters.binding},
        params=params,
        convert=convert_task,
    )


#: ``GET /tasks/{task}/comments`` (oldest first).
COMMENTS = ListDef(
    ListQuery(
        COMMENT_COLUMNS,
        "comment c left join app_user a on a.id = c.author_id",
        ("c.team_id = %(team)s", "c.deleted_at is null"),
        (Key("c.id", "{}::uuid"),),
        parents=(("c.task_id", "uuid"), ("c.project_id", "uuid")),
    ),
    ID,
    lambda _user, team, task: f"comments:{team}:{task}",
    convert=convert_comment,
)

#: ``GET /tasks/{task}/attachments`` (upload order).
ATTACHMENTS = ListDef(
    ListQuery(
        ATTACHMENT_COLUMNS,
        "attachment a",
        ("a.team_id = %(team)s",),
        (Key("a.id", "{}::uuid"),),
        parents=(("a.task_id", "uuid"), ("a.project_id", "uuid")),
    ),
    ID,
    lambda _user, team, task: f"attachments:{team}:{task}",
)

#: ``GET /tasks/{task}/time-entries`` without filters (newest start first); its cursor is
#: bound to the REST route's filter set.
TIME_ENTRIES = ListDef(
    ListQuery(
        TIME_ENTRY_COLUMNS,
        "time_entry e",
        ("e.team_id = %(team)s",),
        (Key("e.started_at", "{}::timestamptz"), Key("e.id", "{}::uuid")),
        descending=True,
        parents=(("e.task_id", "uuid"), ("e.project_id", "uuid")),
    ),
    Keyset(("started_at", "id"), (as_datetime, as_uuid)),
    lambda _user, team, _parent: f"time-entries:{team}",
    binding={"from": None, "to": None, "project": None, "running": None, "user": None},
    parent_binding="task",
)


@functools.lru_cache(maxsize=2)
def notifications(unread_only: bool) -> ListDef:
    """``GET /teams/{team}/notifications?unread=`` (the caller's, newest first)."""
    unread = ("n.read_at is null",) if unread_only else ()
    return ListDef(
        ListQuery(
            NOTIFICATION_COLUMNS,
            "notification n join task t on t.id = n.task_id and t.deleted_at is null"
            " join project p on p.id = t.project_id and p.deleted_at is null"
            " left join app_user a on a.id = n.actor_id",
            ("n.recipient_id = %(user)s", *unread),
            (Key("n.id", "{}::uuid"),),
            descending=True,
            parents=(("n.team_id", "uuid"),),
        ),
        ID,
        lambda user, team, _parent: f"notifications:{team}:{user}",
        binding={"unread": unread_only},
    )


#: ``GET /tasks/{task}/activity`` (newest first).
ACTIVITY = ListDef(
    ListQuery(
        ACTIVITY_COLUMNS,
        "event e",
        ("e.team_id = %(team)s",),
        (Key("e.occurred_at", "{}::timestamptz"), Key("e.id", "{}::uuid")),
        descending=True,
        parents=(("e.subject_id", "uuid"),),
    ),
    Keyset(("occurred_at", "id"), (as_datetime, as_uuid)),
    lambda _user, team, task: f"activity:{team}:{task}",
    convert=convert_activity,
)
