"""Task activity through the REST API, and the plan of its query."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
from psycopg import sql

from teamboard.activity.repository import activity_sql
from teamboard.ops.database import DatabaseUrls
from tests.collab import (
    API,
    Owner,
    add_to_project,
    create_project,
    create_task,
    post_comment,
    statement_counts,
    walk,
)
from tests.conftest import Actor

MakeUser = Callable[..., Actor]
MakeTeam = Callable[..., Awaitable[uuid.UUID]]


def activity_path(team: uuid.UUID, task: uuid.UUID) -> str:
    return f"{API}/teams/{team}/tasks/{task}/activity"


async def test_activity_is_newest_first_with_comment_events(
    client: httpx.AsyncClient, app: Any, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    team = await make_team(alice, members=[(bob, "member")])
    project = await create_project(client, alice, team, "ACT")
    task = await create_task(app, alice, team, project)
    other = await create_task(app, alice, team, project)
    kept = await post_comment(client, bob, team, task, "kept")
    dropped = await post_comment(client, alice, team, task, "dropped")
    await post_comment(client, alice, team, other, "elsewhere")
    comments = f"{API}/teams/{team}/tasks/{task}/comments"
    edit = await client.patch(
        f"{comments}/{kept['id']}", json={"body": "kept, edited"}, headers=bob.headers
    )
    assert edit.status_code == 200
    delete = await client.delete(f"{comments}/{dropped['id']}", headers=alice.headers)
    assert delete.status_code == 204
    follow = await client.put(f"{API}/teams/{team}/tasks/{task}/followers/me", headers=bob.headers)
    assert follow.status_code == 200  # bob follows since his comment: no new event

    response = await client.get(activity_path(team, task), headers=bob.headers)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [item["kind"] for item in items] == [
        "comment.deleted",
        "comment.edited",
        "comment.created",
        "comment.created",
        "task.created",
    ]
    deleted, edited, second, first, created = items
    assert [i["occurred_at"] for i in items] == sorted(
        (i["occurred_at"] for i in items), reverse=True
    )
    assert deleted["comment"] is None
    assert deleted["payload"] == {"comment_id": dropped["id"], "by": "author"}
    assert second["comment"] is None, "the deleted comment's text is gone from the activity"
    assert edited["comment"]["body"] == "kept, edited"
    assert first["comment"]["id"] == kept["id"]
    assert first["actor"] == {"id": str(bob.id), "display_name": "bob"}
    assert created["comment"] is None
    assert created["actor"]["id"] == str(alice.id)

    assert [i["id"] for i in await walk(client, alice, activity_path(team, task), limit=2)] == [
        i["id"] for i in items
    ]
    small, large = await statement_counts(client, alice, activity_path(team, task))
    assert small == large == 3


async def test_activity_shows_the_tasks_attachments_and_time(
    client: httpx.AsyncClient, app: Any, make_user: MakeUser, make_team: MakeTeam
) -> None:
    """Uploads and tracked time are the task's activity too: their events have the task as
    subject, and name the attachment or the time entry in the payload."""
    alice = make_user("alice")
    team = await make_team(alice)
    project = await create_project(client, alice, team, "ATT")
    task = await create_task(app, alice, team, project)
    other = await create_task(app, alice, team, project)
    base = f"{API}/teams/{team}/tasks"
    png = b"\x89PNG\r\n\x1a\n" + bytes(64)
    uploaded = await client.post(
        f"{base}/{task}/attachments",
        params={"filename": "a.png"},
        content=png,
        headers={**alice.headers, "content-type": "image/png"},
    )
    assert uploaded.status_code == 201, uploaded.text
    started = await client.post(f"{base}/{task}/time-entries/start", json={}, headers=alice.headers)
    assert started.status_code == 201, started.text
    stopped = await client.post(
        f"{API}/teams/{team}/time-entries/running/stop", headers=alice.headers
    )
    assert stopped.status_code == 200, stopped.text
    elsewhere = await client.post(
        f"{base}/{other}/time-entries/start", json={}, headers=alice.headers
    )
    assert elsewhere.status_code == 201, elsewhere.text

    response = await client.get(activity_path(team, task), headers=alice.headers)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [item["kind"] for item in items][:3] == [
        "time_entry.stopped",
        "time_entry.started",
        "attachment.uploaded",
    ]
    assert items[0]["payload"]["time_entry_id"] == started.json()["id"]
    assert items[2]["payload"]["attachment_id"] == uploaded.json()["id"]
    assert elsewhere.json()["id"] not in str(items)


async def test_activity_respects_visibility_and_cursors(
    client: httpx.AsyncClient, app: Any, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice, member, guest = make_user("alice"), make_user("member"), make_user("guest")
    team = await make_team(alice, members=[(member, "member"), (guest, "guest")])
    private = await create_project(client, alice, team, "PAC", "private")
    public = await create_project(client, alice, team, "OAC")
    secret = await create_task(app, alice, team, private)
    open_task = await create_task(app, alice, team, public)
    await add_to_project(client, alice, team, public, guest)
    for outsider in (member, guest):
        response = await client.get(activity_path(team, secret), headers=outsider.headers)
        assert response.status_code == 404
    seen = await client.get(activity_path(team, open_task), headers=guest.headers)
    assert [i["kind"] for i in seen.json()["items"]] == ["task.created"]

    for i in range(3):
        await post_comment(client, alice, team, open_task, f"c{i}")
    page = await client.get(
        activity_path(team, open_task), params={"limit": 1}, headers=alice.headers
    )
    cursor = page.json()["next_cursor"]
    for bad, task in ((cursor + "A", open_task), (cursor, secret), ("%%%", open_task)):
        response = await client.get(
            activity_path(team, task), params={"cursor": bad}, headers=alice.headers
        )
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "invalid_cursor"


def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


def test_activity_reads_the_subject_index(
    owner: Owner, db_urls: DatabaseUrls, make_user: MakeUser
) -> None:
    """On a team with many events, a task's events are found through the collab index in
    every populated partition; for a task with many events (a quarter of the team's) the
    partitions' ordered index scans are merged, without a Sort (empty partitions cost
    nothing either way)."""
    alice = make_user("alice")
    team, quiet, busy = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    owner.execute(
        "insert into team (id, name, created_by) values (%s, 'plan', %s)", (team, alice.id)
    )
    owner.execute(
        "insert into team_member (team_id, user_id, role) values (%s, %s, 'owner')",
        (team, alice.id),
    )
    owner.execute(
        "insert into event (team_id, id, occurred_at, actor_id, kind, subject_id)"
        " select %s, gen_random_uuid(), now() - (g %% 40) * interval '1 day', %s,"
        "  'task.updated', case when g %% 500 = 0 then %s when g %% 4 = 0 then %s"
        "  else gen_random_uuid() end"
        " from generate_series(1, 20000) g",
        (team, alice.id, quiet, busy),
    )
    owner.execute("analyze event")
    # The partitions this team's events went to (others may hold a few rows of other
    # tests' teams, which a sequential scan reads as cheaply).
    populated = {
        row["relname"]
        for row in owner.execute(
            "select distinct tableoid::regclass::text as relname from event where team_id = %s",
            (team,),
        ).fetchall()
    }
    assert populated
    with owner.transaction():
        owner.execute(sql.SQL("set local role {}").format(sql.Identifier(db_urls.app_role)))
        owner.execute(
            "select set_config('app.user_id', %s, true), set_config('app.team_id', %s, true)",
            (str(alice.id), str(team)),
        )
        for task, after in ((quiet, False), (quiet, True), (busy, False), (busy, True)):
            params = {"task": task, "at": "2100-01-01T00:00:00Z", "id": task}
            statement = "explain (format json) " + activity_sql(after=after, rows=51)
            row = owner.execute(statement, params).fetchone()
            assert row is not None
            nodes = list(_plan_nodes(row["QUERY PLAN"][0]["Plan"]))
            scans = {n["Relation Name"]: n for n in nodes if n.get("Relation Name") in populated}
            assert set(scans) == populated
            for node in scans.values():
                assert node["Node Type"] == "Index Scan", node
                if task == quiet:
                    assert node["Index Name"].endswith("team_id_subject_id_occurred_at_id_idx")
            if task == busy:  # a dense subject may be read from the team's time index too
                assert "Sort" not in {n["Node Type"] for n in nodes}
                assert "Merge Append" in {n["Node Type"] for n in nodes}
        owner.execute("reset role")
