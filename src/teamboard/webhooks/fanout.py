"""The ``webhooks`` consumer of the event log: one delivery per event and matching webhook.

It runs in the worker role's offset transaction (``teamboard.worker.consumers``), so the
deliveries of a batch are queued exactly when the offset moves past it; the unique key on
(webhook, event) makes a repeated batch queue nothing twice. Whether the webhook's creator
may see the event is decided when it is sent (``teamboard.webhooks.delivery``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from uuid import UUID

from teamboard.db import Tx
from teamboard.events.log import LoggedEvent
from teamboard.kit.ids import new_id


def matches(patterns: Sequence[str], kind: str) -> bool:
    """``*`` matches every kind, ``task.*`` every kind in ``task.``, others exactly."""
    return any(
        pattern == "*"
        or pattern == kind
        or (pattern.endswith(".*") and kind.startswith(pattern[:-1]))
        for pattern in patterns
    )


class WebhooksConsumer:
    name = "webhooks"

    async def handle(self, events: Sequence[LoggedEvent], tx: Tx) -> None:
        hooks = await tx.fetch_all(
            "select team_id, id, kinds from webhook where enabled and team_id = any(%s::uuid[])",
            (list({event.team_id for event in events}),),
        )
        if not hooks:
            return
        by_team: dict[UUID, list[dict[str, object]]] = defaultdict(list)
        for hook in hooks:
            by_team[hook["team_id"]].append(hook)
        queued = [
            (event, hook["id"])
            for event in events
            for hook in by_team[event.team_id]
            if matches(hook["kinds"], event.kind)  # type: ignore[arg-type]
        ]
        if not queued:
            return
        await tx.execute(
            "insert into webhook_delivery"
            " (team_id, id, webhook_id, event_id, event_occurred_at, event_kind)"
            " select * from unnest(%s::uuid[], %s::uuid[], %s::uuid[], %s::uuid[],"
            " %s::timestamptz[], %s::text[])"
            " on conflict (team_id, webhook_id, event_id) where redelivery_of is null do nothing",
            (
                [event.team_id for event, _ in queued],
                [new_id() for _ in queued],
                [webhook for _, webhook in queued],
                [event.id for event, _ in queued],
                [event.occurred_at for event, _ in queued],
                [event.kind for event, _ in queued],
            ),
        )
