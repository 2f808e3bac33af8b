"""REST routes: /teams/{team_id}/webhooks (admins only)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response

from teamboard.deps import ServicesDep, TeamCtx
from teamboard.idempotency import returns_secret
from teamboard.kit.etag import IfMatch, versioned
from teamboard.kit.pagination import DEFAULT_LIMIT, Limit
from teamboard.kit.responses import ORJSONResponse
from teamboard.webhooks import service
from teamboard.webhooks.schemas import (
    DeliveryDetail,
    DeliveryList,
    DeliveryOut,
    WebhookCreated,
    WebhookIn,
    WebhookList,
    WebhookOut,
    WebhookPatch,
)

router = APIRouter(prefix="/teams/{team_id}/webhooks", tags=["webhooks"])


@router.post("", status_code=201, response_model=WebhookCreated)
@returns_secret
async def create_webhook(body: WebhookIn, ctx: TeamCtx, services: ServicesDep) -> Response:
    """Register an endpoint for event kinds; the answer holds its signing secret, shown
    only this once (see teamboard.webhooks.signing for the signature scheme)."""
    webhook = await service.create_webhook(ctx, services.settings, body)
    return ORJSONResponse(webhook, status_code=201)


@router.get("", response_model=WebhookList)
async def list_webhooks(
    ctx: TeamCtx, services: ServicesDep, limit: Limit = DEFAULT_LIMIT, cursor: str | None = None
) -> Response:
    return ORJSONResponse(await service.list_webhooks(ctx, services.cursors, limit, cursor))


@router.get("/{webhook_id}", response_model=WebhookOut)
async def get_webhook(webhook_id: UUID, ctx: TeamCtx) -> Response:
    return versioned(await service.get_webhook(ctx, webhook_id))


@router.patch("/{webhook_id}", response_model=WebhookOut)
async def update_webhook(
    webhook_id: UUID,
    body: WebhookPatch,
    ctx: TeamCtx,
    services: ServicesDep,
    if_match: IfMatch = None,
) -> Response:
    """Change the URL, kinds or description; ``enabled`` pauses or resumes deliveries. With
    ``If-Match`` (the webhook's ``ETag``) a stale version is ``412``."""
    settings = services.settings
    return versioned(await service.update_webhook(ctx, settings, webhook_id, body, if_match))


@router.delete("/{webhook_id}", status_code=204)
async def delete_webhook(webhook_id: UUID, ctx: TeamCtx) -> Response:
    await service.delete_webhook(ctx, webhook_id)
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", response_model=DeliveryList)
async def list_deliveries(
    webhook_id: UUID,
    ctx: TeamCtx,
    services: ServicesDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Response:
    """The delivery log, newest first, with each delivery's last response code."""
    page = await service.list_deliveries(ctx, services.cursors, webhook_id, limit, cursor)
    return ORJSONResponse(page)


@router.get("/{webhook_id}/deliveries/{delivery_id}", response_model=DeliveryDetail)
async def get_delivery(webhook_id: UUID, delivery_id: UUID, ctx: TeamCtx) -> Response:
    """One delivery with every attempt (response code or error, duration)."""
    return ORJSONResponse(await service.get_delivery(ctx, webhook_id, delivery_id))


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver", status_code=202, response_model=DeliveryOut
)
async def redeliver(webhook_id: UUID, delivery_id: UUID, ctx: TeamCtx) -> Response:
    """Send the delivery's event again, as a new delivery (202: queued)."""
    return ORJSONResponse(await service.redeliver(ctx, webhook_id, delivery_id), status_code=202)
