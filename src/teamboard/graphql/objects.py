"""The query side of the schema: teams, projects and tasks, and the root ``Query``.

Resolvers are thin: they find the team scope of their row, ask its DataLoaders (one
statement per level, see ``loaders``) and return rows. Visibility is Row Level Security's:
a team the caller is not in, or a project, task or status they cannot see, answers null
(or an empty page), exactly like a missing id; nothing tells the two apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import Any
from uuid import UUID

import strawberry
from strawberry import Parent

from teamboard.errors import Forbidden, NotFound
from teamboard.graphql import keyset, lists, repository
from teamboard.graphql.analytics import TeamAnalytics, team_analytics
from teamboard.graphql.context import Ctx, RequestScope, TeamScope
from teamboard.graphql.inputs import TaskFilter, filter_query, validated
from teamboard.graphql.lists import ListDef
from teamboard.graphql.pagination import ConnectionValue, Page, PageArgs, Row, bounds
from teamboard.graphql.types import (
    ActivityItem,
    Attachment,
    Comment,
    Connection,
    Label,
    Member,
    Notification,
    Person,
    ProjectMember,
    Role,
    Status,
    TaskLabel,
    TaskSort,
    TimeEntry,
    Viewer,
    Visibility,
    resolved,
)
from teamboard.notifications import service as notifications
from teamboard.tasks.listing import NO_FILTERS, TaskQuery
from teamboard.tasks.service import parse_key

ParentKey = Callable[[Row], tuple[Any, ...]]


def load_page(
    scope: RequestScope,
    team: TeamScope,
    definition: ListDef,
    parent: tuple[Any, ...],
    args: PageArgs,
) -> Awaitable[ConnectionValue]:
    """One parent's page of a list, batched with the other parents of the level (the
    cursors are checked now: a foreign or tampered one fails this field alone)."""
    where = partial(definition.where, scope.user_id, team.team_id, parent[0])
    want = bounds(scope.services.cursors, where, definition.keyset, args)
    return team.loaders.pages.load((definition, want, parent))


def connection_field(definition: ListDef, parent: ParentKey, doc: str) -> Any:
    """A connection field without options: ``first``/``after``/``last``/``before``."""

    def resolve(
        root: Parent[Row],
        info: Ctx,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Awaitable[ConnectionValue]:
        scope = info.context
        team = scope.team(root["team_id"])
        args = PageArgs(first, after, last, before)
        return load_page(scope, team, definition, parent(root), args)

    return resolved(resolve, description=doc)


def _own(root: Row) -> tuple[Any, ...]:
    return (root["id"],)


def _task_key(root: Row) -> tuple[Any, ...]:
    return (root["id"], root["project_id"])


def _tasks(
    root: Row, info: Ctx, args: PageArgs, sort: TaskSort, where: TaskFilter | None, *, project: bool
) -> Awaitable[ConnectionValue]:
    scope = info.context
    team = scope.team(root["team_id"])
    filters = NO_FILTERS
    if where is not None:  # checked by the REST query model (bounds, NUL characters...)
        filters = validated(TaskQuery, filter_query(where), "filter").filters()
    definition = lists.tasks(sort.value, filters, project=project)
    return load_page(scope, team, definition, (root["id"],), args)


def project_tasks(
    root: Parent[Row],
    info: Ctx,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    sort: TaskSort = TaskSort.CREATED_AT_DESC,
    filter: TaskFilter | None = None,
) -> Awaitable[ConnectionValue]:
    args = PageArgs(first, after, last, before)
    return _tasks(root, info, args, sort, filter, project=True)


def team_tasks(
    root: Parent[Row],
    info: Ctx,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    sort: TaskSort = TaskSort.CREATED_AT_DESC,
    filter: TaskFilter | None = None,
) -> Awaitable[ConnectionValue]:
    args = PageArgs(first, after, last, before)
    return _tasks(root, info, args, sort, filter, project=False)


def task_project(root: Parent[Row], info: Ctx) -> Awaitable[Row | None]:
    return info.context.team(root["team_id"]).loaders.projects.load(root["project_id"])


def task_status(root: Parent[Row], info: Ctx) -> Awaitable[Row | None]:
    return info.context.team(root["team_id"]).loaders.statuses.load(root["status_id"])


def task_parent(root: Parent[Row], info: Ctx) -> Awaitable[Row | None] | None:
    if root["parent_id"] is None:
        return None
    return info.context.team(root["team_id"]).loaders.tasks.load(root["parent_id"])


def task_description(root: Parent[Row], info: Ctx) -> Awaitable[str]:
    """Fetched apart (one statement for the level): lists leave the long text out."""
    return info.context.team(root["team_id"]).loaders.descriptions.load(root["id"])


@strawberry.type(description="A live task of a visible project.")
class Task:
    id: UUID
    key: str = strawberry.field(description="`ENG-42`: the project key and the task number.")
    number: int
    project_id: UUID
    title: str
    status_id: UUID
    priority: int = strawberry.field(description="0 none, 1 urgent, 2 high, 3 medium, 4 low.")
    parent_id: UUID | None
    due_at: datetime | None
    estimate: int | None
    position: int
    created_by: UUID
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    version: int = strawberry.field(description="Bumped by every change: `expectedVersion`.")
    assignees: list[Person]
    labels: list[TaskLabel]
    description: str = resolved(task_description)
    project: Project = resolved(task_project)
    status: Status = resolved(task_status)
    parent: Task | None = resolved(task_parent)
    comments: Connection[Comment] = connection_field(
        lists.COMMENTS, _task_key, "Comments, oldest first."
    )
    attachments: Connection[Attachment] = connection_field(
        lists.ATTACHMENTS, _task_key, "Attachments in upload order."
    )
    time_entries: Connection[TimeEntry] = connection_field(
        lists.TIME_ENTRIES, _task_key, "Time entries, newest start first."
    )
    activity: Connection[ActivityItem] = connection_field(
        lists.ACTIVITY, _own, "What happened to the task, newest first."
    )


@strawberry.type
class Project:
    id: UUID
    key: str
    name: str
    description: str
    visibility: Visibility
    archived_at: datetime | None
    created_by: UUID
    created_at: datetime
    updated_at: datetime
    version: int
    statuses: Connection[Status] = connection_field(lists.STATUSES, _own, "The workflow, in order.")
    labels: Connection[Label] = connection_field(lists.LABELS, _own, "Labels by name.")
    members: Connection[ProjectMember] = connection_field(
        lists.PROJECT_MEMBERS, _own, "Members of a private project, and guests."
    )
    tasks: Connection[Task] = resolved(
        project_tasks, description="Live tasks (REST sorts and filters)."
    )


def team_projects(
    root: Parent[Row],
    info: Ctx,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    include_archived: bool = False,
) -> Awaitable[ConnectionValue]:
    scope = info.context
    team = scope.team(root["team_id"])
    args = PageArgs(first, after, last, before)
    return load_page(scope, team, lists.projects(include_archived), (root["id"],), args)


def team_notifications(
    root: Parent[Row],
    info: Ctx,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    unread_only: bool = False,
) -> Awaitable[ConnectionValue]:
    scope = info.context
    team = scope.team(root["team_id"])
    args = PageArgs(first, after, last, before)
    return load_page(scope, team, lists.notifications(unread_only), (root["id"],), args)


async def unread_notification_count(root: Parent[Row], info: Ctx) -> int:
    scope = info.context
    team = scope.team(root["id"])
    async with scope.use(team.team_id):
        return await notifications.unread_count(team.ctx)


def team_project(root: Parent[Row], info: Ctx, id: UUID) -> Awaitable[Row | None]:
    return info.context.team(root["id"]).loaders.projects.load(id)


def team_task(root: Parent[Row], info: Ctx, id: UUID) -> Awaitable[Row | None]:
    return info.context.team(root["id"]).loaders.tasks.load(id)


async def team_task_by_key(root: Parent[Row], info: Ctx, key: str) -> Row | None:
    parsed = parse_key(key)
    if parsed is None:
        return None
    scope = info.context
    async with scope.use(root["id"]) as tx:
        return await repository.task_by_key(tx, root["id"], *parsed)


@strawberry.type(description="A team the caller belongs to.")
class Team:
    id: UUID
    name: str
    role: Role = strawberry.field(description="The caller's role in the team.")
    created_at: datetime
    updated_at: datetime
    members: Connection[Member] = connection_field(lists.MEMBERS, _own, "Members.")
    projects: Connection[Project] = resolved(
        team_projects, description="Projects the caller can see."
    )
    project: Project | None = resolved(team_project)
    task: Task | None = resolved(team_task)
    task_by_key: Task | None = resolved(team_task_by_key, description="The task `ENG-42`.")
    tasks: Connection[Task] = resolved(
        team_tasks, description="Live tasks of every project the caller can see."
    )
    notifications: Connection[Notification] = resolved(
        team_notifications, description="The caller's notifications, newest first."
    )
    unread_notification_count: int = resolved(unread_notification_count)
    analytics: TeamAnalytics | None = resolved(
        team_analytics,
        description="Dashboards over a period of the team's local days: a `window` (7d, 30d,"
        " 90d or 365d, default 30d, ending today) or `start` and `end` (at most 731 days)."
        " Null, with an error, when the period is invalid.",
    )


def _no_api_key(scope: RequestScope) -> None:
    if scope.key_team is not None:
        raise Forbidden(
            "API keys can only be used on their team's fields", code="api_key_not_allowed"
        )


async def query_viewer(info: Ctx) -> Row:
    scope = info.context
    _no_api_key(scope)
    async with scope.use(None) as tx:
        row = await repository.viewer(tx, scope.user_id)
    if row is None:
        raise NotFound()
    return row


async def query_teams(
    info: Ctx,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> ConnectionValue:
    """The caller's teams; each one listed is reached (its role known, its budget checked)."""
    scope = info.context
    _no_api_key(scope)
    where = partial(lists.TEAMS.where, scope.user_id, None, None)
    codec = scope.services.cursors
    want = bounds(codec, where, lists.TEAMS.keyset, PageArgs(first, after, last, before))
    async with scope.use(None) as tx:
        rows = await keyset.fetch_page(tx, lists.TEAMS.query, {"user": scope.user_id}, want)
    page = Page.from_fetch(rows, want)
    for row in page.rows:
        team = scope.team(row["id"])
        team.ctx.know_role(row["role"])
        await team.admit()
    return ConnectionValue(codec, where, lists.TEAMS.keyset, page)


async def query_team(info: Ctx, id: UUID) -> Row | None:
    """The team, or null when the caller is not a member (or it does not exist)."""
    scope = info.context
    try:
        team = scope.team(id)
    except NotFound:
        return None
    async with scope.use(id) as tx:
        row = await repository.team(tx, scope.user_id, id)
    if row is None:
        return None
    team.ctx.know_role(row["role"])
    await team.admit()
    return row


@strawberry.type
class Query:
    viewer: Viewer = resolved(query_viewer, description="The caller.")
    teams: Connection[Team] = resolved(query_teams, description="The caller's teams.")
    team: Team | None = resolved(query_team)
