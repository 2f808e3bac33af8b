"""Comments through the REST API: CRUD, rules, visibility, pagination and mentions."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from teamboard.comments.mentions import MAX_MENTIONS, parse_mentions
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


def comments_path(team: uuid.UUID, task: uuid.UUID) -> str:
    return f"{API}/teams/{team}/tasks/{task}/comments"


def followers(owner: Owner, task: uuid.UUID) -> set[uuid.UUID]:
    rows = owner.execute("select user_id from task_follower where task_id = %s", (task,))
    return {row["user_id"] for row in rows.fetchall()}


# --------------------------------------------------------------------------- CRUD


async def test_create_list_and_get(
    client: httpx.AsyncClient, app: Any, owner: Owner, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    team = await make_team(alice, members=[(bob, "member")])
    project = await create_project(client, alice, team, "COM")
    task = await create_task(app, alice, team, project)
    assert followers(owner, task) == {alice.id}, "the creator follows the task"

    first = await post_comment(client, bob, team, task, "Looks **good**")
    assert first["body"] == "Looks **good**"
    assert first["author"] == {"id": str(bob.id), "display_name": "bob"}
    assert first["task_id"] == str(task)
    assert first["mentions"] == []
    assert first["edited_at"] is None
    assert followers(owner, task) == {alice.id, bob.id}, "commenters follow the task"
    second = await post_comment(client, alice, team, task, "Thanks")

    listed = await client.get(comments_path(team, task), headers=bob.headers)
    assert listed.status_code == 200, listed.text
    assert [c["id"] for c in listed.json()["items"]] == [first["id"], second["id"]]
    assert listed.json()["next_cursor"] is None
    one = await client.get(f"{comments_path(team, task)}/{first['id']}", headers=alice.headers)
    assert one.status_code == 200
    assert one.json() == first

    [created, _] = events(owner, team, "comment.created")
    assert created["actor_id"] == bob.id
    assert created["subject_id"] == task
    assert created["project_id"] == project
    assert created["payload"] == {"comment_id": first["id"], "mentions": []}
    row = owner.execute("select body, author_id from comment where id = %s", (first["id"],))
    assert row.fetchone() == {"body": "Looks **good**", "author_id": bob.id}


@pytest.mark.parametrize(
    "body",
    [
        {"body": ""},
        {"body": "   \n\t"},
        {"body": "x" * 10_001},
        {"body": "nul \x00 byte"},
        {},
        {"body": 42},
        {"body": "ok", "author_id": "00000000-0000-0000-0000-000000000000"},
        {"body": "ok", "task_id": "00000000-0000-0000-0000-000000000000"},
    ],
)
async def test_invalid_bodies_are_refused_without_writing(
    client: httpx.AsyncClient,
    app: Any,
    owner: Owner,
    make_user: MakeUser,
    make_team: MakeTeam,
    body: dict[str, Any],
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    task = await create_task(app, alice, team, await create_project(client, alice, team, "BAD"))
    response = await client.post(comments_path(team, task), json=body, headers=alice.headers)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_failed"
    count = owner.execute("select count(*) as n from comment where task_id = %s", (task,))
    assert count.fetchone() == {"n": 0}


async def test_body_at_the_length_limit_is_accepted(
    client: httpx.AsyncClient, app: Any, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    task = await create_task(app, alice, team, await create_project(client, alice, team, "LIM"))
    comment = await post_comment(client, alice, team, task, "é" * 10_000)
    assert len(comment["body"]) == 10_000


async def test_only_the_author_edits(
    client: httpx.AsyncClient, app: Any, owner: Owner, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice, bob, admin = make_user("alice"), make_user("bob"), make_user("admin")
    team = await make_team(alice, members=[(bob, "member"), (admin, "admin")])
    task = await create_task(app, alice, team, await create_project(client, alice, team, "EDT"))
    comment = await post_comment(client, bob, team, task, "first draft")
    path = f"{comments_path(team, task)}/{comment['id']}"

    for intruder in (alice, admin):
        refused = await client.patch(path, json={"body": "hijacked"}, headers=intruder.headers)
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "not_comment_author"

    edited = await client.patch(path, json={"body": "final"}, headers=bob.headers)
    assert edited.status_code == 200, edited.text
    assert edited.json()["body"] == "final"
    assert edited.json()["edited_at"] is not None
    assert edited.json()["created_at"] == comment["created_at"]
    [event] = events(owner, team, "comment.edited")
    assert event["payload"] == {"comment_id": comment["id"], "mentions": [], "new_mentions": []}
    assert event["actor_id"] == bob.id

    bad = await client.patch(path, json={"body": ""}, headers=bob.headers)
    assert bad.status_code == 422
    assert (await client.get(path, headers=bob.headers)).json()["body"] == "final"


async def test_author_or_admin_deletes_and_the_text_is_erased(
    client: httpx.AsyncClient, app: Any, owner: Owner, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    team = await make_team(alice, members=[(bob, "member"), (carol, "admin")])
    task = await create_task(app, alice, team, await create_project(client, alice, team, "DEL"))
    mine = await post_comment(client, bob, team, task, "secret token abc")
    other = await post_comment(client, alice, team, task, "owner's words")
    path = comments_path(team, task)

    refused = await client.delete(f"{path}/{other['id']}", headers=bob.headers)
    assert refused.status_code == 403
    assert refused.json()["code"] == "insufficient_role"

    assert (await client.delete(f"{path}/{mine['id']}", headers=bob.headers)).status_code == 204
    assert (await client.delete(f"{path}/{other['id']}", headers=carol.headers)).status_code == 204

    gone = await client.get(f"{path}/{mine['id']}", headers=bob.headers)
    assert gone.status_code == 404
    again = await client.delete(f"{path}/{mine['id']}", headers=bob.headers)
    assert again.status_code == 404
    edit = await client.patch(f"{path}/{mine['id']}", json={"body": "x"}, headers=bob.headers)
    assert edit.status_code == 404
    listed = await client.get(path, headers=bob.headers)
    assert listed.json()["items"] == []
    rows = owner.execute(
        "select body, mentions, deleted_at is not null as deleted from comment where task_id = %s",
        (task,),
    ).fetchall()
    assert rows == [{"body": "", "mentions": [], "deleted": True}] * 2
    payloads = [e["payload"] for e in events(owner, team, "comment.deleted")]
    assert payloads == [
        {"comment_id": mine["id"], "by": "author"},
        {"comment_id": other["id"], "by": "admin"},
    ]


async def test_comments_follow_task_visibility(
    client: httpx.AsyncClient, app: Any, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice, member, guest, insider = (make_user(n) for n in ("alice", "member", "guest", "in"))
    team = await make_team(
        alice, members=[(member, "member"), (guest, "guest"), (insider, "guest")]
    )
    private = await create_project(client, alice, team, "PRV", "private")
    public = await create_project(client, alice, team, "PUB")
    await add_to_project(client, alice, team, private, insider)
    secret = await create_task(app, alice, team, private)
    open_task = await create_task(app, alice, team, public)
    comment = await post_comment(client, alice, team, secret, "private words")

    for outsider in (member, guest):
        for response in (
            await client.get(comments_path(team, secret), headers=outsider.headers),
            await client.get(
                f"{comments_path(team, secret)}/{comment['id']}", headers=outsider.headers
            ),
            await client.post(
                comments_path(team, secret), json={"body": "x"}, headers=outsider.headers
            ),
        ):
            assert response.status_code == 404, response.text
            assert response.json()["code"] == "not_found"
    # Guests see only projects they were added to, team-wide ones included.
    blocked = await client.post(
        comments_path(team, open_task), json={"body": "x"}, headers=guest.headers
    )
    assert blocked.status_code == 404
    await post_comment(client, insider, team, secret, "a guest of the project may comment")
    await post_comment(client, member, team, open_task, "members see team projects")


async def test_comments_of_deleted_tasks_are_gone(
    client: httpx.AsyncClient, app: Any, owner: Owner, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    task = await create_task(app, alice, team, await create_project(client, alice, team, "GON"))
    await post_comment(client, alice, team, task, "hello")
    owner.execute("update task set deleted_at = now() where id = %s", (task,))
    response = await client.get(comments_path(team, task), headers=alice.headers)
    assert response.status_code == 404


async def test_pagination_statement_counts_and_cursors(
    client: httpx.AsyncClient, app: Any, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    team = await make_team(alice, members=[(bob, "member")])
    project = await create_project(client, alice, team, "PAG")
    task = await create_task(app, alice, team, project)
    other_task = await create_task(app, alice, team, project)
    created = [
        (await post_comment(client, bob, team, task, f"@{alice.email} #{i}"))["id"]
        for i in range(5)
    ]
    path = comments_path(team, task)

    assert [c["id"] for c in await walk(client, alice, path, limit=2)] == created
    assert all(len(c["mentions"]) == 1 for c in await walk(client, alice, path, limit=50))
    small, large = await statement_counts(client, alice, path)
    assert small == large == 3  # membership, task, page
    plain = await post_comment(client, alice, team, task, "no mentions")
    details = set()
    for comment_id in (created[0], plain["id"]):
        response = await client.get(f"{path}/{comment_id}", headers=alice.headers)
        assert response.status_code == 200
        details.add(response.headers["x-sql-statements"])
    assert details == {"3"}, "mentions come with the comment, in the same statement"

    page = (await client.get(path, params={"limit": 2}, headers=alice.headers)).json()
    cursor = page["next_cursor"]
    tampered = cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")
    for bad, where in (
        (tampered, path),
        ("not-a-cursor", path),
        (cursor, comments_path(team, other_task)),
    ):
        response = await client.get(where, params={"cursor": bad}, headers=alice.headers)
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "invalid_cursor"


# --------------------------------------------------------------------------- mentions


def test_mention_syntax() -> None:
    names = parse_mentions(
        "@Ada and @bob.smith. cc @carol@Example.org, mail dave@example.com,"
        " path a/@eve `@frank` and\n```\n@grace\n```\n(@heidi) @ada again @-"
    )
    assert names.local_parts == ["ada", "bob.smith", "heidi"]
    assert names.emails == ["carol@example.org"]
    assert not parse_mentions("no mentions @ here, x@y.z")
    many = parse_mentions(" ".join(f"@user{i}" for i in range(MAX_MENTIONS + 10)))
    assert len(many.local_parts) == MAX_MENTIONS
    unclosed = parse_mentions("~~~\n@ivan\n")
    assert not unclosed


@pytest.mark.parametrize(
    ("body", "mentioned"),
    [
        ("``@a `@b` still`` @c", ["c"]),  # a run closes only at a run of its own length
        ("` @d", ["d"]),  # a run nothing closes is literal
        ("`` @e ` @f", ["e", "f"]),
        ("x ```` @g ```` y @h", ["h"]),
        ("`" * 10_000 + " @i", ["i"]),  # long runs: linear work (it used to take a second)
        ("`" * 5_000 + " @j " + "`" * 5_000 + " @k", ["k"]),
        ("`" * 9_000 + "\n@l", []),  # a long fence, unclosed: code to the end
        ("x " + "`" * 9_000 + "\n@m", ["m"]),  # not at a line's start: no fence
    ],
)
def test_code_spans_pair_runs_of_backticks(body: str, mentioned: list[str]) -> None:
    assert parse_mentions(body).local_parts == mentioned


async def test_mentions_resolve_to_members_who_can_see_the_task(
    client: httpx.AsyncClient, app: Any, owner: Owner, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice, bob, guest, stranger = (make_user(n) for n in ("alice", "bob", "guest", "stranger"))
    team = await make_team(alice, members=[(bob, "member"), (guest, "guest")])
    private = await create_project(client, alice, team, "MNT", "private")
    await add_to_project(client, alice, team, private, bob)
    task = await create_task(app, alice, team, private)

    comment = await post_comment(
        client,
        alice,
        team,
        task,
        f"{mention(bob)} {mention(guest)} {mention(stranger)} @{alice.email} `{mention(bob)}`",
    )
    assert {m["id"] for m in comment["mentions"]} == {str(bob.id), str(alice.id)}
    assert {"id": str(bob.id), "display_name": "bob"} in comment["mentions"]
    [event] = events(owner, team, "comment.created")
    assert set(event["payload"]["mentions"]) == {str(bob.id), str(alice.id)}


async def test_ambiguous_local_parts_need_the_full_address(
    client: httpx.AsyncClient,
    app: Any,
    owner: Owner,
    make_user: MakeUser,
    make_team: MakeTeam,
) -> None:
    alice, twin_a, twin_b = make_user("alice"), make_user("twin"), make_user("twin")
    local = f"twin{uuid.uuid4().hex[:6]}"
    for twin, domain in ((twin_a, "a.example"), (twin_b, "b.example")):
        twin.email = f"{local}@{domain}"
        owner.execute("update app_user set email = %s where id = %s", (twin.email, twin.id))
    team = await make_team(alice, members=[(twin_a, "member"), (twin_b, "member")])
    task = await create_task(app, alice, team, await create_project(client, alice, team, "AMB"))

    vague = await post_comment(client, alice, team, task, f"@{local} please")
    assert vague["mentions"] == []
    precise = await post_comment(client, alice, team, task, f"@{twin_b.email} please")
    assert [m["id"] for m in precise["mentions"]] == [str(twin_b.id)]


async def test_edits_recompute_mentions(
    client: httpx.AsyncClient, app: Any, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    team = await make_team(alice, members=[(bob, "member"), (carol, "member")])
    task = await create_task(app, alice, team, await create_project(client, alice, team, "REM"))
    comment = await post_comment(client, alice, team, task, f"hi {mention(bob)}")
    edited = await client.patch(
        f"{comments_path(team, task)}/{comment['id']}",
        json={"body": f"hi {mention(carol)}"},
        headers=alice.headers,
    )
    assert [m["id"] for m in edited.json()["mentions"]] == [str(carol.id)]
