"""GraphQL's SQL budget: one statement per level of a query, whatever the number of rows.

Each query runs at two sizes and through both executors (the engine and the compiled path,
which must answer the same bytes with the same statements); ``X-SQL-Statements`` counts
data statements.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from teamboard.db import native_sql
from teamboard.graphql import lists
from teamboard.graphql.keyset import page_sql
from teamboard.tasks.listing import TaskFilters
from tests.conftest import Actor
from tests.gql import DASHBOARD, both, build_board, data, statements

pytestmark = pytest.mark.asyncio
MakeUser = Callable[..., Actor]
MakeTeam = Callable[..., Awaitable[uuid.UUID]]


@pytest.mark.parametrize(("projects", "tasks"), [(2, 3), (15, 10)])
async def test_the_dashboard_is_four_statements_at_any_size(
    app: Any,
    client: httpx.AsyncClient,
    make_user: MakeUser,
    make_team: MakeTeam,
    projects: int,
    tasks: int,
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    team = await make_team(alice, members=[(bob, "member")])
    await build_board(
        app, alice, team, projects_count=projects, tasks_count=tasks, assignees=[bob.id]
    )
    variables = {"team": str(team), "projects": projects, "tasks": tasks}
    response = await both(app, client, alice, DASHBOARD, variables)
    # team, projects, tasks (with their assignees and labels), comments
    assert statements(response) == 4
    nodes = data(response)["team"]["projects"]["nodes"]
    assert len(nodes) == projects
    for project in nodes:
        assert len(project["tasks"]["nodes"]) == tasks
        for task in project["tasks"]["nodes"]:
            assert {a["displayName"] for a in task["assignees"]} == {"alice", "bob"}
            assert task["labels"] == [{"name": "bug", "color": "#ff0000"}]
            (comment,) = task["comments"]["nodes"]
            assert comment["author"] == {"displayName": "alice"}


TASK_LOOKUPS = """
query($team: UUID!, $n: Int!) {
  team(id: $team) {
    tasks(first: $n, sort: PRIORITY_ASC) {
      edges { cursor node { key description status { name } project { key } parent { key } } }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""


@pytest.mark.parametrize(("projects", "tasks"), [(2, 3), (3, 10)])
async def test_lookups_by_id_are_one_statement_per_kind(
    app: Any,
    client: httpx.AsyncClient,
    make_user: MakeUser,
    make_team: MakeTeam,
    projects: int,
    tasks: int,
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    await build_board(app, alice, team, projects_count=projects, tasks_count=tasks)
    response = await both(app, client, alice, TASK_LOOKUPS, {"team": str(team), "n": 200})
    # team, tasks, descriptions, statuses, projects (no task has a parent: no lookup)
    assert statements(response) == 5
    edges = data(response)["team"]["tasks"]["edges"]
    assert len(edges) == projects * tasks
    assert all(edge["node"]["status"]["name"] == "Todo" for edge in edges)


TASK_CHILDREN = """
query($team: UUID!, $first: Int!) {
  team(id: $team) {
    projects(first: 10) {
      nodes {
        statuses(first: 10) { nodes { name } }
        labels(first: 10) { nodes { name } }
        members(first: 10) { nodes { userId } }
        tasks(first: $first) {
          nodes {
            comments(first: 5) { nodes { body mentions { id } } }
            attachments(first: 5) { nodes { filename } }
            timeEntries(first: 5) { nodes { durationSeconds } }
            activity(first: 5) { nodes { kind actor { displayName } comment { body } } }
          }
        }
      }
    }
  }
}
"""


@pytest.mark.parametrize(("projects", "tasks"), [(2, 3), (4, 8)])
async def test_every_list_of_a_level_is_one_statement(
    app: Any,
    client: httpx.AsyncClient,
    make_user: MakeUser,
    make_team: MakeTeam,
    projects: int,
    tasks: int,
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    await build_board(app, alice, team, projects_count=projects, tasks_count=tasks)
    response = await both(app, client, alice, TASK_CHILDREN, {"team": str(team), "first": tasks})
    # team, projects, statuses, labels, members, tasks, comments, attachments, entries,
    # activity
    assert statements(response) == 10
    for project in data(response)["team"]["projects"]["nodes"]:
        assert len(project["statuses"]["nodes"]) == 5
        for task in project["tasks"]["nodes"]:
            kinds = [item["kind"] for item in task["activity"]["nodes"]]
            assert kinds[-1] == "task.created"
            assert "comment.created" in kinds


TEAMS = """
{
  teams(first: 10) {
    nodes { name projects(first: 10) { nodes { key tasks(first: 5) { nodes { key } } } } }
  }
}
"""


@pytest.mark.parametrize("teams", [1, 3])
async def test_a_query_across_teams_is_one_statement_per_level_and_team(
    app: Any, client: httpx.AsyncClient, make_user: MakeUser, make_team: MakeTeam, teams: int
) -> None:
    """Each team's rows are read with that team's context (RLS decides per team)."""
    alice = make_user("alice")
    for _ in range(teams):
        team = await make_team(alice)
        await build_board(app, alice, team, projects_count=2, tasks_count=2, comments_count=0)
    response = await both(app, client, alice, TEAMS, {})
    assert statements(response) == 1 + 2 * teams  # the teams, then projects and tasks per team
    listed = data(response)["teams"]["nodes"]
    assert len(listed) == teams
    assert all(len(team["projects"]["nodes"]) == 2 for team in listed)


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes += _plan_nodes(child)
    return nodes


async def test_the_task_page_does_linear_work_under_the_generic_plan(
    app: Any, make_user: MakeUser, make_team: MakeTeam
) -> None:
    """The dashboard's task level is one prepared statement, and after five runs PostgreSQL
    may give it a generic plan, made without the parameters' values. Its page decoration
    (assignees, labels) must then still cost a bounded amount per task: no plan node may
    read the page's children once per task (the grouped-aggregate decoration did: 46 ms
    instead of 3 ms for 150 tasks, bench.harness)."""
    projects, tasks = 15, 10
    alice, bob = make_user("alice"), make_user("bob")
    team = await make_team(alice, members=[(bob, "member")])
    board = await build_board(
        app, alice, team, projects_count=projects, tasks_count=tasks, assignees=[bob.id]
    )
    query = lists.tasks("-created_at", TaskFilters(), project=True).query
    native = native_sql(page_sql(query, after=False, before=False, backward=False, rows=tasks + 1))
    assert native.names == ("tb_parent_0", "team")
    name = f"tb_generic_{uuid.uuid4().hex}"
    database = app.state.services.db
    async with database.transaction(user_id=alice.id, team_id=team) as tx:
        await tx.execute("set local plan_cache_mode = force_generic_plan")
        await tx.execute(f"prepare {name} (uuid[], uuid) as {native.text}")  # type: ignore[arg-type]
        # EXECUTE takes no bind parameters: the values are UUIDs, as literals.
        parents = ",".join(str(project) for project in board.projects.values())
        explained = await tx.fetch_value(
            f"explain (analyze, format json) execute {name}"  # type: ignore[arg-type]
            f" ('{{{parents}}}', '{team}')"
        )
        await tx.execute(f"deallocate {name}")  # type: ignore[arg-type]
    (root,) = explained  # json: decoded by the pool's codec
    page = projects * tasks
    assert root["Plan"]["Actual Rows"] == page
    for node in _plan_nodes(root["Plan"]):
        work = node["Actual Rows"] * node["Actual Loops"]
        assert work <= page * projects, (node["Node Type"], work)
