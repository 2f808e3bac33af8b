"""Appending to the event log, in the transaction of the mutation it records."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from teamboard.db import Tx
from teamboard.kit.ids import new_id


async def append(
    tx: Tx,
    kind: str,
    *,
    subject_id: UUID | None,
    project_id: UUID | None = None,
    payload: dict[str, Any] | None = None,
) -> None:
    """Append one event row for the context team and actor; it commits with the mutation,
    and a failure fails the mutation."""
    await tx.execute(
        "insert into event (team_id, id, actor_id, kind, subject_id, project_id, payload)"
        " values (%s, %s, %s, %s, %s, %s, %s)",
        (tx.team_id, new_id(), tx.user_id, kind, subject_id, project_id, payload or {}),
    )
