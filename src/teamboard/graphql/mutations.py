"""Mutations: projects, labels, tasks and comments, through the REST services.

Each mutation field takes its team (``teamId``), calls the same service function as the
REST route with a :class:`~teamboard.deps.TeamContext` (same rules, same errors, same
events, RLS on every statement) and answers the entity as the query side shows it.

* **One transaction per request.** A mutation operation runs in the request's write
  transaction, committed as the response starts (fields run one after another, as GraphQL
  requires). Each field runs inside a savepoint: a field that fails is rolled back to it,
  so it changes nothing while the fields that succeeded are kept, and its error entry
  carries the REST code (``not_found``, ``precondition_failed``, ``validation_failed``...).
* **Idempotency keys.** ``idempotencyKey`` names one mutation field with the semantics of
  ``teamboard.idempotency``: the answer is kept with the writes (same transaction), a
  retry with the same key and the same arguments gets it back without writing anything, the
  same key with other arguments is ``idempotency_key_reused`` (422), a retry while the
  first is running is ``idempotency_in_flight`` (409). Keys are scoped to the caller and
  the team. The ``Idempotency-Key`` HTTP header works as in REST for the whole request.
* **Version checks.** ``expectedVersion`` is REST's ``If-Match`` (the ETag is the
  version): a stale version is ``precondition_failed`` (412) with ``current_etag``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import orjson
import strawberry
from strawberry.types.base import StrawberryList, StrawberryOptional

from teamboard import idempotency
from teamboard.comments import service as comments
from teamboard.comments.schemas import CommentIn
from teamboard.deps import TeamContext
from teamboard.errors import NotFound
from teamboard.graphql import repository
from teamboard.graphql.context import Ctx
from teamboard.graphql.inputs import (
    CreateLabelInput,
    CreateProjectInput,
    CreateTaskInput,
    MoveTaskInput,
    UpdateLabelInput,
    UpdateProjectInput,
    UpdateTaskInput,
    given,
    sent,
    validated,
)
from teamboard.graphql.objects import Project, Task
from teamboard.graphql.pagination import Row
from teamboard.graphql.types import Comment, Label, parse_datetime, resolved
from teamboard.kit.etag import etag
from teamboard.projects import labels
from teamboard.projects import service as projects
from teamboard.projects.schemas import LabelIn, LabelPatch, ProjectIn, ProjectPatch
from teamboard.tasks import service as tasks
from teamboard.tasks.schemas import MoveIn, TaskIn, TaskPatch

Work = Callable[[TeamContext], Awaitable[Any]]
IdempotencyKey = Annotated[
    str | None,
    strawberry.argument(
        description="Names this mutation: a retry with the same key gets the first answer."
    ),
]
ExpectedVersion = Annotated[
    int | None,
    strawberry.argument(
        description="The version the change is based on (REST's If-Match): stale is an error."
    ),
]


def _fingerprint(field: str, arguments: dict[str, Any]) -> bytes:
    canonical = orjson.dumps([field, arguments], option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(canonical).digest()


def revive(value: Any, kind: Any) -> Any:
    """A kept answer (JSON) as the rows resolvers return (ids and times typed again)."""
    if value is None:
        return None
    if isinstance(kind, StrawberryOptional):
        return revive(value, kind.of_type)
    if isinstance(kind, StrawberryList):
        return [revive(item, kind.of_type) for item in value]
    definition = getattr(kind, "__strawberry_definition__", None)
    if definition is not None:
        row = dict(value)
        if "team_id" in row:
            row["team_id"] = UUID(row["team_id"])
        for field in definition.fields:
            if field.base_resolver is None and field.python_name in row:
                row[field.python_name] = revive(row[field.python_name], field.type)
        return row
    if kind is UUID:
        return UUID(value)
    if kind is datetime:
        return parse_datetime(value)
    return value


async def mutate(
    info: Ctx,
    team_id: UUID,
    key: str | None,
    arguments: dict[str, Any],
    work: Work,
) -> Any:
    """Run ``work`` for a member of the team in a savepoint (see the module docstring)."""
    scope = info.context
    team = scope.team(team_id)
    if not await team.member():
        raise NotFound()
    record = None
    if key is not None:
        idempotency.check_key(key)
        fingerprint = _fingerprint(info.field_name, arguments)
        record = idempotency.Record(scope.identity, team_id, key, fingerprint)
    async with scope.use(team_id) as tx:
        await tx.execute("savepoint tb_mutation")
        try:
            stored = None if record is None else await idempotency.reserve(tx, record)
            if stored is not None:
                scope.replayed.append(info.field_name)
                return revive(orjson.loads(stored.body), info.return_type)
            result = await work(team.ctx)
            if record is not None:
                body = orjson.dumps(result, default=str)
                await idempotency.store(tx, record, idempotency.Stored(200, [], body))
        except Exception:
            await tx.execute("rollback to savepoint tb_mutation")
            raise
    scope.changed = True
    return result


def _versioned(arguments: dict[str, Any], expected_version: int | None) -> dict[str, Any]:
    """The arguments an idempotency key's fingerprint covers, with ``expectedVersion`` only
    when given (the mutations that gained it kept their keys' fingerprints)."""
    if expected_version is not None:
        arguments["expectedVersion"] = expected_version
    return arguments


def _if_match(expected_version: int | None) -> str | None:
    return None if expected_version is None else etag(expected_version)


def _in_team(row: dict[str, Any], ctx: TeamContext) -> Row:
    return {**row, "team_id": ctx.team_id}


async def _task(ctx: TeamContext, task_id: UUID) -> Row:
    """A task just written, as queries show it (the services answer REST's shape)."""
    found = await repository.tasks(ctx.tx, ctx.team_id, [task_id])
    return found[task_id]


async def _create_project(
    info: Ctx,
    team_id: UUID,
    input: CreateProjectInput,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    body = validated(ProjectIn, sent(input))

    async def work(ctx: TeamContext) -> Row:
        return _in_team(await projects.create_project(ctx, body), ctx)

    return await mutate(info, team_id, idempotency_key, {"input": sent(input)}, work)


async def _update_project(
    info: Ctx,
    team_id: UUID,
    id: UUID,
    input: UpdateProjectInput,
    expected_version: ExpectedVersion = None,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    patch = validated(ProjectPatch, given(input))

    async def work(ctx: TeamContext) -> Row:
        project = await projects.update_project(ctx, id, patch, _if_match(expected_version))
        return _in_team(project, ctx)

    arguments = {"id": id, "input": sent(input), "expectedVersion": expected_version}
    return await mutate(info, team_id, idempotency_key, arguments, work)


async def _delete_project(
    info: Ctx,
    team_id: UUID,
    id: UUID,
    idempotency_key: IdempotencyKey = None,
) -> UUID | None:
    async def work(ctx: TeamContext) -> UUID:
        await projects.delete_project(ctx, id)
        return id

    result: UUID = await mutate(info, team_id, idempotency_key, {"id": id}, work)
    return result


async def _create_label(
    info: Ctx,
    team_id: UUID,
    project_id: UUID,
    input: CreateLabelInput,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    body = validated(LabelIn, sent(input))

    async def work(ctx: TeamContext) -> Row:
        return _in_team(await labels.create_label(ctx, project_id, body), ctx)

    arguments = {"projectId": project_id, "input": sent(input)}
    return await mutate(info, team_id, idempotency_key, arguments, work)


async def _update_label(
    info: Ctx,
    team_id: UUID,
    project_id: UUID,
    id: UUID,
    input: UpdateLabelInput,
    expected_version: ExpectedVersion = None,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    patch = validated(LabelPatch, given(input))

    async def work(ctx: TeamContext) -> Row:
        label = await labels.update_label(ctx, project_id, id, patch, _if_match(expected_version))
        return _in_team(label, ctx)

    given_arguments = {"projectId": project_id, "id": id, "input": sent(input)}
    arguments = _versioned(given_arguments, expected_version)
    return await mutate(info, team_id, idempotency_key, arguments, work)


async def _delete_label(
    info: Ctx,
    team_id: UUID,
    project_id: UUID,
    id: UUID,
    idempotency_key: IdempotencyKey = None,
) -> UUID | None:
    async def work(ctx: TeamContext) -> UUID:
        await labels.delete_label(ctx, project_id, id)
        return id

    arguments = {"projectId": project_id, "id": id}
    result: UUID = await mutate(info, team_id, idempotency_key, arguments, work)
    return result


async def _create_task(
    info: Ctx,
    team_id: UUID,
    project_id: UUID,
    input: CreateTaskInput,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    body = validated(TaskIn, sent(input))

    async def work(ctx: TeamContext) -> Row:
        created = await tasks.create_task(ctx, project_id, body)
        return await _task(ctx, created.id)

    arguments = {"projectId": project_id, "input": sent(input)}
    return await mutate(info, team_id, idempotency_key, arguments, work)


async def _update_task(
    info: Ctx,
    team_id: UUID,
    id: UUID,
    input: UpdateTaskInput,
    expected_version: ExpectedVersion = None,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    patch = validated(TaskPatch, sent(input))

    async def work(ctx: TeamContext) -> Row:
        await tasks.update_task(ctx, id, patch, _if_match(expected_version))
        return await _task(ctx, id)

    arguments = {"id": id, "input": sent(input), "expectedVersion": expected_version}
    return await mutate(info, team_id, idempotency_key, arguments, work)


async def _move_task(
    info: Ctx,
    team_id: UUID,
    id: UUID,
    input: MoveTaskInput,
    expected_version: ExpectedVersion = None,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    body = validated(MoveIn, sent(input))

    async def work(ctx: TeamContext) -> Row:
        await tasks.move_task(ctx, id, body, _if_match(expected_version))
        return await _task(ctx, id)

    arguments = {"id": id, "input": sent(input), "expectedVersion": expected_version}
    return await mutate(info, team_id, idempotency_key, arguments, work)


async def _delete_task(
    info: Ctx,
    team_id: UUID,
    id: UUID,
    idempotency_key: IdempotencyKey = None,
) -> UUID | None:
    async def work(ctx: TeamContext) -> UUID:
        await tasks.delete_task(ctx, id)
        return id

    result: UUID = await mutate(info, team_id, idempotency_key, {"id": id}, work)
    return result


async def _restore_task(
    info: Ctx,
    team_id: UUID,
    id: UUID,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    retention_days = info.context.services.settings.trash_retention_days

    async def work(ctx: TeamContext) -> Row:
        await tasks.restore_task(ctx, id, retention_days)
        return await _task(ctx, id)

    return await mutate(info, team_id, idempotency_key, {"id": id}, work)


async def _create_comment(
    info: Ctx,
    team_id: UUID,
    task_id: UUID,
    body: str,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    comment = validated(CommentIn, {"body": body}, "body")

    async def work(ctx: TeamContext) -> Row:
        return _in_team(await comments.create_comment(ctx, task_id, comment.body), ctx)

    arguments = {"taskId": task_id, "body": body}
    return await mutate(info, team_id, idempotency_key, arguments, work)


async def _edit_comment(
    info: Ctx,
    team_id: UUID,
    task_id: UUID,
    id: UUID,
    body: str,
    expected_version: ExpectedVersion = None,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    comment = validated(CommentIn, {"body": body}, "body")

    async def work(ctx: TeamContext) -> Row:
        edited = await comments.edit_comment(
            ctx, task_id, id, comment.body, _if_match(expected_version)
        )
        return _in_team(edited, ctx)

    arguments = _versioned({"taskId": task_id, "id": id, "body": body}, expected_version)
    return await mutate(info, team_id, idempotency_key, arguments, work)


async def _delete_comment(
    info: Ctx,
    team_id: UUID,
    task_id: UUID,
    id: UUID,
    idempotency_key: IdempotencyKey = None,
) -> UUID | None:
    async def work(ctx: TeamContext) -> UUID:
        await comments.delete_comment(ctx, task_id, id)
        return id

    arguments = {"taskId": task_id, "id": id}
    result: UUID = await mutate(info, team_id, idempotency_key, arguments, work)
    return result


@strawberry.type
class Mutation:
    create_project: Project | None = resolved(_create_project, mutation=True)
    update_project: Project | None = resolved(_update_project, mutation=True)
    delete_project: UUID | None = resolved(
        _delete_project,
        description="Soft-deletes the project and its tasks (admins).",
        mutation=True,
    )
    create_label: Label | None = resolved(_create_label, mutation=True)
    update_label: Label | None = resolved(_update_label, mutation=True)
    delete_label: UUID | None = resolved(
        _delete_label,
        description="Deletes the label and detaches it from its tasks.",
        mutation=True,
    )
    create_task: Task | None = resolved(_create_task, mutation=True)
    update_task: Task | None = resolved(_update_task, mutation=True)
    move_task: Task | None = resolved(_move_task, description="Manual ordering.", mutation=True)
    delete_task: UUID | None = resolved(
        _delete_task, description="Soft-deletes the task and its live subtasks.", mutation=True
    )
    restore_task: Task | None = resolved(_restore_task, mutation=True)
    create_comment: Comment | None = resolved(_create_comment, mutation=True)
    edit_comment: Comment | None = resolved(
        _edit_comment, description="Authors only.", mutation=True
    )
    delete_comment: UUID | None = resolved(
        _delete_comment, description="Authors, and admins for any comment.", mutation=True
    )
