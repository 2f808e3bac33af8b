"""SQL for the webhook routes (app role: Row Level Security shows webhooks and their
delivery log to team admins only; the secret's ciphertext is never selected here)."""

from __future__ import annotations

from typing import Any, LiteralString
from uuid import UUID

from teamboard.db import Tx
from teamboard.kit.pagination import id_page_sql

_WEBHOOK: LiteralString = (
    "select id, url, kinds, description, enabled, disabled_reason, consecutive_failures,"
    " created_by, created_at, updated_at, version from webhook"
)
_DELIVERY: LiteralString = (
    "d.id, d.webhook_id, d.event_id, d.event_kind, d.event_occurred_at, d.redelivery_of,"
    " d.status, d.attempts, d.next_attempt_at, d.last_status_code, d.last_error,"
    " d.completed_at, d.created_at"
)


async def count_webhooks(tx: Tx) -> int:
    return int(await tx.fetch_value("select count(*) from webhook"))


async def insert_webhook(
    tx: Tx,
    webhook_id: UUID,
    url: str,
    kinds: list[str],
    description: str,
    secret_ciphertext: bytes,
    created_by: UUID,
) -> None:
    await tx.execute(
        "insert into webhook (id, url, kinds, description, secret_ciphertext, created_by)"
        " values (%s, %s, %s::text[], %s, %s, %s)",
        (webhook_id, url, kinds, description, secret_ciphertext, created_by),
    )


async def get_webhook(tx: Tx, webhook_id: UUID) -> dict[str, Any] | None:
    return await tx.fetch_one(_WEBHOOK + " where id = %s", (webhook_id,))


async def list_webhooks(tx: Tx, limit: int, after: UUID | None) -> list[dict[str, Any]]:
    sql, params = id_page_sql(_WEBHOOK, [], "id", after, limit, {})
    return await tx.fetch_all(sql, params)


async def update_webhook(
    tx: Tx, webhook_id: UUID, changes: dict[str, Any], version: int | None
) -> bool:
    """Apply the given fields, to ``version`` only when given; ``enabled`` also sets or
    clears the reason and the failure count (re-enabling forgets past failures)."""
    row = await tx.fetch_one(
        "update webhook set"
        " url = coalesce(%(url)s, url),"
        " kinds = coalesce(%(kinds)s::text[], kinds),"
        " description = coalesce(%(description)s, description),"
        " enabled = coalesce(%(enabled)s, enabled),"
        " disabled_reason = case when %(enabled)s then null"
        "  when not %(enabled)s then 'disabled_by_admin' else disabled_reason end,"
        " consecutive_failures = case when %(enabled)s then 0 else consecutive_failures end"
        " where id = %(id)s and (%(version)s::integer is null or version = %(version)s)"
        " returning id",
        {
            "id": webhook_id,
            "url": changes.get("url"),
            "kinds": changes.get("kinds"),
            "description": changes.get("description"),
            "enabled": changes.get("enabled"),
            "version": version,
        },
    )
    return row is not None


async def delete_webhook(tx: Tx, webhook_id: UUID) -> bool:
    row = await tx.fetch_one("delete from webhook where id = %s returning id", (webhook_id,))
    return row is not None


async def list_deliveries(
    tx: Tx, webhook_id: UUID, limit: int, after: UUID | None
) -> list[dict[str, Any]]:
    """Newest first (ids are UUIDv7)."""
    return await tx.fetch_all(*deliveries_query(webhook_id, after, limit))


def deliveries_query(
    webhook_id: UUID, after: UUID | None, limit: int
) -> tuple[str, dict[str, Any]]:
    """The statement of :func:`list_deliveries` and its parameters (public so that its
    plan can be checked): a webhook's deliveries can be many, and a generic plan must start
    the index at the cursor (see ``id_page_sql``)."""
    return id_page_sql(
        f"select {_DELIVERY} from webhook_delivery d",
        ["d.webhook_id = %(webhook)s"],
        "d.id",
        after,
        limit,
        {"webhook": webhook_id},
        descending=True,
    )


async def get_delivery(tx: Tx, webhook_id: UUID, delivery_id: UUID) -> dict[str, Any] | None:
    """The delivery with its attempts, oldest first (at most WEBHOOK_MAX_ATTEMPTS)."""
    return await tx.fetch_one(
        "select " + _DELIVERY + ", coalesce((select json_agg(json_build_object("
        " 'id', a.id, 'status_code', a.status_code, 'error', a.error,"
        " 'duration_ms', a.duration_ms, 'created_at', a.created_at) order by a.id)"
        " from webhook_attempt a where a.delivery_id = d.id), '[]') as attempt_log"
        " from webhook_delivery d where d.webhook_id = %s and d.id = %s",
        (webhook_id, delivery_id),
    )


async def insert_redelivery(
    tx: Tx, delivery_id: UUID, webhook_id: UUID, original_id: UUID
) -> dict[str, Any] | None:
    """A new pending delivery of the original's event, due now."""
    return await tx.fetch_one(
        "with d as (insert into webhook_delivery"
        " (id, webhook_id, event_id, event_occurred_at, event_kind, redelivery_of)"
        " select %s, o.webhook_id, o.event_id, o.event_occurred_at, o.event_kind, o.id"
        " from webhook_delivery o where o.webhook_id = %s and o.id = %s"
        " returning *) select " + _DELIVERY + " from d",
        (delivery_id, webhook_id, original_id),
    )
