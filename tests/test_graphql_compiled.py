"""The compiled path answers exactly as the engine does, or hands the operation to it.

Every query here runs through both executors (``tests.gql.both``: same bytes, same SQL
statements) or checks which one answered.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.gql import both, data, error_codes, executor, gql
from tests.work import Board, board

__all__ = ["board"]
pytestmark = pytest.mark.asyncio

SHAPES = {
    "aliases and typename": """query($t: UUID!) { team(id: $t) { __typename n: name
        a: projects(first: 2) { nodes { __typename k: key } }
        b: projects(first: 1) { nodes { name } } } }""",
    "fragments merged": """query($t: UUID!) { team(id: $t) { ...A ...B ... on Team { id } } }
        fragment A on Team { projects(first: 5) { nodes { key } } }
        fragment B on Team { projects(first: 5) { nodes { name tasks(first: 5) {
          nodes { ...T } } } } }
        fragment T on Task { key title labels { name } status { name } }""",
    "skip and include": """query($t: UUID!, $yes: Boolean!, $no: Boolean!) { team(id: $t) {
        name @skip(if: $yes) role @include(if: $yes)
        projects(first: 5) @include(if: $no) { nodes { key } }
        tasks(first: 5) { nodes { key @skip(if: $no) title } } } }""",
    "nulls where allowed": """query($t: UUID!, $missing: UUID!) { team(id: $t) {
        project(id: $missing) { key }
        task(id: $missing) { key }
        tasks(first: 5) { nodes { parent { key } dueAt estimate completedAt } } } }""",
    "edges, cursors and page info": """query($t: UUID!) { team(id: $t) {
        tasks(first: 2, sort: PRIORITY_DESC) { edges { cursor node { key } }
          pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } } }""",
    "backward page": """query($t: UUID!) { team(id: $t) {
        tasks(last: 2) { nodes { key } pageInfo { hasPreviousPage } } } }""",
    "viewer and teams": """{ viewer { displayName }
        teams(first: 5) { nodes { name role members(first: 5) { nodes { displayName } } } } }""",
}


@pytest.mark.parametrize("name", list(SHAPES))
async def test_the_compiled_path_answers_like_the_engine(board: Board, app: Any, name: str) -> None:
    label = await board.label("bug")
    parent = await board.create(title="Parent", priority=1)
    await board.create(title="Child", parent_id=parent["id"], label_ids=[label])
    await board.create(title="Other", priority=3, due_at="2031-01-01T00:00:00Z")
    variables: dict[str, Any] = {"t": str(board.team)}
    query = SHAPES[name]
    for extra, value in (
        ("$yes", True),
        ("$no", False),
        ("$missing", "0" * 8 + "-0000-0000-0000-" + "0" * 12),
    ):
        if extra in query:
            variables[extra[1:]] = value
    response = await both(app, board.client, board.alice, query, variables)
    assert "errors" not in response.json()


async def test_what_the_compiled_path_hands_to_the_engine(board: Board, app: Any) -> None:
    """Mutations, input objects, introspection and any error are the engine's."""
    await board.create(title="A task")
    cases = {
        "an input object": (
            'query($t: UUID!) { team(id: $t) { tasks(first: 5, filter: {q: "task"}) {'
            " nodes { title } } } }"
        ),
        "introspection": 'query($t: UUID!) { team(id: $t) { name } __type(name: "Task") { name } }',
        "an error in a field": (
            'query($t: UUID!) { team(id: $t) { name projects(first: 1, after: "nope") {'
            " nodes { key } } } }"
        ),
    }
    with executor(app, compiled=True):
        for query in cases.values():
            response = await gql(board.client, board.alice, query, {"t": str(board.team)})
            assert response.headers["x-graphql-executor"] == "engine", query
    errored = await gql(
        board.client, board.alice, cases["an error in a field"], {"t": str(board.team)}
    )
    assert error_codes(errored) == ["invalid_cursor"]
    assert errored.json()["data"] == {"team": None}  # the non-null field nulls its parent
    assert errored.json()["errors"][0]["path"] == ["team", "projects"]
    found = data(
        await gql(board.client, board.alice, cases["an input object"], {"t": str(board.team)})
    )
    assert found == {"team": {"tasks": {"nodes": [{"title": "A task"}]}}}


async def test_plans_are_reused_and_follow_their_variables(board: Board, app: Any) -> None:
    """A plan without @skip/@include is built once per query text; one with them follows
    each request's variables."""
    await board.create(title="A task")
    plans = app.state.graphql_engine.plans._plans
    query = (
        "query Reused($t: UUID!, $n: Int!) { team(id: $t) { tasks(first: $n) { nodes { key } } } }"
    )
    before = len(plans)
    with executor(app, compiled=True):
        for n in (1, 2, 1):
            page = await gql(board.client, board.alice, query, {"t": str(board.team), "n": n})
            assert len(data(page)["team"]["tasks"]["nodes"]) == 1
    assert len(plans) == before + 1
    toggled = "query Toggled($t: UUID!, $on: Boolean!) { team(id: $t) { name @include(if: $on) } }"
    with executor(app, compiled=True):
        shown = await gql(board.client, board.alice, toggled, {"t": str(board.team), "on": True})
        hidden = await gql(board.client, board.alice, toggled, {"t": str(board.team), "on": False})
    assert data(shown) == {"team": {"name": "Team"}}
    assert data(hidden) == {"team": {}}
    assert len(plans) == before + 1  # not kept: it depends on the variables
