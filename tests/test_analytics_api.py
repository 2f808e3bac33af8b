"""The analytics API: custom event batches (validation, limits, visibility, all or
nothing), dashboard parameters, the team's time zone, costs, statement counts, the
drill-down list, and the rollup consumer run as the app role."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

from teamboard.analytics.rollups import FOLD_LOCK, RollupConsumer, rebuild
from teamboard.analytics.schemas import MAX_BATCH
from teamboard.db import Database
from teamboard.ops.database import DatabaseUrls
from tests.analytics import fold_past
from tests.collab import add_to_project, create_project
from tests.conftest import Actor
from tests.test_teams import problem

pytestmark = pytest.mark.asyncio
API = "/api/v1"
Owner = psycopg.Connection[dict[str, Any]]
MakeUser = Callable[..., Actor]
MakeTeam = Callable[..., Awaitable[uuid.UUID]]


async def _post(
    client: httpx.AsyncClient, actor: Actor, team: uuid.UUID, events: list[dict[str, Any]]
) -> httpx.Response:
    return await client.post(
        f"{API}/teams/{team}/events", json={"events": events}, headers=actor.headers
    )


def _count(owner: Owner, team: uuid.UUID) -> int:
    row = owner.execute(
        "select count(*) as n from event where team_id = %s and kind like 'custom.%%'", (team,)
    ).fetchone()
    assert row is not None
    return int(row["n"])


async def test_a_batch_is_stored_with_the_caller_as_actor(
    client: httpx.AsyncClient, owner: Owner, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    project = await create_project(client, alice, team, "WEB")
    when = (datetime.now(UTC) - timedelta(days=3)).replace(microsecond=0)
    response = await _post(
        client,
        alice,
        team,
        [
            {
                "kind": "custom.page_view",
                "actor": "visitor-1",
                "project_id": str(project),
                "occurred_at": when.isoformat(),
                "properties": {"path": "/pricing", "ms": 12.5, "tags": ["a", None]},
            },
            {"kind": "custom.signup.completed"},
        ],
    )
    assert response.status_code == 201, response.text
    assert response.json() == {"accepted": 2}
    rows = owner.execute(
        "select kind, actor_id, project_id, subject_id, payload, occurred_at, tx_id is not null"
        " as has_tx from event where team_id = %s and kind like 'custom.%%' order by kind",
        (team,),
    ).fetchall()
    assert [r["kind"] for r in rows] == ["custom.page_view", "custom.signup.completed"]
    assert all(r["actor_id"] == alice.id and r["subject_id"] is None and r["has_tx"] for r in rows)
    assert rows[0]["project_id"] == project
    assert rows[0]["occurred_at"] == when
    assert rows[0]["payload"] == {
        "actor": "visitor-1",
        "properties": {"path": "/pricing", "ms": 12.5, "tags": ["a", None]},
    }
    assert rows[1]["payload"] == {"properties": {}}
    assert abs(rows[1]["occurred_at"] - datetime.now(UTC)) < timedelta(minutes=1)


@pytest.mark.parametrize(
    ("events", "field"),
    [
        ([{"kind": "task.created"}], "kind"),
        ([{"kind": "custom."}], "kind"),
        ([{"kind": "Custom.Upper"}], "kind"),
        ([{"kind": "custom." + "x" * 100}], "kind"),
        ([{"kind": "custom.x", "team_id": str(uuid.uuid4())}], "team_id"),
        ([{"kind": "custom.x", "actor_id": str(uuid.uuid4())}], "actor_id"),
        ([{"kind": "custom.x", "properties": {"big": "x" * 5000}}], "properties"),
        ([{"kind": "custom.x", "properties": {"nul": "a\u0000b"}}], "properties"),
        ([{"kind": "custom.x", "properties": {"n": 2**70}}], "properties"),
        ([{"kind": "custom.x", "properties": ["not", "an", "object"]}], "properties"),
        ([{"kind": "custom.x", "actor": ""}], "actor"),
        ([{"kind": "custom.x", "actor": "tab\there"}], "actor"),
        ([{"kind": "custom.x", "occurred_at": "2026-01-01T00:00:00"}], "occurred_at"),
        ([], "events"),
        ([{"kind": "custom.x"}] * (MAX_BATCH + 1), "events"),
    ],
)
async def test_invalid_batches_are_refused_whole(
    client: httpx.AsyncClient,
    owner: Owner,
    make_user: MakeUser,
    make_team: MakeTeam,
    events: list[dict[str, Any]],
    field: str,
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    batch = events if field == "events" else [{"kind": "custom.fine"}, *events]
    response = await _post(client, alice, team, batch)
    body = problem(response, 422, "validation_failed")
    assert field in str(body), body
    assert _count(owner, team) == 0


async def test_dates_outside_the_accepted_span_are_refused(
    client: httpx.AsyncClient, owner: Owner, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    now = datetime.now(UTC)
    for when in (now - timedelta(days=31), now + timedelta(hours=1)):
        events = [{"kind": "custom.ok"}, {"kind": "custom.late", "occurred_at": when.isoformat()}]
        body = problem(await _post(client, alice, team, events), 422, "invalid_occurred_at")
        assert body["indexes"] == [1]
    assert _count(owner, team) == 0


async def test_projects_must_be_visible_and_roles_can_write(
    client: httpx.AsyncClient,
    owner: Owner,
    make_user: MakeUser,
    make_team: MakeTeam,
) -> None:
    alice, bob, guest, mallory = (make_user(n) for n in ("alice", "bob", "guest", "mallory"))
    team = await make_team(alice, members=[(bob, "member"), (guest, "guest")])
    other = await make_team(mallory)
    foreign = await create_project(client, mallory, other, "FOR")
    secret = await create_project(client, alice, team, "SEC", visibility="private")
    missing = await _post(
        client, bob, team, [{"kind": "custom.x", "project_id": str(uuid.uuid4())}]
    )
    problem(missing, 404, "not_found")
    for project in (foreign, secret):
        response = await _post(
            client, bob, team, [{"kind": "custom.x", "project_id": str(project)}]
        )
        problem(response, 404, "not_found")
        assert response.json()["detail"] == missing.json()["detail"]
    problem(await _post(client, guest, team, [{"kind": "custom.x"}]), 403, "insufficient_role")
    assert _count(owner, team) == 0
    await add_to_project(client, alice, team, secret, bob)
    ok = await _post(client, bob, team, [{"kind": "custom.x", "project_id": str(secret)}])
    assert ok.status_code == 201, ok.text


async def test_a_batch_costs_a_constant_number_of_statements(
    client: httpx.AsyncClient, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    project = await create_project(client, alice, team, "WEB")
    counts = set()
    for size in (1, MAX_BATCH):
        events = [{"kind": "custom.view", "project_id": str(project)}] * size
        response = await _post(client, alice, team, events)
        assert response.status_code == 201, response.text
        counts.add(response.headers["x-sql-statements"])
    assert len(counts) == 1


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"window": "14d"}, "invalid_window"),
        ({"window": "30d", "start": "2026-01-01", "end": "2026-01-02"}, "invalid_window"),
        ({"start": "2026-01-01"}, "invalid_window"),
        ({"start": "2026-02-01", "end": "2026-01-01"}, "invalid_range"),
        ({"start": "2020-01-01", "end": "2026-01-01"}, "invalid_range"),
        ({"kind": "Not A Kind"}, "invalid_kind"),
        ({"kind": [f"custom.k{i}" for i in range(51)]}, "too_many_filters"),
        ({"bucket": "year"}, "validation_failed"),
        ({"project_id": "not-a-uuid"}, "validation_failed"),
    ],
)
async def test_bad_dashboard_parameters_are_422(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    make_team: MakeTeam,
    query: dict[str, Any],
    code: str,
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    response = await client.get(
        f"{API}/teams/{team}/analytics/events", params=query, headers=alice.headers
    )
    problem(response, 422, code)


def _remaining(response: httpx.Response) -> int:
    match = re.search(r'"caller";r=(\d+)', response.headers["ratelimit"])
    assert match is not None
    return int(match.group(1))


async def test_dashboards_cost_more_and_answer_in_the_team_time_zone(
    client: httpx.AsyncClient, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    team = await make_team(alice, members=[(bob, "member")])
    url = f"{API}/teams/{team}"
    problem(
        await client.patch(url, json={"time_zone": "Mars/Olympus"}, headers=alice.headers),
        422,
        "invalid_time_zone",
    )
    problem(
        await client.patch(url, json={"time_zone": "Asia/Tokyo"}, headers=bob.headers),
        403,
        "insufficient_role",
    )
    problem(await client.patch(url, json={}, headers=alice.headers), 422, "validation_failed")
    changed = await client.patch(url, json={"time_zone": "Asia/Tokyo"}, headers=alice.headers)
    assert changed.status_code == 200, changed.text
    assert changed.json()["time_zone"] == "Asia/Tokyo"
    read = await client.get(url, headers=bob.headers)
    first = await client.get(
        f"{url}/analytics/events", params={"window": "7d"}, headers=bob.headers
    )
    assert first.status_code == 200, first.text
    assert _remaining(read) - _remaining(first) == 10
    body = first.json()
    tokyo_today = datetime.now(ZoneInfo("Asia/Tokyo")).date()
    assert body["period"] == {
        "start": str(tokyo_today - timedelta(days=6)),
        "end": str(tokyo_today),
        "time_zone": "Asia/Tokyo",
        "bucket": "day",
    }
    assert [b["bucket"] for b in body["series"]] == [
        str(tokyo_today - timedelta(days=n)) for n in range(6, -1, -1)
    ]
    created = await client.post(
        f"{API}/teams", json={"name": "Paris", "time_zone": "Europe/Paris"}, headers=bob.headers
    )
    assert created.status_code == 201, created.text
    assert created.json()["time_zone"] == "Europe/Paris"


async def test_drilldown_pages_are_keyset_and_bounded(
    client: httpx.AsyncClient, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    now = datetime.now(UTC)
    events = [
        {"kind": "custom.click", "occurred_at": (now - timedelta(minutes=i)).isoformat()}
        for i in range(7)
    ]
    assert (await _post(client, alice, team, events)).status_code == 201
    url = f"{API}/teams/{team}/analytics/drilldown"
    seen: list[str] = []
    times: list[str] = []
    counts = set()
    cursor = None
    while True:
        params: dict[str, Any] = {"kind": "custom.click", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = await client.get(url, params=params, headers=alice.headers)
        assert page.status_code == 200, page.text
        counts.add(page.headers["x-sql-statements"])
        seen += [item["id"] for item in page.json()["items"]]
        times += [item["occurred_at"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7
    assert counts == {"2"}
    assert times == sorted(times, reverse=True)
    tampered = await client.get(
        url, params={"kind": "custom.other", "cursor": cursor or "AAAA"}, headers=alice.headers
    )
    problem(tampered, 400, "invalid_cursor")
    problem(
        await client.get(url, params={"kind": "custom.*"}, headers=alice.headers),
        422,
        "invalid_kind",
    )


async def test_the_consumer_folds_as_the_app_role_one_at_a_time(
    client: httpx.AsyncClient,
    app: Any,
    owner: Owner,
    db_urls: DatabaseUrls,
    make_user: MakeUser,
    make_team: MakeTeam,
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    assert (await _post(client, alice, team, [{"kind": "custom.fold"}] * 3)).status_code == 201
    consumer = RollupConsumer(app.state.services.db)  # the app role
    with psycopg.connect(db_urls.owner) as holder:
        holder.execute("select pg_advisory_xact_lock(%s)", (FOLD_LOCK,))
        busy = await consumer.fold()
        assert busy.skipped
        holder.rollback()
    deadline = datetime.now(UTC) + timedelta(seconds=60)
    while True:  # other transactions of the shared server may hold the watermark back
        result = await consumer.fold()
        folded = owner.execute(
            "select coalesce(sum(value), 0) as n from analytics_daily"
            " where team_id = %s and metric = 'events' and dim = 'custom.fold'",
            (team,),
        ).fetchone()
        assert folded is not None
        if folded["n"] == 3 or datetime.now(UTC) > deadline:
            break
    assert not result.skipped
    assert folded["n"] == 3
    # A team's rebuild (as the owner) gives the same rollups back.
    before = owner.execute(
        "select metric, day, project_id, dim, value from analytics_daily where team_id = %s"
        " order by 1, 2, 3, 4",
        (team,),
    ).fetchall()
    owner_db = Database(db_urls.owner, app.state.services.settings)
    await owner_db.open()
    try:
        rebuilt = await rebuild(owner_db, team_id=team)
    finally:
        await owner_db.close()
    assert rebuilt.folded >= 4  # team.created and the three custom events
    after = owner.execute(
        "select metric, day, project_id, dim, value from analytics_daily where team_id = %s"
        " order by 1, 2, 3, 4",
        (team,),
    ).fetchall()
    assert after == before


async def test_deleting_a_team_forgets_its_events_and_rollups(
    client: httpx.AsyncClient, owner: Owner, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    assert (await _post(client, alice, team, [{"kind": "custom.gone"}])).status_code == 201
    last = owner.execute(
        "select max(tx_id::text::bigint) as x from event where team_id = %s", (team,)
    )
    fold_past(owner, (last.fetchone() or {})["x"])
    tables = [
        "event",  # no foreign key: the team's deletion removes them (tb_event_forget_teams)
        "analytics_daily",
        "analytics_team_daily",
        "analytics_actor_daily",
        "analytics_team_actor",
        "analytics_actor_last",
        "analytics_state",
    ]

    def rows() -> int:
        return sum(
            owner.execute(
                f"select count(*) as n from {table} where team_id = %s",
                (team,),
            ).fetchone()["n"]  # type: ignore[index]
            for table in tables
        )

    assert rows() >= 4
    assert (await client.delete(f"{API}/teams/{team}", headers=alice.headers)).status_code == 204
    assert rows() == 0


async def test_appended_events_hold_their_team_like_a_foreign_key(
    owner: Owner, db_urls: DatabaseUrls, make_user: MakeUser, make_team: MakeTeam
) -> None:
    """The statement trigger that replaced event's foreign key to team: an event for a team
    that does not exist is refused, and a team cannot be deleted under a transaction that
    appended to it (the same FOR KEY SHARE lock); once it is, its events go with it."""
    insert = "insert into event (team_id, id, kind) values (%s, %s, 'custom.held')"
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        owner.execute(insert, (uuid.uuid4(), uuid.uuid4()))
    team = await make_team(make_user("alice"))
    with (
        psycopg.connect(db_urls.owner) as appending,
        psycopg.connect(db_urls.owner) as deleting,
    ):
        appending.execute(insert, (team, uuid.uuid4()))  # open: holds the team
        deleting.execute("set lock_timeout = '300ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            deleting.execute("delete from team where id = %s", (team,))
        deleting.rollback()
        appending.commit()
        deleting.execute("delete from team where id = %s", (team,))
        deleting.commit()
    left = owner.execute("select count(*) as n from event where team_id = %s", (team,))
    assert left.fetchone() == {"n": 0}
