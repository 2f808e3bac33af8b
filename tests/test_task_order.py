"""Manual ordering within a status: moves write only the moved task, and an exhausted gap
is repaired by a local rebalance that keeps everyone's order."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from teamboard.tasks import positions
from tests.test_teams import problem
from tests.work import Board, Owner, board, task_events

__all__ = ["board"]


async def move(board: Board, task_id: str, **body: Any) -> httpx.Response:
    return await board.client.post(
        board.task_path(task_id, "/move"), json=body, headers=board.bob.headers
    )


async def column(board: Board, status: str) -> list[str]:
    """The titles of a status's tasks in manual order (walking every page)."""
    titles: list[str] = []
    params: dict[str, Any] = {"status_id": board.statuses[status], "sort": "position", "limit": 7}
    while True:
        page = await board.list(**params)
        titles += [item["title"] for item in page["items"]]
        if page["next_cursor"] is None:
            return titles
        params["cursor"] = page["next_cursor"]


def positions_of(owner: Owner, board: Board) -> dict[str, int]:
    rows = owner.execute(
        "select title, position from task where project_id = %s", (uuid.UUID(board.project),)
    ).fetchall()
    return {row["title"]: row["position"] for row in rows}


async def test_moves_place_a_task_before_or_after_another(board: Board, owner: Owner) -> None:
    a, b, c = [await board.create(title=t) for t in "abc"]
    assert await column(board, "Todo") == ["a", "b", "c"]
    before = positions_of(owner, board)

    response = await move(board, c["id"], before_id=a["id"])
    assert response.status_code == 200, response.text
    assert await column(board, "Todo") == ["c", "a", "b"]
    after = positions_of(owner, board)
    assert (after["a"], after["b"]) == (before["a"], before["b"])  # nobody else renumbered
    assert after["c"] < after["a"]

    await move(board, a["id"], after_id=b["id"])
    assert await column(board, "Todo") == ["c", "b", "a"]
    await move(board, a["id"], before_id=b["id"])
    assert await column(board, "Todo") == ["c", "a", "b"]
    await move(board, c["id"])  # no anchor: the end of its status
    assert await column(board, "Todo") == ["a", "b", "c"]

    # Into another column, next to a task there: the task joins that status.
    d = await board.create(title="d", status_id=board.statuses["In Progress"])
    response = await move(board, a["id"], before_id=d["id"])
    assert response.json()["status_id"] == board.statuses["In Progress"]
    assert await column(board, "In Progress") == ["a", "d"]
    assert await column(board, "Todo") == ["b", "c"]
    response = await move(board, b["id"], status_id=board.statuses["In Progress"])
    assert await column(board, "In Progress") == ["a", "d", "b"]

    moved = task_events(owner, board.team, "task.moved")
    assert moved[0]["subject_id"] == uuid.UUID(c["id"])
    assert moved[0]["payload"]["before_id"] == a["id"]
    assert moved[-1]["payload"]["from_status_id"] == board.statuses["Todo"]
    assert moved[-1]["payload"]["to_status_id"] == board.statuses["In Progress"]
    versions = {
        r["id"]: r["version"]
        for r in owner.execute(
            "select id, version from task where project_id = %s", (uuid.UUID(board.project),)
        ).fetchall()
    }
    assert versions[uuid.UUID(d["id"])] == 1  # neighbours are untouched


async def test_invalid_moves(board: Board, client: httpx.AsyncClient) -> None:
    a, b = await board.create(title="a"), await board.create(title="b")
    done = await board.create(title="done", status_id=board.statuses["Done"])
    problem(await move(board, a["id"], before_id=a["id"]), 422, "invalid_anchor")
    problem(await move(board, a["id"], after_id=str(uuid.uuid4())), 422, "invalid_anchor")
    problem(
        await move(board, a["id"], before_id=b["id"], after_id=done["id"]),
        422,
        "validation_failed",
    )
    problem(
        await move(board, a["id"], after_id=done["id"], status_id=board.statuses["Todo"]),
        422,
        "anchor_not_in_status",
    )
    problem(await move(board, a["id"], status_id=str(uuid.uuid4())), 422, "invalid_status")
    response = await client.delete(board.task_path(b["id"]), headers=board.bob.headers)
    assert response.status_code == 204
    problem(await move(board, a["id"], after_id=b["id"]), 422, "invalid_anchor")  # deleted


async def test_an_exhausted_gap_is_rebalanced_locally(board: Board, owner: Owner) -> None:
    titles = [f"t{i:02}" for i in range(40)]
    for title in titles:
        await board.create(title=title)
    await board.create(title="x")
    await board.create(title="y")
    ids = {item["title"]: item["id"] for item in (await board.list(limit=200))["items"]}
    start = positions_of(owner, board)

    # Alternately slot x and y right after t20: each move halves the remaining gap, so
    # after ~16 moves there is no integer left between t20 and its neighbour.
    expected = [*titles, "x", "y"]
    for i in range(24):
        mover = ("x", "y")[i % 2]
        response = await move(board, ids[mover], after_id=ids["t20"])
        assert response.status_code == 200, response.text
        expected = [t for t in expected if t != mover]
        expected.insert(expected.index("t20") + 1, mover)
    assert await column(board, "Todo") == expected

    end = positions_of(owner, board)
    assert len(set(end.values())) == len(end)  # still distinct
    assert all(abs(p) <= positions.MAX_POSITION for p in end.values())
    renumbered = {t for t in titles if end[t] != start[t]}
    assert renumbered, "the gap was never exhausted: no rebalance happened"
    assert renumbered <= {f"t{i:02}" for i in range(20 - 8, 21 + 8)}, renumbered  # local
    assert end["t00"] == start["t00"]
    assert end["t39"] == start["t39"]


def test_position_arithmetic() -> None:
    assert positions.between(None, None) == 0
    assert positions.between(10, None) == 10 + positions.STEP
    assert positions.between(None, 10) == 10 - positions.STEP
    assert positions.between(10, 20) == 15
    assert positions.between(10, 11) is None
    assert positions.between(10, 10) is None
    assert positions.between(positions.MAX_POSITION - 1, None) is None
    assert positions.between(None, -positions.MAX_POSITION + 1) is None
    assert positions.spread(0, 10, 3) == [2, 4, 6]
    assert positions.spread(0, 3, 3) is None
