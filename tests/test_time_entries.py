"""Time entries through the REST API: timers (one running per user and team, under
concurrency), manual entries and their validation, edits, totals, lists, and RLS."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from teamboard.config import Settings
from teamboard.db import Database
from teamboard.ops.database import DatabaseUrls
from teamboard.time_tracking.repository import entries_query, totals_sql
from tests.collab import add_to_project
from tests.conftest import Actor
from tests.plans import AppCaller, applied_as, explain
from tests.taskdata import create_task
from tests.test_teams import create_project, events, problem, sql_count, without_instance

API = "/api/v1"
Owner = psycopg.Connection[dict[str, Any]]
MakeUser = Callable[..., Actor]
MakeTeam = Callable[..., Awaitable[uuid.UUID]]
DAY = 24 * 3600


@dataclass
class World:
    team: uuid.UUID
    owner: Actor
    admin: Actor
    member: Actor
    guest: Actor  # on the team project only
    project: uuid.UUID
    other_project: uuid.UUID
    private_project: uuid.UUID
    task: uuid.UUID
    task2: uuid.UUID
    other_task: uuid.UUID  # in other_project
    private_task: uuid.UUID

    def url(self, path: str) -> str:
        return f"{API}/teams/{self.team}{path}"


@pytest.fixture
async def world(
    app: Any, client: httpx.AsyncClient, make_user: MakeUser, make_team: MakeTeam
) -> World:
    owner, admin, member, guest = (make_user(n) for n in ("owner", "admin", "member", "guest"))
    team = await make_team(owner, members=[(admin, "admin"), (member, "member"), (guest, "guest")])
    project = uuid.UUID((await create_project(client, owner, team, "TIM"))["id"])
    other = uuid.UUID((await create_project(client, owner, team, "OTH"))["id"])
    private = uuid.UUID((await create_project(client, owner, team, "SEC", "private"))["id"])
    added = await client.post(
        f"{API}/teams/{team}/projects/{project}/members",
        json={"user_id": str(guest.id)},
        headers=owner.headers,
    )
    assert added.status_code == 201, added.text
    tasks = [
        await create_task(app, owner.id, team, p, t)
        for p, t in ((project, "one"), (project, "two"), (other, "three"), (private, "secret"))
    ]
    return World(team, owner, admin, member, guest, project, other, private, *tasks)


def iso(value: datetime) -> str:
    return value.isoformat()


def ago(**delta: float) -> datetime:
    return datetime.now(UTC) - timedelta(**delta)


async def manual(
    client: httpx.AsyncClient,
    world: World,
    actor: Actor,
    task: uuid.UUID,
    started: datetime,
    *,
    seconds: int | None = None,
    ended: datetime | None = None,
    note: str = "",
) -> httpx.Response:
    body: dict[str, Any] = {"started_at": iso(started), "note": note}
    if seconds is not None:
        body["duration_seconds"] = seconds
    if ended is not None:
        body["ended_at"] = iso(ended)
    return await client.post(
        world.url(f"/tasks/{task}/time-entries"), json=body, headers=actor.headers
    )


async def start(
    client: httpx.AsyncClient, world: World, actor: Actor, task: uuid.UUID
) -> httpx.Response:
    return await client.post(
        world.url(f"/tasks/{task}/time-entries/start"), json={"note": "go"}, headers=actor.headers
    )


def running_rows(owner: Owner, team: uuid.UUID, user: uuid.UUID) -> list[dict[str, Any]]:
    return owner.execute(
        "select id from time_entry where team_id = %s and user_id = %s and ended_at is null",
        (team, user),
    ).fetchall()


# --------------------------------------------------------------------------- timers


async def test_start_and_stop_a_timer(
    client: httpx.AsyncClient, owner: Owner, world: World
) -> None:
    started = await start(client, world, world.member, world.task)
    assert started.status_code == 201, started.text
    entry = started.json()
    assert entry["ended_at"] is None
    assert entry["duration_seconds"] is None
    assert entry["user_id"] == str(world.member.id)
    assert entry["task_id"] == str(world.task)
    assert entry["project_id"] == str(world.project)
    assert entry["note"] == "go"

    running = await client.get(world.url("/time-entries/running"), headers=world.member.headers)
    assert running.status_code == 200
    assert running.json()["id"] == entry["id"]
    detail = await client.get(
        world.url(f"/time-entries/{entry['id']}"), headers=world.guest.headers
    )
    assert detail.json() == running.json()
    assert sql_count(detail) == 1

    stopped = await client.post(
        world.url("/time-entries/running/stop"), headers=world.member.headers
    )
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["id"] == entry["id"]
    assert stopped.json()["ended_at"] is not None
    assert stopped.json()["duration_seconds"] >= 0

    problem(
        await client.post(world.url("/time-entries/running/stop"), headers=world.member.headers),
        409,
        "timer_not_running",
    )
    problem(
        await client.get(world.url("/time-entries/running"), headers=world.member.headers),
        404,
        "no_running_timer",
    )
    kinds = [e["kind"] for e in events(owner, world.team) if e["kind"].startswith("time_entry")]
    assert kinds == ["time_entry.started", "time_entry.stopped"]
    started_event, stopped_event = (
        e for e in events(owner, world.team) if e["kind"].startswith("time_entry")
    )
    assert started_event["subject_id"] == world.task  # in the task's activity
    assert started_event["payload"]["time_entry_id"] == entry["id"]
    assert started_event["project_id"] == world.project
    assert started_event["actor_id"] == world.member.id
    assert started_event["payload"]["task_id"] == str(world.task)
    assert stopped_event["payload"]["duration_seconds"] == stopped.json()["duration_seconds"]


async def test_one_running_timer_per_user_and_team(
    client: httpx.AsyncClient,
    owner: Owner,
    make_team: MakeTeam,
    app: Any,
    world: World,
) -> None:
    first = await start(client, world, world.member, world.task)
    assert first.status_code == 201
    for task in (world.task, world.task2, world.other_task):
        again = await start(client, world, world.member, task)
        body = problem(again, 409, "timer_already_running")
        assert body["running_entry_id"] == first.json()["id"]
    # Others run their own timers; the same user may run one in another team.
    assert (await start(client, world, world.admin, world.task)).status_code == 201
    second_team = await make_team(world.member)
    project = (await create_project(client, world.member, second_team, "TWO"))["id"]
    task = await create_task(app, world.member.id, second_team, project, "elsewhere")
    elsewhere = await client.post(
        f"{API}/teams/{second_team}/tasks/{task}/time-entries/start", headers=world.member.headers
    )
    assert elsewhere.status_code == 201, elsewhere.text
    assert len(running_rows(owner, world.team, world.member.id)) == 1
    assert len(events(owner, world.team, "time_entry.started")) == 2


async def test_concurrent_starts_create_exactly_one_timer(
    client: httpx.AsyncClient, owner: Owner, world: World
) -> None:
    tasks = [world.task, world.task2, world.other_task] * 4
    responses = await asyncio.gather(*(start(client, world, world.member, t) for t in tasks))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (len(tasks) - 1)
    for response in responses:
        if response.status_code == 409:
            problem(response, 409, "timer_already_running")
    assert len(running_rows(owner, world.team, world.member.id)) == 1
    assert len(events(owner, world.team, "time_entry.started")) == 1


def forgotten_timer(owner: Owner, world: World, user: uuid.UUID, hours: int) -> uuid.UUID:
    """A timer of ``user`` on ``world.task`` started ``hours`` ago; its id."""
    entry = uuid.uuid4()
    owner.execute(
        "insert into time_entry (team_id, id, project_id, task_id, user_id, started_at)"
        " values (%s, %s, %s, %s, %s, now() - %s * interval '1 hour')",
        (world.team, entry, world.project, world.task, user, hours),
    )
    return entry


async def test_a_forgotten_timer_stops_at_the_maximum_duration(
    client: httpx.AsyncClient, owner: Owner, world: World
) -> None:
    forgotten_timer(owner, world, world.member.id, hours=30)
    stopped = await client.post(
        world.url("/time-entries/running/stop"), headers=world.member.headers
    )
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["duration_seconds"] == DAY


async def test_a_timer_on_a_deleted_task_can_still_be_stopped(
    client: httpx.AsyncClient, owner: Owner, world: World
) -> None:
    assert (await start(client, world, world.member, world.task)).status_code == 201
    owner.execute("update task set deleted_at = now() where id = %s", (world.task,))
    problem(await start(client, world, world.member, world.task2), 409, "timer_already_running")
    stopped = await client.post(
        world.url("/time-entries/running/stop"), headers=world.member.headers
    )
    assert stopped.status_code == 200, stopped.text
    assert (await start(client, world, world.member, world.task2)).status_code == 201


async def test_timers_only_on_visible_live_tasks(
    client: httpx.AsyncClient, owner: Owner, world: World
) -> None:
    missing = await start(client, world, world.guest, uuid.uuid4())
    hidden = await start(client, world, world.guest, world.private_task)
    problem(hidden, 404, "not_found")
    assert without_instance(hidden) == without_instance(missing)
    owner.execute("update task set deleted_at = now() where id = %s", (world.task2,))
    problem(await start(client, world, world.member, world.task2), 404, "not_found")
    assert running_rows(owner, world.team, world.guest.id) == []
    assert (await start(client, world, world.guest, world.task)).status_code == 201


async def test_a_timer_stops_when_its_user_loses_sight_of_its_project(
    client: httpx.AsyncClient, owner: Owner, world: World
) -> None:
    """Out of sight, the timer could be neither seen nor stopped by its user, and the
    one-running-timer rule refused every new timer in the team for good."""

    async def remove_guest_from(project: uuid.UUID) -> None:
        removed = await client.delete(
            world.url(f"/projects/{project}/members/{world.guest.id}"),
            headers=world.owner.headers,
        )
        assert removed.status_code == 204, removed.text

    await add_to_project(client, world.owner, world.team, world.other_project, world.guest)
    guest_timer = (await start(client, world, world.guest, world.other_task)).json()
    member_timer = (await start(client, world, world.member, world.task)).json()
    admin_timer = (await start(client, world, world.admin, world.task)).json()
    await remove_guest_from(world.project)  # not the timer's project: it runs on
    assert [row["id"] for row in running_rows(owner, world.team, world.guest.id)] == [
        uuid.UUID(guest_timer["id"])
    ]
    await remove_guest_from(world.other_project)
    demoted = await client.patch(
        world.url(f"/members/{world.member.id}"),
        json={"role": "guest"},
        headers=world.owner.headers,
    )
    assert demoted.status_code == 200, demoted.text
    for actor in (world.guest, world.member):
        assert running_rows(owner, world.team, actor.id) == []
        problem(
            await client.get(world.url("/time-entries/running"), headers=actor.headers),
            404,
            "no_running_timer",
        )
    assert len(running_rows(owner, world.team, world.admin.id)) == 1  # still sees it
    stops = events(owner, world.team, "time_entry.stopped")
    assert sorted(event["payload"]["time_entry_id"] for event in stops) == sorted(
        [guest_timer["id"], member_timer["id"]]
    )
    for event in stops:
        assert event["actor_id"] == world.owner.id
        assert event["payload"]["reason"] == "project_out_of_sight"
        assert event["payload"]["ended_at"].endswith("Z")
    assert admin_timer["id"] not in {event["payload"]["time_entry_id"] for event in stops}
    problem(await start(client, world, world.guest, world.other_task), 404, "not_found")
    assert (await start(client, world, world.member, world.task)).status_code == 404


def duration_of(owner: Owner, entry: uuid.UUID) -> int:
    row = owner.execute(
        "select extract(epoch from ended_at - started_at)::integer as seconds"
        " from time_entry where id = %s",
        (entry,),
    ).fetchone()
    assert row is not None
    return int(row["seconds"])


@pytest.mark.parametrize("cap", [None, 3600], ids=["default", "configured"])
async def test_a_forgotten_timer_stopped_out_of_sight_ends_at_the_maximum_duration(
    app: Any, settings: Settings, owner: Owner, world: World, cap: int | None
) -> None:
    """Stopped by a trigger, as through the API: at most ``TIME_ENTRY_MAX_SECONDS`` long,
    the app's setting reaching the database with the transaction's context."""
    db = app.state.services.db
    if cap is not None:
        db = Database(
            settings.database_app_url, settings.model_copy(update={"time_entry_max_seconds": cap})
        )
        await db.open()
    entry = forgotten_timer(owner, world, world.guest.id, hours=30)
    try:
        async with db.transaction(user_id=world.owner.id, team_id=world.team) as tx:
            await tx.execute(
                "delete from project_member where project_id = %s and user_id = %s",
                (world.project, world.guest.id),
            )
    finally:
        if cap is not None:
            await db.close()
    assert duration_of(owner, entry) == (cap or DAY)
    (stop,) = events(owner, world.team, "time_entry.stopped")
    assert stop["payload"]["duration_seconds"] == (cap or DAY)


async def test_a_timer_left_running_in_a_team_stops_when_its_user_comes_back_without_sight(
    client: httpx.AsyncClient, owner: Owner, world: World
) -> None:
    """Leaving the team keeps the entry as it was; coming back as a guest of no project
    must not bring the stuck timer back."""
    timer = (await start(client, world, world.member, world.task)).json()
    left = await client.delete(
        world.url(f"/members/{world.member.id}"), headers=world.owner.headers
    )
    assert left.status_code == 204, left.text
    assert len(running_rows(owner, world.team, world.member.id)) == 1
    owner.execute(
        "insert into team_member (team_id, user_id, role) values (%s, %s, 'guest')",
        (world.team, world.member.id),
    )
    assert running_rows(owner, world.team, world.member.id) == []
    stops = events(owner, world.team, "time_entry.stopped")
    assert [event["payload"]["time_entry_id"] for event in stops] == [timer["id"]]


# --------------------------------------------------------------------------- manual entries


async def test_manual_entries(client: httpx.AsyncClient, owner: Owner, world: World) -> None:
    began = ago(hours=3)
    by_duration = await manual(client, world, world.member, world.task, began, seconds=5400)
    assert by_duration.status_code == 201, by_duration.text
    assert by_duration.json()["duration_seconds"] == 5400
    assert datetime.fromisoformat(by_duration.json()["ended_at"]) == began + timedelta(seconds=5400)
    by_end = await manual(
        client,
        world,
        world.member,
        world.task,
        began,
        ended=began + timedelta(minutes=30),
        note="  review  ",
    )
    assert by_end.status_code == 201, by_end.text
    assert by_end.json()["duration_seconds"] == 1800
    assert by_end.json()["note"] == "review"
    assert by_end.json()["user_id"] == str(world.member.id)
    created = events(owner, world.team, "time_entry.created")
    assert len(created) == 2
    assert created[1]["payload"]["note"] == "review"
    assert created[1]["payload"]["task_id"] == str(world.task)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"started_at": "-2h", "ended_at": "-3h"}, 422, "invalid_time_range"),
        ({"started_at": "-2h", "ended_at": "-2h"}, 422, "invalid_time_range"),
        ({"started_at": "-30h", "ended_at": "-1h"}, 422, "duration_too_long"),
        ({"started_at": "-30h", "duration_seconds": DAY + 1}, 422, "duration_too_long"),
        ({"started_at": "-1h", "duration_seconds": 10**12}, 422, "duration_too_long"),
        ({"started_at": "+1h", "duration_seconds": 60}, 422, "time_in_future"),
        ({"started_at": "-1h", "ended_at": "+1h"}, 422, "time_in_future"),
        (
            {"started_at": "-2h", "ended_at": "-1h", "duration_seconds": 60},
            422,
            "validation_failed",
        ),
        ({"started_at": "-2h"}, 422, "validation_failed"),
        ({"started_at": "-2h", "duration_seconds": 0}, 422, "validation_failed"),
        ({"started_at": "2026-01-01T10:00:00", "duration_seconds": 60}, 422, "validation_failed"),
        ({"started_at": "-2h", "duration_seconds": 60, "user_id": "x"}, 422, "validation_failed"),
        (
            {"started_at": "-2h", "duration_seconds": 60, "note": "x" * 2001},
            422,
            "validation_failed",
        ),
    ],
)
async def test_manual_entry_validation(
    client: httpx.AsyncClient,
    owner: Owner,
    world: World,
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    now = datetime.now(UTC)
    sent = {
        key: iso(now + timedelta(hours=int(value[:-1])))
        if isinstance(value, str) and value.endswith("h")
        else value
        for key, value in body.items()
    }
    if sent.get("user_id") == "x":
        sent["user_id"] = str(world.owner.id)
    response = await client.post(
        world.url(f"/tasks/{world.task}/time-entries"), json=sent, headers=world.member.headers
    )
    problem(response, status, code)
    count = owner.execute(
        "select count(*) as n from time_entry where task_id = %s", (world.task,)
    ).fetchone()
    assert count == {"n": 0}


async def test_the_maximum_duration_is_accepted(client: httpx.AsyncClient, world: World) -> None:
    response = await manual(client, world, world.member, world.task, ago(hours=25), seconds=DAY)
    assert response.status_code == 201, response.text


# --------------------------------------------------------------------------- edit and delete


async def test_edit_own_entries_and_admins_edit_any(
    client: httpx.AsyncClient, owner: Owner, world: World
) -> None:
    began = ago(hours=5)
    entry = (await manual(client, world, world.member, world.task, began, seconds=3600)).json()
    url = world.url(f"/time-entries/{entry['id']}")

    edited = await client.patch(
        url,
        json={"note": "fixed", "ended_at": iso(began + timedelta(hours=2))},
        headers=world.member.headers,
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["note"] == "fixed"
    assert edited.json()["duration_seconds"] == 7200
    [event] = events(owner, world.team, "time_entry.updated")
    assert event["actor_id"] == world.member.id
    assert event["subject_id"] == world.task
    assert set(event["payload"]) == {"note", "ended_at", "time_entry_id", "task_id"}

    problem(
        await client.patch(url, json={"note": "mine"}, headers=world.guest.headers),
        403,
        "insufficient_role",
    )
    problem(await client.delete(url, headers=world.guest.headers), 403, "insufficient_role")
    by_admin = await client.patch(url, json={"note": "by admin"}, headers=world.admin.headers)
    assert by_admin.status_code == 200
    assert by_admin.json()["user_id"] == str(world.member.id)  # authorship unchanged

    for bad, code in (
        ({"ended_at": iso(began - timedelta(minutes=1))}, "invalid_time_range"),
        ({"started_at": iso(began - timedelta(hours=30))}, "duration_too_long"),
        ({"ended_at": None}, "validation_failed"),
        ({"user_id": str(world.admin.id)}, "validation_failed"),
        ({"task_id": str(world.task2)}, "validation_failed"),
    ):
        problem(await client.patch(url, json=bad, headers=world.member.headers), 422, code)
    row = owner.execute(
        "select note, user_id, task_id from time_entry where id = %s", (entry["id"],)
    ).fetchone()
    assert row == {"note": "by admin", "user_id": world.member.id, "task_id": world.task}

    assert (await client.delete(url, headers=world.member.headers)).status_code == 204
    problem(await client.get(url, headers=world.member.headers), 404, "not_found")
    [deleted] = events(owner, world.team, "time_entry.deleted")
    assert deleted["subject_id"] == world.task
    assert deleted["payload"]["time_entry_id"] == entry["id"]
    other = (await manual(client, world, world.member, world.task, began, seconds=60)).json()
    other_url = world.url(f"/time-entries/{other['id']}")
    assert (await client.delete(other_url, headers=world.admin.headers)).status_code == 204


async def test_editing_a_running_entry(client: httpx.AsyncClient, world: World) -> None:
    entry = (await start(client, world, world.member, world.task)).json()
    url = world.url(f"/time-entries/{entry['id']}")
    earlier = await client.patch(
        url, json={"started_at": iso(ago(hours=1))}, headers=world.member.headers
    )
    assert earlier.status_code == 200, earlier.text
    assert earlier.json()["ended_at"] is None
    future = await client.patch(
        url, json={"started_at": iso(ago(hours=-1))}, headers=world.member.headers
    )
    problem(future, 422, "time_in_future")


async def test_entries_go_with_their_task(
    app: Any, client: httpx.AsyncClient, owner: Owner, world: World
) -> None:
    await manual(client, world, world.member, world.task, ago(hours=2), seconds=60)
    await start(client, world, world.member, world.task)
    async with app.state.services.db.transaction(user_id=world.admin.id, team_id=world.team) as tx:
        await tx.execute("delete from task where id = %s", (world.task,))
    count = owner.execute(
        "select count(*) as n from time_entry where task_id = %s", (world.task,)
    ).fetchone()
    assert count == {"n": 0}
    assert (await start(client, world, world.member, world.task2)).status_code == 201


async def test_entries_and_attachments_follow_a_task_to_another_project(
    app: Any, client: httpx.AsyncClient, owner: Owner, world: World
) -> None:
    entry = (await manual(client, world, world.member, world.task, ago(hours=2), seconds=60)).json()
    attached = await client.post(
        world.url(f"/tasks/{world.task}/attachments"),
        params={"filename": "n.txt"},
        content=b"notes",
        headers={**world.member.headers, "content-type": "text/plain"},
    )
    assert attached.status_code == 201, attached.text
    # Moved by an admin through the app role: the cascade is not subject to the policies.
    async with app.state.services.db.transaction(user_id=world.admin.id, team_id=world.team) as tx:
        await tx.execute(
            "update task set project_id = %s, number = 1000 where id = %s",
            (world.other_project, world.task),
        )
    rows = owner.execute(
        "select project_id from time_entry where id = %s"
        " union all select project_id from attachment where id = %s",
        (entry["id"], attached.json()["id"]),
    ).fetchall()
    assert rows == [{"project_id": world.other_project}] * 2
    moved = await client.get(world.url(f"/time-entries/{entry['id']}"), headers=world.guest.headers)
    problem(moved, 404, "not_found")  # the guest is not on the other project


# --------------------------------------------------------------------------- lists


async def test_lists_are_keyset_paginated_with_filters_and_constant_statements(
    client: httpx.AsyncClient, world: World
) -> None:
    base = ago(days=3)
    created: list[tuple[datetime, str]] = []
    for i, task in enumerate([world.task] * 5 + [world.task2]):
        actor = world.member if i % 2 == 0 else world.admin
        began = base + timedelta(hours=i % 5)  # the last one starts with the first: a tie
        response = await manual(client, world, actor, task, began, seconds=600)
        created.append((began, response.json()["id"]))
    expected = [entry_id for _, entry_id in sorted(created, reverse=True)]
    on_task2 = created[-1][1]

    async def walk(path: str, limit: int, **params: Any) -> tuple[list[str], set[int]]:
        seen: list[str] = []
        counts: set[int] = set()
        cursor = None
        while True:
            query = {"limit": limit, **params, **({"cursor": cursor} if cursor else {})}
            response = await client.get(world.url(path), params=query, headers=world.guest.headers)
            assert response.status_code == 200, response.text
            counts.add(sql_count(response))
            seen += [item["id"] for item in response.json()["items"]]
            cursor = response.json()["next_cursor"]
            if cursor is None:
                return seen, counts

    everything, counts = await walk("/time-entries", 200)
    assert everything == expected  # newest start first, ties by id, descending
    paged, paged_counts = await walk("/time-entries", 2)
    assert paged == everything
    assert counts == paged_counts == {2}

    task_only, task_counts = await walk(f"/tasks/{world.task}/time-entries", 2)
    assert task_only == [entry_id for entry_id in expected if entry_id != on_task2]
    assert task_counts == {2}
    mine, _ = await walk("/time-entries", 1, user_id=str(world.admin.id))
    assert len(mine) == 3
    window, _ = await walk(
        "/time-entries",
        2,
        **{"from": iso(base + timedelta(hours=1)), "to": iso(base + timedelta(hours=3))},
    )
    assert len(window) == 2
    by_project, _ = await walk("/time-entries", 3, project_id=str(world.project))
    assert len(by_project) == 6


async def test_list_cursors_are_bound_to_their_filters(
    client: httpx.AsyncClient, world: World
) -> None:
    for i in range(3):
        await manual(client, world, world.member, world.task, ago(hours=10 - i), seconds=60)
    first = await client.get(
        world.url("/time-entries"), params={"limit": 1}, headers=world.member.headers
    )
    cursor = first.json()["next_cursor"]
    assert cursor
    for params in (
        {"user_id": str(world.member.id)},
        {"running": "false"},
        {"from": iso(ago(days=1))},
    ):
        response = await client.get(
            world.url("/time-entries"),
            params={"limit": 1, "cursor": cursor, **params},
            headers=world.member.headers,
        )
        problem(response, 400, "invalid_cursor")
    tampered = await client.get(
        world.url("/time-entries"),
        params={"limit": 1, "cursor": cursor[:-4] + "AAAA"},
        headers=world.member.headers,
    )
    problem(tampered, 400, "invalid_cursor")
    problem(
        await client.get(
            world.url("/time-entries"),
            params={"from": iso(ago(hours=1)), "to": iso(ago(hours=2))},
            headers=world.member.headers,
        ),
        422,
        "invalid_range",
    )


async def test_guests_see_entries_of_their_projects_only(
    client: httpx.AsyncClient, world: World
) -> None:
    await manual(client, world, world.owner, world.private_task, ago(hours=3), seconds=60)
    await manual(client, world, world.owner, world.other_task, ago(hours=3), seconds=60)
    visible = await manual(client, world, world.member, world.task, ago(hours=3), seconds=60)
    listed = await client.get(world.url("/time-entries"), headers=world.guest.headers)
    assert [item["id"] for item in listed.json()["items"]] == [visible.json()["id"]]
    member_view = await client.get(world.url("/time-entries"), headers=world.member.headers)
    assert len(member_view.json()["items"]) == 2  # not the private project's
    hidden = await client.get(
        world.url(f"/tasks/{world.private_task}/time-entries"), headers=world.guest.headers
    )
    problem(hidden, 404, "not_found")


# --------------------------------------------------------------------------- totals


async def test_totals_per_task_project_and_user(
    client: httpx.AsyncClient, owner: Owner, world: World
) -> None:
    day = ago(days=2).replace(hour=8, minute=0, second=0, microsecond=0)
    entries = [
        (world.member, world.task, day, 3600),
        (world.member, world.task, day + timedelta(hours=2), 1800),
        (world.admin, world.task, day + timedelta(hours=1), 600),
        (world.member, world.task2, day + timedelta(hours=3), 120),
        (world.member, world.other_task, day + timedelta(hours=4), 900),
        (world.admin, world.other_task, day - timedelta(days=1), 7200),  # the day before
    ]
    for actor, task, began, seconds in entries:
        response = await manual(client, world, actor, task, began, seconds=seconds)
        assert response.status_code == 201, response.text
    assert (await start(client, world, world.member, world.task)).status_code == 201  # ignored
    member, admin = str(world.member.id), str(world.admin.id)

    task = await client.get(
        world.url(f"/tasks/{world.task}/time-entries/totals"), headers=world.guest.headers
    )
    assert task.status_code == 200, task.text
    assert sql_count(task) == 1
    assert task.json() == {
        "task_id": str(world.task),
        "total_seconds": 6000,
        "entry_count": 3,
        "by_user": sorted(
            [
                {"user_id": member, "total_seconds": 5400, "entry_count": 2},
                {"user_id": admin, "total_seconds": 600, "entry_count": 1},
            ],
            key=lambda row: str(row["user_id"]),
        ),
    }

    project = await client.get(
        world.url(f"/projects/{world.project}/time-entries/totals"), headers=world.member.headers
    )
    assert sql_count(project) == 1
    assert project.json()["total_seconds"] == 6120
    assert project.json()["entry_count"] == 4

    user = await client.get(
        world.url(f"/members/{world.member.id}/time-entries/totals"), headers=world.admin.headers
    )
    assert sql_count(user) == 1
    assert user.json() == {
        "user_id": member,
        "total_seconds": 6420,
        "entry_count": 4,
        "by_project": sorted(
            [
                {"project_id": str(world.project), "total_seconds": 5520, "entry_count": 3},
                {"project_id": str(world.other_project), "total_seconds": 900, "entry_count": 1},
            ],
            key=lambda row: str(row["project_id"]),
        ),
    }

    # Date ranges: entries count by their start, from inclusive, to exclusive.
    window = {"from": iso(day + timedelta(hours=1)), "to": iso(day + timedelta(hours=3))}
    ranged = await client.get(
        world.url(f"/tasks/{world.task}/time-entries/totals"),
        params=window,
        headers=world.member.headers,
    )
    assert (ranged.json()["total_seconds"], ranged.json()["entry_count"]) == (2400, 2)
    admin_total = await client.get(
        world.url(f"/members/{world.admin.id}/time-entries/totals"),
        params={"to": iso(day)},
        headers=world.member.headers,
    )
    assert admin_total.json()["total_seconds"] == 7200

    # A soft-deleted task's time leaves the project and user totals.
    owner.execute("update task set deleted_at = now() where id = %s", (world.task2,))
    project = await client.get(
        world.url(f"/projects/{world.project}/time-entries/totals"), headers=world.member.headers
    )
    assert project.json()["total_seconds"] == 6000
    problem(
        await client.get(
            world.url(f"/tasks/{world.task2}/time-entries/totals"), headers=world.member.headers
        ),
        404,
        "not_found",
    )


async def test_totals_respect_visibility(client: httpx.AsyncClient, world: World) -> None:
    await manual(client, world, world.owner, world.private_task, ago(hours=3), seconds=600)
    await manual(client, world, world.owner, world.task, ago(hours=3), seconds=60)
    as_guest = await client.get(
        world.url(f"/members/{world.owner.id}/time-entries/totals"), headers=world.guest.headers
    )
    assert as_guest.json()["total_seconds"] == 60
    as_owner = await client.get(
        world.url(f"/members/{world.owner.id}/time-entries/totals"), headers=world.owner.headers
    )
    assert as_owner.json()["total_seconds"] == 660
    for path in (
        f"/projects/{world.private_project}/time-entries/totals",
        f"/tasks/{world.private_task}/time-entries/totals",
        f"/members/{uuid.uuid4()}/time-entries/totals",
    ):
        problem(await client.get(world.url(path), headers=world.guest.headers), 404, "not_found")
    empty = await client.get(
        world.url(f"/projects/{world.other_project}/time-entries/totals"),
        headers=world.member.headers,
    )
    assert empty.json() == {
        "project_id": str(world.other_project),
        "total_seconds": 0,
        "entry_count": 0,
        "by_user": [],
    }


# --------------------------------------------------------------------------- RLS


def test_rls_keeps_entries_to_their_user_or_admins(
    db_urls: DatabaseUrls, owner: Owner, make_user: MakeUser
) -> None:
    """Below the service: the app role cannot write another user's entry as a member."""
    member, other, admin = make_user("m"), make_user("o"), make_user("a")
    team = uuid.uuid4()
    owner.execute("insert into team (id, name, created_by) values (%s, 't', %s)", (team, admin.id))
    for actor, role in ((member, "member"), (other, "member"), (admin, "admin")):
        owner.execute(
            "insert into team_member (team_id, user_id, role) values (%s, %s, %s)",
            (team, actor.id, role),
        )
    project, status, task, entry = (uuid.uuid4() for _ in range(4))
    owner.execute(
        "insert into project (team_id, id, key, name, created_by) values (%s, %s, 'RLS', 'r', %s)",
        (team, project, admin.id),
    )
    owner.execute(
        "insert into status (team_id, id, project_id, name, category, position)"
        " values (%s, %s, %s, 'Todo', 'unstarted', 1)",
        (team, status, project),
    )
    owner.execute(
        "insert into task (team_id, id, project_id, number, title, status_id, created_by)"
        " values (%s, %s, %s, 1, 't', %s, %s)",
        (team, task, project, status, admin.id),
    )
    owner.execute(
        "insert into time_entry (team_id, id, project_id, task_id, user_id, started_at)"
        " values (%s, %s, %s, %s, %s, now())",
        (team, entry, project, task, other.id),
    )
    with psycopg.connect(db_urls.app) as conn:

        def as_user(user: uuid.UUID) -> None:
            conn.execute(
                "select set_config('app.user_id', %s, true), set_config('app.team_id', %s, true)",
                (str(user), str(team)),
            )

        as_user(member.id)
        assert (
            conn.execute("update time_entry set note = 'x' where id = %s", (entry,)).rowcount == 0
        )
        assert conn.execute("delete from time_entry where id = %s", (entry,)).rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "insert into time_entry (id, project_id, task_id, user_id, started_at)"
                " values (%s, %s, %s, %s, now())",
                (uuid.uuid4(), project, task, other.id),
            )
        conn.rollback()
        as_user(member.id)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("update time_entry set user_id = %s where id = %s", (member.id, entry))
        conn.rollback()
        as_user(admin.id)
        assert (
            conn.execute("update time_entry set note = 'x' where id = %s", (entry,)).rowcount == 1
        )
        conn.rollback()


async def test_entry_pages_start_at_the_cursor_under_a_generic_plan(
    world: World, owner: psycopg.Connection[dict[str, Any]], db_urls: DatabaseUrls
) -> None:
    """Only the filters given and the cursor are in the statement text, so a generic plan
    (PostgreSQL may settle on one for a prepared statement) starts an index at the cursor.
    The former ``(%(after_at)s is null or (e.started_at, e.id) < (...))`` could only test
    every entry read from the newest one (the last assertion shows it)."""
    caller = AppCaller(owner, db_urls.app_role, world.member.id, world.team)
    cursor = (ago(days=1), uuid.UUID(int=0))
    filters = dict.fromkeys(("task", "project", "user", "from", "to", "running"))
    sql, params = entries_query(filters, 50, cursor)
    plan = explain(caller, sql, params, generic=True)
    assert applied_as(plan, "ROW(started_at, id) <") == "index", plan
    former = (
        "select e.id from time_entry e where (%(user)s::uuid is null or e.user_id = %(user)s)"
        " and (%(after_at)s::timestamptz is null"
        "  or (e.started_at, e.id) < (%(after_at)s, %(after_id)s::uuid))"
        " order by e.started_at desc, e.id desc limit %(limit)s"
    )
    values = {"user": None, "after_at": cursor[0], "after_id": cursor[1], "limit": 51}
    plan = explain(caller, former, values, generic=True)
    assert applied_as(plan, "ROW(started_at, id) <") == "filter", plan


async def test_totals_start_an_index_at_the_range_under_a_generic_plan(
    world: World, owner: psycopg.Connection[dict[str, Any]], db_urls: DatabaseUrls
) -> None:
    """A range's bounds are in the totals statement only when given, so a generic plan
    starts the project's ``started_at`` index at them; without bounds the statement has
    none to apply."""
    caller = AppCaller(owner, db_urls.app_role, world.member.id, world.team)
    bounded = {"from": ago(days=7), "to": ago(days=1)}
    sql = totals_sql("project", bounded)
    plan = explain(caller, sql, {"id": world.project, **bounded}, generic=True)
    assert applied_as(plan, "started_at >=") == "index", plan
    assert applied_as(plan, "started_at <") == "index", plan
    unbounded = totals_sql("project", {"from": None, "to": None})
    assert "started_at >=" not in unbounded
    assert "started_at <" not in unbounded
