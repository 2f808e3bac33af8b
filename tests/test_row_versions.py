"""``If-Match`` on the PATCH of labels, statuses, comments and time entries: each carries a
``version`` raised by every change (migration ``2026-12-07_row_versions``) and answered as
its ``ETag``; a stale precondition is 412 and changes nothing, as for projects and tasks."""

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

from teamboard.ops.database import DatabaseUrls
from tests.conftest import Actor
from tests.locks import until_waiting
from tests.taskdata import create_task
from tests.test_teams import create_project, problem

API = "/api/v1"
Owner = psycopg.Connection[dict[str, Any]]
MakeUser = Callable[..., Actor]
MakeTeam = Callable[..., Awaitable[uuid.UUID]]


@dataclass
class Versioned:
    """One resource of each kind, made through the API, and how to change it."""

    url: str  # the resource's own URL (PATCH)
    table: str
    id: uuid.UUID
    created: httpx.Response
    change: Callable[[int], dict[str, Any]]  # a distinct PATCH body per call
    field: str  # the column the change writes


async def make_resource(
    kind: str, app: Any, client: httpx.AsyncClient, actor: Actor, team: uuid.UUID
) -> Versioned:
    project = (await create_project(client, actor, team, "VER"))["id"]
    base = f"{API}/teams/{team}"
    if kind == "label":
        url = f"{base}/projects/{project}/labels"
        created = await client.post(
            url, json={"name": "l", "color": "#112233"}, headers=actor.headers
        )
        change, field = (lambda n: {"name": f"label {n}"}), "name"
    elif kind == "status":
        url = f"{base}/projects/{project}/statuses"
        created = await client.post(
            url, json={"name": "s", "category": "started"}, headers=actor.headers
        )
        change, field = (lambda n: {"name": f"status {n}"}), "name"
    else:
        task = await create_task(app, actor.id, team, uuid.UUID(project), "t")
        if kind == "comment":
            url = f"{base}/tasks/{task}/comments"
            created = await client.post(url, json={"body": "first"}, headers=actor.headers)
            change, field = (lambda n: {"body": f"body {n}"}), "body"
        else:
            url = f"{base}/tasks/{task}/time-entries"
            started = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
            created = await client.post(
                url, json={"started_at": started, "duration_seconds": 60}, headers=actor.headers
            )
            change, field = (lambda n: {"note": f"note {n}"}), "note"
            url = f"{base}/time-entries"
    assert created.status_code == 201, created.text
    row_id = uuid.UUID(created.json()["id"])
    return Versioned(f"{url}/{row_id}", kind, row_id, created, change, field)


KINDS = ["label", "status", "comment", "time_entry"]


def stored(owner: Owner, resource: Versioned) -> dict[str, Any]:
    row = owner.execute(
        f"select version, {resource.field} as value from {resource.table} where id = %s",
        (resource.id,),
    ).fetchone()
    assert row is not None
    return row


@pytest.mark.parametrize("kind", KINDS)
async def test_a_stale_if_match_is_412_and_changes_nothing(
    kind: str,
    app: Any,
    client: httpx.AsyncClient,
    owner: Owner,
    make_user: MakeUser,
    make_team: MakeTeam,
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    resource = await make_resource(kind, app, client, alice, team)
    assert resource.created.headers["etag"] == '"1"'
    assert resource.created.json()["version"] == 1

    changed = await client.patch(
        resource.url, json=resource.change(1), headers={**alice.headers, "If-Match": '"1"'}
    )
    assert changed.status_code == 200, changed.text
    assert changed.headers["etag"] == '"2"'
    assert changed.json()["version"] == 2
    assert stored(owner, resource) == {"version": 2, "value": changed.json()[resource.field]}

    for stale in ('"1"', 'W/"2"', '"0", "1"'):
        response = await client.patch(
            resource.url, json=resource.change(2), headers={**alice.headers, "If-Match": stale}
        )
        body = problem(response, 412, "precondition_failed")
        assert body["current_etag"] == '"2"'
    assert stored(owner, resource)["version"] == 2

    response = await client.patch(
        resource.url, json=resource.change(3), headers={**alice.headers, "If-Match": "nonsense"}
    )
    problem(response, 400, "invalid_if_match")
    assert stored(owner, resource)["version"] == 2

    for n, precondition in enumerate(('"1", "2"', "*"), start=4):
        response = await client.patch(
            resource.url,
            json=resource.change(n),
            headers={**alice.headers, "If-Match": precondition},
        )
        assert response.status_code == 200, response.text
    unconditional = await client.patch(resource.url, json=resource.change(9), headers=alice.headers)
    assert unconditional.status_code == 200, unconditional.text
    assert unconditional.headers["etag"] == '"5"'
    assert stored(owner, resource)["version"] == 5


@pytest.mark.parametrize("kind", ["comment", "time_entry"])
async def test_two_edits_checked_against_the_same_version_one_wins(
    kind: str,
    app: Any,
    client: httpx.AsyncClient,
    owner: Owner,
    db_urls: DatabaseUrls,
    make_user: MakeUser,
    make_team: MakeTeam,
) -> None:
    """A comment is not locked between the check and the update: here both edits pass the
    check on version 1 while another session holds the row, and both then wait at their
    update. A time entry's edit locks the entry at its read (it writes back the fields it
    was not sent), so both wait there and the second then checks version 2. Either way the
    first one released writes version 2, and the second gets 412 instead of overwriting
    the first edit."""
    alice = make_user("alice")
    team = await make_team(alice)
    resource = await make_resource(kind, app, client, alice, team)
    headers = {**alice.headers, "If-Match": '"1"'}
    with psycopg.connect(db_urls.owner) as blocker:
        blocker.execute(f"select 1 from {resource.table} where id = %s for update", (resource.id,))
        edits = [
            asyncio.ensure_future(
                client.patch(resource.url, json=resource.change(n), headers=headers)
            )
            for n in range(2)
        ]
        await until_waiting(owner, resource.table, 2)
        blocker.rollback()
        responses = await asyncio.gather(*edits)
    assert sorted(r.status_code for r in responses) == [200, 412], [r.text for r in responses]
    (winner,) = (r for r in responses if r.status_code == 200)
    problem(next(r for r in responses if r.status_code == 412), 412, "precondition_failed")
    assert stored(owner, resource) == {"version": 2, "value": winner.json()[resource.field]}


async def test_a_reorder_and_a_stopped_timer_are_changes_too(
    app: Any, client: httpx.AsyncClient, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    status = await make_resource("status", app, client, alice, team)
    statuses_url = status.url.rsplit("/", 1)[0]
    listed = await client.get(statuses_url, headers=alice.headers)
    ids = [item["id"] for item in listed.json()["items"]]
    response = await client.put(
        f"{statuses_url}/order", json={"status_ids": ids[::-1]}, headers=alice.headers
    )
    assert response.status_code == 204, response.text
    response = await client.patch(
        status.url, json=status.change(1), headers={**alice.headers, "If-Match": '"1"'}
    )
    problem(response, 412, "precondition_failed")

    project = (await create_project(client, alice, team, "TMR"))["id"]
    task = await create_task(app, alice.id, team, uuid.UUID(project), "timed")
    started = await client.post(
        f"{API}/teams/{team}/tasks/{task}/time-entries/start", json={}, headers=alice.headers
    )
    assert started.status_code == 201, started.text
    assert started.json()["version"] == 1
    stopped = await client.post(
        f"{API}/teams/{team}/time-entries/running/stop", headers=alice.headers
    )
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["version"] == 2
    response = await client.patch(
        f"{API}/teams/{team}/time-entries/{started.json()['id']}",
        json={"note": "late"},
        headers={**alice.headers, "If-Match": '"1"'},
    )
    problem(response, 412, "precondition_failed")


async def test_a_patch_that_changes_nothing_keeps_the_version_and_null_is_refused(
    client: httpx.AsyncClient, owner: Owner, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    project = await create_project(client, alice, team, "SAME")
    url = f"{API}/teams/{team}/projects/{project['id']}"
    events_before = owner.execute("select count(*) as n from event where team_id = %s", (team,))
    before = events_before.fetchone()
    for unchanged in ({"archived": False}, {"name": project["name"]}, {"visibility": "team"}):
        response = await client.patch(url, json=unchanged, headers=alice.headers)
        assert response.status_code == 200, response.text
        assert response.headers["etag"] == '"1"', unchanged
    after = owner.execute("select count(*) as n from event where team_id = %s", (team,))
    assert after.fetchone() == before

    label = await client.post(
        f"{url}/labels", json={"name": "l", "color": "#112233"}, headers=alice.headers
    )
    for path, body in ((url, {"name": None}), (url, {"description": None})):
        problem(
            await client.patch(path, json=body, headers=alice.headers), 422, "validation_failed"
        )
    problem(
        await client.patch(
            f"{url}/labels/{label.json()['id']}", json={"color": None}, headers=alice.headers
        ),
        422,
        "validation_failed",
    )
    stored = owner.execute(
        "select version, name from project where id = %s", (uuid.UUID(project["id"]),)
    )
    assert stored.fetchone() == {"version": 1, "name": project["name"]}
