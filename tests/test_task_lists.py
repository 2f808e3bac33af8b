"""Task lists: every sort and filter, keyset pagination under concurrent inserts, signed
cursors, a constant number of SQL statements per page, and index-only plans."""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from teamboard.ops.database import DatabaseUrls
from teamboard.tasks.listing import TaskFilters, list_query
from tests.plans import AppCaller, explain, plans_chosen
from tests.test_teams import problem
from tests.work import API, Board, MakeTeam, MakeUser, Owner, board, make_board, project, sql_count

__all__ = ["board"]

FAR_FUTURE = datetime.max.replace(tzinfo=UTC)
NOW = datetime.now(UTC)


async def seed(board: Board) -> list[dict[str, Any]]:
    """Twelve tasks with varied statuses, priorities, dates, assignees, labels and parents."""
    bug, ui = await board.label("bug"), await board.label("ui")
    names = ["Backlog", "Todo", "In Progress", "Done", "Canceled"]
    people = [board.alice.id, board.bob.id, board.gina.id]
    tasks: list[dict[str, Any]] = []
    for i in range(12):
        body: dict[str, Any] = {
            "title": f"{'Fix' if i % 3 == 0 else 'Write'} thing {i}",
            "status_id": board.statuses[names[i % 5]],
            "priority": i % 4,
            "assignee_ids": [str(people[i % 3])] if i % 2 == 0 else [],
            "label_ids": [bug] if i % 4 == 0 else ([ui, bug] if i % 4 == 1 else []),
        }
        if i % 3 != 2:
            body["due_at"] = (NOW + timedelta(days=(i * 7) % 12)).isoformat()
        if i >= 9:
            body["parent_id"] = tasks[0]["id"]
        tasks.append(await board.create(board.bob if i % 2 else board.alice, **body))
    # Touch a few so that updated_at differs from created order.
    for task in (tasks[3], tasks[0], tasks[7]):
        response = await board.patch(task["id"], {"estimate": 1})
        assert response.status_code == 200
        tasks[tasks.index(task)] = response.json()
    return tasks


async def walk(board: Board, limit: int, path: str | None = None, **params: Any) -> list[str]:
    """Every id of a list, page by page, checking that no page is over-full."""
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        page = await board.list(path=path, **query)
        assert len(page["items"]) <= limit
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("pagination does not terminate")


def sort_value(task: dict[str, Any], field: str) -> Any:
    value = task[field]
    if field == "due_at":
        return FAR_FUTURE if value is None else datetime.fromisoformat(value)
    if field in ("created_at", "updated_at"):
        return datetime.fromisoformat(value)
    return value


@pytest.mark.parametrize("field", ["created_at", "updated_at", "due_at", "priority", "number"])
@pytest.mark.parametrize("descending", [False, True])
async def test_every_sort_walks_every_task_once_in_order(
    board: Board, field: str, descending: bool
) -> None:
    tasks = await seed(board)
    expected = sorted(
        tasks, key=lambda t: (sort_value(t, field), uuid.UUID(t["id"])), reverse=descending
    )
    sort = f"-{field}" if descending else field
    assert await walk(board, 5, sort=sort) == [t["id"] for t in expected]
    if field != "number":  # the team list: every visible project
        team = f"{API}/teams/{board.team}/tasks"
        assert await walk(board, 4, team, sort=sort) == [t["id"] for t in expected]


async def test_filters(board: Board) -> None:
    tasks = await seed(board)
    categories = {
        board.statuses[name]: c
        for name, c in (
            ("Backlog", "backlog"),
            ("Todo", "unstarted"),
            ("In Progress", "started"),
            ("Done", "completed"),
            ("Canceled", "canceled"),
        )
    }
    labels = {label["name"]: label["id"] for t in tasks for label in t["labels"]}
    middle = datetime.fromisoformat(tasks[6]["created_at"])
    touched = datetime.fromisoformat(tasks[3]["updated_at"])
    due_cut = NOW + timedelta(days=5)

    def due(t: dict[str, Any]) -> datetime | None:
        return None if t["due_at"] is None else datetime.fromisoformat(t["due_at"])

    cases: list[tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
        ({"status_id": board.statuses["Todo"]}, lambda t: t["status_id"] == board.statuses["Todo"]),
        (
            {"status_id": [board.statuses["Todo"], board.statuses["Done"]]},
            lambda t: t["status_id"] in (board.statuses["Todo"], board.statuses["Done"]),
        ),
        (
            {"status_category": ["completed", "canceled"]},
            lambda t: categories[t["status_id"]] in ("completed", "canceled"),
        ),
        ({"assignee_id": str(board.bob.id)}, lambda t: str(board.bob.id) in t["assignee_ids"]),
        (
            {"assignee_id": [str(board.bob.id), str(board.gina.id)]},
            lambda t: bool({str(board.bob.id), str(board.gina.id)} & set(t["assignee_ids"])),
        ),
        ({"label_id": labels["ui"]}, lambda t: labels["ui"] in {x["id"] for x in t["labels"]}),
        ({"priority": [0, 3]}, lambda t: t["priority"] in (0, 3)),
        ({"due_before": due_cut.isoformat()}, lambda t: due(t) is not None and due(t) < due_cut),
        ({"due_after": due_cut.isoformat()}, lambda t: due(t) is not None and due(t) >= due_cut),
        (
            {"created_after": middle.isoformat()},
            lambda t: datetime.fromisoformat(t["created_at"]) >= middle,
        ),
        (
            {"created_before": middle.isoformat()},
            lambda t: datetime.fromisoformat(t["created_at"]) < middle,
        ),
        (
            {"updated_after": touched.isoformat()},
            lambda t: datetime.fromisoformat(t["updated_at"]) >= touched,
        ),
        (
            {"updated_before": touched.isoformat()},
            lambda t: datetime.fromisoformat(t["updated_at"]) < touched,
        ),
        ({"parent_id": tasks[0]["id"]}, lambda t: t["parent_id"] == tasks[0]["id"]),
        ({"q": "fix"}, lambda t: t["title"].startswith("Fix")),
        ({"q": "THING 1"}, lambda t: "thing 1" in t["title"]),
        ({"q": "100%_"}, lambda t: False),  # LIKE wildcards are literal
        (
            {"q": "thing", "priority": 0, "assignee_id": str(board.alice.id)},
            lambda t: t["priority"] == 0 and str(board.alice.id) in t["assignee_ids"],
        ),
    ]
    for params, predicate in cases:
        expected = sorted((t["id"] for t in tasks if predicate(t)), key=uuid.UUID)
        assert expected or params.get("q") == "100%_", params  # each case selects something
        got = await walk(board, 3, sort="created_at", **params)
        assert sorted(got, key=uuid.UUID) == expected, params
        team = await walk(board, 50, f"{API}/teams/{board.team}/tasks", **params)
        assert sorted(team, key=uuid.UUID) == expected, params


async def test_items_carry_assignees_and_labels(board: Board) -> None:
    tasks = await seed(board)
    page = await board.list(sort="number", limit=2)
    first = page["items"][0]
    assert first["id"] == tasks[0]["id"]
    assert first["key"] == "ENG-1"
    assert first["assignee_ids"] == [str(board.alice.id)]
    assert [label["name"] for label in first["labels"]] == ["bug"]
    assert "description" not in first


async def test_sort_rules(board: Board) -> None:
    team = f"{API}/teams/{board.team}/tasks"
    response = await board.client.get(team, params={"sort": "number"}, headers=board.alice.headers)
    problem(response, 422, "unsupported_sort")
    two_statuses = [board.statuses["Todo"], board.statuses["Done"]]
    for params in ({"sort": "position"}, {"sort": "-position", "status_id": two_statuses}):
        response = await board.client.get(board.tasks, params=params, headers=board.alice.headers)
        problem(response, 422, "position_sort_needs_status")
    for params in (
        {"sort": "title"},
        {"limit": 0},
        {"limit": 201},
        {"priority": 9},
        {"due_before": "2030-01-01T00:00:00"},
        {"q": "a\u0000b"},
    ):
        response = await board.client.get(board.tasks, params=params, headers=board.alice.headers)
        problem(response, 422, "validation_failed")


async def test_statement_count_does_not_depend_on_page_size(board: Board) -> None:
    """One statement per page with rows (RLS proves the scope is visible); an empty page
    adds the scope check that tells an empty list from an invisible project or team."""
    empty = await board.client.get(board.tasks, headers=board.alice.headers)
    assert empty.json() == {"items": [], "next_cursor": None}
    assert sql_count(empty) == 2
    await seed(board)
    for path in (board.tasks, f"{API}/teams/{board.team}/tasks"):
        counts = set()
        for limit in (2, 50):
            response = await board.client.get(
                path, params={"limit": limit, "sort": "created_at"}, headers=board.alice.headers
            )
            assert response.status_code == 200, response.text
            items = response.json()["items"]
            assert len(items) == min(limit, 12)
            assert any(item["labels"] for item in items)
            assert any(item["assignee_ids"] for item in items)
            counts.add(sql_count(response))
        assert counts == {1}, (path, counts)
        response = await board.client.get(
            path, params={"q": "no such title"}, headers=board.alice.headers
        )
        assert (response.json()["items"], sql_count(response)) == ([], 2)


async def test_pagination_neither_skips_nor_repeats_under_concurrent_inserts(
    board: Board,
) -> None:
    existing = [(await board.create(title=f"old {i}"))["id"] for i in range(15)]
    for sort in ("created_at", "-created_at", "number", "-number"):
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 4, "sort": sort}
            if cursor:
                params["cursor"] = cursor
            page, *_ = await asyncio.gather(
                board.list(**params),
                board.create(board.bob, title="new"),
                board.create(board.alice, title="new"),
            )
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)), f"{sort}: a row was repeated"
        assert set(existing) <= set(seen), f"{sort}: a row was skipped"


async def test_tampered_and_foreign_cursors_are_refused(
    client: httpx.AsyncClient, make_user: MakeUser, make_team: MakeTeam
) -> None:
    board = await make_board(client, make_user, make_team)
    for i in range(3):
        await board.create(title=f"t{i}")
    other_project = await project(client, board.alice, board.team, "OTH")
    other_tasks = f"{API}/teams/{board.team}/projects/{other_project}/tasks"
    other_team = await make_team(board.alice)
    team_tasks = f"{API}/teams/{board.team}/tasks"

    first = await board.list(limit=1, sort="number")
    cursor = first["next_cursor"]
    assert cursor
    ok = await board.list(limit=1, sort="number", cursor=cursor)
    assert ok["items"][0]["number"] == 2

    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    forged = base64.urlsafe_b64encode(raw[:16] + b'[0,"00000000-0000-0000-0000-000000000000"]')
    flipped = bytes([raw[0] ^ 1]) + raw[1:]
    bad_cursors = [
        forged.decode().rstrip("="),
        base64.urlsafe_b64encode(flipped).decode().rstrip("="),
        "garbage!!",
        "",
    ]
    for bad in bad_cursors:
        response = await client.get(
            board.tasks,
            params={"limit": 1, "sort": "number", "cursor": bad},
            headers=board.alice.headers,
        )
        if bad == "":
            assert response.status_code == 200  # an empty cursor is the first page
            continue
        problem(response, 400, "invalid_cursor")
    misuses: list[tuple[str, dict[str, Any]]] = [
        (board.tasks, {"sort": "-number"}),  # another sort
        (board.tasks, {"sort": "number", "priority": 0}),  # other filters
        (board.tasks, {"sort": "number", "q": "t"}),
        (other_tasks, {"sort": "number"}),  # another project
        (f"{board.project_path}/statuses", {}),  # another kind of list
    ]
    # A created_at cursor of the project list, for the lists where sort=number does not exist.
    by_date = (await board.list(limit=1, sort="created_at"))["next_cursor"]
    misuses += [
        (team_tasks, {"sort": "created_at", "cursor": by_date}),  # the team list
        (f"{API}/teams/{other_team}/tasks", {"sort": "created_at", "cursor": by_date}),
    ]
    for path, params in misuses:
        response = await client.get(
            path, params={"limit": 1, "cursor": cursor, **params}, headers=board.alice.headers
        )
        problem(response, 400, "invalid_cursor")


# --------------------------------------------------------------------------- query plans


SEQ_SCAN_ON_TASK = re.compile(r"Seq Scan on task\s")
EXPECTED_INDEX = {
    ("project", "created_at"): "ix_task_team_id_project_id_created_at",
    ("project", "updated_at"): "ix_task_team_id_project_id_updated_at",
    ("project", "due_at"): "ix_task_team_id_project_id_due_at",
    ("project", "priority"): "ix_task_team_id_project_id_priority",
    ("project", "number"): "ix_task_team_id_project_id_number",
    ("project", "position"): "ix_task_team_id_status_id_position",
    ("team", "created_at"): "ix_task_team_id_created_at",
    ("team", "updated_at"): "ix_task_team_id_updated_at",
    ("team", "due_at"): "ix_task_team_id_due_at",
    ("team", "priority"): "ix_task_team_id_priority",
    ("team", "position"): "ix_task_team_id_status_id_position",
}


async def test_the_api_runs_the_generic_plans_checked_here(app: Any) -> None:
    """The API's connections plan each statement once (``DATABASE_PLAN_CACHE_MODE``): the
    generic plans this module and ``teamboard db explain`` check are the ones that run,
    and a deep page is not planned again at every request because its values make
    another index look cheaper (bench/README.md)."""
    database = app.state.services.db
    conn = await database.acquire()
    try:
        assert await conn.fetchval("show plan_cache_mode") == "force_generic_plan"
    finally:
        database.release(conn)


async def test_every_sort_is_a_keyset_index_scan(
    board: Board, owner: Owner, db_urls: DatabaseUrls
) -> None:
    projects = [
        uuid.UUID(board.project),
        uuid.UUID(await project(board.client, board.alice, board.team, "BIG")),
    ]
    # A larger neighbouring team, so that the team is a minority of the table as in
    # production (otherwise scanning the whole table is the right plan for a text filter).
    neighbour = await board.client.post(
        f"{API}/teams", json={"name": "Neighbours"}, headers=board.alice.headers
    )
    assert neighbour.status_code == 201, neighbour.text
    neighbour_team = uuid.UUID(neighbour.json()["id"])
    neighbour_project = uuid.UUID(await project(board.client, board.alice, neighbour_team, "NB"))
    status_rows = owner.execute(
        "select project_id, id from status where team_id = any(%s) order by position",
        ([board.team, neighbour_team],),
    ).fetchall()
    for team_id, project_id, count in (
        (board.team, projects[0], 15000),
        (board.team, projects[1], 15000),
        (neighbour_team, neighbour_project, 60000),
    ):
        statuses = [r["id"] for r in status_rows if r["project_id"] == project_id]
        owner.execute(
            "insert into task (team_id, id, project_id, number, title, status_id, priority,"
            " created_by, created_at, updated_at, due_at, position)"
            " select %(team)s, gen_random_uuid(), %(project)s, g, 'bulk ' || g,"
            " (%(statuses)s::uuid[])[1 + g %% 5], g %% 5, %(user)s,"
            " now() - g * interval '1 second', now() - g * interval '1 second',"
            " case when g %% 3 = 0 then now() + g * interval '1 minute' end, g::bigint * 65536"
            " from generate_series(1, %(count)s) g",
            {
                "team": team_id,
                "project": project_id,
                "statuses": statuses,
                "user": board.alice.id,
                "count": count,
            },
        )
        if team_id == board.team:
            owner.execute(
                "insert into task_assignee (team_id, project_id, task_id, user_id)"
                " select team_id, project_id, id, %s from task"
                " where project_id = %s and number %% 7 = 0",
                (board.bob.id, project_id),
            )
    for table in ("project", "status", "task", "task_assignee", "task_label", "label"):
        owner.execute(f"analyze {table}")  # what autovacuum does after a bulk load
    # Cursor positions mid-list: priorities 1 and 2, one without and one with a due date.
    samples = owner.execute(
        "select * from task where project_id = %s and number in (7001, 7002)", (projects[0],)
    ).fetchall()
    assert len(samples) == 2
    status = samples[0]["status_id"]

    caller = AppCaller(owner, db_urls.app_role, board.alice.id, board.team)
    for (scope, field), index in EXPECTED_INDEX.items():
        filters = TaskFilters(status_id=(status,)) if field == "position" else TaskFilters()
        if field == "position":
            samples = [s for s in samples if s["status_id"] == status] or samples[:1]
        project_id = projects[0] if scope == "project" else None
        for sort, generic in ((field, False), (f"-{field}", False), (field, True)):
            for after in (None, *((sample[field], sample["id"]) for sample in samples)):
                sql, params = list_query(board.team, project_id, filters, sort, after, 50)  # type: ignore[arg-type]
                plan = explain(caller, sql, params, generic=generic)
                label = f"{scope} sort={sort} after={after is not None} generic={generic}"
                assert not SEQ_SCAN_ON_TASK.search(plan), f"{label}\n{plan}"
                assert f"using {index} on task t" in plan, f"{label}\n{plan}"
                assert not re.search(r"Sort Key: .*\bt\.", plan), f"{label}\n{plan}"

    filtered = [
        TaskFilters(assignee_id=(board.bob.id,)),
        TaskFilters(status_category=("started",)),
        TaskFilters(priority=(1, 2), q="bulk 1"),
        TaskFilters(due_before=NOW + timedelta(days=1)),
    ]
    for filters in filtered:
        for project_id in (projects[0], None):
            sql, params = list_query(board.team, project_id, filters, "-created_at", None, 50)
            plan = explain(caller, sql, params)
            assert not SEQ_SCAN_ON_TASK.search(plan), f"{filters}\n{plan}"

    # A page of a project of 15,000 tasks keeps its generic plan after five custom ones:
    # with the page size as a parameter, the generic plan was costed for a tenth of the
    # project's rows and every page was planned again (0.4 ms, more than running it).
    sql, params = list_query(board.team, projects[0], TaskFilters(), "-created_at", None, 50)
    chosen = plans_chosen(caller, sql, params)
    assert chosen == {"generic_plans": 2, "custom_plans": 5}

    # And the API agrees: a deep page costs the same statements and answers in order.
    response = await board.client.get(
        board.tasks,
        params={"sort": "number", "limit": 50},
        headers=board.alice.headers,
    )
    assert [item["number"] for item in response.json()["items"]] == list(range(1, 51))
