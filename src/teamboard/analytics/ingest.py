"""Custom events: batches of ``custom.*`` events appended to the event log.

A batch is written by one multi-row ``INSERT ... SELECT``: PostgreSQL refuses ``COPY FROM``
into a table with row level security for a role subject to it, and the app role is. The
validated batch travels as one JSON document that the statement unfolds
(``jsonb_to_recordset``), so nothing is encoded per event on the way; ids are UUIDv7 made by
the database. The insert policy still checks every row (the caller's team, the caller as
``actor_id``, visible projects). The batch is all or nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from teamboard.analytics.schemas import CustomEventBatch
from teamboard.db import Tx
from teamboard.deps import TeamContext
from teamboard.errors import NotFound, Unprocessable

#: How far back a client may date an event (offline clients flush late).
MAX_AGE = timedelta(days=30)
#: Tolerated clock difference between a client and the server.
CLOCK_SKEW = timedelta(minutes=5)

INSERT_SQL = (
    "insert into event (team_id, id, occurred_at, actor_id, kind, project_id, payload)"
    " select %(team)s, tb_uuid7(), coalesce(x.occurred_at, now()), %(actor)s, x.kind,"
    "  x.project_id, case when x.actor is null then jsonb_build_object('properties', x.properties)"
    "   else jsonb_build_object('actor', x.actor, 'properties', x.properties) end"
    " from jsonb_to_recordset(%(events)s::text::jsonb -> 'events') as x ("
    "  kind text, occurred_at timestamptz, actor text, project_id uuid, properties jsonb)"
)


def _check_times(batch: CustomEventBatch, now: datetime) -> None:
    late = [
        index
        for index, event in enumerate(batch.events)
        if event.occurred_at is not None
        and not now - MAX_AGE <= event.occurred_at <= now + CLOCK_SKEW
    ]
    if late:
        raise Unprocessable(
            "occurred_at must be within the last 30 days (and not in the future)",
            code="invalid_occurred_at",
            extra={"indexes": late[:100]},
        )


async def _check_projects(tx: Tx, batch: CustomEventBatch) -> None:
    """Every named project exists and is visible to the caller (else 404, like any foreign
    or missing id)."""
    wanted = {event.project_id for event in batch.events if event.project_id is not None}
    if not wanted:
        return
    found = await tx.fetch_value(
        "select count(*) from project where id = any(%s::uuid[]) and deleted_at is null",
        (list(wanted),),
    )
    if found != len(wanted):
        raise NotFound()


async def append_batch(ctx: TeamContext, batch: CustomEventBatch) -> int:
    """Append the batch for the caller (members and above; guests only read)."""
    await ctx.require("member")
    _check_times(batch, datetime.now(UTC))
    await _check_projects(ctx.tx, batch)
    await ctx.tx.execute(
        INSERT_SQL,
        {"team": ctx.team_id, "actor": ctx.user_id, "events": batch.model_dump_json()},
    )
    return len(batch.events)
