"""Reading the event log in commit-safe order.

An event's **offset** is ``(tx_id, seq)``: the id of the transaction that appended it
(``pg_current_xact_id()``, an ``xid8``) and its place in the sequence ``event_seq``. Offsets
are totally ordered, but not in commit order: a transaction that took its id earlier can
commit later. So a reader never goes past ``xmin``, the oldest transaction id still running
in its snapshot (``pg_snapshot_xmin(pg_current_snapshot())``): every transaction below it
has ended, committed or not, so the events with ``tx_id < xmin`` are final, and no event can
appear before an offset that was already passed. Events at or above ``xmin`` that are
already visible are *pending*: they are read again once the older transactions end. A long
write transaction anywhere on the server therefore delays readers (never makes them skip).

The same reading serves the consumers of ``teamboard worker`` (every team, through the
worker role) and the realtime feed (one team, with the subscriber's context, so Row Level
Security decides what they may read).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString
from uuid import UUID

from teamboard.db import Tx
from teamboard.kit.pagination import limit_clause

_OFFSET = re.compile(r"^(\d{1,19})-(\d{1,19})$")
_MAX = 2**63 - 1


@dataclass(frozen=True, order=True)
class Offset:
    """A position in the log; the events *after* it are ``(tx_id, seq) > (self.tx_id,
    self.seq)``. Written ``"<tx_id>-<seq>"`` (the SSE ``id:``)."""

    tx_id: int
    seq: int

    def __str__(self) -> str:
        return f"{self.tx_id}-{self.seq}"

    @classmethod
    def parse(cls, text: str) -> Offset:
        """Raises ``ValueError`` on anything but an offset this server could have written."""
        match = _OFFSET.match(text.strip())
        if match is None:
            raise ValueError("not an event offset")
        tx_id, seq = int(match.group(1)), int(match.group(2))
        if tx_id > _MAX or seq > _MAX:
            raise ValueError("event offset out of range")
        return cls(tx_id, seq)


@dataclass(frozen=True)
class LoggedEvent:
    team_id: UUID
    id: UUID
    offset: Offset
    occurred_at: datetime
    actor_id: UUID | None
    kind: str
    subject_id: UUID | None
    project_id: UUID | None
    payload: dict[str, Any]

    def document(self) -> dict[str, Any]:
        """The event as delivered to clients (realtime feed, webhooks)."""
        return {
            "id": self.id,
            "offset": str(self.offset),
            "team_id": self.team_id,
            "kind": self.kind,
            "occurred_at": self.occurred_at,
            "actor_id": self.actor_id,
            "subject_id": self.subject_id,
            "project_id": self.project_id,
            "payload": self.payload,
        }


@dataclass(frozen=True)
class Page:
    """One read: the final events after the offset (in order), and what comes next.

    ``position`` is where the next read starts: after the last event returned when the
    limit cut the read short, else at ``xmin`` (every final event the reader may see was
    returned; those it may not see are passed for good). ``full``: the limit was reached,
    read again at once. ``pending_tx``: visible events wait for older transactions to end,
    the first of them until the snapshot xmin passes this transaction id.
    """

    events: list[LoggedEvent]
    position: Offset
    full: bool
    pending_tx: int | None

    @property
    def pending(self) -> bool:
        return self.pending_tx is not None


_COLUMNS = (
    "e.team_id, e.id, e.tx_id, e.seq, e.occurred_at, e.actor_id, e.kind, e.subject_id,"
    " e.project_id, e.payload"
)


def _read_sql(extra: str, limit: int, columns: str = "") -> str:
    """Events after ``%(tx)s, %(seq)s`` in offset order, at most ``limit``, with the
    snapshot's xmin on every row (and on one row of NULLs when there is no event). ``extra``
    adds conditions. The limit is in the text (see ``kit.pagination.limit_clause``): a
    reader's batch size is a setting, so there is one text per reader."""
    return (
        "select s.xmin" + columns + ", e.* from"
        " (select pg_snapshot_xmin(pg_current_snapshot()) as xmin) s"
        " left join lateral (select " + _COLUMNS + " from event e"
        " where (e.tx_id, e.seq) > (%(tx)s::xid8, %(seq)s::bigint)" + extra + ""
        f" order by e.tx_id, e.seq {limit_clause(limit, at_most=None)}) e on true"
    )


@functools.lru_cache(maxsize=8)
def all_teams_sql(limit: int) -> str:
    """Every team's events (the worker role: see the events migration)."""
    return _read_sql("", limit)


@functools.lru_cache(maxsize=8)
def team_sql(limit: int, *, since: bool) -> str:
    """One team's events as the context user may see them (RLS), with their role in the
    team (NULL once they are no longer a member), leaving out, with ``since``, those already
    committed in the snapshot ``%(since)s`` (see :func:`current_position`). The condition is
    in the text only when there is a snapshot, so that it is not evaluated for every event
    read once the reader is past the snapshot's horizon."""
    extra = " and e.team_id = %(team)s"
    if since:
        extra += " and not pg_visible_in_snapshot(e.tx_id, %(since)s::text::pg_snapshot)"
    return _read_sql(extra, limit, columns=", (select tb_current_member_role()) as member_role")


#: One event as the context user may see it (RLS), with their role in the team; one row,
#: of NULLs when the event is not visible.
EVENT_SQL: LiteralString = (
    "select (select tb_current_member_role()) as member_role, e.* from (select 1) one"
    " left join lateral (select " + _COLUMNS + " from event e where e.team_id = %(team)s"
    " and e.occurred_at = %(at)s and e.id = %(id)s) e on true"
)


def _event(row: dict[str, Any]) -> LoggedEvent:
    return LoggedEvent(
        team_id=row["team_id"],
        id=row["id"],
        offset=Offset(row["tx_id"], row["seq"]),
        occurred_at=row["occurred_at"],
        actor_id=row["actor_id"],
        kind=row["kind"],
        subject_id=row["subject_id"],
        project_id=row["project_id"],
        payload=row["payload"],
    )


def page(rows: list[dict[str, Any]], after: Offset, limit: int) -> Page:
    """Split the rows of a read into final events and the next position."""
    xmin = int(rows[0]["xmin"])
    final = [_event(row) for row in rows if row["id"] is not None and row["tx_id"] < xmin]
    waiting = [row["tx_id"] for row in rows if row["id"] is not None and row["tx_id"] >= xmin]
    full = len(final) == limit
    # Rows come in offset order, so unless the limit cut them short, every final event the
    # reader may see was returned, and the next read can start at xmin.
    position = final[-1].offset if full else max(after, Offset(xmin, 0))
    return Page(final, position, full, waiting[0] if waiting else None)


async def read_all_teams(tx: Tx, after: Offset, limit: int) -> Page:
    rows = await tx.fetch_all(all_teams_sql(limit), {"tx": after.tx_id, "seq": after.seq})
    return page(rows, after, limit)


async def read_team(
    tx: Tx, team_id: UUID, after: Offset, limit: int, since: Snapshot | None = None
) -> tuple[str | None, Page]:
    """The context user's role in the team (None: not a member) and the page of the team's
    events after ``after`` that they may see (and, with ``since``, that were not committed
    yet in that snapshot)."""
    params: dict[str, Any] = {"team": team_id, "tx": after.tx_id, "seq": after.seq}
    if since is not None:
        params["since"] = since.text
    rows = await tx.fetch_all(team_sql(limit, since=since is not None), params)
    return rows[0]["member_role"], page(rows, after, limit)


async def read_event(
    tx: Tx, team_id: UUID, occurred_at: datetime, event_id: UUID
) -> tuple[str | None, LoggedEvent | None]:
    """The context user's role in the team, and the event if they may see it."""
    row = await tx.fetch_one(EVENT_SQL, {"team": team_id, "at": occurred_at, "id": event_id})
    assert row is not None
    return row["member_role"], None if row["id"] is None else _event(row)


@dataclass(frozen=True)
class Snapshot:
    """A ``pg_snapshot`` (``xmin:xmax:xip,...``): which transactions had committed."""

    text: str

    @property
    def horizon(self) -> Offset:
        """Past this offset, every event is from a transaction that started later."""
        return Offset(int(self.text.split(":")[1]), 0)


async def xmin(tx: Tx) -> int:
    """The snapshot xmin now: events of transactions below it are final."""
    return int(await tx.fetch_value("select pg_snapshot_xmin(pg_current_snapshot())"))


async def current_position(tx: Tx) -> tuple[Offset, Snapshot]:
    """Where a reader starts "now": at the oldest transaction still running, leaving out
    (with the snapshot, until its horizon) the events already committed. It then gets
    exactly the events that commit from now on, whatever the commit order."""
    row = await tx.fetch_one(
        "select pg_snapshot_xmin(s) as xmin, s::text as snapshot from pg_current_snapshot() s"
    )
    assert row is not None
    return Offset(int(row["xmin"]), 0), Snapshot(row["snapshot"])
