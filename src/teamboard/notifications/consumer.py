"""The ``notifications`` consumer of the event log (run by ``teamboard worker``).

Each event that notifies (``notifications.service.KINDS``) is handled in its own
transaction on the **app role**, with the event's actor and team as the context: Row Level
Security then checks every notification exactly as for a request of the actor (they must
still see the task, recipients must see it too). A failure caused by one event (a payload
this code cannot read, a refusal) is logged and that event skipped, so it cannot stall the
log; an unavailable database fails the batch, which the runner retries.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from teamboard.db import DATABASE_UNAVAILABLE, Database, Tx
from teamboard.events.log import LoggedEvent
from teamboard.notifications import service

logger = logging.getLogger("teamboard.notifications.consumer")


class NotificationsConsumer:
    name = "notifications"

    def __init__(self, db: Database) -> None:
        self._db = db  # the app role

    async def handle(self, events: Sequence[LoggedEvent], tx: Tx) -> None:
        for event in events:
            if event.kind not in service.KINDS or event.actor_id is None:
                continue
            try:
                async with self._db.transaction(
                    user_id=event.actor_id, team_id=event.team_id
                ) as app_tx:
                    await service.notify_for_event(app_tx, event)
            except DATABASE_UNAVAILABLE:
                raise
            except Exception:
                logger.exception("notifications: event %s (%s) skipped", event.id, event.kind)
