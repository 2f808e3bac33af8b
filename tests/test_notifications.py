"""Notifications and followers through the REST API: fan-out, privacy, read state, counts.

Notifications are produced by the worker's ``notifications`` consumer of the event log, not
in the request: the tests run it (``notify``) where the worker would have.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from teamboard.events.repository import append
from tests.collab import (
    API,
    Owner,
    add_to_project,
    create_project,
    create_task,
    events,
    mention,
    post_comment,
    statement_counts,
    walk,
)
from tests.conftest import Actor

MakeUser = Callable[..., Actor]
MakeTeam = Callable[..., Awaitable[uuid.UUID]]
Notify = Callable[[], Awaitable[int]]


def notifications_path(team: uuid.UUID) -> str:
    return f"{API}/teams/{team}/notifications"


async def inbox(
    client: httpx.AsyncClient, actor: Actor, team: uuid.UUID, **params: Any
) -> list[dict[str, Any]]:
    response = await client.get(notifications_path(team), params=params, headers=actor.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def unread(client: httpx.AsyncClient, actor: Actor, team: uuid.UUID) -> int:
    response = await client.get(f"{notifications_path(team)}/unread-count", headers=actor.headers)
    assert response.status_code == 200, response.text
    count: int = response.json()["unread"]
    return count


def kinds(items: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(item["kind"], item["comment_id"]) for item in items]


# --------------------------------------------------------------------------- fan-out


async def test_comments_notify_followers_and_mentions_once(
    client: httpx.AsyncClient, app: Any, make_user: MakeUser, make_team: MakeTeam, notify: Notify
) -> None:
    alice, bob, carol, dave = (make_user(n) for n in ("alice", "bob", "carol", "dave"))
    team = await make_team(alice, members=[(bob, "member"), (carol, "member"), (dave, "member")])
    project = await create_project(client, alice, team, "FAN")
    task = await create_task(app, alice, team, project, "Fan-out task")

    first = await post_comment(client, bob, team, task, "first")
    assert await inbox(client, alice, team) == [], "not in the request path"
    await notify()
    assert kinds(await inbox(client, alice, team)) == [("commented", first["id"])]
    assert await inbox(client, bob, team) == [], "nobody is notified of their own comment"

    second = await post_comment(client, carol, team, task, f"{mention(bob)} {mention(dave)} see")
    await notify()
    # alice and bob follow (creator, commenter); bob and dave are mentioned: one each.
    assert kinds(await inbox(client, alice, team)) == [
        ("commented", second["id"]),
        ("commented", first["id"]),
    ]
    assert kinds(await inbox(client, bob, team)) == [("mentioned", second["id"])]
    assert kinds(await inbox(client, dave, team)) == [("mentioned", second["id"])]
    assert await inbox(client, carol, team) == []

    [item] = await inbox(client, dave, team)
    assert item["actor"] == {"id": str(carol.id), "display_name": "carol"}
    assert item["task"]["id"] == str(task)
    assert item["task"]["ref"] == "FAN-1"
    assert item["task"]["title"] == "Fan-out task"
    assert item["read_at"] is None


async def test_edits_notify_only_new_mentions(
    client: httpx.AsyncClient, app: Any, make_user: MakeUser, make_team: MakeTeam, notify: Notify
) -> None:
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    team = await make_team(alice, members=[(bob, "member"), (carol, "member")])
    task = await create_task(app, bob, team, await create_project(client, alice, team, "EDN"))
    comment = await post_comment(client, alice, team, task, f"{mention(bob)}")
    await notify()
    assert len(await inbox(client, bob, team)) == 1
    response = await client.patch(
        f"{API}/teams/{team}/tasks/{task}/comments/{comment['id']}",
        json={"body": f"{mention(bob)} {mention(carol)}"},
        headers=alice.headers,
    )
    assert response.status_code == 200, response.text
    await notify()
    assert len(await inbox(client, bob, team)) == 1, "bob was already mentioned"
    assert kinds(await inbox(client, carol, team)) == [("mentioned", comment["id"])]


async def test_private_tasks_notify_only_those_who_can_see_them(
    client: httpx.AsyncClient,
    app: Any,
    owner: Owner,
    make_user: MakeUser,
    make_team: MakeTeam,
    notify: Notify,
) -> None:
    alice, insider, member, guest = (make_user(n) for n in ("alice", "insider", "member", "guest"))
    team = await make_team(
        alice, members=[(insider, "guest"), (member, "member"), (guest, "guest")]
    )
    private = await create_project(client, alice, team, "SEC", "private")
    await add_to_project(client, alice, team, private, insider)
    task = await create_task(app, alice, team, private, "Secret plan")

    await post_comment(
        client, alice, team, task, f"{mention(insider)} {mention(member)} {mention(guest)}"
    )
    await notify()
    assert len(await inbox(client, insider, team)) == 1
    for outsider in (member, guest):
        assert await inbox(client, outsider, team) == []
        assert await unread(client, outsider, team) == 0
    recipients = owner.execute(
        "select recipient_id from notification where task_id = %s", (task,)
    ).fetchall()
    assert [row["recipient_id"] for row in recipients] == [insider.id]

    # A notification that exists for a guest who cannot see the project (forced here with the
    # owner connection) stays invisible and untouchable, and tells nothing about the task.
    forged = uuid.uuid4()
    comment_id = owner.execute("select id from comment where task_id = %s", (task,)).fetchone()
    assert comment_id is not None
    owner.execute(
        "insert into notification (team_id, id, recipient_id, kind, task_id, project_id,"
        " comment_id, actor_id) values (%s, %s, %s, 'mentioned', %s, %s, %s, %s)",
        (team, forged, guest.id, task, private, comment_id["id"], alice.id),
    )
    assert await inbox(client, guest, team) == []
    assert await unread(client, guest, team) == 0
    patch = await client.patch(
        f"{notifications_path(team)}/{forged}", json={"read": True}, headers=guest.headers
    )
    assert patch.status_code == 404
    assert "Secret" not in patch.text


async def test_losing_access_hides_earlier_notifications(
    client: httpx.AsyncClient, app: Any, make_user: MakeUser, make_team: MakeTeam, notify: Notify
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    team = await make_team(alice, members=[(bob, "member")])
    private = await create_project(client, alice, team, "LOS", "private")
    await add_to_project(client, alice, team, private, bob)
    task = await create_task(app, alice, team, private)
    await post_comment(client, alice, team, task, mention(bob))
    await notify()
    assert await unread(client, bob, team) == 1
    removed = await client.delete(
        f"{API}/teams/{team}/projects/{private}/members/{bob.id}", headers=alice.headers
    )
    assert removed.status_code == 204
    assert await inbox(client, bob, team) == []
    assert await unread(client, bob, team) == 0


async def assign(
    app: Any, actor: Actor, team: uuid.UUID, task: uuid.UUID, users: list[Any]
) -> None:
    """Record ``task.assigned`` as the tasks feature does (the assignees added)."""
    async with app.state.services.db.transaction(user_id=actor.id, team_id=team) as tx:
        project = await tx.fetch_value("select project_id from task where id = %s", (task,))
        await append(
            tx, "task.assigned", subject_id=task, project_id=project, payload={"user_ids": users}
        )


async def test_assignments_notify_visible_assignees_once(
    client: httpx.AsyncClient,
    app: Any,
    owner: Owner,
    make_user: MakeUser,
    make_team: MakeTeam,
    notify: Notify,
) -> None:
    alice, bob, guest, stranger = (make_user(n) for n in ("alice", "bob", "guest", "stranger"))
    team = await make_team(alice, members=[(bob, "member"), (guest, "guest")])
    task = await create_task(app, alice, team, await create_project(client, alice, team, "ASG"))

    await assign(app, alice, team, task, [bob.id, guest.id, alice.id, stranger.id])
    await assign(app, alice, team, task, [])
    await notify()
    [item] = await inbox(client, bob, team)
    assert item["kind"] == "assigned"
    assert item["comment_id"] is None
    assert item["actor"]["id"] == str(alice.id)
    for nobody in (alice, guest):  # the actor; a guest outside the project
        assert await inbox(client, nobody, team) == []

    # Reprocessing the log (a worker that crashed before saving its offset) adds nothing.
    owner.execute("update event_consumer set tx_id = '0', seq = 0 where name = 'notifications'")
    await notify()
    count = owner.execute("select count(*) as n from notification where team_id = %s", (team,))
    assert count.fetchone() == {"n": 1}


async def test_deleted_comments_and_tasks_notify_nobody(
    client: httpx.AsyncClient,
    app: Any,
    owner: Owner,
    make_user: MakeUser,
    make_team: MakeTeam,
    notify: Notify,
) -> None:
    """The consumer decides when it runs: what is gone by then notifies nobody."""
    alice, bob = make_user("alice"), make_user("bob")
    team = await make_team(alice, members=[(bob, "member")])
    project = await create_project(client, alice, team, "GNE")
    task = await create_task(app, alice, team, project)
    doomed = await create_task(app, alice, team, project)
    comment = await post_comment(client, alice, team, task, f"{mention(bob)} soon gone")
    deleted = await client.delete(
        f"{API}/teams/{team}/tasks/{task}/comments/{comment['id']}", headers=alice.headers
    )
    assert deleted.status_code == 204
    await assign(app, alice, team, doomed, [bob.id])
    owner.execute("update task set deleted_at = now() where id = %s", (doomed,))
    await notify()
    rows = owner.execute("select id from notification where team_id = %s", (team,)).fetchall()
    assert rows == []


# --------------------------------------------------------------------------- read state


async def test_read_unread_and_counts(
    client: httpx.AsyncClient, app: Any, make_user: MakeUser, make_team: MakeTeam, notify: Notify
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    team = await make_team(alice, members=[(bob, "member")])
    task = await create_task(app, alice, team, await create_project(client, alice, team, "RDS"))
    for i in range(4):
        await post_comment(client, bob, team, task, f"update {i}")
    await notify()
    items = await inbox(client, alice, team)
    assert len(items) == 4
    assert await unread(client, alice, team) == 4
    newest, _, third, oldest = items

    path = f"{notifications_path(team)}/{newest['id']}"
    read = await client.patch(path, json={"read": True}, headers=alice.headers)
    assert read.status_code == 200, read.text
    assert read.json()["read_at"] is not None
    assert read.json()["task"]["id"] == str(task)
    first_read = read.json()["read_at"]
    again = await client.patch(path, json={"read": True}, headers=alice.headers)
    assert again.json()["read_at"] == first_read, "the first read time is kept"
    assert await unread(client, alice, team) == 3
    assert [i["id"] for i in await inbox(client, alice, team, unread="true")] == [
        i["id"] for i in items[1:]
    ]
    back = await client.patch(path, json={"read": False}, headers=alice.headers)
    assert back.json()["read_at"] is None
    assert await unread(client, alice, team) == 4

    stolen = await client.patch(path, json={"read": True}, headers=bob.headers)
    assert stolen.status_code == 404
    for bad in ({}, {"read": "yes"}, {"read": True, "recipient_id": str(bob.id)}):
        response = await client.patch(path, json=bad, headers=alice.headers)
        assert response.status_code == 422, bad

    up_to = await client.post(
        f"{notifications_path(team)}/read-all", json={"up_to": third["id"]}, headers=alice.headers
    )
    assert up_to.status_code == 200, up_to.text
    assert up_to.json() == {"updated": 2}
    assert [i["id"] for i in await inbox(client, alice, team, unread="true")] == [
        newest["id"],
        items[1]["id"],
    ]
    assert oldest["id"] not in [i["id"] for i in await inbox(client, alice, team, unread="true")]
    rest = await client.post(f"{notifications_path(team)}/read-all", headers=alice.headers)
    assert rest.json() == {"updated": 2}
    assert await unread(client, alice, team) == 0


async def test_notifications_of_deleted_tasks_disappear(
    client: httpx.AsyncClient,
    app: Any,
    owner: Owner,
    make_user: MakeUser,
    make_team: MakeTeam,
    notify: Notify,
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    team = await make_team(alice, members=[(bob, "member")])
    task = await create_task(app, alice, team, await create_project(client, alice, team, "DTN"))
    await post_comment(client, bob, team, task, "hi")
    await notify()
    [item] = await inbox(client, alice, team)
    owner.execute("update task set deleted_at = now() where id = %s", (task,))
    assert await inbox(client, alice, team) == []
    assert await unread(client, alice, team) == 0
    response = await client.patch(
        f"{notifications_path(team)}/{item['id']}", json={"read": True}, headers=alice.headers
    )
    assert response.status_code == 404


async def test_notification_pages_and_statement_counts(
    client: httpx.AsyncClient, app: Any, make_user: MakeUser, make_team: MakeTeam, notify: Notify
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    team = await make_team(alice, members=[(bob, "member")])
    task = await create_task(app, alice, team, await create_project(client, alice, team, "NPG"))
    for i in range(5):
        await post_comment(client, bob, team, task, f"note {i}")
    await notify()
    everything = await inbox(client, alice, team)
    assert [i["id"] for i in await walk(client, alice, notifications_path(team), limit=2)] == [
        i["id"] for i in everything
    ]
    assert [i["id"] for i in everything] == sorted((i["id"] for i in everything), reverse=True)
    for params in ({}, {"unread": "true"}):
        small, large = await statement_counts(client, alice, notifications_path(team), **params)
        assert small == large == 2, params
    counts = set()
    for _ in range(2):
        response = await client.get(
            f"{notifications_path(team)}/unread-count", headers=alice.headers
        )
        counts.add(response.headers["x-sql-statements"])
    assert counts == {"2"}

    page = (
        await client.get(notifications_path(team), params={"limit": 2}, headers=alice.headers)
    ).json()
    for params in (
        {"cursor": page["next_cursor"], "unread": "true"},  # another filter
        {"cursor": page["next_cursor"][:-3] + "xyz"},  # tampered
    ):
        response = await client.get(notifications_path(team), params=params, headers=alice.headers)
        assert response.status_code == 400, params
        assert response.json()["code"] == "invalid_cursor"
    foreign = await client.get(
        notifications_path(team), params={"cursor": page["next_cursor"]}, headers=bob.headers
    )
    assert foreign.status_code == 400, "a cursor belongs to its recipient's list"


# --------------------------------------------------------------------------- followers


async def test_follow_and_unfollow(
    client: httpx.AsyncClient,
    app: Any,
    owner: Owner,
    make_user: MakeUser,
    make_team: MakeTeam,
    notify: Notify,
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    team = await make_team(alice, members=[(bob, "member")])
    task = await create_task(app, alice, team, await create_project(client, alice, team, "FOL"))
    path = f"{API}/teams/{team}/tasks/{task}/followers"

    created = await client.put(f"{path}/me", headers=bob.headers)
    assert created.status_code == 201, created.text
    assert created.json()["user_id"] == str(bob.id)
    assert created.json()["display_name"] == "bob"
    again = await client.put(f"{path}/me", headers=bob.headers)
    assert again.status_code == 200
    assert again.json() == created.json()
    listed = await walk(client, alice, path)
    assert {f["user_id"] for f in listed} == {str(alice.id), str(bob.id)}
    small, large = await statement_counts(client, alice, path)
    assert small == large == 3

    await post_comment(client, alice, team, task, "for followers")
    await notify()
    assert len(await inbox(client, bob, team)) == 1
    for _ in range(2):
        gone = await client.delete(f"{path}/me", headers=bob.headers)
        assert gone.status_code == 204
    await post_comment(client, alice, team, task, "bob left")
    await notify()
    assert len(await inbox(client, bob, team)) == 1
    assert [e["payload"] for e in events(owner, team, "task.followed")] == [
        {"user_id": str(bob.id)}
    ]
    [unfollowed] = events(owner, team, "task.unfollowed")
    assert unfollowed["subject_id"] == task
    assert unfollowed["actor_id"] == bob.id


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_followers_of_invisible_tasks_are_not_found(
    client: httpx.AsyncClient, app: Any, make_user: MakeUser, make_team: MakeTeam, method: str
) -> None:
    alice, member = make_user("alice"), make_user("member")
    team = await make_team(alice, members=[(member, "member")])
    private = await create_project(client, alice, team, "HID", "private")
    task = await create_task(app, alice, team, private)
    suffix = "" if method == "GET" else "/me"
    response = await client.request(
        method, f"{API}/teams/{team}/tasks/{task}/followers{suffix}", headers=member.headers
    )
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
