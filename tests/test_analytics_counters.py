"""The counters behind throughput, lead and cycle time and time tracked
(``analytics_completion_node``, ``analytics_time_daily``): kept equal to a recount of what
they summarize through folds, reassignments, edits and rebuilds; what the dashboards read
instead of the completions and entries; and the time dashboard through the API's writes."""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any, LiteralString

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from teamboard.analytics import repository, service
from teamboard.analytics.period import NODE_EPOCH, DashboardQuery, Filters, Span, nodes
from teamboard.analytics.rollups import rebuild
from teamboard.config import Settings
from teamboard.db import Database, Params, RequestMetrics, Tx
from teamboard.deps import TeamContext
from teamboard.ops import database
from teamboard.ops.database import DatabaseUrls
from tests.analytics import API, GeneratedTeam, fold_past, load, plain, refresh
from tests.dbsetup import fresh_database, test_settings

pytestmark = pytest.mark.asyncio
Owner = psycopg.Connection[dict[str, Any]]
NIL = uuid.UUID(int=0)
SPANS = (1, 4, 16, 64, 256)


@pytest.fixture(scope="module")
def dataset(owner: Owner, db_urls: DatabaseUrls, settings: Settings) -> list[GeneratedTeam]:
    """Two teams (UTC and Paris), about 3,000 events, folded."""
    teams = load(owner, db_urls.owner, settings, events=3000, teams=2, seed=23)
    refresh(owner)
    return teams


def _node_start(day_number: int, span: int) -> date:
    return NODE_EPOCH + timedelta(days=day_number - day_number % span)


def _recount_nodes(owner: Owner, team: uuid.UUID) -> dict[tuple[Any, ...], tuple[int, Any]]:
    """The nodes, recounted in Python from the team's completions (local days and buckets
    from PostgreSQL, whose zone data and logarithm the rollups use)."""
    rows = owner.execute(
        "select c.project_id, c.assignee_ids, c.lead_seconds, c.cycle_seconds,"
        " tb_analytics_duration_fine(c.lead_seconds) as lead_fine,"
        " tb_analytics_duration_fine(c.cycle_seconds) as cycle_fine,"
        " (c.completed_at at time zone s.time_zone)::date as day"
        " from analytics_completion c join analytics_state s on s.team_id = c.team_id"
        " where c.team_id = %s",
        (team,),
    ).fetchall()
    counts: dict[tuple[Any, ...], int] = defaultdict(int)
    values: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    steps: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * 16)
    for row in rows:
        number = (row["day"] - NODE_EPOCH).days
        items: list[tuple[str, str, float | None, int]] = [
            ("assignee", str(a), None, 0) for a in row["assignee_ids"]
        ] or [("assignee", "", None, 0)]
        for measure in ("lead", "cycle"):
            if row[f"{measure}_seconds"] is not None:
                fine = row[f"{measure}_fine"]
                items.append((measure, str(fine // 16), row[f"{measure}_seconds"], fine % 16))
        for span in SPANS:
            for project in (row["project_id"], NIL):
                for measure, dim, value, step in items:
                    key = (measure, span, _node_start(number, span), project, dim)
                    counts[key] += 1
                    if value is not None:
                        values[key].append(value)
                        steps[key][step] += 1
    found: dict[tuple[Any, ...], tuple[int, Any]] = {
        key: (n, (sorted(values[key]), steps[key]) if key in values else None)
        for key, n in counts.items()
    }
    # Each duration node's histogram row: its buckets in order, and their counts.
    histograms: dict[tuple[Any, ...], list[tuple[int, int]]] = defaultdict(list)
    for (measure, span, start, project, dim), n in counts.items():
        key = int(dim) if measure != "assignee" else str(uuid.UUID(dim) if dim else NIL)
        histograms[(measure, span, start, project, "*")].append((key, n))
    for key, pairs in histograms.items():
        pairs.sort(key=lambda pair: (pair[0] if key[0] != "assignee" else "", str(pair[0])))
        keys = [k if key[0] != "assignee" else uuid.UUID(str(k)) for k, _ in pairs]
        tallies = [n for _, n in pairs]
        row = (keys, tallies) if key[0] == "assignee" else (keys, tallies, *_doublings(pairs))
        found[key] = (sum(tallies), row)
    return found


def _doublings(pairs: list[tuple[Any, int]]) -> tuple[list[int], list[int], list[int]]:
    """A histogram's doublings (16 buckets each), their counts, and the position in the
    bucket list where each one's buckets end."""
    doublings: list[int] = []
    counts: list[int] = []
    ends: list[int] = []
    for position, (bucket, n) in enumerate(pairs, start=1):
        if doublings and doublings[-1] == bucket // 16:
            counts[-1] += n
            ends[-1] = position
        else:
            doublings.append(bucket // 16)
            counts.append(n)
            ends.append(position)
    return doublings, counts, ends


def _stored_nodes(owner: Owner, team: uuid.UUID) -> dict[tuple[Any, ...], tuple[int, Any]]:
    rows = owner.execute(
        "select measure, span, start, project_id, dim, n, vals, steps, assignees, buckets,"
        " counts, doublings, doubling_counts, doubling_ends"
        " from analytics_completion_node where team_id = %s and n <> 0",
        (team,),
    ).fetchall()
    return {
        (r["measure"], r["span"], r["start"], r["project_id"], r["dim"]): (
            r["n"],
            (r["assignees"], r["counts"])
            if r["dim"] == "*" and r["measure"] == "assignee"
            else (
                r["buckets"],
                r["counts"],
                r["doublings"],
                r["doubling_counts"],
                r["doubling_ends"],
            )
            if r["dim"] == "*"
            else None
            if r["vals"] is None
            else (r["vals"], r["steps"]),
        )
        for r in rows
    }


def _recount_time(owner: Owner, team: uuid.UUID) -> dict[tuple[Any, ...], tuple[int, int]]:
    rows = owner.execute(
        "select (e.started_at at time zone t.time_zone)::date as day, e.project_id, e.user_id,"
        " extract(epoch from e.ended_at - e.started_at)::bigint as seconds"
        " from time_entry e join team t on t.id = e.team_id"
        " where e.team_id = %s and e.ended_at is not null",
        (team,),
    ).fetchall()
    sums: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        for user in (row["user_id"], NIL):
            total = sums[(row["day"], row["project_id"], user)]
            total[0] += row["seconds"]
            total[1] += 1
    return {key: (seconds, entries) for key, (seconds, entries) in sums.items()}


def _stored_time(owner: Owner, team: uuid.UUID) -> dict[tuple[Any, ...], tuple[int, int]]:
    rows = owner.execute(
        "select day, project_id, user_id, seconds, entries from analytics_time_daily"
        " where team_id = %s and (seconds <> 0 or entries <> 0)",
        (team,),
    ).fetchall()
    return {(r["day"], r["project_id"], r["user_id"]): (r["seconds"], r["entries"]) for r in rows}


def _assert_counters_recount(owner: Owner, team: uuid.UUID) -> None:
    nodes = _stored_nodes(owner, team)
    assert nodes, "the team has completions"
    assert nodes == _recount_nodes(owner, team)
    emptied = owner.execute(
        "select count(*) as n from analytics_completion_node where team_id = %s and n = 0"
        " and (dim = '*' and (cardinality(buckets) > 0 or cardinality(doublings) > 0)"
        " or cardinality(vals) > 0)",
        (team,),
    ).fetchone()
    assert emptied == {"n": 0}, "a node emptied of completions keeps values or buckets"
    assert _stored_time(owner, team) == _recount_time(owner, team)


async def _call(client: httpx.AsyncClient, method: str, path: str, who: Any, **body: Any) -> Any:
    response = await client.request(
        method, f"{API}/teams/{path}", json=body or None, headers=who.headers
    )
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def _completed_task(owner: Owner, team: uuid.UUID) -> dict[str, Any]:
    """A completed task of a project every member sees, with folded assignees."""
    row = owner.execute(
        "select t.id, t.project_id from task t join status s on s.id = t.status_id"
        " join project p on p.id = t.project_id and p.visibility = 'team'"
        " where t.team_id = %s and s.category = 'completed' and t.deleted_at is null"
        " and exists (select 1 from analytics_completion c where c.team_id = t.team_id"
        "  and c.task_id = t.id and c.assignee_ids <> '{}') order by t.id limit 1",
        (team,),
    ).fetchone()
    assert row is not None
    return row


async def test_counters_equal_a_recount_through_writes_folds_and_rebuilds(
    client: httpx.AsyncClient,
    app: Any,
    owner: Owner,
    db_urls: DatabaseUrls,
    dataset: list[GeneratedTeam],
) -> None:
    team = dataset[1]  # Europe/Paris
    _assert_counters_recount(owner, team.id)

    # A completed task changes hands: its completions move to the new assignee.
    task = _completed_task(owner, team.id)
    await _call(
        client,
        "PATCH",
        f"{team.id}/tasks/{task['id']}",
        team.owner,
        assignee_ids=[str(team.owner.id)],
    )
    # Time is tracked, edited and deleted.
    started = datetime.now(UTC) - timedelta(hours=30)
    entry = await _call(
        client,
        "POST",
        f"{team.id}/tasks/{task['id']}/time-entries",
        team.owner,
        started_at=started.isoformat(),
        duration_seconds=5400,
    )
    second = await _call(
        client,
        "POST",
        f"{team.id}/tasks/{task['id']}/time-entries",
        team.owner,
        started_at=(started - timedelta(days=3)).isoformat(),
        duration_seconds=600,
    )
    await _call(
        client,
        "PATCH",
        f"{team.id}/time-entries/{entry['id']}",
        team.owner,
        started_at=(started - timedelta(days=1)).isoformat(),
        ended_at=(started - timedelta(days=1, minutes=-45)).isoformat(),
    )
    await _call(client, "DELETE", f"{team.id}/time-entries/{second['id']}", team.owner)
    await _call(client, "POST", f"{team.id}/tasks/{task['id']}/time-entries/start", team.owner)
    await _call(client, "POST", f"{team.id}/time-entries/running/stop", team.owner)
    assert _stored_time(owner, team.id) == _recount_time(owner, team.id)
    refresh(owner)
    _assert_counters_recount(owner, team.id)
    stored = owner.execute(
        "select distinct assignee_ids from analytics_completion where team_id = %s"
        " and task_id = %s",
        (team.id, task["id"]),
    ).fetchall()
    # (The generated task's own assignees are not in task_assignee, so the update could
    # not name them as removed: the owner joins them.)
    assert stored
    assert all(team.owner.id in row["assignee_ids"] for row in stored)

    # An earlier start moves the task's cycle time (and its completions) to other buckets.
    first = owner.execute(
        "select c.completed_at, c.cycle_seconds, c.project_id, s.id as started"
        " from analytics_completion c join status s on s.project_id = c.project_id"
        " and s.category = 'started' where c.team_id = %s and c.task_id = %s"
        " order by c.completed_at limit 1",
        (team.id, task["id"]),
    ).fetchone()
    assert first is not None
    owner.execute(
        "insert into event (team_id, id, actor_id, kind, subject_id, project_id, payload,"
        " occurred_at) values (%s, %s, %s, 'task.moved', %s, %s, %s, %s)",
        (
            team.id,
            uuid.uuid4(),
            team.owner.id,
            task["id"],
            first["project_id"],
            Jsonb({"to_status_id": str(first["started"])}),
            first["completed_at"] - timedelta(days=40),
        ),
    )
    refresh(owner)
    moved = owner.execute(
        "select cycle_seconds from analytics_completion where team_id = %s and task_id = %s"
        " and completed_at = %s",
        (team.id, task["id"], first["completed_at"]),
    ).fetchone()
    assert moved is not None
    assert moved["cycle_seconds"] == 40 * 86400 != first["cycle_seconds"]
    _assert_counters_recount(owner, team.id)
    # A completion deleted outside the fold leaves the nodes too.
    owner.execute(
        "delete from analytics_completion where team_id = %s and task_id = %s",
        (team.id, task["id"]),
    )
    _assert_counters_recount(owner, team.id)

    # A rebuild counts everything again, to the same counters (the deleted completion back).
    before = _stored_nodes(owner, team.id)
    owner_db = Database(db_urls.owner, app.state.services.settings)
    await owner_db.open()
    try:
        await rebuild(owner_db, team_id=team.id)
    finally:
        await owner_db.close()
    after = _stored_nodes(owner, team.id)
    assert after != before
    _assert_counters_recount(owner, team.id)

    # A new zone re-buckets the time counters in the same transaction.
    await _call(client, "PATCH", f"{team.id}", team.owner, time_zone="Asia/Kathmandu")
    assert _stored_time(owner, team.id) == _recount_time(owner, team.id)
    refresh(owner)
    _assert_counters_recount(owner, team.id)


class _AnalyzingTx(Tx):
    """A transaction (rolled back) that runs each statement under EXPLAIN ANALYZE first, keeping
    the executed plans (a read transaction would prefix the context to each statement)."""

    def __init__(self, db: Database, *, user_id: Any, team_id: Any) -> None:
        super().__init__(db, RequestMetrics(), write=True, user_id=user_id, team_id=team_id)
        self.plans: list[dict[str, Any]] = []

    async def _analyze(self, sql: LiteralString, params: Params) -> None:
        plan = await super().fetch_value("explain (analyze, format json) " + sql, params)
        self.plans.append(plan[0]["Plan"])

    async def fetch_one(self, sql: LiteralString, params: Params = None) -> dict[str, Any] | None:
        await self._analyze(sql, params)
        return await super().fetch_one(sql, params)

    async def fetch_all(self, sql: LiteralString, params: Params = None) -> list[dict[str, Any]]:
        await self._analyze(sql, params)
        return await super().fetch_all(sql, params)


def _executed_scans(plan: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(relation, index or scan type, rows) of every scan that ran at least once."""
    found = []
    if plan.get("Relation Name") and plan.get("Actual Loops", 0) > 0:
        how = plan.get("Index Name") or plan["Node Type"]
        found.append((plan["Relation Name"], how, plan["Actual Rows"] * plan["Actual Loops"]))
    for child in plan.get("Plans", []):
        found += _executed_scans(child)
    return found


async def test_dashboards_read_counters_not_completions_or_entries(
    app: Any, dataset: list[GeneratedTeam]
) -> None:
    team = dataset[0]
    query = DashboardQuery(Span(days=365))
    callers = [c for c in (team.owner, team.guest) if c is not None]
    for who in callers:
        tx = _AnalyzingTx(app.state.services.db, user_id=who.id, team_id=team.id)
        try:
            ctx = TeamContext(tx, team.id, who.id, None)
            await service.throughput(ctx, query)
            await service.durations(ctx, query)
            await service.time_tracked(ctx, query, "project")
            await service.time_tracked(ctx, query, "user")
        finally:
            await tx.finish(commit=False)
        scans = [scan for plan in tx.plans for scan in _executed_scans(plan)]
        read = {relation for relation, _, _ in scans}
        assert "analytics_completion_node" in read
        assert "analytics_time_daily" in read
        assert "time_entry" not in read
        # Completions are read only by task (the few the tail changes), never by period.
        by_period = [s for s in scans if s[1] == "ix_analytics_completion_team_id_completed_at"]
        assert by_period == []


async def test_time_dashboard_follows_the_api_writes(
    client: httpx.AsyncClient, app: Any, owner: Owner, dataset: list[GeneratedTeam]
) -> None:
    team = dataset[0]
    task = _completed_task(owner, team.id)
    member = team.member or team.owner
    for who, hours in ((team.owner, 3), (member, 5)):
        await _call(
            client,
            "POST",
            f"{team.id}/tasks/{task['id']}/time-entries",
            who,
            started_at=(datetime.now(UTC) - timedelta(hours=hours)).isoformat(),
            duration_seconds=hours * 1800,
        )
    users = Filters(users=(member.id,))
    for group_by, filters in (
        ("project", Filters()),
        ("user", Filters()),
        ("project", users),
        ("user", Filters(projects=(task["project_id"],))),
    ):
        for span in (
            Span(days=7),
            Span(days=90),
            Span(start=date.today() - timedelta(days=700), end=date.today()),
        ):
            query = DashboardQuery(span, "week", filters)
            params: dict[str, Any] = {"group_by": group_by, "bucket": "week"}
            if span.days:
                params["window"] = f"{span.days}d"
            else:
                params |= {"start": str(span.start), "end": str(span.end)}
            params["user_id"] = [str(u) for u in filters.users]
            params["project_id"] = [str(p) for p in filters.projects]
            response = await client.get(
                f"{API}/teams/{team.id}/analytics/time", params=params, headers=team.owner.headers
            )
            assert response.status_code == 200, response.text
            assert response.headers["x-sql-statements"] == "2"
            services = app.state.services
            async with services.db.transaction(
                user_id=team.owner.id, team_id=team.id, write=False
            ) as tx:
                ctx = TeamContext(tx, team.id, team.owner.id, None)
                expected = plain(await service.time_tracked(ctx, query, group_by, raw=True))
            assert response.json() == expected, (group_by, filters, span)


@pytest.mark.parametrize("seed", range(5))
async def test_nodes_cover_a_range_exactly_with_few_nodes(seed: int) -> None:
    """Any range (before 2000-01-03 too: negative day numbers) is the union of aligned
    nodes, in order, without overlap; at most 15 for 90 days and 20 for a year."""
    rng = random.Random(seed)
    for _ in range(300):
        start = date(1990, 1, 1) + timedelta(days=rng.randrange(0, 15_000))
        end = start + timedelta(days=rng.randrange(0, 731))
        spans, starts = nodes(start, end)
        day = start
        for span, first in zip(spans, starts, strict=True):
            assert first == day
            assert (first - NODE_EPOCH).days % span == 0
            day = first + timedelta(days=span)
        assert day == end + timedelta(days=1)
        limit = {90: 15, 365: 20}.get((end - start).days + 1)
        assert limit is None or len(spans) <= limit


async def test_counters_give_way_when_the_zone_moved_after_the_period(
    app: Any, owner: Owner, dataset: list[GeneratedTeam]
) -> None:
    """A period resolved in one zone while the rollups hold another (a zone change and its
    fold between the two statements): the counters' statement sees it in its snapshot and
    the completions' and entries' own queries answer, exactly, in a third statement."""
    team = dataset[0]
    query = DashboardQuery(Span(days=365))
    services = app.state.services
    async with services.db.transaction(user_id=team.owner.id, team_id=team.id, write=False) as tx:
        resolved = await repository.resolve_period(tx, team.id, query.span, query.bucket)
    assert resolved is not None
    assert resolved.rollups
    elsewhere = dataclasses.replace(resolved, time_zone="Pacific/Chatham")
    calls = {
        "throughput": lambda tx, raw: repository.throughput(
            tx, team.id, elsewhere, query.filters, raw=raw
        ),
        "durations": lambda tx, raw: repository.durations(
            tx, team.id, elsewhere, query.filters, raw=raw
        ),
        "time": lambda tx, raw: repository.time_tracked(
            tx, team.id, elsewhere, query.filters, "user", raw=raw
        ),
    }
    for name, call in calls.items():
        async with services.db.transaction(
            user_id=team.owner.id, team_id=team.id, write=False
        ) as tx:
            answer = await call(tx, False)
            assert tx.metrics.statements == 2, name
            expected = await call(tx, True)
        assert answer == expected, name


async def test_the_doubling_migration_derives_existing_histograms(
    server_url: str, settings: Settings
) -> None:
    """Histograms counted before ``2026-12-06_duration_doublings`` (data generated and
    folded one revision earlier) get their doublings from the migration's rewrite; the check
    constraint then refuses a histogram row without them."""
    with fresh_database(server_url, prefix="teamboard_doublings") as owner_url:
        urls = database.prepare(test_settings(), owner_url)
        database.migrate(urls, "20261206_member_projects", downgrade=True)
        with psycopg.connect(owner_url, autocommit=True, row_factory=dict_row) as conn:
            teams = load(conn, owner_url, settings, events=1500, teams=2, seed=5)
            loaded = conn.execute("select pg_current_xact_id()::text::bigint as x").fetchone()
            assert loaded is not None
            fold_past(conn, loaded["x"])
        database.migrate(urls)
        with psycopg.connect(owner_url, autocommit=True, row_factory=dict_row) as conn:
            for team in teams:
                _assert_counters_recount(conn, team.id)
            with pytest.raises(psycopg.errors.CheckViolation):
                conn.execute(
                    "alter table analytics_completion_node"
                    " disable trigger analytics_completion_node_doublings;"
                    " update analytics_completion_node set doublings = null"
                    " where dim = '*' and measure = 'cycle'"
                )
