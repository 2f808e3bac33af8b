"""REST routes: upload, list, read, download and delete task attachments.

Upload is a raw body, not multipart: ``POST .../tasks/{task_id}/attachments?filename=x.pdf``
with the file's type in ``Content-Type`` and its bytes as the body, which streams to storage
without parsing and works with ``curl --data-binary @x.pdf``.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request, Response
from starlette.responses import StreamingResponse

from teamboard.attachments import cleanup, service
from teamboard.attachments.content import MAX_FILENAME_CHARS, content_disposition
from teamboard.attachments.schemas import AttachmentList, AttachmentOut
from teamboard.attachments.storage import ObjectStorage, storage_dependency
from teamboard.deps import ServicesDep, TeamCtx, TeamGrantDep
from teamboard.kit.body_limit import body_limit
from teamboard.kit.pagination import DEFAULT_LIMIT, Limit
from teamboard.kit.responses import ORJSONResponse

router = APIRouter(prefix="/teams/{team_id}", tags=["attachments"])
Storage = Annotated[ObjectStorage, Depends(storage_dependency)]

_PUBLIC_FIELDS = set(AttachmentOut.model_fields)
_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The file's bytes; its type in Content-Type (see ATTACHMENT_ALLOWED_TYPES).",
        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def _matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison, as ``If-None-Match`` uses."""
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key in _PUBLIC_FIELDS}


@router.post(
    "/tasks/{task_id}/attachments",
    status_code=201,
    response_model=AttachmentOut,
    openapi_extra=_UPLOAD_BODY,
    responses={413: {"description": "Too large"}, 415: {"description": "Type refused"}},
)
@body_limit(None)  # streamed and cut off at ATTACHMENT_MAX_BYTES by the upload itself
async def upload_attachment(
    task_id: UUID,
    request: Request,
    grant: TeamGrantDep,
    storage: Storage,
    filename: Annotated[str, Query(min_length=1, max_length=4 * MAX_FILENAME_CHARS)],
) -> Response:
    """Upload (any team member who can see the task). The size limit is enforced while
    the body streams (413), and the declared type is checked against the allow-list and
    the file's first bytes (415)."""
    return await service.upload(request, grant, task_id, storage, filename)


@router.get("/tasks/{task_id}/attachments", response_model=AttachmentList)
async def list_attachments(
    task_id: UUID,
    ctx: TeamCtx,
    services: ServicesDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Response:
    async with ctx.cursor_for_members():
        page = await services.cursors.id_page(
            f"attachments:{ctx.team_id}:{task_id}",
            limit,
            cursor,
            lambda n, after: service.list_attachments(ctx, task_id, n, after),
        )
    return ORJSONResponse(page)


@router.get("/attachments/{attachment_id}", response_model=AttachmentOut)
async def get_attachment(attachment_id: UUID, ctx: TeamCtx) -> Response:
    return ORJSONResponse(_public(await service.get_attachment(ctx, attachment_id)))


@router.get(
    "/attachments/{attachment_id}/content",
    response_class=StreamingResponse,
    responses={200: {"content": {"*/*": {}}}, 304: {"description": "Not modified"}},
)
async def download_attachment(
    attachment_id: UUID, request: Request, ctx: TeamCtx, storage: Storage
) -> Response:
    """The bytes, as a download: ``Content-Disposition: attachment``, the recorded type,
    ``nosniff``, and the SHA-256 as a strong ETag (``If-None-Match`` answers 304)."""
    attachment = await service.get_attachment(ctx, attachment_id)
    etag = f'"{attachment["sha256"]}"'
    headers = {
        "ETag": etag,
        "Cache-Control": "private, no-cache",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    chunks = await service.open_content(storage, attachment)
    headers["Content-Disposition"] = content_disposition(attachment["filename"])
    headers["Content-Length"] = str(attachment["size_bytes"])
    return StreamingResponse(chunks, media_type=attachment["content_type"], headers=headers)


@router.delete("/attachments/{attachment_id}", status_code=204)
async def delete_attachment(
    attachment_id: UUID,
    ctx: TeamCtx,
    services: ServicesDep,
    storage: Storage,
    background: BackgroundTasks,
) -> Response:
    """Delete (the uploader or an admin); the stored bytes are removed after the commit."""
    await service.delete_attachment(ctx, attachment_id)
    cleanup.purge_after_commit(background, services.db, storage, ctx)
    return Response(status_code=204)
