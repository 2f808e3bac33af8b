"""Project workflow (statuses), labels, and the project's ETag."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from tests.test_teams import problem
from tests.work import API, Board, Owner, board, project, sql_count, statuses_of, task_events

__all__ = ["board"]


async def add_status(board: Board, name: str, category: str = "started") -> httpx.Response:
    return await board.client.post(
        f"{board.project_path}/statuses",
        json={"name": name, "category": category},
        headers=board.bob.headers,
    )


async def remove_status(
    board: Board, status_id: str, move_to: str | None, actor: Any = None
) -> httpx.Response:
    params = {} if move_to is None else {"move_to": move_to}
    return await board.client.delete(
        f"{board.project_path}/statuses/{status_id}",
        params=params,
        headers=(actor or board.bob).headers,
    )


# --------------------------------------------------------------------------- statuses


async def test_statuses_list_add_rename_reorder(board: Board, owner: Owner) -> None:
    response = await board.client.get(
        f"{board.project_path}/statuses", params={"limit": 2}, headers=board.gina.headers
    )
    assert response.status_code == 200, response.text
    assert [s["name"] for s in response.json()["items"]] == ["Backlog", "Todo"]
    assert sql_count(response) == 2
    rest = await board.client.get(
        f"{board.project_path}/statuses",
        params={"limit": 50, "cursor": response.json()["next_cursor"]},
        headers=board.gina.headers,
    )
    assert [s["name"] for s in rest.json()["items"]] == ["In Progress", "Done", "Canceled"]
    assert rest.json()["next_cursor"] is None

    created = await add_status(board, "Review")
    assert created.status_code == 201, created.text
    review = created.json()
    assert (review["category"], review["project_id"]) == ("started", board.project)
    assert list(await statuses_of(board.client, board.alice, board.project_path))[-1] == "Review"
    problem(await add_status(board, "Review"), 409, "already_exists")
    problem(await add_status(board, "X", "doing"), 422, "validation_failed")

    renamed = await board.client.patch(
        f"{board.project_path}/statuses/{review['id']}",
        json={"name": "Code review"},
        headers=board.bob.headers,
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Code review"
    response = await board.client.patch(
        f"{board.project_path}/statuses/{review['id']}",
        json={"category": "completed"},
        headers=board.bob.headers,
    )
    problem(response, 422, "validation_failed")  # the category is fixed

    order = [*board.statuses.values(), review["id"]][::-1]
    response = await board.client.put(
        f"{board.project_path}/statuses/order",
        json={"status_ids": order},
        headers=board.bob.headers,
    )
    assert response.status_code == 204, response.text
    shown = await statuses_of(board.client, board.alice, board.project_path)
    assert list(shown.values()) == order
    for bad in (order[:-1], [*order, order[0]], [*order[:-1], str(uuid.uuid4())]):
        response = await board.client.put(
            f"{board.project_path}/statuses/order",
            json={"status_ids": bad},
            headers=board.bob.headers,
        )
        problem(response, 422, "invalid_status_order")

    kinds = [
        e["kind"]
        for e in owner.execute(
            "select kind from event where team_id = %s and kind like 'status.%%'"
            " order by occurred_at, id",
            (board.team,),
        ).fetchall()
    ]
    assert kinds == ["status.created", "status.updated", "status.reordered"]


async def test_removing_a_status_moves_its_tasks(board: Board, owner: Owner) -> None:
    done_before = await board.create(title="done", status_id=board.statuses["Done"])
    doing = [
        await board.create(title=f"doing {i}", status_id=board.statuses["In Progress"])
        for i in range(3)
    ]
    deleted = await board.create(title="deleted", status_id=board.statuses["In Progress"])
    response = await board.client.delete(board.task_path(deleted["id"]), headers=board.bob.headers)
    assert response.status_code == 204

    problem(
        await remove_status(board, board.statuses["In Progress"], None), 422, "validation_failed"
    )
    problem(
        await remove_status(board, board.statuses["In Progress"], board.statuses["In Progress"]),
        422,
        "invalid_target_status",
    )
    other = await project(board.client, board.alice, board.team, "OTH")
    foreign = await statuses_of(
        board.client, board.alice, f"{API}/teams/{board.team}/projects/{other}"
    )
    problem(
        await remove_status(board, board.statuses["In Progress"], foreign["Done"]),
        422,
        "invalid_target_status",
    )
    problem(
        await remove_status(
            board, board.statuses["In Progress"], board.statuses["Done"], board.gina
        ),
        403,
        "insufficient_role",
    )

    response = await remove_status(board, board.statuses["In Progress"], board.statuses["Done"])
    assert response.status_code == 204, response.text
    assert "In Progress" not in await statuses_of(board.client, board.alice, board.project_path)
    column = await board.list(status_id=board.statuses["Done"], sort="position")
    assert [t["title"] for t in column["items"]] == ["done", "doing 0", "doing 1", "doing 2"]
    for task in column["items"]:
        assert task["completed_at"] is not None
    assert column["items"][0]["completed_at"] == done_before["completed_at"]
    assert all(t["version"] == 2 for t in column["items"][1:])
    row = owner.execute("select status_id from task where id = %s", (uuid.UUID(deleted["id"]),))
    assert row.fetchone() == {"status_id": uuid.UUID(board.statuses["Done"])}
    event = task_events(owner, board.team, "status.deleted")[0]
    assert event["payload"] == {"moved_to": board.statuses["Done"], "moved_tasks": 4}
    # Each moved task has its own event (its activity, webhooks), in the same transaction;
    # not task.moved, whose source status the analytics' flow would no longer find.
    moves = task_events(owner, board.team, "task.status_reassigned")
    assert task_events(owner, board.team, "task.moved") == []
    assert {str(e["subject_id"]) for e in moves} == {t["id"] for t in [*doing, deleted]}
    positions = {t["id"]: t["position"] for t in column["items"]}
    for move in moves:
        assert move["actor_id"] == event["actor_id"]
        assert move["project_id"] == uuid.UUID(board.project)
        assert move["payload"]["from_status_id"] == board.statuses["In Progress"]
        assert move["payload"]["to_status_id"] == board.statuses["Done"]
        if str(move["subject_id"]) in positions:
            assert move["payload"]["position"] == positions[str(move["subject_id"])]

    # Down to one status, which stays.
    remaining = list((await statuses_of(board.client, board.alice, board.project_path)).values())
    for status_id in remaining[1:]:
        response = await remove_status(board, status_id, remaining[0])
        assert response.status_code == 204, response.text
    problem(await remove_status(board, remaining[0], remaining[0]), 409, "last_status")
    problem(await remove_status(board, str(uuid.uuid4()), remaining[0]), 404, "not_found")
    count = owner.execute(
        "select count(*) as n from task where project_id = %s and status_id = %s",
        (uuid.UUID(board.project), uuid.UUID(remaining[0])),
    )
    assert count.fetchone() == {"n": 5}


async def test_concurrent_removals_keep_one_status(board: Board, owner: Owner) -> None:
    """Two members removing the last two statuses into each other: one must lose."""
    ids = list(board.statuses.values())
    for status_id in ids[2:]:
        assert (await remove_status(board, status_id, ids[0])).status_code == 204
    await board.create(title="t", status_id=ids[1])
    responses = await asyncio.gather(
        remove_status(board, ids[0], ids[1]), remove_status(board, ids[1], ids[0], board.alice)
    )
    assert sorted(r.status_code for r in responses) == [204, 409], [r.text for r in responses]
    left = owner.execute(
        "select id from status where project_id = %s", (uuid.UUID(board.project),)
    ).fetchall()
    assert len(left) == 1
    tasks = owner.execute(
        "select status_id from task where project_id = %s", (uuid.UUID(board.project),)
    ).fetchall()
    assert {t["status_id"] for t in tasks} == {left[0]["id"]}


# --------------------------------------------------------------------------- labels


async def test_labels_crud(board: Board, owner: Owner) -> None:
    labels = f"{board.project_path}/labels"
    response = await board.client.post(
        labels, json={"name": " Bug ", "color": "#AbCdEf"}, headers=board.bob.headers
    )
    assert response.status_code == 201, response.text
    bug = response.json()
    assert (bug["name"], bug["color"], bug["project_id"]) == ("Bug", "#abcdef", board.project)
    for body, status, code in (
        ({"name": "bug", "color": "#000000"}, 409, "already_exists"),  # case-insensitive
        ({"name": "x", "color": "red"}, 422, "validation_failed"),
        ({"name": "x", "color": "#12345"}, 422, "validation_failed"),
        ({"name": "", "color": "#000000"}, 422, "validation_failed"),
        ({"name": "x" * 51, "color": "#000000"}, 422, "validation_failed"),
        ({"name": "a\u0000b", "color": "#000000"}, 422, "validation_failed"),
        ({"name": "x", "color": "#000000", "project_id": board.project}, 422, "validation_failed"),
    ):
        response = await board.client.post(labels, json=body, headers=board.bob.headers)
        problem(response, status, code)
    for name in ("feature", "chore"):
        await board.label(name)

    response = await board.client.get(labels, params={"limit": 2}, headers=board.gina.headers)
    assert response.status_code == 200, response.text
    first = [label["name"] for label in response.json()["items"]]
    rest = await board.client.get(
        labels,
        params={"limit": 2, "cursor": response.json()["next_cursor"]},
        headers=board.gina.headers,
    )
    assert first + [label["name"] for label in rest.json()["items"]] == ["Bug", "chore", "feature"]

    response = await board.client.patch(
        f"{labels}/{bug['id']}", json={"color": "#00FF00"}, headers=board.bob.headers
    )
    assert response.status_code == 200, response.text
    assert (response.json()["name"], response.json()["color"]) == ("Bug", "#00ff00")
    response = await board.client.patch(
        f"{labels}/{bug['id']}", json={"name": "chore"}, headers=board.bob.headers
    )
    problem(response, 409, "already_exists")
    problem(
        await board.client.patch(
            f"{labels}/{bug['id']}", json={"name": "g"}, headers=board.gina.headers
        ),
        403,
        "insufficient_role",
    )
    response = await board.client.delete(f"{labels}/{bug['id']}", headers=board.bob.headers)
    assert response.status_code == 204
    problem(
        await board.client.delete(f"{labels}/{bug['id']}", headers=board.bob.headers),
        404,
        "not_found",
    )
    kinds = [
        e["kind"]
        for e in owner.execute(
            "select kind from event where team_id = %s and kind like 'label.%%'"
            " order by occurred_at, id",
            (board.team,),
        ).fetchall()
    ]
    assert kinds == ["label.created"] * 3 + ["label.updated", "label.deleted"]
    updated = task_events(owner, board.team, "label.updated")[0]["payload"]
    assert updated == {
        "fields": ["color"],
        "changes": {"color": {"from": "#abcdef", "to": "#00ff00"}},
    }


# --------------------------------------------------------------------------- project ETag


async def test_project_etag_and_if_match(board: Board, owner: Owner) -> None:
    response = await board.client.get(board.project_path, headers=board.alice.headers)
    assert response.headers["etag"] == '"1"'
    assert response.json()["version"] == 1
    await board.create()  # numbering touches the project row, not its version
    response = await board.client.get(board.project_path, headers=board.alice.headers)
    assert response.headers["etag"] == '"1"'

    response = await board.client.patch(
        board.project_path,
        json={"name": "Renamed"},
        headers={**board.bob.headers, "If-Match": '"1"'},
    )
    assert response.status_code == 200, response.text
    assert (response.headers["etag"], response.json()["version"]) == ('"2"', 2)
    stale = await board.client.patch(
        board.project_path,
        json={"name": "Lost"},
        headers={**board.alice.headers, "If-Match": '"1"'},
    )
    problem(stale, 412, "precondition_failed")
    malformed = await board.client.patch(
        board.project_path, json={"name": "Lost"}, headers={**board.alice.headers, "If-Match": "1"}
    )
    problem(malformed, 400, "invalid_if_match")
    row = owner.execute(
        "select name, version from project where id = %s", (uuid.UUID(board.project),)
    )
    assert row.fetchone() == {"name": "Renamed", "version": 2}
    archived = await board.client.patch(
        board.project_path, json={"archived": True}, headers=board.alice.headers
    )
    assert archived.json()["version"] == 3
