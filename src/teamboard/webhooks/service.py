"""Webhook rules: team admins (and admin-scoped API keys) register HTTPS endpoints for
event kinds, read the delivery log and redeliver by hand.

* The URL is checked when it is set (form, and every address its host resolves to must be
  public or in ``WEBHOOK_ALLOWED_NETWORKS``: 422 otherwise) and again at every delivery,
  since DNS answers change (``teamboard.webhooks.ssrf``).
* The signing secret is generated here, shown once, and stored encrypted (AES-GCM, key
  derived from SECRET_KEY, bound to the webhook's row): the worker must read it back to
  sign, so it cannot be hashed.
* A webhook delivers the events its creator may see (checked at each delivery) while they
  remain an admin; at most ``MAX_WEBHOOKS`` per team.
* Changes append ``webhook.created|updated|deleted`` events, without the URL (the log is
  readable by every member, and URLs may embed tokens).
"""

from __future__ import annotations

import secrets
from typing import Any
from uuid import UUID

from teamboard.config import Settings
from teamboard.deps import TeamContext
from teamboard.errors import Conflict, NotFound, Unprocessable
from teamboard.events.repository import append
from teamboard.kit.crypto import SecretBox
from teamboard.kit.etag import changed_meanwhile, check_if_match
from teamboard.kit.ids import new_id
from teamboard.kit.pagination import CursorCodec
from teamboard.webhooks import repository
from teamboard.webhooks.delivery import guard_for, secret_binding
from teamboard.webhooks.schemas import WebhookIn, WebhookPatch
from teamboard.webhooks.ssrf import RefusedUrl

MAX_WEBHOOKS = 20


async def _checked_url(settings: Settings, url: str) -> str:
    try:
        await guard_for(settings).resolve(url)
    except RefusedUrl as exc:
        raise Unprocessable(str(exc), code=exc.code) from exc
    return url


async def _get(ctx: TeamContext, webhook_id: UUID) -> dict[str, Any]:
    webhook = await repository.get_webhook(ctx.tx, webhook_id)
    if webhook is None:
        raise NotFound()
    return webhook


async def create_webhook(ctx: TeamContext, settings: Settings, body: WebhookIn) -> dict[str, Any]:
    await ctx.require("admin")
    url = await _checked_url(settings, body.url)
    if await repository.count_webhooks(ctx.tx) >= MAX_WEBHOOKS:
        raise Conflict(f"A team has at most {MAX_WEBHOOKS} webhooks", code="too_many_webhooks")
    webhook_id = new_id()
    secret = "whsec_" + secrets.token_urlsafe(32)
    sealed = SecretBox(settings.derived_key("webhook-secret")).seal(
        secret, secret_binding(ctx.team_id, webhook_id)
    )
    kinds = list(dict.fromkeys(body.kinds))
    await repository.insert_webhook(
        ctx.tx, webhook_id, url, kinds, body.description, sealed, ctx.user_id
    )
    await append(ctx.tx, "webhook.created", subject_id=webhook_id, payload={"kinds": kinds})
    return {**await _get(ctx, webhook_id), "secret": secret}


async def get_webhook(ctx: TeamContext, webhook_id: UUID) -> dict[str, Any]:
    await ctx.require("admin")
    return await _get(ctx, webhook_id)


async def list_webhooks(
    ctx: TeamContext, cursors: CursorCodec, limit: int, cursor: str | None
) -> dict[str, Any]:
    await ctx.require("admin")
    return await cursors.id_page(
        f"webhooks:{ctx.team_id}",
        limit,
        cursor,
        lambda n, after: repository.list_webhooks(ctx.tx, n, after),
    )


async def update_webhook(
    ctx: TeamContext,
    settings: Settings,
    webhook_id: UUID,
    body: WebhookPatch,
    if_match: str | None = None,
) -> dict[str, Any]:
    """``if_match`` (the ``If-Match`` header) must match the version."""
    await ctx.require("admin")
    version = None  # the webhook is read first only when a precondition needs its version
    if if_match is not None:
        version = check_if_match(if_match, (await _get(ctx, webhook_id))["version"])
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    if "url" in changes:
        await _checked_url(settings, changes["url"])
    if "kinds" in changes:
        changes["kinds"] = list(dict.fromkeys(changes["kinds"]))
    if not await repository.update_webhook(ctx.tx, webhook_id, changes, version):
        raise changed_meanwhile() if version is not None else NotFound()
    changes.pop("url", None)
    changes.pop("description", None)
    await append(ctx.tx, "webhook.updated", subject_id=webhook_id, payload=changes)
    return await _get(ctx, webhook_id)


async def delete_webhook(ctx: TeamContext, webhook_id: UUID) -> None:
    await ctx.require("admin")
    if not await repository.delete_webhook(ctx.tx, webhook_id):
        raise NotFound()
    await append(ctx.tx, "webhook.deleted", subject_id=webhook_id)


async def list_deliveries(
    ctx: TeamContext, cursors: CursorCodec, webhook_id: UUID, limit: int, cursor: str | None
) -> dict[str, Any]:
    await ctx.require("admin")
    await _get(ctx, webhook_id)
    return await cursors.id_page(
        f"webhook-deliveries:{ctx.team_id}:{webhook_id}",
        limit,
        cursor,
        lambda n, after: repository.list_deliveries(ctx.tx, webhook_id, n, after),
    )


async def get_delivery(ctx: TeamContext, webhook_id: UUID, delivery_id: UUID) -> dict[str, Any]:
    await ctx.require("admin")
    delivery = await repository.get_delivery(ctx.tx, webhook_id, delivery_id)
    if delivery is None:
        raise NotFound()
    return delivery


async def redeliver(ctx: TeamContext, webhook_id: UUID, delivery_id: UUID) -> dict[str, Any]:
    """Queue the delivery's event again, as a new delivery due now (the webhook must be
    enabled: 409 ``webhook_disabled`` otherwise)."""
    await ctx.require("admin")
    webhook = await _get(ctx, webhook_id)
    if not webhook["enabled"]:
        raise Conflict("Enable the webhook before redelivering", code="webhook_disabled")
    delivery = await repository.insert_redelivery(ctx.tx, new_id(), webhook_id, delivery_id)
    if delivery is None:
        raise NotFound()
    return delivery
