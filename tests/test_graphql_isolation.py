"""The isolation matrix through GraphQL: another team's ids (or a private project's) answer
exactly like ids that do not exist (null, an empty page, or the same ``not_found``), and
nothing of theirs changes."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import psycopg
import pytest

from tests.collab import post_comment
from tests.conftest import Actor
from tests.gql import data, gql
from tests.test_isolation_rest import _attach_children, _project, _work_items
from tests.work import Board, board

__all__ = ["board"]
pytestmark = pytest.mark.asyncio
Owner = psycopg.Connection[dict[str, Any]]

OPERATIONS = [
    "query($team: UUID!) { team(id: $team) { name projects(first: 5) { nodes { key } } } }",
    "query($own: UUID!, $project: UUID!) { team(id: $own) { project(id: $project) { name } } }",
    "query($own: UUID!, $task: UUID!) { team(id: $own) { task(id: $task) { title } } }",
    "query($own: UUID!, $key: String!) { team(id: $own) { taskByKey(key: $key) { title } } }",
    "query($own: UUID!, $cursor: String!) {"
    " team(id: $own) { projects(first: 1, after: $cursor) { nodes { key } } } }",
    "query($own: UUID!, $cursor: String!) {"
    " team(id: $own) { tasks(first: 1, before: $cursor) { nodes { key } } } }",
    "mutation($team: UUID!, $project: UUID!) {"
    ' createTask(teamId: $team, projectId: $project, input: {title: "x"}) { id } }',
    "mutation($team: UUID!) {"
    ' createProject(teamId: $team, input: {key: "NEW", name: "x"}) { id } }',
    "mutation($own: UUID!, $project: UUID!) {"
    ' createTask(teamId: $own, projectId: $project, input: {title: "x"}) { id } }',
    "mutation($own: UUID!, $task: UUID!) {"
    ' updateTask(teamId: $own, id: $task, input: {title: "hijacked"}) { id } }',
    "mutation($own: UUID!, $task: UUID!, $status: UUID!) {"
    " moveTask(teamId: $own, id: $task, input: {statusId: $status}) { id } }",
    "mutation($own: UUID!, $task: UUID!) { deleteTask(teamId: $own, id: $task) }",
    "mutation($own: UUID!, $task: UUID!) { restoreTask(teamId: $own, id: $task) { id } }",
    "mutation($own: UUID!, $task: UUID!) {"
    ' createComment(teamId: $own, taskId: $task, body: "hijacked") { id } }',
    "mutation($own: UUID!, $task: UUID!, $comment: UUID!) {"
    ' editComment(teamId: $own, taskId: $task, id: $comment, body: "hijacked") { id } }',
    "mutation($own: UUID!, $ownTask: UUID!, $comment: UUID!) {"
    ' editComment(teamId: $own, taskId: $ownTask, id: $comment, body: "hijacked") { id } }',
    "mutation($own: UUID!, $task: UUID!, $comment: UUID!) {"
    " deleteComment(teamId: $own, taskId: $task, id: $comment) }",
    "mutation($own: UUID!, $project: UUID!) {"
    ' createLabel(teamId: $own, projectId: $project, input: {name: "x", color: "#000000"})'
    " { id } }",
    "mutation($own: UUID!, $project: UUID!, $label: UUID!) {"
    ' updateLabel(teamId: $own, projectId: $project, id: $label, input: {name: "h"}) { id } }',
    "mutation($own: UUID!, $project: UUID!, $label: UUID!) {"
    " deleteLabel(teamId: $own, projectId: $project, id: $label) }",
    "mutation($own: UUID!, $project: UUID!) {"
    ' updateProject(teamId: $own, id: $project, input: {name: "hijacked"}) { id } }',
    "mutation($own: UUID!, $project: UUID!) { deleteProject(teamId: $own, id: $project) }",
]


def _used(operation: str, values: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in values.items() if f"${name}:" in operation}


@pytest.mark.parametrize("operation", OPERATIONS)
async def test_foreign_ids_are_indistinguishable_from_missing_ones(
    client: httpx.AsyncClient,
    owner: Owner,
    make_user: Callable[..., Actor],
    make_team: Callable[..., Awaitable[uuid.UUID]],
    operation: str,
) -> None:
    attacker, victim = make_user("attacker"), make_user("victim")
    own_team = await make_team(attacker)
    victim_team = await make_team(victim)
    victim_project = await _project(client, victim, victim_team, "VIC")
    victim_ids = await _work_items(client, victim, victim_team, victim_project)
    victim_task = uuid.UUID(victim_ids["task"])
    comment = await post_comment(client, victim, victim_team, victim_task, "victim")
    children = _attach_children(owner, victim_team, victim_project, victim_task)
    await _project(client, attacker, own_team, "VIC")  # keys resolve per team
    own_project = await _project(client, attacker, own_team, "OWN")
    own_task = (await _work_items(client, attacker, own_team, own_project))["task"]
    listed = await client.get(f"/api/v1/teams/{victim_team}/tasks?limit=1", headers=victim.headers)
    second = await client.post(  # so that the first page has a next one
        f"/api/v1/teams/{victim_team}/projects/{victim_project}/tasks",
        json={"title": "second"},
        headers=victim.headers,
    )
    assert second.status_code == 201

    def values(ids: dict[str, Any], cursor: str) -> dict[str, Any]:
        return {
            "own": str(own_team),
            "ownTask": str(own_task),
            "team": str(ids["team"]),
            "project": str(ids["project"]),
            "task": str(ids["task"]),
            "status": str(ids["status"]),
            "label": str(ids["label"]),
            "comment": str(ids["comment"]),
            "key": ids["key"],
            "cursor": cursor,
        }

    foreign_ids = {**victim_ids, "comment": comment["id"]}
    listed = await client.get(f"/api/v1/teams/{victim_team}/tasks?limit=1", headers=victim.headers)
    foreign_cursor = listed.json()["next_cursor"]
    assert foreign_cursor is not None
    missing_ids = {name: uuid.uuid4() for name in foreign_ids} | {"key": "NOPE-1"}
    missing_cursor = base64.urlsafe_b64encode(uuid.uuid4().bytes * 2).decode().rstrip("=")

    foreign = await gql(
        client, attacker, operation, _used(operation, values(foreign_ids, foreign_cursor))
    )
    missing = await gql(
        client, attacker, operation, _used(operation, values(missing_ids, missing_cursor))
    )
    assert foreign.status_code == missing.status_code == 200
    assert foreign.json() == missing.json()
    body = foreign.json()
    if "errors" in body:
        assert {e["extensions"]["code"] for e in body["errors"]} <= {"not_found", "invalid_cursor"}
    else:  # a query: the team, or what was asked of it, is null
        team = body["data"]["team"]
        assert team is None or all(value is None for value in team.values())

    # Nothing of the victim's changed.
    task = await client.get(
        f"/api/v1/teams/{victim_team}/tasks/{victim_task}", headers=victim.headers
    )
    assert (task.json()["title"], task.json()["version"]) == ("victim task", 1)
    project = await client.get(
        f"/api/v1/teams/{victim_team}/projects/{victim_project}", headers=victim.headers
    )
    assert project.json()["name"] == "VIC"
    stored = owner.execute(
        "select body, deleted_at from comment where id = %s", (comment["id"],)
    ).fetchone()
    assert stored == {"body": "victim", "deleted_at": None}
    labels = owner.execute("select name from label where team_id = %s", (victim_team,)).fetchall()
    assert labels == [{"name": "bug"}, {"name": "bug"}] or labels == [{"name": "bug"}]
    assert owner.execute(
        "select count(*) from attachment where id = %s", (children["attachment"],)
    ).fetchone() == {"count": 1}


PRIVATE = """
query($team: UUID!, $project: UUID!, $task: UUID!) {
  team(id: $team) {
    project(id: $project) { name }
    task(id: $task) { title }
    tasks(first: 50) { nodes { title } }
    projects(first: 50) { nodes { key } }
  }
}
"""


async def test_a_private_project_is_invisible_to_other_members(board: Board) -> None:
    created = await board.client.post(
        f"/api/v1/teams/{board.team}/projects",
        json={"key": "SEC", "name": "Secret", "visibility": "private"},
        headers=board.alice.headers,
    )
    secret = created.json()["id"]
    task = await board.client.post(
        f"/api/v1/teams/{board.team}/projects/{secret}/tasks",
        json={"title": "secret task"},
        headers=board.alice.headers,
    )
    ids = {"team": str(board.team), "project": secret, "task": task.json()["id"]}
    seen = data(await gql(board.client, board.alice, PRIVATE, ids))["team"]
    assert seen["project"] == {"name": "Secret"}
    assert seen["task"] == {"title": "secret task"}
    hidden = await gql(board.client, board.bob, PRIVATE, ids)
    missing = await gql(
        board.client,
        board.bob,
        PRIVATE,
        {"team": str(board.team), "project": str(uuid.uuid4()), "task": str(uuid.uuid4())},
    )
    assert hidden.json() == missing.json()
    team = data(hidden)["team"]
    assert team["project"] is None
    assert team["task"] is None
    assert team["tasks"]["nodes"] == []
    assert [node["key"] for node in team["projects"]["nodes"]] == ["ENG"]


async def test_an_api_key_reaches_its_own_team_only(
    board: Board, client: httpx.AsyncClient, make_user: Callable[..., Actor], make_team: Any
) -> None:
    other_team = await make_team(board.alice)  # alice is in both teams
    created = await client.post(
        f"/api/v1/teams/{board.team}/api-keys",
        json={"name": "k", "scopes": ["read", "write"]},
        headers=board.alice.headers,
    )
    key = Actor(board.alice.id, "", "", {"Authorization": f"Bearer {created.json()['token']}"})
    query = "query($t: UUID!) { team(id: $t) { name } }"
    assert data(await gql(client, key, query, {"t": str(board.team)})) == {"team": {"name": "Team"}}
    elsewhere = await gql(client, key, query, {"t": str(other_team)})
    assert elsewhere.json() == {"data": {"team": None}}
    assert data(await gql(client, board.alice, query, {"t": str(other_team)}))["team"]
    create = """mutation($t: UUID!) {
      createProject(teamId: $t, input: {key: "KEY", name: "k"}) { key } }"""
    refused = await gql(client, key, create, {"t": str(other_team)})
    assert refused.json()["errors"][0]["extensions"]["code"] == "not_found"
    teams = await gql(client, key, "{ teams { nodes { name } } }")
    assert teams.json()["errors"][0]["extensions"]["code"] == "api_key_not_allowed"
