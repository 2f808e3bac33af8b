"""Tasks through the REST API: creation and numbering, reads, updates, ETags, assignees,
labels, hierarchy, completion, soft delete and the role rules.

Every test checks the response and the rows (and events) it left behind through the owner
connection.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from tests.test_teams import problem
from tests.work import (
    API,
    Board,
    MakeTeam,
    MakeUser,
    Owner,
    board,
    make_board,
    project,
    sql_count,
    task_events,
)

__all__ = ["board"]  # the fixture, imported for this module


def task_row(owner: Owner, task_id: str) -> dict[str, Any]:
    row = owner.execute("select * from task where id = %s", (uuid.UUID(task_id),)).fetchone()
    assert row is not None
    return dict(row)


# --------------------------------------------------------------------------- create and read


async def test_create_numbers_tasks_and_reads_them_by_id_and_key(
    board: Board, owner: Owner
) -> None:
    first = await board.create(title="  First  ", description="# Hello\n\n*markdown*")
    second = await board.create(board.bob, title="Second", priority=2, estimate=3)
    assert (first["number"], first["key"]) == (1, "ENG-1")
    assert (second["number"], second["key"]) == (2, "ENG-2")
    assert first["title"] == "First"
    assert first["description"] == "# Hello\n\n*markdown*"
    assert first["status_id"] == board.statuses["Todo"]  # the first "unstarted" status
    assert first["created_by"] == str(board.alice.id)
    assert second["created_by"] == str(board.bob.id)
    assert (second["priority"], second["estimate"]) == (2, 3)
    assert first["version"] == 1
    assert first["completed_at"] is None
    assert first["assignee_ids"] == []
    assert first["labels"] == []
    assert second["position"] > first["position"]

    response = await board.get(first["id"])
    assert response.status_code == 200, response.text
    assert response.json() == first
    assert response.headers["etag"] == '"1"'
    assert sql_count(response) == 1

    response = await board.client.get(
        f"{API}/teams/{board.team}/tasks/by-key/ENG-2", headers=board.gina.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["id"] == second["id"]
    assert sql_count(response) == 1
    for key in ("ENG-3", "ENG-0", "eng-1", "ENG-99999999999", "ENG1", "X-1"):
        response = await board.client.get(
            f"{API}/teams/{board.team}/tasks/by-key/{key}", headers=board.alice.headers
        )
        problem(response, 404, "not_found")

    created = task_events(owner, board.team, "task.created")
    assert [e["subject_id"] for e in created] == [uuid.UUID(first["id"]), uuid.UUID(second["id"])]
    assert created[0]["actor_id"] == board.alice.id
    assert created[0]["project_id"] == uuid.UUID(board.project)
    assert created[0]["payload"]["number"] == 1
    assert created[0]["payload"]["title"] == "First"
    assert created[0]["payload"]["status_id"] == board.statuses["Todo"]
    assert "description" not in created[0]["payload"]


async def test_create_answers_location_and_etag(board: Board) -> None:
    response = await board.client.post(
        board.tasks, json={"title": "x"}, headers=board.alice.headers
    )
    assert response.status_code == 201, response.text
    assert response.headers["etag"] == '"1"'
    assert response.headers["location"] == board.task_path(response.json()["id"])


async def test_create_in_a_completed_status_sets_completed_at(board: Board) -> None:
    task = await board.create(status_id=board.statuses["Done"])
    assert task["completed_at"] is not None


async def test_invalid_creations_write_nothing_and_waste_no_number(
    board: Board, owner: Owner, client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    other = await project(client, board.alice, board.team, "OTH")
    other_status = owner.execute(
        "select id from status where project_id = %s limit 1", (uuid.UUID(other),)
    ).fetchone()
    assert other_status is not None
    stranger = make_user("stranger")
    attempts: list[tuple[dict[str, Any], int, str]] = [
        ({"title": "x", "status_id": str(other_status["id"])}, 422, "invalid_status"),
        ({"title": "x", "status_id": str(uuid.uuid4())}, 422, "invalid_status"),
        ({"title": "x", "assignee_ids": [str(stranger.id)]}, 422, "invalid_assignee"),
        ({"title": "x", "label_ids": [str(uuid.uuid4())]}, 422, "invalid_label"),
        ({"title": "x", "parent_id": str(uuid.uuid4())}, 422, "invalid_parent"),
        ({"title": ""}, 422, "validation_failed"),
        ({"title": "   "}, 422, "validation_failed"),
        ({"title": "x" * 501}, 422, "validation_failed"),
        ({"title": "nul \u0000 byte"}, 422, "validation_failed"),  # text cannot hold NUL
        ({"title": "x", "description": "\u0000"}, 422, "validation_failed"),
        ({"title": "x", "description": "d" * 50_001}, 422, "validation_failed"),
        ({"title": "x", "priority": 5}, 422, "validation_failed"),
        ({"title": "x", "estimate": -1}, 422, "validation_failed"),
        ({"title": "x", "due_at": "2030-01-01T00:00:00"}, 422, "validation_failed"),
        ({"title": "x", "assignee_ids": [str(board.bob.id)] * 2}, 422, "validation_failed"),
        ({"title": "x", "number": 7}, 422, "validation_failed"),
        ({"title": "x", "team_id": str(uuid.uuid4())}, 422, "validation_failed"),
        ({"title": "x", "created_by": str(board.bob.id)}, 422, "validation_failed"),
        ({"title": "x", "id": str(uuid.uuid4())}, 422, "validation_failed"),
        ({"title": "x", "version": 9}, 422, "validation_failed"),
    ]
    for body, status, code in attempts:
        response = await board.client.post(board.tasks, json=body, headers=board.alice.headers)
        problem(response, status, code)
    count = owner.execute("select count(*) as n from task where team_id = %s", (board.team,))
    assert count.fetchone() == {"n": 0}
    assert task_events(owner, board.team, "task.created") == []
    task = await board.create()
    assert task["number"] == 1  # no number was consumed by the refused requests


async def test_twenty_concurrent_creations_get_numbers_without_gaps_or_duplicates(
    board: Board, owner: Owner
) -> None:
    async def create(i: int) -> httpx.Response:
        actor = board.alice if i % 2 else board.bob
        return await board.client.post(
            board.tasks, json={"title": f"concurrent {i}"}, headers=actor.headers
        )

    responses = await asyncio.gather(*(create(i) for i in range(20)))
    assert [r.status_code for r in responses] == [201] * 20, [r.text for r in responses]
    numbers = sorted(r.json()["number"] for r in responses)
    assert numbers == list(range(1, 21))
    rows = owner.execute(
        "select number, position from task where project_id = %s", (uuid.UUID(board.project),)
    ).fetchall()
    assert sorted(r["number"] for r in rows) == list(range(1, 21))
    assert len({r["position"] for r in rows}) == 20  # distinct places in the column
    project_row = owner.execute(
        "select next_task_number from project where id = %s", (uuid.UUID(board.project),)
    ).fetchone()
    assert project_row == {"next_task_number": 21}
    assert len(task_events(owner, board.team, "task.created")) == 20


# --------------------------------------------------------------------------- roles


async def test_guests_read_but_never_write(board: Board, owner: Owner) -> None:
    task = await board.create()
    assert (await board.get(task["id"], board.gina)).status_code == 200
    listed = await board.list(board.gina)
    assert [item["id"] for item in listed["items"]] == [task["id"]]
    attempts = [
        ("POST", board.tasks, {"title": "guest"}),
        ("PATCH", board.task_path(task["id"]), {"title": "guest"}),
        ("POST", board.task_path(task["id"], "/move"), {}),
        ("DELETE", board.task_path(task["id"]), None),
        ("POST", board.task_path(task["id"], "/restore"), None),
        ("POST", f"{board.project_path}/labels", {"name": "g", "color": "#000000"}),
        ("POST", f"{board.project_path}/statuses", {"name": "G", "category": "started"}),
    ]
    for method, path, body in attempts:
        response = await board.client.request(method, path, json=body, headers=board.gina.headers)
        problem(response, 403, "insufficient_role")
    row = task_row(owner, task["id"])
    assert (row["title"], row["version"], row["deleted_at"]) == ("A task", 1, None)


async def test_tasks_of_invisible_projects_are_missing(
    client: httpx.AsyncClient, make_user: MakeUser, make_team: MakeTeam
) -> None:
    board = await make_board(client, make_user, make_team)
    secret = await project(client, board.bob, board.team, "SEC", visibility="private")
    response = await client.post(
        f"{API}/teams/{board.team}/projects/{secret}/tasks",
        json={"title": "hidden"},
        headers=board.bob.headers,
    )
    assert response.status_code == 201, response.text
    hidden = response.json()
    outsider = make_user("outsider")
    for actor in (board.alice, board.gina, outsider):  # not in the private project
        response = await client.get(
            f"{API}/teams/{board.team}/tasks/{hidden['id']}", headers=actor.headers
        )
        problem(response, 404, "not_found")
        response = await client.get(
            f"{API}/teams/{board.team}/tasks/by-key/SEC-1", headers=actor.headers
        )
        problem(response, 404, "not_found")
        response = await client.patch(
            f"{API}/teams/{board.team}/tasks/{hidden['id']}",
            json={"title": "peek"},
            headers=actor.headers,
        )
        assert response.status_code in (403, 404), response.text
    team_list = await board.list(board.alice, path=f"{API}/teams/{board.team}/tasks")
    assert hidden["id"] not in {item["id"] for item in team_list["items"]}
    response = await client.get(f"{API}/teams/{board.team}/tasks", headers=outsider.headers)
    problem(response, 404, "not_found")


# --------------------------------------------------------------------------- update and ETag


async def test_patch_changes_only_what_is_sent_and_records_it(board: Board, owner: Owner) -> None:
    task = await board.create(title="Old", due_at="2030-01-01T12:00:00+02:00", estimate=5)
    response = await board.patch(
        task["id"], {"title": "New", "description": "body", "priority": 1, "estimate": None}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["title"], body["description"], body["priority"]) == ("New", "body", 1)
    assert body["estimate"] is None
    assert body["due_at"] == "2030-01-01T10:00:00Z"  # untouched
    assert body["version"] == 2
    assert response.headers["etag"] == '"2"'
    assert body["updated_at"] >= task["updated_at"]

    updated = task_events(owner, board.team, "task.updated")
    assert len(updated) == 1
    assert updated[0]["payload"]["fields"] == ["description", "estimate", "priority", "title"]
    assert updated[0]["payload"]["changes"]["title"] == {"from": "Old", "to": "New"}
    assert updated[0]["payload"]["changes"]["estimate"] == {"from": 5, "to": None}
    assert "description" not in updated[0]["payload"]["changes"]  # the text is not copied

    # Sending the current values changes nothing: no write, no event, same version.
    response = await board.patch(task["id"], {"title": "New", "priority": 1})
    assert response.status_code == 200
    assert response.json()["version"] == 2
    assert len(task_events(owner, board.team, "task.updated")) == 1

    response = await board.patch(task["id"], {"due_at": None})
    assert response.json()["due_at"] is None
    for body in ({"title": None}, {"priority": None}, {"status_id": None}, {"number": 3}):
        problem(await board.patch(task["id"], body), 422, "validation_failed")
    assert task_row(owner, task["id"])["version"] == 3


async def test_if_match(board: Board, owner: Owner) -> None:
    task = await board.create()
    response = await board.patch(task["id"], {"title": "v2"}, **{"If-Match": '"1"'})
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"2"'

    stale = await board.patch(task["id"], {"title": "lost update"}, **{"If-Match": '"1"'})
    body = problem(stale, 412, "precondition_failed")
    assert body["current_etag"] == '"2"'
    assert task_row(owner, task["id"])["title"] == "v2"

    weak = await board.patch(task["id"], {"title": "weak"}, **{"If-Match": 'W/"2"'})
    problem(weak, 412, "precondition_failed")  # If-Match uses the strong comparison
    for malformed in ("2", '"2', "W/2", "", '"2" "3"', "garbage"):
        response = await board.patch(task["id"], {"title": "bad"}, **{"If-Match": malformed})
        problem(response, 400, "invalid_if_match")
    move = await board.client.post(
        board.task_path(task["id"], "/move"),
        json={},
        headers={**board.alice.headers, "If-Match": '"1"'},
    )
    problem(move, 412, "precondition_failed")
    assert task_row(owner, task["id"])["version"] == 2
    assert len(task_events(owner, board.team, "task.updated")) == 1

    for header in ('"1", "2"', "*"):
        response = await board.patch(task["id"], {"title": header}, **{"If-Match": header})
        assert response.status_code == 200, response.text
    # Without If-Match the update is unconditional.
    response = await board.patch(task["id"], {"title": "last"})
    assert response.json()["version"] == 5


async def test_concurrent_conditional_updates_let_exactly_one_win(
    board: Board, owner: Owner
) -> None:
    task = await board.create()
    responses = await asyncio.gather(
        *(
            board.patch(task["id"], {"title": f"writer {i}"}, **{"If-Match": '"1"'})
            for i in range(5)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 412, 412, 412, 412], [r.text for r in responses]
    winner = next(r for r in responses if r.status_code == 200).json()["title"]
    assert task_row(owner, task["id"])["title"] == winner
    assert task_row(owner, task["id"])["version"] == 2


# --------------------------------------------------------------------------- completion


async def test_completed_at_follows_the_status_category(board: Board, owner: Owner) -> None:
    task = await board.create()
    done = await board.patch(task["id"], {"status_id": board.statuses["Done"]})
    assert done.status_code == 200, done.text
    completed_at = done.json()["completed_at"]
    assert completed_at is not None

    # Another completed status keeps the original completion time.
    shipped = await board.client.post(
        f"{board.project_path}/statuses",
        json={"name": "Shipped", "category": "completed"},
        headers=board.alice.headers,
    )
    assert shipped.status_code == 201, shipped.text
    moved = await board.client.post(
        board.task_path(task["id"], "/move"),
        json={"status_id": shipped.json()["id"]},
        headers=board.alice.headers,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["completed_at"] == completed_at

    for name in ("In Progress", "Canceled", "Backlog"):
        response = await board.patch(task["id"], {"status_id": board.statuses[name]})
        assert response.json()["completed_at"] is None, name
    assert task_row(owner, task["id"])["completed_at"] is None
    again = await board.patch(task["id"], {"status_id": board.statuses["Done"]})
    assert again.json()["completed_at"] is not None
    assert again.json()["completed_at"] > completed_at
    changes = [e["payload"]["changes"] for e in task_events(owner, board.team, "task.updated")]
    assert changes[0]["status_id"] == {
        "from": board.statuses["Todo"],
        "to": board.statuses["Done"],
    }


# --------------------------------------------------------------------------- assignees


async def test_assignees_are_members_who_can_see_the_project(
    client: httpx.AsyncClient, owner: Owner, make_user: MakeUser, make_team: MakeTeam
) -> None:
    board = await make_board(client, make_user, make_team)
    outsider, other_guest = make_user("outsider"), make_user("other-guest")
    owner.execute(
        "insert into team_member (team_id, user_id, role) values (%s, %s, 'guest')",
        (board.team, other_guest.id),
    )
    task = await board.create(assignee_ids=[str(board.bob.id), str(board.gina.id)])
    assert sorted(task["assignee_ids"]) == sorted([str(board.bob.id), str(board.gina.id)])
    assigned = task_events(owner, board.team, "task.assigned")
    assert len(assigned) == 1
    assert sorted(assigned[0]["payload"]["user_ids"]) == sorted(task["assignee_ids"])

    for user in (outsider, other_guest):  # not a member / a guest not added to the project
        response = await board.patch(task["id"], {"assignee_ids": [str(user.id)]})
        body = problem(response, 422, "invalid_assignee")
        assert body["user_ids"] == [str(user.id)]
    assert task_row(owner, task["id"])["version"] == 1

    # Replacing the set records who was added and who was removed.
    response = await board.patch(task["id"], {"assignee_ids": [str(board.alice.id)]})
    assert response.status_code == 200, response.text
    assert response.json()["assignee_ids"] == [str(board.alice.id)]
    assert response.json()["version"] == 2
    unassigned = task_events(owner, board.team, "task.unassigned")
    assert sorted(unassigned[0]["payload"]["user_ids"]) == sorted(
        [str(board.bob.id), str(board.gina.id)]
    )
    assert task_events(owner, board.team, "task.assigned")[1]["payload"]["user_ids"] == [
        str(board.alice.id)
    ]

    # In a private project only its members can be assigned.
    secret = await project(client, board.alice, board.team, "SEC", visibility="private")
    response = await client.post(
        f"{API}/teams/{board.team}/projects/{secret}/tasks",
        json={"title": "s", "assignee_ids": [str(board.bob.id)]},
        headers=board.alice.headers,
    )
    problem(response, 422, "invalid_assignee")


async def test_assignee_ids_function_for_notification_wiring(app: Any, board: Board) -> None:
    from teamboard.tasks.service import assignee_ids

    task = await board.create(assignee_ids=[str(board.bob.id)])
    db = app.state.services.db
    async with db.transaction(user_id=board.gina.id, team_id=board.team, write=False) as tx:
        assert await assignee_ids(tx, uuid.UUID(task["id"])) == [board.bob.id]
    async with db.transaction(user_id=uuid.uuid4(), team_id=board.team, write=False) as tx:
        assert await assignee_ids(tx, uuid.UUID(task["id"])) == []  # not a member: nothing


async def test_removed_team_members_lose_their_assignments(
    board: Board, owner: Owner, client: httpx.AsyncClient
) -> None:
    task = await board.create(assignee_ids=[str(board.bob.id)])
    response = await client.delete(
        f"{API}/teams/{board.team}/members/{board.bob.id}", headers=board.alice.headers
    )
    assert response.status_code == 204, response.text
    assert (await board.get(task["id"])).json()["assignee_ids"] == []


# --------------------------------------------------------------------------- labels


async def test_labels_on_tasks(board: Board, owner: Owner, client: httpx.AsyncClient) -> None:
    bug, ui = await board.label("bug", "#FF0000"), await board.label("UI")
    task = await board.create(label_ids=[ui, bug])
    assert [label["name"] for label in task["labels"]] == ["bug", "UI"]
    assert task["labels"][0] == {"id": bug, "name": "bug", "color": "#ff0000"}

    other = await project(client, board.alice, board.team, "OTH")
    response = await client.post(
        f"{API}/teams/{board.team}/projects/{other}/labels",
        json={"name": "foreign", "color": "#000000"},
        headers=board.alice.headers,
    )
    foreign = response.json()["id"]
    body = problem(await board.patch(task["id"], {"label_ids": [foreign]}), 422, "invalid_label")
    assert body["label_ids"] == [foreign]

    response = await board.patch(task["id"], {"label_ids": [bug]})
    assert [label["id"] for label in response.json()["labels"]] == [bug]
    assert response.json()["version"] == 2
    changes = task_events(owner, board.team, "task.updated")[0]["payload"]["changes"]
    assert sorted(changes["label_ids"]["from"]) == sorted([bug, ui])
    assert changes["label_ids"]["to"] == [bug]

    # Renaming shows through; deleting detaches and changes the task's version.
    renamed = await client.patch(
        f"{board.project_path}/labels/{bug}", json={"name": "defect"}, headers=board.bob.headers
    )
    assert renamed.status_code == 200, renamed.text
    assert (await board.get(task["id"])).json()["labels"][0]["name"] == "defect"
    deleted = await client.delete(f"{board.project_path}/labels/{bug}", headers=board.bob.headers)
    assert deleted.status_code == 204, deleted.text
    after = (await board.get(task["id"])).json()
    assert (after["labels"], after["version"]) == ([], 3)
    links = owner.execute("select count(*) as n from task_label where team_id = %s", (board.team,))
    assert links.fetchone() == {"n": 0}
    label_deleted = task_events(owner, board.team, "label.deleted")
    assert label_deleted[0]["payload"] == {"detached_tasks": 1}


# --------------------------------------------------------------------------- hierarchy


async def test_parent_and_subtasks(board: Board, owner: Owner, client: httpx.AsyncClient) -> None:
    epic = await board.create(title="Epic")
    story = await board.create(title="Story", parent_id=epic["id"])
    sub = await board.create(title="Sub", parent_id=story["id"])
    assert story["parent_id"] == epic["id"]

    listed = await board.list(parent_id=epic["id"])
    assert [item["id"] for item in listed["items"]] == [story["id"]]

    for parent, code in (
        (sub["id"], "parent_cycle"),  # epic -> story -> sub -> epic
        (story["id"], "parent_cycle"),
        (epic["id"], "parent_cycle"),  # itself
        (str(uuid.uuid4()), "invalid_parent"),
    ):
        problem(await board.patch(epic["id"], {"parent_id": parent}), 422, code)
    other = await project(client, board.alice, board.team, "OTH")
    response = await client.post(
        f"{API}/teams/{board.team}/projects/{other}/tasks",
        json={"title": "elsewhere"},
        headers=board.alice.headers,
    )
    foreign = response.json()["id"]
    problem(await board.patch(sub["id"], {"parent_id": foreign}), 422, "invalid_parent")
    assert task_row(owner, epic["id"])["parent_id"] is None

    # Re-parenting and detaching are fine.
    response = await board.patch(sub["id"], {"parent_id": epic["id"]})
    assert response.json()["parent_id"] == epic["id"]
    response = await board.patch(sub["id"], {"parent_id": None})
    assert response.json()["parent_id"] is None


async def test_concurrent_reparenting_cannot_create_a_cycle(board: Board, owner: Owner) -> None:
    for _ in range(3):
        a, b = await board.create(title="a"), await board.create(title="b")
        responses = await asyncio.gather(
            board.patch(a["id"], {"parent_id": b["id"]}),
            board.patch(b["id"], {"parent_id": a["id"]}),
        )
        assert sorted(r.status_code for r in responses) == [200, 422], [r.text for r in responses]
        refused = next(r for r in responses if r.status_code == 422)
        problem(refused, 422, "parent_cycle")
        parents = {
            row["id"]: row["parent_id"]
            for row in owner.execute(
                "select id, parent_id from task where id = any(%s)",
                ([uuid.UUID(a["id"]), uuid.UUID(b["id"])],),
            ).fetchall()
        }
        assert list(parents.values()).count(None) == 1


# --------------------------------------------------------------------------- soft delete


async def test_soft_delete_and_restore_with_subtasks(board: Board, owner: Owner) -> None:
    parent = await board.create(title="parent")
    child = await board.create(title="child", parent_id=parent["id"])
    grandchild = await board.create(title="grandchild", parent_id=child["id"])
    loner = await board.create(title="deleted alone", parent_id=parent["id"])
    assert (
        await board.client.delete(board.task_path(loner["id"]), headers=board.bob.headers)
    ).status_code == 204

    response = await board.client.delete(board.task_path(parent["id"]), headers=board.bob.headers)
    assert response.status_code == 204, response.text
    for task in (parent, child, grandchild, loner):
        problem(await board.get(task["id"]), 404, "not_found")
        problem(await board.patch(task["id"], {"title": "x"}), 404, "not_found")
    response = await board.client.get(
        f"{API}/teams/{board.team}/tasks/by-key/ENG-1", headers=board.alice.headers
    )
    problem(response, 404, "not_found")
    assert (await board.list())["items"] == []
    problem(
        await board.client.delete(board.task_path(parent["id"]), headers=board.bob.headers),
        404,
        "not_found",
    )
    deleted = task_events(owner, board.team, "task.deleted")
    assert deleted[1]["subject_id"] == uuid.UUID(parent["id"])
    assert sorted(deleted[1]["payload"]["subtask_ids"]) == sorted([child["id"], grandchild["id"]])

    # A subtask cannot come back while its parent is deleted.
    response = await board.client.post(
        board.task_path(child["id"], "/restore"), headers=board.bob.headers
    )
    problem(response, 409, "parent_deleted")

    response = await board.client.post(
        board.task_path(parent["id"], "/restore"), headers=board.bob.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["id"] == parent["id"]
    listed = {item["id"] for item in (await board.list())["items"]}
    assert listed == {parent["id"], child["id"], grandchild["id"]}  # not the loner
    restored = task_events(owner, board.team, "task.restored")
    assert sorted(restored[0]["payload"]["subtask_ids"]) == sorted([child["id"], grandchild["id"]])
    # Restoring a live task: there is no deleted task with that id.
    problem(
        await board.client.post(
            board.task_path(parent["id"], "/restore"), headers=board.bob.headers
        ),
        404,
        "not_found",
    )
    # The loner (its parent is live again) can be restored on its own.
    response = await board.client.post(
        board.task_path(loner["id"], "/restore"), headers=board.bob.headers
    )
    assert response.status_code == 200, response.text


# --------------------------------------------------------------------------- archived projects


async def test_archived_projects_are_read_only(board: Board, owner: Owner) -> None:
    task = await board.create()
    response = await board.client.patch(
        board.project_path, json={"archived": True}, headers=board.alice.headers
    )
    assert response.status_code == 200, response.text
    attempts = [
        ("POST", board.tasks, {"title": "x"}),
        ("PATCH", board.task_path(task["id"]), {"title": "x"}),
        ("PATCH", board.task_path(task["id"]), {"status_id": board.statuses["Done"]}),
        ("POST", board.task_path(task["id"], "/move"), {}),
        ("DELETE", board.task_path(task["id"]), None),
        ("POST", f"{board.project_path}/labels", {"name": "l", "color": "#000000"}),
        ("POST", f"{board.project_path}/statuses", {"name": "S", "category": "started"}),
    ]
    for method, path, body in attempts:
        response = await board.client.request(method, path, json=body, headers=board.bob.headers)
        problem(response, 409, "project_archived")
    assert (await board.get(task["id"], board.gina)).status_code == 200  # still readable
    assert task_row(owner, task["id"])["version"] == 1
    await board.client.patch(
        board.project_path, json={"archived": False}, headers=board.alice.headers
    )
    created = await board.create(board.bob)
    assert created["number"] == 2


async def test_api_key_scopes_apply_to_tasks(board: Board, client: httpx.AsyncClient) -> None:
    keys = {}
    for scope in ("read", "write"):
        response = await client.post(
            f"{API}/teams/{board.team}/api-keys",
            json={"name": scope, "scopes": [scope]},
            headers=board.alice.headers,
        )
        assert response.status_code == 201, response.text
        keys[scope] = {"Authorization": f"Bearer {response.json()['token']}"}
    task = await board.create()
    response = await client.get(board.task_path(task["id"]), headers=keys["read"])
    assert response.status_code == 200, response.text
    problem(
        await client.patch(board.task_path(task["id"]), json={"title": "x"}, headers=keys["read"]),
        403,
        "insufficient_scope",
    )
    response = await client.patch(
        board.task_path(task["id"]), json={"title": "by key"}, headers=keys["write"]
    )
    assert response.status_code == 200, response.text


async def test_deleting_a_project_hides_its_tasks(board: Board, owner: Owner) -> None:
    task = await board.create(title="in a deleted project")
    response = await board.client.delete(board.project_path, headers=board.alice.headers)
    assert response.status_code == 204, response.text
    problem(await board.get(task["id"]), 404, "not_found")
    response = await board.client.get(
        f"{API}/teams/{board.team}/tasks/by-key/ENG-1", headers=board.alice.headers
    )
    problem(response, 404, "not_found")
    team_list = await board.list(path=f"{API}/teams/{board.team}/tasks")
    assert team_list["items"] == []
    restore = await board.client.post(
        board.task_path(task["id"], "/restore"), headers=board.alice.headers
    )
    problem(restore, 404, "not_found")
    row = task_row(owner, task["id"])
    project_row = owner.execute(
        "select deleted_at from project where id = %s", (uuid.UUID(board.project),)
    ).fetchone()
    assert project_row is not None
    assert row["deleted_at"] == project_row["deleted_at"]
