"""Dashboards computed independently, with plain SQL over the event log (and the status and
time-entry tables), as the app role with a caller's context: the reference the rollups must
equal. Written from the definitions, not from the product's views."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

Row = dict[str, Any]

# Every workflow transition: the task, when, and the categories it leaves and enters.
TRANSITIONS = """
with tr as (
    select e.subject_id as task, e.occurred_at as at, e.kind,
           case e.kind when 'task.created' then e.payload ->> 'status_id'
                       when 'task.moved' then e.payload ->> 'to_status_id'
                       else e.payload #>> '{changes,status_id,to}' end as to_id,
           case e.kind when 'task.moved' then e.payload ->> 'from_status_id'
                       when 'task.updated' then e.payload #>> '{changes,status_id,from}' end
               as from_id
    from event e
    where e.team_id = %(team)s and e.kind in ('task.created', 'task.moved', 'task.updated')
)
select tr.task, tr.at, tr.kind, f.category as from_cat, t.category as to_cat
from tr
left join status t on t.id = tr.to_id::uuid
left join status f on f.id = tr.from_id::uuid
"""


@contextmanager
def as_caller(app_url: str, user: uuid.UUID, team: uuid.UUID) -> Iterator[psycopg.Connection[Row]]:
    """An app-role connection in a transaction with the caller's context."""
    with psycopg.connect(app_url, row_factory=dict_row) as conn:
        conn.execute(
            "select set_config('app.user_id', %s, true), set_config('app.team_id', %s, true)",
            (str(user), str(team)),
        )
        yield conn
        conn.rollback()


def _bounds(period: dict[str, Any]) -> dict[str, Any]:
    return {"tz": period["time_zone"], "d0": period["start"], "d1": period["end"]}


def events_by_day(
    conn: psycopg.Connection[Row], team: uuid.UUID, period: dict[str, Any]
) -> dict[tuple[str, str], int]:
    rows = conn.execute(
        "select (occurred_at at time zone %(tz)s)::date::text as day, kind, count(*) as n"
        " from event where team_id = %(team)s"
        " and (occurred_at at time zone %(tz)s)::date between %(d0)s and %(d1)s"
        " group by 1, 2",
        {"team": team, **_bounds(period)},
    ).fetchall()
    return {(r["day"], r["kind"]): r["n"] for r in rows}


def unique_actors(
    conn: psycopg.Connection[Row], team: uuid.UUID, period: dict[str, Any], kind_prefix: str = ""
) -> int:
    value = conn.execute(
        "select count(distinct case when kind like 'custom.%%' and payload ? 'actor'"
        "  then 'x:' || (payload ->> 'actor') else actor_id::text end) as n"
        " from event where team_id = %(team)s and kind like %(prefix)s"
        " and (occurred_at at time zone %(tz)s)::date between %(d0)s and %(d1)s",
        {"team": team, "prefix": kind_prefix + "%", **_bounds(period)},
    ).fetchone()
    assert value is not None
    return int(value["n"])


def transitions(conn: psycopg.Connection[Row], team: uuid.UUID) -> list[Row]:
    return conn.execute(TRANSITIONS + " order by tr.at", {"team": team}).fetchall()


def _local_day(at: datetime, tz: str) -> str:
    from zoneinfo import ZoneInfo

    return at.astimezone(ZoneInfo(tz)).date().isoformat()


def _completion(row: Row) -> bool:
    return bool(row["to_cat"] == "completed" and row["from_cat"] != "completed")


def tasks_by_day(rows: list[Row], period: dict[str, Any]) -> dict[str, dict[str, int]]:
    days: dict[str, dict[str, int]] = defaultdict(lambda: {"created": 0, "completed": 0})
    for row in rows:
        day = _local_day(row["at"], period["time_zone"])
        if not period["start"] <= day <= period["end"]:
            continue
        if row["kind"] == "task.created":
            days[day]["created"] += 1
        if _completion(row):
            days[day]["completed"] += 1
    return {day: counts for day, counts in days.items() if any(counts.values())}


def _instants(conn: psycopg.Connection[Row], period: dict[str, Any]) -> tuple[datetime, datetime]:
    row = conn.execute(
        "select %(d0)s::date::timestamp at time zone %(tz)s as lo,"
        " (%(d1)s::date + 1)::timestamp at time zone %(tz)s as hi",
        _bounds(period),
    ).fetchone()
    assert row is not None
    return row["lo"], row["hi"]


def _percentiles(values: list[float]) -> dict[str, Any]:
    """percentile_cont, as PostgreSQL computes it (linear interpolation)."""
    values = sorted(values)
    result: dict[str, Any] = {"count": len(values)}
    for name, q in (("p50", 0.5), ("p85", 0.85), ("p95", 0.95)):
        if not values:
            result[name] = None
            continue
        position = q * (len(values) - 1)
        low = int(position)
        high = min(low + 1, len(values) - 1)
        result[name] = values[low] + (values[high] - values[low]) * (position - low)
    return result


def durations(
    conn: psycopg.Connection[Row], rows: list[Row], period: dict[str, Any]
) -> dict[str, Any]:
    lo, hi = _instants(conn, period)
    created: dict[uuid.UUID, datetime] = {}
    started: dict[uuid.UUID, datetime] = {}
    for row in rows:
        if row["kind"] == "task.created":
            created.setdefault(row["task"], row["at"])
        if row["to_cat"] == "started":
            started[row["task"]] = min(row["at"], started.get(row["task"], row["at"]))
    done = [r for r in rows if _completion(r) and lo <= r["at"] < hi]
    lead = [
        (r["at"] - created[r["task"]]).total_seconds()
        for r in done
        if r["task"] in created and created[r["task"]] <= r["at"]
    ]
    cycle = [
        (r["at"] - started[r["task"]]).total_seconds()
        for r in done
        if r["task"] in started and started[r["task"]] <= r["at"]
    ]
    return {
        "completed": len(done),
        "lead_time": _percentiles(lead),
        "cycle_time": _percentiles(cycle),
    }


def throughput(
    conn: psycopg.Connection[Row], team: uuid.UUID, rows: list[Row], period: dict[str, Any]
) -> dict[str | None, int]:
    """Completions per assignee (the generated data never unassigns)."""
    lo, hi = _instants(conn, period)
    assigned: dict[uuid.UUID, set[str | None]] = defaultdict(set)
    for row in conn.execute(
        "select e.subject_id as task, u.value as user_id from event e,"
        " jsonb_array_elements_text(case e.kind"
        "  when 'task.created' then e.payload -> 'assignee_ids' else e.payload -> 'user_ids' end) u"
        " where e.team_id = %s and e.kind in ('task.created', 'task.assigned')",
        (team,),
    ):
        assigned[row["task"]].add(row["user_id"])
    counts: dict[str | None, int] = defaultdict(int)
    for row in rows:
        if _completion(row) and lo <= row["at"] < hi:
            for user in assigned.get(row["task"]) or {None}:
                counts[user] += 1
    return dict(counts)


def flow(
    conn: psycopg.Connection[Row], rows: list[Row], period: dict[str, Any], ends: list[str]
) -> dict[str, dict[str, int]]:
    """Tasks per category at the end of each given local day."""
    result = {}
    for end in ends:
        row = conn.execute(
            "select (%(day)s::date + 1)::timestamp at time zone %(tz)s as at",
            {"day": end, "tz": period["time_zone"]},
        ).fetchone()
        assert row is not None
        current: dict[uuid.UUID, str] = {}
        for transition in rows:
            if transition["at"] < row["at"] and transition["to_cat"] is not None:
                current[transition["task"]] = transition["to_cat"]
        counts = dict.fromkeys(("backlog", "unstarted", "started", "completed", "canceled"), 0)
        for category in current.values():
            counts[category] += 1
        result[end] = counts
    return result


def time_by_project(
    conn: psycopg.Connection[Row], team: uuid.UUID, period: dict[str, Any]
) -> dict[str, tuple[int, int]]:
    lo, hi = _instants(conn, period)
    rows = conn.execute(
        "select project_id::text as p, sum(extract(epoch from ended_at - started_at))::bigint as s,"
        " count(*) as n from time_entry where team_id = %s and ended_at is not null"
        " and started_at >= %s and started_at < %s group by 1",
        (team, lo, hi),
    ).fetchall()
    return {r["p"]: (r["s"], r["n"]) for r in rows}


def days_between(start: str, end: str) -> list[str]:
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
