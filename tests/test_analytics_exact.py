"""Dashboards are exact: on generated data, through the API (rollups plus tail), they equal an
independent raw-SQL computation and the same dashboard computed from raw events, for every
kind of caller, period, bucket and filter; across the rollup watermark, after events whose
transactions commit late, and after a change of the team's time zone."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from teamboard.analytics.period import DashboardQuery, Filters, Span
from teamboard.config import Settings
from teamboard.ops.database import DatabaseUrls
from tests import analytics_raw as raw
from tests.analytics import (
    API,
    DASHBOARDS,
    Caller,
    GeneratedTeam,
    dashboard,
    fold_past,
    linked_task,
    load,
    raw_dashboard,
    refresh,
)

pytestmark = pytest.mark.asyncio
Owner = psycopg.Connection[dict[str, Any]]


@pytest.fixture(scope="module")
def dataset(owner: Owner, db_urls: DatabaseUrls, settings: Settings) -> list[GeneratedTeam]:
    """Four teams (time zones UTC, Paris, New York, Kolkata), about 8,000 events, folded."""
    teams = load(owner, db_urls.owner, settings, events=8000, teams=4, seed=11)
    refresh(owner)
    return teams


def _callers(team: GeneratedTeam) -> list[Caller]:
    return [c for c in (team.owner, team.member, team.guest) if c is not None]


async def _check_against_sql(
    client: httpx.AsyncClient, app_url: str, team: GeneratedTeam, who: Caller
) -> None:
    """The API's answers equal plain SQL over the events visible to ``who``."""
    events = await dashboard(client, who, team.id, "events", window="90d")
    tasks = await dashboard(client, who, team.id, "tasks", window="365d")
    actors = await dashboard(client, who, team.id, "actors", window="30d", kind="custom.*")
    cycle = await dashboard(client, who, team.id, "cycle-time", window="365d")
    done = await dashboard(client, who, team.id, "throughput", window="365d")
    cfd = await dashboard(client, who, team.id, "flow", window="30d", bucket="week")
    spent = await dashboard(client, who, team.id, "time", window="365d")
    with raw.as_caller(app_url, who.id, team.id) as conn:
        api_events = {
            (b["bucket"], kind): n for b in events["series"] for kind, n in b["counts"].items()
        }
        assert api_events == raw.events_by_day(conn, team.id, events["period"])
        assert sum(api_events.values()) == events["total"]
        rows = raw.transitions(conn, team.id)
        api_tasks = {
            b["bucket"]: {"created": b["created"], "completed": b["completed"]}
            for b in tasks["series"]
            if b["created"] or b["completed"]
        }
        assert api_tasks == raw.tasks_by_day(rows, tasks["period"])
        assert actors["unique_actors"] == raw.unique_actors(
            conn, team.id, actors["period"], "custom."
        )
        _assert_completions(conn, team, rows, cycle, done)
        ends = [b["as_of"] for b in cfd["series"]]
        expected_flow = raw.flow(conn, rows, cfd["period"], ends)
        for bucket in cfd["series"]:
            counts = {k: bucket[k] for k in expected_flow[bucket["as_of"]]}
            assert counts == expected_flow[bucket["as_of"]], bucket["as_of"]
        groups = {g["key"]: (g["seconds"], g["entries"]) for g in spent["groups"]}
        assert groups == raw.time_by_project(conn, team.id, spent["period"])
    assert events["total"] > 0
    assert tasks["created"] + tasks["completed"] > 0


def _assert_completions(
    conn: psycopg.Connection[Any],
    team: GeneratedTeam,
    rows: list[dict[str, Any]],
    cycle: dict[str, Any],
    done: dict[str, Any],
) -> None:
    """The cycle-time and throughput answers equal plain SQL over the caller's events."""
    expected = raw.durations(conn, rows, cycle["period"])
    assert cycle["completed"] == expected["completed"]
    for name in ("lead_time", "cycle_time"):
        assert cycle[name]["count"] == expected[name]["count"]
        for p in ("p50", "p85", "p95"):
            assert cycle[name][p] == pytest.approx(expected[name][p], abs=1e-3)
    by_assignee = {r["assignee_id"]: r["completed"] for r in done["by_assignee"]}
    assert by_assignee == raw.throughput(conn, team.id, rows, done["period"])


async def test_dashboards_equal_raw_sql_for_every_caller(
    client: httpx.AsyncClient, db_urls: DatabaseUrls, dataset: list[GeneratedTeam]
) -> None:
    for team in dataset:
        for who in _callers(team):
            await _check_against_sql(client, db_urls.app, team, who)


QUERIES: list[dict[str, Any]] = [
    {"window": "7d"},
    {"window": "30d", "bucket": "week"},
    {"window": "90d", "bucket": "month"},
    {"window": "365d", "bucket": "week"},
    {"start": "2025-02-10", "end": "2025-06-30", "bucket": "month"},
]


def _dashboard_query(params: dict[str, Any], filters: Filters) -> DashboardQuery:
    span = (
        Span(days=int(params["window"][:-1]))
        if "window" in params
        else Span(
            start=datetime.fromisoformat(params["start"]).date(),
            end=datetime.fromisoformat(params["end"]).date(),
        )
    )
    return DashboardQuery(span, params.get("bucket", "day"), filters)


#: The filters each dashboard takes.
ACCEPTED = {
    "events": {"projects", "kinds"},
    "actors": {"projects", "kinds"},
    "tasks": {"projects", "assignees", "labels"},
    "throughput": {"projects", "assignees", "labels"},
    "cycle-time": {"projects", "assignees", "labels"},
    "flow": {"projects"},
    "time": {"projects", "labels"},
}


def _accepted(name: str, filters: Filters) -> Filters:
    return Filters(**{k: v for k, v in filters.__dict__.items() if k in ACCEPTED[name]})


def _filter_params(filters: Filters) -> dict[str, Any]:
    return {
        "project_id": [str(p) for p in filters.projects],
        "kind": list(filters.kinds),
        "assignee_id": [str(a) for a in filters.assignees],
        "label_id": [str(label) for label in filters.labels],
    }


async def _assert_rollups_equal_raw(
    client: httpx.AsyncClient,
    app: Any,
    team: GeneratedTeam,
    who: Caller,
    filters: Filters,
    queries: list[dict[str, Any]] = QUERIES,
) -> None:
    services = app.state.services
    for params in queries:
        for name in DASHBOARDS:
            accepted = _accepted(name, filters)
            query = {**params, **_filter_params(accepted)}
            if name in ("throughput", "cycle-time"):
                query.pop("bucket", None)
            api = await dashboard(client, who, team.id, name, **query)
            expected = await raw_dashboard(
                services, who, team.id, name, _dashboard_query(query, accepted)
            )
            assert api == expected, (name, params, filters)


def _filters(owner: Owner, team: GeneratedTeam) -> list[Filters]:
    """No filter; a project and a kind prefix; an assignee; a label and a project."""
    row = linked_task(owner, team.id)
    return [
        Filters(),
        Filters(projects=(row["project_id"],), kinds=("task.*", "custom.page_view")),
        Filters(assignees=(uuid.UUID(row["assignee"]),)),
        Filters(labels=(uuid.UUID(row["label"]),), projects=(row["project_id"],)),
    ]


async def test_rollups_equal_raw_events_for_periods_buckets_and_filters(
    client: httpx.AsyncClient, app: Any, owner: Owner, dataset: list[GeneratedTeam]
) -> None:
    team = dataset[3]  # Asia/Kolkata: days do not start on a UTC hour
    for filters in _filters(owner, team):
        await _assert_rollups_equal_raw(client, app, team, team.owner, filters)
    if team.guest is not None:
        await _assert_rollups_equal_raw(client, app, team, team.guest, Filters(), QUERIES[:2])


def _move(conn: Owner, owner: Owner, team: GeneratedTeam, target: str, skip: int = 0) -> int:
    """Move an open task to a status of the ``target`` category, as the tasks API does (the
    row and its task.moved event, in ``conn``'s transaction); returns that transaction's id."""
    row = owner.execute(
        "select t.id, t.project_id, t.status_id, s2.id as target, t.created_by from task t"
        " join status s on s.id = t.status_id"
        " join status s2 on s2.project_id = t.project_id and s2.category = %s"
        " where t.team_id = %s and s.category in ('backlog', 'unstarted')"
        " order by t.id offset %s limit 1",
        (target, team.id, skip),
    ).fetchone()
    assert row is not None
    conn.execute("update task set status_id = %s where id = %s", (row["target"], row["id"]))
    payload = {"from_status_id": str(row["status_id"]), "to_status_id": str(row["target"])}
    conn.execute(
        "insert into event (team_id, id, actor_id, kind, subject_id, project_id, payload)"
        " values (%s, %s, %s, 'task.moved', %s, %s, %s)",
        (team.id, uuid.uuid4(), row["created_by"], row["id"], row["project_id"], Jsonb(payload)),
    )
    xid = conn.execute("select pg_current_xact_id()::text::bigint as x").fetchone()
    assert xid is not None
    return int(xid["x"])


async def _post_custom(
    client: httpx.AsyncClient, team: GeneratedTeam, events: list[dict[str, Any]]
) -> None:
    response = await client.post(
        f"{API}/teams/{team.id}/events", json={"events": events}, headers=team.owner.headers
    )
    assert response.status_code == 201, response.text


async def test_exact_across_the_watermark_and_after_late_commits(
    client: httpx.AsyncClient,
    app: Any,
    owner: Owner,
    db_urls: DatabaseUrls,
    dataset: list[GeneratedTeam],
) -> None:
    team = dataset[1]
    check = [{"window": "30d"}, {"window": "365d", "bucket": "month"}]
    # Events after the watermark: custom events (some dated back) and a completion.
    back = (datetime.now(UTC) - timedelta(days=12)).isoformat()
    await _post_custom(
        client,
        team,
        [{"kind": "custom.signup", "actor": "late-visitor", "occurred_at": back}]
        + [{"kind": "custom.page_view", "actor": f"v{i}"} for i in range(5)],
    )
    _move(owner, owner, team, "completed")
    await _check_against_sql(client, db_urls.app, team, team.owner)
    await _assert_rollups_equal_raw(client, app, team, team.owner, Filters(), check)

    # A transaction that wrote an event before a later one committed, and commits after a
    # fold: the fold must not skip it.
    with (
        psycopg.connect(db_urls.owner, row_factory=dict_row) as slow,
        psycopg.connect(db_urls.owner, row_factory=dict_row) as fast,
    ):
        slow_xid = _move(slow, owner, team, "started")  # stays open
        fast_xid = _move(fast, owner, team, "canceled", skip=1)
        fast.commit()
        assert fast_xid > slow_xid
        folded = refresh(owner)
        # The open transaction holds the watermark back: the later, committed event stays
        # in the tail instead of being folded past the slow one.
        assert folded["watermark"] <= slow_xid
        await _check_against_sql(client, db_urls.app, team, team.owner)
        slow.commit()
    # The slow event is now visible, above the watermark: in the tail, then folded.
    await _check_against_sql(client, db_urls.app, team, team.owner)
    await _assert_rollups_equal_raw(client, app, team, team.owner, Filters(), check)
    fold_past(owner, slow_xid)
    await _check_against_sql(client, db_urls.app, team, team.owner)
    await _assert_rollups_equal_raw(client, app, team, team.owner, Filters(), check)
    # Nothing was counted twice: the rollups hold exactly the team's events.
    totals = owner.execute(
        "select (select sum(value) from analytics_daily where team_id = %(t)s"
        "  and metric = 'events') as folded,"
        " (select count(*) from event where team_id = %(t)s) as events",
        {"t": team.id},
    ).fetchone()
    assert totals is not None
    assert totals["folded"] == totals["events"]


async def test_time_zone_change_rebuckets_and_stays_exact(
    client: httpx.AsyncClient,
    app: Any,
    owner: Owner,
    db_urls: DatabaseUrls,
    dataset: list[GeneratedTeam],
) -> None:
    team = dataset[2]
    response = await client.patch(
        f"{API}/teams/{team.id}", json={"time_zone": "Pacific/Chatham"}, headers=team.owner.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["time_zone"] == "Pacific/Chatham"
    moved = dataclasses.replace(team, time_zone="Pacific/Chatham")
    # Not folded yet: the rollups are in the old zone, so the dashboards read raw events.
    await _check_against_sql(client, db_urls.app, moved, team.owner)
    changed = owner.execute(
        "select max(tx_id::text::bigint) as x from event where team_id = %s"
        " and kind = 'team.updated'",
        (team.id,),
    ).fetchone()
    assert changed is not None
    fold_past(owner, changed["x"])
    state = owner.execute(
        "select time_zone from analytics_state where team_id = %s", (team.id,)
    ).fetchone()
    assert state == {"time_zone": "Pacific/Chatham"}
    await _check_against_sql(client, db_urls.app, moved, team.owner)
    await _assert_rollups_equal_raw(client, app, moved, team.owner, Filters(), QUERIES[:2])


async def _check_completions(client: httpx.AsyncClient, app_url: str, team: GeneratedTeam) -> None:
    """Throughput and lead and cycle times over a year equal plain SQL over the events (the
    other dashboards' plain SQL assumes histories the events of the test below do not
    make: a start dated before states the task was in)."""
    cycle = await dashboard(client, team.owner, team.id, "cycle-time", window="365d")
    done = await dashboard(client, team.owner, team.id, "throughput", window="365d")
    with raw.as_caller(app_url, team.owner.id, team.id) as conn:
        _assert_completions(conn, team, raw.transitions(conn, team.id), cycle, done)


async def test_stored_completion_facts_give_way_to_the_tail(
    client: httpx.AsyncClient,
    app: Any,
    owner: Owner,
    db_urls: DatabaseUrls,
    dataset: list[GeneratedTeam],
) -> None:
    """A completion in the rollups keeps its task's lead and cycle time and assignees; when
    the tail changes them (a reassignment, a start dated before the completion), the
    dashboards use the tail's facts, and the next fold refreshes the stored ones."""
    team = dataset[0]
    done = owner.execute(
        "select c.task_id, c.project_id, c.completed_at, c.assignee_ids, c.cycle_seconds"
        " from analytics_completion c where c.team_id = %s"
        " and c.completed_at > now() - interval '300 days'"
        " and not (%s = any(c.assignee_ids))"
        " order by c.completed_at desc limit 1",
        (team.id, team.owner.id),
    ).fetchone()
    assert done is not None
    statuses = {
        row["category"]: row["id"]
        for row in owner.execute(
            "select distinct on (category) category, id from status where project_id = %s"
            " order by category, position",
            (done["project_id"],),
        )
    }
    early = done["completed_at"] - timedelta(days=400)  # before any start it had
    with psycopg.connect(db_urls.owner, row_factory=dict_row) as conn:
        for kind, payload, at in (
            ("task.assigned", {"user_ids": [str(team.owner.id)]}, datetime.now(UTC)),
            (
                "task.moved",
                {
                    "from_status_id": str(statuses["unstarted"]),
                    "to_status_id": str(statuses["started"]),
                },
                early,
            ),
        ):
            conn.execute(
                "insert into event (team_id, id, occurred_at, actor_id, kind, subject_id,"
                " project_id, payload) values (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    team.id,
                    uuid.uuid4(),
                    at,
                    team.owner.id,
                    kind,
                    done["task_id"],
                    done["project_id"],
                    Jsonb(payload),
                ),
            )
        xid = conn.execute("select pg_current_xact_id()::text::bigint as x").fetchone()
        assert xid is not None
    check = [{"window": "365d"}]
    await _check_completions(client, db_urls.app, team)
    await _assert_rollups_equal_raw(client, app, team, team.owner, Filters(), check)
    fold_past(owner, xid["x"])
    stored = owner.execute(
        "select assignee_ids, cycle_seconds from analytics_completion"
        " where team_id = %s and task_id = %s and completed_at = %s",
        (team.id, done["task_id"], done["completed_at"]),
    ).fetchone()
    assert stored is not None
    assert team.owner.id in stored["assignee_ids"]
    expected_cycle = (done["completed_at"] - early).total_seconds()
    assert stored["cycle_seconds"] == pytest.approx(expected_cycle)
    await _check_completions(client, db_urls.app, team)
    await _assert_rollups_equal_raw(client, app, team, team.owner, Filters(), check)
