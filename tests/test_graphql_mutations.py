"""GraphQL mutations: the REST services' rules and errors, savepoints per field, version
checks and idempotency keys."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from tests.conftest import Actor
from tests.gql import data, error_codes, gql, statements
from tests.work import Board, board, task_events

__all__ = ["board"]
pytestmark = pytest.mark.asyncio
Owner = psycopg.Connection[dict[str, Any]]

CREATE_TASK = """
mutation($team: UUID!, $project: UUID!, $input: CreateTaskInput!, $key: String) {
  createTask(teamId: $team, projectId: $project, input: $input, idempotencyKey: $key) {
    id key title priority version assignees { id } labels { name } status { name }
  }
}
"""
UPDATE_TASK = """
mutation($team: UUID!, $id: UUID!, $input: UpdateTaskInput!, $version: Int) {
  updateTask(teamId: $team, id: $id, input: $input, expectedVersion: $version) {
    title version dueAt
  }
}
"""


def variables(board: Board, **extra: Any) -> dict[str, Any]:
    return {"team": str(board.team), "project": board.project, **extra}


async def test_create_task_runs_the_rest_rules(board: Board, owner: Owner) -> None:
    label = await board.label("bug")
    task_input = {"title": "From GraphQL", "priority": 2, "assigneeIds": [str(board.bob.id)]}
    task_input["labelIds"] = [label]
    response = await gql(board.client, board.alice, CREATE_TASK, variables(board, input=task_input))
    task = data(response)["createTask"]
    assert task["key"] == "ENG-1"
    assert task["assignees"] == [{"id": str(board.bob.id)}]
    assert task["labels"] == [{"name": "bug"}]
    assert task["status"] == {"name": "Todo"}
    rest = (await board.get(task["id"])).json()
    assert (rest["title"], rest["priority"], rest["version"]) == ("From GraphQL", 2, 1)
    events = task_events(owner, board.team, "task.created")
    assert [event["subject_id"] for event in events] == [uuid.UUID(task["id"])]


@pytest.mark.parametrize(
    ("task_input", "code", "field"),
    [
        ({"title": ""}, "validation_failed", "title"),
        ({"title": "x", "priority": 9}, "validation_failed", "priority"),
        ({"title": "nul\x00"}, "validation_failed", "title"),
        ({"title": "x", "assigneeIds": [str(uuid.uuid4())]}, "invalid_assignee", None),
    ],
)
async def test_invalid_input_answers_the_rest_code_and_writes_nothing(
    board: Board, owner: Owner, task_input: dict[str, Any], code: str, field: str | None
) -> None:
    response = await gql(board.client, board.alice, CREATE_TASK, variables(board, input=task_input))
    assert response.status_code == 200
    assert response.json()["data"] == {"createTask": None}
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == code
    assert error["path"] == ["createTask"]
    if field is not None:
        assert [item["field"] for item in error["extensions"]["errors"]] == [field]
    count = owner.execute("select count(*) from task where team_id = %s", (board.team,))
    assert count.fetchone() == {"count": 0}


async def test_guests_and_outsiders_get_the_rest_errors(board: Board, make_user: Any) -> None:
    guest = await gql(board.client, board.gina, CREATE_TASK, variables(board, input={"title": "x"}))
    assert error_codes(guest) == ["insufficient_role"]
    outsider = await gql(
        board.client, make_user("mallory"), CREATE_TASK, variables(board, input={"title": "x"})
    )
    assert error_codes(outsider) == ["not_found"]


async def test_version_checks(board: Board) -> None:
    task = await board.create(title="Versioned")
    stale = await gql(
        board.client,
        board.alice,
        UPDATE_TASK,
        {"team": str(board.team), "id": task["id"], "input": {"title": "B"}, "version": 7},
    )
    (error,) = stale.json()["errors"]
    assert error["extensions"] == {
        "code": "precondition_failed",
        "status": 412,
        "current_etag": '"1"',
    }
    assert (await board.get(task["id"])).json()["title"] == "Versioned"
    fresh = await gql(
        board.client,
        board.alice,
        UPDATE_TASK,
        {
            "team": str(board.team),
            "id": task["id"],
            "input": {"title": "B", "dueAt": "2030-01-02T03:04:05+02:00"},
            "version": 1,
        },
    )
    assert data(fresh)["updateTask"] == {
        "title": "B",
        "version": 2,
        "dueAt": "2030-01-02T01:04:05Z",
    }
    cleared = await gql(
        board.client,
        board.alice,
        UPDATE_TASK,
        {"team": str(board.team), "id": task["id"], "input": {"dueAt": None}},
    )
    assert data(cleared)["updateTask"] == {"title": "B", "version": 3, "dueAt": None}


MANY = """
mutation($team: UUID!, $project: UUID!, $missing: UUID!) {
  first: createLabel(teamId: $team, projectId: $project, input: {name: "a", color: "#000000"}) {
    name
  }
  duplicate: createLabel(
    teamId: $team, projectId: $project, input: {name: "A", color: "#000000"}
  ) { name }
  missing: deleteTask(teamId: $team, id: $missing)
  last: createLabel(teamId: $team, projectId: $project, input: {name: "b", color: "#ffffff"}) {
    name
  }
}
"""


async def test_a_failed_field_is_rolled_back_alone(board: Board, owner: Owner) -> None:
    """Each mutation field runs in a savepoint: the duplicate (a database error that aborts
    the transaction) and the missing task change nothing, the others are committed."""
    response = await gql(
        board.client, board.alice, MANY, variables(board, missing=str(uuid.uuid4()))
    )
    body = response.json()
    assert body["data"] == {
        "first": {"name": "a"},
        "duplicate": None,
        "missing": None,
        "last": {"name": "b"},
    }
    assert [(e["path"], e["extensions"]["code"]) for e in body["errors"]] == [
        (["duplicate"], "already_exists"),
        (["missing"], "not_found"),
    ]
    labels = owner.execute(
        "select name from label where project_id = %s order by name", (board.project,)
    ).fetchall()
    assert labels == [{"name": "a"}, {"name": "b"}]
    events = task_events(owner, board.team, "label.created")
    assert len(events) == 2


async def test_idempotency_keys_replay_the_first_answer(board: Board, owner: Owner) -> None:
    first = await gql(
        board.client,
        board.alice,
        CREATE_TASK,
        variables(board, input={"title": "Once"}, key="create-once"),
    )
    created = data(first)["createTask"]
    again = await gql(
        board.client,
        board.alice,
        CREATE_TASK,
        variables(board, input={"title": "Once"}, key="create-once"),
    )
    assert again.json()["data"] == first.json()["data"]
    assert again.json()["extensions"] == {"idempotentReplays": ["createTask"]}
    count = owner.execute("select count(*) from task where team_id = %s", (board.team,))
    assert count.fetchone() == {"count": 1}
    reused = await gql(
        board.client,
        board.alice,
        CREATE_TASK,
        variables(board, input={"title": "Other"}, key="create-once"),
    )
    assert error_codes(reused) == ["idempotency_key_reused"]
    # Another caller's key of the same name is theirs.
    other = await gql(
        board.client,
        board.bob,
        CREATE_TASK,
        variables(board, input={"title": "Once"}, key="create-once"),
    )
    assert data(other)["createTask"]["id"] != created["id"]
    invalid = await gql(
        board.client,
        board.alice,
        CREATE_TASK,
        variables(board, input={"title": "Once"}, key="not ascii é"),
    )
    assert error_codes(invalid) == ["invalid_idempotency_key"]


async def test_a_failed_mutation_keeps_no_answer_for_its_key(board: Board) -> None:
    failing = variables(board, input={"title": ""}, key="retry-me")
    assert error_codes(await gql(board.client, board.alice, CREATE_TASK, failing)) == [
        "validation_failed"
    ]
    stale = {"team": str(board.team), "id": str(uuid.uuid4()), "input": {"title": "x"}}
    assert error_codes(await gql(board.client, board.alice, UPDATE_TASK, stale)) == ["not_found"]
    fixed = variables(board, input={"title": "Now valid"}, key="retry-me")
    assert data(await gql(board.client, board.alice, CREATE_TASK, fixed))["createTask"]


async def test_the_idempotency_key_header_replays_the_whole_response(
    board: Board, owner: Owner
) -> None:
    body = {"query": CREATE_TASK, "variables": variables(board, input={"title": "Header"})}
    headers = {**board.alice.headers, "Idempotency-Key": "whole-request"}
    first = await board.client.post("/graphql", json=body, headers=headers)
    assert first.status_code == 200
    again = await board.client.post("/graphql", json=body, headers=headers)
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert statements(again) <= 2  # the key's lock and lookup; no work
    count = owner.execute("select count(*) from task where team_id = %s", (board.team,))
    assert count.fetchone() == {"count": 1}
    other = {"query": CREATE_TASK, "variables": variables(board, input={"title": "Changed"})}
    reused = await board.client.post("/graphql", json=other, headers=headers)
    assert reused.status_code == 422
    assert error_codes(reused) == ["idempotency_key_reused"]


LIFECYCLE = """
mutation($team: UUID!, $id: UUID!, $status: UUID!) {
  moved: moveTask(teamId: $team, id: $id, input: {statusId: $status}, expectedVersion: 1) {
    status { name } version completedAt
  }
  deleted: deleteTask(teamId: $team, id: $id)
}
"""


async def test_move_delete_restore(board: Board) -> None:
    task = await board.create(title="Lifecycle")
    response = await gql(
        board.client,
        board.alice,
        LIFECYCLE,
        {"team": str(board.team), "id": task["id"], "status": board.statuses["Done"]},
    )
    result = data(response)
    assert result["moved"]["status"] == {"name": "Done"}
    assert result["moved"]["completedAt"] is not None
    assert result["deleted"] == task["id"]
    assert (await board.get(task["id"])).status_code == 404
    restore = "mutation($t: UUID!, $id: UUID!) { restoreTask(teamId: $t, id: $id) { title } }"
    restored = await gql(
        board.client, board.alice, restore, {"t": str(board.team), "id": task["id"]}
    )
    assert data(restored) == {"restoreTask": {"title": "Lifecycle"}}


COMMENTS = """
mutation($team: UUID!, $task: UUID!, $body: String!) {
  created: createComment(teamId: $team, taskId: $task, body: $body) {
    id body author { displayName } mentions { displayName }
  }
}
"""


async def test_comments(board: Board, owner: Owner) -> None:
    task = await board.create(title="Discussed")
    created = data(
        await gql(
            board.client,
            board.alice,
            COMMENTS,
            {"team": str(board.team), "task": task["id"], "body": f"Hello @{board.bob.email}"},
        )
    )["created"]
    assert created["author"] == {"displayName": "alice"}
    assert created["mentions"] == [{"displayName": "bob"}]
    edit = """mutation($team: UUID!, $task: UUID!, $id: UUID!, $body: String!) {
      editComment(teamId: $team, taskId: $task, id: $id, body: $body) { body } }"""
    ids = {"team": str(board.team), "task": task["id"], "id": created["id"]}
    not_author = await gql(board.client, board.bob, edit, {**ids, "body": "hijack"})
    assert error_codes(not_author) == ["not_comment_author"]
    edited = await gql(board.client, board.alice, edit, {**ids, "body": "Edited"})
    assert data(edited) == {"editComment": {"body": "Edited"}}
    delete = """mutation($team: UUID!, $task: UUID!, $id: UUID!) {
      deleteComment(teamId: $team, taskId: $task, id: $id) }"""
    assert data(await gql(board.client, board.alice, delete, ids)) == {
        "deleteComment": created["id"]
    }
    row = owner.execute("select body, deleted_at from comment where id = %s", (created["id"],))
    stored = row.fetchone()
    assert stored is not None
    assert stored["body"] == ""
    assert stored["deleted_at"] is not None


PROJECTS = """
mutation($team: UUID!) {
  createProject(teamId: $team, input: {key: "OPS", name: "Ops", visibility: TEAM}) {
    id key visibility version
  }
}
"""


async def test_projects_and_labels(board: Board, owner: Owner) -> None:
    project = data(await gql(board.client, board.bob, PROJECTS, {"team": str(board.team)}))[
        "createProject"
    ]
    assert (project["key"], project["visibility"], project["version"]) == ("OPS", "TEAM", 1)
    update = """mutation($team: UUID!, $id: UUID!, $v: Int) {
      updateProject(teamId: $team, id: $id, input: {archived: true}, expectedVersion: $v) {
        archivedAt version } }"""
    ids = {"team": str(board.team), "id": project["id"]}
    archived = data(await gql(board.client, board.bob, update, {**ids, "v": 1}))
    assert archived["updateProject"]["version"] == 2
    label = """mutation($team: UUID!, $project: UUID!) {
      createLabel(teamId: $team, projectId: $project, input: {name: "x", color: "#000000"}) {
        id } }"""
    frozen = await gql(
        board.client, board.bob, label, {"team": str(board.team), "project": project["id"]}
    )
    assert error_codes(frozen) == ["project_archived"]
    delete = "mutation($team: UUID!, $id: UUID!) { deleteProject(teamId: $team, id: $id) }"
    not_admin = await gql(board.client, board.bob, delete, ids)
    assert error_codes(not_admin) == ["insufficient_role"]
    assert data(await gql(board.client, board.alice, delete, ids)) == {
        "deleteProject": project["id"]
    }
    row = owner.execute("select deleted_at from project where id = %s", (project["id"],))
    stored = row.fetchone()
    assert stored is not None
    assert stored["deleted_at"] is not None


async def test_labels_update_and_delete(board: Board) -> None:
    label = await board.label("old")
    update = """mutation($team: UUID!, $project: UUID!, $id: UUID!) {
      updateLabel(teamId: $team, projectId: $project, id: $id, input: {name: "new"}) {
        name color } }"""
    ids = {"team": str(board.team), "project": board.project, "id": label}
    assert data(await gql(board.client, board.alice, update, ids)) == {
        "updateLabel": {"name": "new", "color": "#336699"}
    }
    delete = """mutation($team: UUID!, $project: UUID!, $id: UUID!) {
      deleteLabel(teamId: $team, projectId: $project, id: $id) }"""
    assert data(await gql(board.client, board.alice, delete, ids)) == {"deleteLabel": label}
    gone = await gql(board.client, board.alice, delete, ids)
    assert error_codes(gone) == ["not_found"]


async def test_read_only_api_keys_cannot_mutate(board: Board, client: httpx.AsyncClient) -> None:
    created = await client.post(
        f"/api/v1/teams/{board.team}/api-keys",
        json={"name": "ro", "scopes": ["read"]},
        headers=board.alice.headers,
    )
    assert created.status_code == 201, created.text
    key = Actor(board.alice.id, "", "", {"Authorization": f"Bearer {created.json()['token']}"})
    refused = await gql(client, key, CREATE_TASK, variables(board, input={"title": "x"}))
    assert refused.status_code == 403
    assert error_codes(refused) == ["insufficient_scope"]
    read = "query($t: UUID!) { team(id: $t) { name role } }"
    assert data(await gql(client, key, read, {"t": str(board.team)})) == {
        "team": {"name": "Team", "role": "OWNER"}
    }


async def test_comment_and_label_edits_check_their_version(board: Board) -> None:
    task = await board.create(title="Versions")
    create = """mutation($team: UUID!, $task: UUID!) {
      createComment(teamId: $team, taskId: $task, body: "First") { id version } }"""
    created = data(
        await gql(board.client, board.alice, create, {"team": str(board.team), "task": task["id"]})
    )["createComment"]
    assert created["version"] == 1
    edit = """mutation($team: UUID!, $task: UUID!, $id: UUID!, $v: Int) {
      editComment(teamId: $team, taskId: $task, id: $id, body: "Second", expectedVersion: $v) {
        body version } }"""
    ids = {"team": str(board.team), "task": task["id"], "id": created["id"]}
    stale = await gql(board.client, board.alice, edit, {**ids, "v": 9})
    assert stale.json()["errors"][0]["extensions"]["current_etag"] == '"1"'
    assert error_codes(stale) == ["precondition_failed"]
    assert data(await gql(board.client, board.alice, edit, {**ids, "v": 1})) == {
        "editComment": {"body": "Second", "version": 2}
    }
    label = await board.label("versioned")
    update = """mutation($team: UUID!, $project: UUID!, $id: UUID!, $v: Int) {
      updateLabel(teamId: $team, projectId: $project, id: $id, input: {name: "renamed"},
                  expectedVersion: $v) { name version } }"""
    label_ids = {"team": str(board.team), "project": board.project, "id": label}
    assert error_codes(await gql(board.client, board.alice, update, {**label_ids, "v": 5})) == [
        "precondition_failed"
    ]
    assert data(await gql(board.client, board.alice, update, {**label_ids, "v": 1})) == {
        "updateLabel": {"name": "renamed", "version": 2}
    }


async def test_a_header_key_keeps_nothing_when_every_mutation_failed(
    board: Board, owner: Owner
) -> None:
    """As a failed REST request: the retry runs again instead of replaying the failure."""
    body = {"query": CREATE_TASK, "variables": variables(board, input={"title": ""})}
    headers = {**board.alice.headers, "Idempotency-Key": "all-failed"}
    failed = await board.client.post("/graphql", json=body, headers=headers)
    assert error_codes(failed) == ["validation_failed"]
    kept = owner.execute("select count(*) from idempotency_record where key = 'all-failed'")
    assert kept.fetchone() == {"count": 0}
    again = await board.client.post("/graphql", json=body, headers=headers)
    assert "idempotent-replayed" not in again.headers
    assert error_codes(again) == ["validation_failed"]


async def test_a_header_key_covers_a_body_sent_as_another_type(board: Board) -> None:
    """``/graphql`` reads its body as JSON whatever the content type: two mutations of the
    same length under one key are two requests (422), not a replay of the first."""
    headers = {**board.alice.headers, "Idempotency-Key": "typed", "content-type": "text/plain"}
    draft, final = (
        orjson.dumps({"query": CREATE_TASK, "variables": variables(board, input={"title": t})})
        for t in ("Draft", "Final")
    )
    assert len(draft) == len(final)
    first = await board.client.post("/graphql", content=draft, headers=headers)
    assert data(first)["createTask"]["title"] == "Draft"
    reused = await board.client.post("/graphql", content=final, headers=headers)
    assert reused.status_code == 422
    assert error_codes(reused) == ["idempotency_key_reused"]


async def test_a_mutation_spends_what_a_rest_write_spends(board: Board) -> None:
    """Two aliased deletions spend 2 x 2 units, as two REST DELETEs would (a mutation used
    to be priced as one field: both for one unit)."""
    first, second = await board.create(title="One"), await board.create(title="Two")
    read = await board.get(first["id"])
    deletions = """mutation($team: UUID!, $a: UUID!, $b: UUID!) {
      a: deleteTask(teamId: $team, id: $a) b: deleteTask(teamId: $team, id: $b) }"""
    ids = {"team": str(board.team), "a": first["id"], "b": second["id"]}
    deleted = await gql(board.client, board.alice, deletions, ids)
    assert data(deleted) == {"a": first["id"], "b": second["id"]}
    assert caller_left(read) - caller_left(deleted) == 4


def caller_left(response: httpx.Response) -> int:
    found = re.search(r'"caller";r=(\d+)', response.headers["ratelimit"])
    assert found is not None
    return int(found.group(1))
