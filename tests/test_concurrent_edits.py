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
from tests.locks import until_waiting
from tests.taskdata import create_task
from tests.test_teams import create_project

pytestmark = pytest.mark.asyncio
API = "/api/v1"
Owner = psycopg.Connection[dict[str, Any]]


class Race:
    """A team with one task, and a second session that changes a row and commits while a
    request waits for it."""

    def __init__(self, client: httpx.AsyncClient, owner: Owner, db_urls: DatabaseUrls) -> None:
        self.client, self.owner, self.db_urls = client, owner, db_urls

    async def setup(
        self, app: Any, make_user: Callable[..., Actor], make_team: Callable[..., Any]
    ) -> None:
        self.alice = make_user("alice")
        self.team = await make_team(self.alice)
        self.project = (await create_project(self.client, self.alice, self.team, "RACE"))["id"]
        self.task = await create_task(app, self.alice.id, self.team, uuid.UUID(self.project), "t")

    async def during(
        self, change: str, params: Any, table: str, request: Awaitable[httpx.Response]
    ) -> httpx.Response:
        """``request``, started while ``change`` holds the row and answered after it commits."""
        with psycopg.connect(self.db_urls.owner) as other:
            other.execute(change, params)
            started = asyncio.ensure_future(request)
            await until_waiting(self.owner, table, 1)
            other.commit()
            return await started


@pytest.fixture
async def race(
    app: Any,
    client: httpx.AsyncClient,
    owner: Owner,
    db_urls: DatabaseUrls,
    make_user: Callable[..., Actor],
    make_team: Callable[..., Any],
) -> Race:
    made = Race(client, owner, db_urls)
    await made.setup(app, make_user, make_team)
    return made


async def test_a_note_edited_while_the_timer_stops_keeps_it_stopped(race: Race) -> None:
    base = f"{API}/teams/{race.team}"
    started = await race.client.post(
        f"{base}/tasks/{race.task}/time-entries/start", json={}, headers=race.alice.headers
    )
    assert started.status_code == 201, started.text
    entry = started.json()["id"]
    edit = race.client.patch(
        f"{base}/time-entries/{entry}", json={"note": "x"}, headers=race.alice.headers
    )
    stop = "update time_entry set ended_at = now() where id = %s"
    edited = await race.during(stop, (entry,), "time_entry", edit)
    assert edited.status_code == 200, edited.text
    assert edited.json()["note"] == "x"
    assert edited.json()["ended_at"] is not None
    row = race.owner.execute("select ended_at from time_entry where id = %s", (entry,))
    stored = row.fetchone()
    assert stored is not None
    assert stored["ended_at"] is not None


async def test_a_task_edited_while_its_status_changes_is_still_found(race: Race) -> None:
    done = race.owner.execute(
        "select id from status where project_id = %s and category = 'completed'",
        (race.project,),
    ).fetchone()
    assert done is not None
    edit = race.client.patch(
        f"{API}/teams/{race.team}/tasks/{race.task}",
        json={"title": "renamed"},
        headers=race.alice.headers,
    )
    move = "update task set status_id = %s where id = %s"
    edited = await race.during(move, (done["id"], race.task), "task", edit)
    assert edited.status_code == 200, edited.text
    assert edited.json()["title"] == "renamed"
    assert edited.json()["status_id"] == str(done["id"])


async def test_a_label_edit_racing_another_applies_to_what_it_committed(race: Race) -> None:
    """The other session gives the task a label while the edit, which clears the labels,
    waits for the task: the edit then clears that label too (it used to compare against the
    labels read before the wait, see no change and leave the label)."""
    created = await race.client.post(
        f"{API}/teams/{race.team}/projects/{race.project}/labels",
        json={"name": "racing", "color": "#123456"},
        headers=race.alice.headers,
    )
    assert created.status_code == 201, created.text
    label = created.json()["id"]
    edit = race.client.patch(
        f"{API}/teams/{race.team}/tasks/{race.task}",
        json={"label_ids": []},
        headers=race.alice.headers,
    )
    label_it = (
        "with locked as (update task set title = title where id = %(task)s returning team_id)"
        " insert into task_label (team_id, project_id, task_id, label_id)"
        " select team_id, %(project)s, %(task)s, %(label)s from locked"
    )
    params = {"task": race.task, "project": race.project, "label": label}
    edited = await race.during(label_it, params, "task", edit)
    assert edited.status_code == 200, edited.text
    assert edited.json()["labels"] == []
    left = race.owner.execute("select count(*) from task_label where task_id = %s", (race.task,))
    assert left.fetchone() == {"count": 0}
