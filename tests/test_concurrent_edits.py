"""Edits racing another transaction's change of the same row: the edit waits for it and
then applies to what it committed, never undoing it or losing the row."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import psycopg
import pytest

from teamboard.ops.database import DatabaseUrls
from tests.conftest import Actor
from tests.taskdata import create_task
from tests.test_teams import create_project

pytestmark = pytest.mark.asyncio
API = "/api/v1"
Owner = psycopg.Connection[dict[str, Any]]
MakeUser = Callable[..., Actor]
MakeTeam = Callable[..., Awaitable[uuid.UUID]]


async def _once_waiting(owner: Owner, request: Awaitable[httpx.Response], table: str) -> Any:
    """``request`` started, and known to wait for a row lock on ``table`` (bounded: 10 s)."""
    started = asyncio.ensure_future(request)
    for _ in range(200):
        waiting = owner.execute(
            "select count(*) as n from pg_stat_activity"
            " where wait_event_type = 'Lock' and query like %s",
            (f"%{table}%",),
        ).fetchone()
        if waiting == {"n": 1}:
            return started
        await asyncio.sleep(0.05)
    started.cancel()
    pytest.fail(f"the request never waited on {table}")


async def test_a_note_edited_while_the_timer_stops_keeps_it_stopped(
    app: Any,
    client: httpx.AsyncClient,
    owner: Owner,
    db_urls: DatabaseUrls,
    make_user: MakeUser,
    make_team: MakeTeam,
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    project = (await create_project(client, alice, team, "TMR"))["id"]
    task = await create_task(app, alice.id, team, uuid.UUID(project), "timed")
    started = await client.post(
        f"{API}/teams/{team}/tasks/{task}/time-entries/start", json={}, headers=alice.headers
    )
    assert started.status_code == 201, started.text
    entry = started.json()["id"]
    with psycopg.connect(db_urls.owner) as stopper:  # a stop, committed while the edit waits
        stopper.execute("update time_entry set ended_at = now() where id = %s", (entry,))
        edit = client.patch(
            f"{API}/teams/{team}/time-entries/{entry}", json={"note": "x"}, headers=alice.headers
        )
        waiting = await _once_waiting(owner, edit, "time_entry")
        stopper.commit()
        edited = await waiting
    assert edited.status_code == 200, edited.text
    assert edited.json()["note"] == "x"
    assert edited.json()["ended_at"] is not None
    row = owner.execute("select ended_at from time_entry where id = %s", (entry,)).fetchone()
    assert row is not None
    assert row["ended_at"] is not None


async def test_a_task_edited_while_its_status_changes_is_still_found(
    app: Any,
    client: httpx.AsyncClient,
    owner: Owner,
    db_urls: DatabaseUrls,
    make_user: MakeUser,
    make_team: MakeTeam,
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    project = (await create_project(client, alice, team, "MOV"))["id"]
    task = await create_task(app, alice.id, team, uuid.UUID(project), "moving")
    done = owner.execute(
        "select id from status where project_id = %s and category = 'completed'", (project,)
    ).fetchone()
    assert done is not None
    with psycopg.connect(db_urls.owner) as mover:  # a move, committed while the edit waits
        mover.execute("update task set status_id = %s where id = %s", (done["id"], task))
        edit = client.patch(
            f"{API}/teams/{team}/tasks/{task}", json={"title": "renamed"}, headers=alice.headers
        )
        waiting = await _once_waiting(owner, edit, "task")
        mover.commit()
        edited = await waiting
    assert edited.status_code == 200, edited.text
    assert edited.json()["title"] == "renamed"
    assert edited.json()["status_id"] == str(done["id"])
