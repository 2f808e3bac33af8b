"""Attachment rules: who may upload, read and delete, and how bytes and rows stay in step.

An upload never holds a database connection while the body arrives: a short transaction
checks that the caller can see the task, the body is streamed to a staging file (size
limit, content check, SHA-256), then a second transaction inserts the row, stores the
object and appends the event. If that transaction does not commit, the object is removed
again; only when the commit itself fails, and the row cannot be shown absent, is the object
left in place (orphan bytes are harmless; a row without its bytes is not).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from fastapi import Request
from starlette.responses import Response

from teamboard import idempotency
from teamboard.attachments import repository
from teamboard.attachments.content import clean_filename, media_type
from teamboard.attachments.storage import (
    ObjectMissing,
    ObjectStorage,
    StorageUnavailable,
    object_key,
    staging_dir,
)
from teamboard.attachments.upload import ReceivedFile, check_announced_length, receive
from teamboard.deps import TeamContext, TeamGrant, get_services
from teamboard.errors import NotFound
from teamboard.events.repository import append
from teamboard.kit.ids import new_id
from teamboard.kit.responses import ORJSONResponse
from teamboard.tasks.lookup import live_task_project

logger = logging.getLogger("teamboard.attachments")


async def upload(
    request: Request,
    grant: TeamGrant,
    task_id: UUID,
    storage: ObjectStorage,
    filename: str,
) -> Response:
    """Store the request body as an attachment of the task; the 201 with its metadata (or,
    for a retried ``Idempotency-Key``, the first upload's answer, replayed)."""
    settings = get_services(request).settings
    idempotency_key = idempotency.request_key(request)
    async with grant.transaction(request, write=False) as ctx:
        if await live_task_project(ctx.tx, task_id) is None:
            raise NotFound()
    name = clean_filename(filename)
    declared = media_type(request.headers.get("content-type"), settings.attachment_allowed_types)
    check_announced_length(request.headers.get("content-length"), settings.attachment_max_bytes)
    received = await receive(
        request.stream(),
        declared=declared,
        max_bytes=settings.attachment_max_bytes,
        staging=staging_dir(settings),
    )
    try:
        return await _record(
            request, grant, task_id, storage, name, declared, received, idempotency_key
        )
    finally:
        received.path.unlink(missing_ok=True)  # moved away when stored locally


async def _record(
    request: Request,
    grant: TeamGrant,
    task_id: UUID,
    storage: ObjectStorage,
    filename: str,
    declared: str,
    received: ReceivedFile,
    idempotency_key: str | None,
) -> Response:
    attachment_id = new_id()
    key = object_key(grant.team_id, attachment_id)
    storing = committing = False
    record = None
    if idempotency_key is not None:
        record = idempotency.upload_record(
            request, grant.caller, grant.team_id, idempotency_key, declared, received.sha256
        )
    try:
        async with grant.transaction(request, write=True) as ctx:
            if record is not None:
                await idempotency.reserve_or_replay(ctx.tx, record)
            row = await repository.insert_attachment(
                ctx.tx,
                {
                    "id": attachment_id,
                    "task_id": task_id,
                    "filename": filename,
                    "content_type": declared,
                    "size_bytes": received.size,
                    "sha256": received.sha256,
                    "storage_key": key,
                    "uploaded_by": ctx.user_id,
                },
            )
            if row is None:  # the task went away while the body was arriving
                raise NotFound()
            storing = True
            try:
                await storage.put(key, received.path, declared)
            except Exception as exc:
                logger.exception("storing attachment %s failed", attachment_id)
                raise StorageUnavailable() from exc
            await append(
                ctx.tx,
                "attachment.uploaded",
                subject_id=task_id,
                project_id=row["project_id"],
                payload={
                    "attachment_id": attachment_id,
                    "task_id": task_id,
                    "filename": filename,
                    "content_type": declared,
                    "size_bytes": received.size,
                    "sha256": received.sha256,
                },
            )
            response = ORJSONResponse(row, status_code=201)
            if record is not None:
                await idempotency.store(ctx.tx, record, idempotency.Stored.of(response))
            committing = True
    except BaseException:
        if storing and not (committing and await _committed(request, ctx, attachment_id)):
            await _discard(storage, key)
        raise
    return response


async def _discard(storage: ObjectStorage, key: str) -> None:
    """Remove an object whose row did not commit; a failure only leaves orphan bytes."""
    try:
        await storage.delete([key])
    except Exception:
        logger.warning("could not remove the orphan object %s", key, exc_info=True)


async def _committed(request: Request, ctx: TeamContext, attachment_id: UUID) -> bool:
    """Whether a commit that raised went through anyway; True when that cannot be known."""
    try:
        async with get_services(request).db.transaction(
            user_id=ctx.user_id, team_id=ctx.team_id, write=False
        ) as tx:
            return (
                await tx.fetch_value("select true from attachment where id = %s", (attachment_id,))
                is not None
            )
    except Exception:
        logger.warning("cannot tell whether attachment %s committed", attachment_id)
        return True


async def list_attachments(
    ctx: TeamContext, task_id: UUID, limit: int, after: UUID | None
) -> list[dict[str, Any]]:
    project_id = await live_task_project(ctx.tx, task_id)
    if project_id is None:
        raise NotFound()
    return await repository.list_attachments(ctx.tx, task_id, project_id, limit, after)


async def get_attachment(ctx: TeamContext, attachment_id: UUID) -> dict[str, Any]:
    """The attachment with its storage key; 404 unless the caller can see its task."""
    row = await repository.get_attachment(ctx.tx, attachment_id)
    if row is None:
        raise NotFound()
    return row


async def open_content(storage: ObjectStorage, attachment: dict[str, Any]) -> AsyncIterator[bytes]:
    """The attachment's bytes, opened now (see :meth:`ObjectStorage.open`)."""
    try:
        return await storage.open(attachment["storage_key"])
    except ObjectMissing:
        logger.error("attachment %s has no stored object", attachment["id"])
        raise NotFound() from None
    except Exception as exc:
        logger.exception("reading attachment %s failed", attachment["id"])
        raise StorageUnavailable() from exc


async def delete_attachment(ctx: TeamContext, attachment_id: UUID) -> None:
    """Delete (the uploader, or an admin). The bytes go after commit: see ``cleanup``."""
    row = await get_attachment(ctx, attachment_id)
    if row["uploaded_by"] != ctx.user_id:
        await ctx.require("admin")
    if not await repository.delete_attachment(ctx.tx, attachment_id):
        raise NotFound()
    await append(
        ctx.tx,
        "attachment.deleted",
        subject_id=row["task_id"],
        project_id=row["project_id"],
        payload={
            "attachment_id": attachment_id,
            "task_id": row["task_id"],
            "filename": row["filename"],
        },
    )
