"""The ``notifications`` consumer of the event log (run by ``teamboard worker``).

The events that notify (``notifications.service.KINDS``) of a batch are handled on the
**app role**, one transaction per team and actor with that actor and team as the context:
Row Level Security then checks every notification exactly as for a request of the actor
(they must still see the task, recipients must see it too). When such a transaction fails,
its events are tried again one by one, and an event that fails on its own (a payload this
code cannot read, a refusal) is logged and skipped, so that it cannot stall the log; an
unavailable database fails the batch, which the runner retries.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from uuid import UUID

from teamboard.db import DATABASE_UNAVAILABLE, Database, Tx
from teamboard.events.log import LoggedEvent
from teamboard.notifications import service

logger = logging.getLogger("teamboard.notifications.consumer")


class NotificationsConsumer:
    name = "notifications"

    def __init__(self, db: Database) -> None:
        self._db = db  # the app role

    async def handle(self, events: Sequence[LoggedEvent], tx: Tx) -> None:
        groups: dict[tuple[UUID, UUID], list[LoggedEvent]] = defaultdict(list)
        for event in events:
            if event.kind in service.KINDS and event.actor_id is not None:
                groups[(event.team_id, event.actor_id)].append(event)
        for group in groups.values():
            try:
                await self._notify(group)
            except DATABASE_UNAVAILABLE:
                raise
            except Exception:
                if len(group) == 1:
                    logger.exception("notifications: event %s skipped", group[0].id)
                    continue
                for event in group:  # find the culprit; the others still notify
                    try:
                        await self._notify([event])
                    except DATABASE_UNAVAILABLE:
                        raise
                    except Exception:
                        logger.exception("notifications: event %s skipped", event.id)

    async def _notify(self, events: Sequence[LoggedEvent]) -> None:
        """The events of one team and actor, in one transaction with their context."""
        first = events[0]
        async with self._db.transaction(user_id=first.actor_id, team_id=first.team_id) as tx:
            for event in events:
                await service.notify_for_event(tx, event)
