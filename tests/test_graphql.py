"""GraphQL queries: the same rows as REST, Relay connections on the REST cursors (both
ways, both directions), sorts and filters, and the compiled path answering like the engine.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import psycopg
import pytest

from tests.gql import both, data, error_codes, executor, gql
from tests.work import API, Board, board

__all__ = ["board"]
pytestmark = pytest.mark.asyncio
Owner = psycopg.Connection[dict[str, Any]]

TASK_FIELDS = (
    "id key number projectId title statusId priority parentId dueAt estimate position"
    " createdBy createdAt updatedAt completedAt version description"
)


async def test_a_task_reads_as_in_rest(board: Board, app: Any) -> None:
    label = await board.label("bug")
    parent = await board.create(title="Parent")
    task = await board.create(
        title="Child",
        description="**markdown**",
        priority=1,
        estimate=3,
        due_at="2030-05-06T07:08:09.123456+00:00",
        parent_id=parent["id"],
        assignee_ids=[str(board.bob.id)],
        label_ids=[label],
    )
    query = f"""query($t: UUID!, $id: UUID!) {{ team(id: $t) {{ task(id: $id) {{
        {TASK_FIELDS} assignees {{ id displayName }} labels {{ id name color projectId }}
        parent {{ key }} project {{ key }} status {{ name category }} }} }} }}"""
    response = await both(
        app, board.client, board.alice, query, {"t": str(board.team), "id": task["id"]}
    )
    got = data(response)["team"]["task"]
    rest = (await board.get(task["id"])).json()
    for field in TASK_FIELDS.split():
        snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in field)
        assert got[field] == rest[snake], field
    assert got["assignees"] == [{"id": str(board.bob.id), "displayName": "bob"}]
    assert got["labels"] == [{**rest["labels"][0], "projectId": board.project}]
    assert got["parent"] == {"key": "ENG-1"}
    assert got["status"] == {"name": "Todo", "category": "UNSTARTED"}
    by_key = """query($t: UUID!) { team(id: $t) { taskByKey(key: "ENG-2") { id }
        a: taskByKey(key: "ENG-9") { id } b: taskByKey(key: "nope") { id } } }"""
    assert data(await gql(board.client, board.alice, by_key, {"t": str(board.team)}))["team"] == {
        "taskByKey": {"id": task["id"]},
        "a": None,
        "b": None,
    }


async def test_comments_read_as_in_rest(board: Board, app: Any) -> None:
    """A comment's author and mentions come as REST shows them (mentions by name), with
    mentions and without, through both executors."""
    task = await board.create(title="Talked about")
    path = f"{API}/teams/{board.team}/tasks/{task['id']}/comments"
    for body in (f"@{board.gina.email} and @{board.bob.email}, look", "To no one"):
        posted = await board.client.post(path, json={"body": body}, headers=board.alice.headers)
        assert posted.status_code == 201, posted.text
    rest = (await board.client.get(path, headers=board.alice.headers)).json()["items"]
    query = """query($t: UUID!, $id: UUID!) { team(id: $t) { task(id: $id) { comments(first: 5)
        { nodes { id body author { id displayName } mentions { id displayName } } } } } }"""
    response = await both(
        app, board.client, board.alice, query, {"t": str(board.team), "id": task["id"]}
    )
    nodes = data(response)["team"]["task"]["comments"]["nodes"]
    assert [node["id"] for node in nodes] == [comment["id"] for comment in rest]
    assert nodes[0]["mentions"] == [
        {"id": str(board.bob.id), "displayName": "bob"},
        {"id": str(board.gina.id), "displayName": "gina"},
    ]
    assert [[m["id"] for m in node["mentions"]] for node in nodes] == [
        [m["id"] for m in comment["mentions"]] for comment in rest
    ]
    assert nodes[1]["mentions"] == []
    alice = {"id": str(board.alice.id), "displayName": "alice"}
    assert [node["author"] for node in nodes] == [alice, alice]


async def test_people_read_in_card_order_and_hidden_names_as_null(board: Board, app: Any) -> None:
    """A task's assignees come in its card's order (by id) with their names; once a member
    has left, their comments' author and mentions keep their id and read as a null name
    (Row Level Security hides their user row), as in REST, through both executors."""
    both_ids = sorted([str(board.alice.id), str(board.bob.id)])
    task = await board.create(title="Shared", assignee_ids=list(reversed(both_ids)))
    path = f"{API}/teams/{board.team}/tasks/{task['id']}/comments"
    for actor, body in ((board.bob, f"@{board.alice.email} done"), (board.alice, "thanks")):
        posted = await board.client.post(path, json={"body": body}, headers=actor.headers)
        assert posted.status_code == 201, posted.text
    mention = await board.client.post(
        path, json={"body": f"@{board.bob.email} see"}, headers=board.alice.headers
    )
    assert mention.status_code == 201, mention.text
    query = """query($t: UUID!, $id: UUID!) { team(id: $t) { task(id: $id) {
        assignees { id displayName } comments(first: 5) { nodes {
        author { id displayName } mentions { id displayName } } } } } }"""
    variables = {"t": str(board.team), "id": task["id"]}
    names = {str(board.alice.id): "alice", str(board.bob.id): "bob"}
    got = data(await both(app, board.client, board.alice, query, variables))["team"]["task"]
    assert got["assignees"] == [{"id": i, "displayName": names[i]} for i in both_ids]

    removed = await board.client.delete(
        f"{API}/teams/{board.team}/members/{board.bob.id}", headers=board.alice.headers
    )
    assert removed.status_code == 204, removed.text
    got = data(await both(app, board.client, board.alice, query, variables))["team"]["task"]
    rest = (await board.client.get(path, headers=board.alice.headers)).json()["items"]
    gone = {"id": str(board.bob.id), "displayName": None}
    alice = {"id": str(board.alice.id), "displayName": "alice"}
    assert got["assignees"] == [alice]  # leaving the team ends the assignment
    assert [node["author"] for node in got["comments"]["nodes"]] == [gone, alice, alice]
    assert [node["mentions"] for node in got["comments"]["nodes"]] == [[alice], [], [gone]]
    assert [c["author"]["display_name"] for c in rest] == [None, "alice", "alice"]
    assert rest[2]["mentions"] == [{"id": str(board.bob.id), "display_name": None}]


PAGE = """
query($t: UUID!, $p: UUID!, $first: Int, $after: String, $last: Int, $before: String) {
  team(id: $t) {
    project(id: $p) {
      tasks(first: $first, after: $after, last: $last, before: $before, sort: NUMBER_ASC) {
        edges { cursor node { key } }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      }
    }
  }
}
"""


async def _page(board: Board, app: Any, **args: Any) -> dict[str, Any]:
    variables = {"t": str(board.team), "p": board.project, **args}
    response = await both(app, board.client, board.alice, PAGE, variables)
    page: dict[str, Any] = data(response)["team"]["project"]["tasks"]
    return page


async def test_cursors_are_the_rest_cursors_both_ways(board: Board, app: Any) -> None:
    for i in range(5):
        await board.create(title=f"t{i}")
    rest = await board.list(sort="number", limit=2)
    first = await _page(board, app, first=2)
    assert [edge["node"]["key"] for edge in first["edges"]] == ["ENG-1", "ENG-2"]
    assert first["pageInfo"]["endCursor"] == rest["next_cursor"]
    assert first["pageInfo"]["hasNextPage"] is True
    assert first["edges"][-1]["cursor"] == rest["next_cursor"]
    # A REST cursor continues in GraphQL, a GraphQL cursor continues in REST.
    second = await _page(board, app, first=2, after=rest["next_cursor"])
    assert [edge["node"]["key"] for edge in second["edges"]] == ["ENG-3", "ENG-4"]
    rest_second = await board.list(sort="number", limit=2, cursor=first["pageInfo"]["endCursor"])
    assert [item["key"] for item in rest_second["items"]] == ["ENG-3", "ENG-4"]
    last = await _page(board, app, first=2, after=second["pageInfo"]["endCursor"])
    assert [edge["node"]["key"] for edge in last["edges"]] == ["ENG-5"]
    assert last["pageInfo"]["hasNextPage"] is False


async def test_backward_pages(board: Board, app: Any) -> None:
    for i in range(5):
        await board.create(title=f"t{i}")
    tail = await _page(board, app, last=2)
    assert [edge["node"]["key"] for edge in tail["edges"]] == ["ENG-4", "ENG-5"]
    assert tail["pageInfo"]["hasPreviousPage"] is True
    assert tail["pageInfo"]["hasNextPage"] is False
    before = await _page(board, app, last=2, before=tail["pageInfo"]["startCursor"])
    assert [edge["node"]["key"] for edge in before["edges"]] == ["ENG-2", "ENG-3"]
    head = await _page(board, app, last=2, before=before["pageInfo"]["startCursor"])
    assert [edge["node"]["key"] for edge in head["edges"]] == ["ENG-1"]
    assert head["pageInfo"]["hasPreviousPage"] is False
    window = await _page(
        board,
        app,
        first=10,
        after=head["pageInfo"]["endCursor"],
        before=tail["pageInfo"]["endCursor"],
    )
    assert [edge["node"]["key"] for edge in window["edges"]] == ["ENG-2", "ENG-3", "ENG-4"]
    empty = await _page(board, app, first=1, after=tail["pageInfo"]["endCursor"])
    assert empty == {
        "edges": [],
        "pageInfo": {
            "hasNextPage": False,
            "hasPreviousPage": False,
            "startCursor": None,
            "endCursor": None,
        },
    }


async def test_cursors_are_bound_to_their_list(board: Board) -> None:
    await board.create(title="a")
    await board.create(title="b")
    rest = await board.list(sort="number", limit=1)
    other_sort = """query($t: UUID!, $p: UUID!, $c: String!) { team(id: $t) { project(id: $p) {
        tasks(first: 1, after: $c, sort: CREATED_AT_ASC) { nodes { key } } } } }"""
    variables = {"t": str(board.team), "p": board.project, "c": rest["next_cursor"]}
    response = await gql(board.client, board.alice, other_sort, variables)
    assert error_codes(response) == ["invalid_cursor"]
    tampered = {**variables, "c": rest["next_cursor"][:-2] + "AA"}
    assert error_codes(
        await gql(
            board.client,
            board.alice,
            PAGE.replace("NUMBER_ASC", "NUMBER_ASC"),
            {"t": str(board.team), "p": board.project, "after": tampered["c"], "first": 1},
        )
    ) == ["invalid_cursor"]


FILTERED = """
query($t: UUID!, $filter: TaskFilter, $sort: TaskSort!) {
  team(id: $t) { tasks(first: 50, sort: $sort, filter: $filter) { nodes { title priority } } }
}
"""


async def test_sorts_and_filters_are_rest_s(board: Board, app: Any) -> None:
    await board.create(title="urgent", priority=1, assignee_ids=[str(board.bob.id)])
    await board.create(title="low", priority=4)
    await board.create(title="none", priority=0)
    variables: dict[str, Any] = {"t": str(board.team), "sort": "PRIORITY_ASC"}
    ordered = data(await gql(board.client, board.alice, FILTERED, variables))
    assert [n["title"] for n in ordered["team"]["tasks"]["nodes"]] == ["none", "urgent", "low"]
    variables["filter"] = {"priorities": [1, 4], "q": "URG"}
    filtered = data(await gql(board.client, board.alice, FILTERED, variables))
    assert filtered["team"]["tasks"]["nodes"] == [{"title": "urgent", "priority": 1}]
    variables["filter"] = {"assigneeIds": [str(board.bob.id)]}
    assigned = data(await gql(board.client, board.alice, FILTERED, variables))
    assert [n["title"] for n in assigned["team"]["tasks"]["nodes"]] == ["urgent"]
    # The REST errors for sorts a list does not offer, and for invalid filters.
    number = await gql(board.client, board.alice, FILTERED, {**variables, "sort": "NUMBER_ASC"})
    assert error_codes(number) == ["unsupported_sort"]
    position = await gql(board.client, board.alice, FILTERED, {**variables, "sort": "POSITION_ASC"})
    assert error_codes(position) == ["position_sort_needs_status"]
    invalid = {**variables, "filter": {"priorities": [9]}}
    response = await gql(board.client, board.alice, FILTERED, invalid)
    assert error_codes(response) == ["validation_failed"]
    # The compiled path hands an input object to the engine, which answers.
    with executor(app, compiled=True):
        handed = await gql(
            board.client, board.alice, FILTERED, {**variables, "filter": {"q": "low"}}
        )
    assert handed.headers["x-graphql-executor"] == "engine"
    assert data(handed)["team"]["tasks"]["nodes"] == [{"title": "low", "priority": 4}]


async def test_viewer_teams_members_and_notifications(board: Board, app: Any, notify: Any) -> None:
    task = await board.create(title="Watched", assignee_ids=[str(board.bob.id)])
    comment = await board.client.post(
        f"{API}/teams/{board.team}/tasks/{task['id']}/comments",
        json={"body": f"ping @{board.bob.email}"},
        headers=board.alice.headers,
    )
    assert comment.status_code == 201
    await notify()  # notifications come from the worker's consumer of the event log
    query = """query { viewer { displayName } teams(first: 5) { nodes { id role
        members(first: 10) { nodes { displayName role } }
        unreadNotificationCount
        notifications(first: 5) { nodes { kind task { ref title } actor { displayName } } } } } }"""
    response = await both(app, board.client, board.bob, query, {})
    got = data(response)
    assert got["viewer"] == {"displayName": "bob"}
    (team,) = got["teams"]["nodes"]
    assert (team["id"], team["role"]) == (str(board.team), "MEMBER")
    assert sorted(m["displayName"] for m in team["members"]["nodes"]) == ["alice", "bob", "gina"]
    assert team["unreadNotificationCount"] == 2
    assert team["notifications"]["nodes"] == [
        {
            "kind": kind,
            "task": {"ref": "ENG-1", "title": "Watched"},
            "actor": {"displayName": "alice"},
        }
        for kind in ("MENTIONED", "ASSIGNED")  # newest first
    ]


async def test_a_team_the_caller_is_not_in_is_null(board: Board, make_user: Any) -> None:
    query = "query($t: UUID!) { team(id: $t) { name } }"
    outsider = await gql(board.client, make_user("eve"), query, {"t": str(board.team)})
    assert outsider.json() == {"data": {"team": None}}
    missing = await gql(board.client, make_user("eve"), query, {"t": str(uuid.uuid4())})
    assert missing.json() == outsider.json()


async def test_client_errors_never_leak_internals(board: Board, client: httpx.AsyncClient) -> None:
    """A cursor that is not even base64 is an invalid cursor, not a 500."""
    query = (
        'query($t: UUID!) { team(id: $t) { projects(first: 1, after: "%%%") { nodes { key } } } }'
    )
    response = await gql(client, board.alice, query, {"t": str(board.team)})
    assert error_codes(response) == ["invalid_cursor"]
