"""Appending to the event log, in the transaction of the mutation it records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from teamboard.db import Tx
from teamboard.kit.ids import new_id
from teamboard.kit.responses import dumps


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


async def append_each(
    tx: Tx, kind: str, subjects: Sequence[tuple[UUID, dict[str, Any]]], *, project_id: UUID
) -> None:
    """One event per ``(subject_id, payload)``, in one statement: a change made to many rows
    at once (the tasks of a removed status) is recorded for each of them, as if each had
    been made alone."""
    if not subjects:
        return
    await tx.execute(
        "insert into event (team_id, id, actor_id, kind, subject_id, project_id, payload)"
        " select %(team)s, e.id, %(actor)s, %(kind)s, e.subject, %(project)s, e.payload::jsonb"
        " from unnest(%(ids)s::uuid[], %(subjects)s::uuid[], %(payloads)s::text[])"
        " as e (id, subject, payload)",
        {
            "team": tx.team_id,
            "actor": tx.user_id,
            "kind": kind,
            "project": project_id,
            "ids": [new_id() for _ in subjects],
            "subjects": [subject for subject, _ in subjects],
            "payloads": [dumps(payload).decode() for _, payload in subjects],
        },
    )
