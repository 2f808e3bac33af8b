"""Helpers of the GraphQL tests: calling ``/graphql`` and building boards of work."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from teamboard.comments import service as comments
from teamboard.deps import TeamContext
from teamboard.projects import labels
from teamboard.projects import service as projects
from teamboard.projects.schemas import LabelIn, ProjectIn
from teamboard.tasks import service as tasks
from teamboard.tasks.schemas import TaskIn
from tests.conftest import Actor

DASHBOARD = """
query Dashboard($team: UUID!, $projects: Int!, $tasks: Int!) {
  team(id: $team) {
    name
    projects(first: $projects) {
      nodes {
        key
        name
        tasks(first: $tasks) {
          nodes {
            key
            title
            priority
            dueAt
            assignees { id displayName }
            labels { name color }
            comments(first: 3) { nodes { body createdAt author { displayName } } }
          }
        }
      }
    }
  }
}
"""


class Credentials(Protocol):
    """Who calls: an :class:`Actor`, or a caller of a generated data set."""

    @property
    def headers(self) -> dict[str, str]: ...


@contextmanager
def executor(app: Any, *, compiled: bool) -> Iterator[None]:
    """Run the block's queries through the compiled path or the engine only."""
    engine = app.state.graphql_engine
    saved = engine.settings
    engine.settings = saved.model_copy(update={"graphql_compiled": compiled})
    try:
        yield
    finally:
        engine.settings = saved


async def both(
    app: Any, client: httpx.AsyncClient, actor: Credentials, query: str, variables: dict[str, Any]
) -> httpx.Response:
    """The engine's response, after checking that the compiled path answers the same bytes
    with the same statements."""
    with executor(app, compiled=True):
        fast = await gql(client, actor, query, variables)
    with executor(app, compiled=False):
        slow = await gql(client, actor, query, variables)
    assert fast.headers["x-graphql-executor"] == "compiled"
    assert slow.headers["x-graphql-executor"] == "engine"
    assert fast.content == slow.content
    assert statements(fast) == statements(slow)
    return slow


async def gql(
    client: httpx.AsyncClient,
    actor: Credentials | None,
    query: str,
    variables: dict[str, Any] | None = None,
    **headers: str,
) -> httpx.Response:
    """POST one operation as ``actor`` (None: no credentials)."""
    sent = {**(actor.headers if actor else {}), **headers}
    body: dict[str, Any] = {"query": query}
    if variables is not None:
        body["variables"] = variables
    return await client.post("/graphql", json=body, headers=sent)


def data(response: httpx.Response) -> Any:
    """The ``data`` of a response that has no errors."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def error_codes(response: httpx.Response) -> list[str]:
    return [error["extensions"]["code"] for error in response.json()["errors"]]


def statements(response: httpx.Response) -> int:
    return int(response.headers["x-sql-statements"])


def resolved_fields(response: httpx.Response) -> int:
    return int(response.headers["x-graphql-resolved-fields"])


@dataclass
class Board:
    """Projects built through the services: ``tasks[project key]`` lists task ids."""

    team: uuid.UUID
    projects: dict[str, uuid.UUID]
    tasks: dict[str, list[uuid.UUID]]


async def build_board(
    app: Any,
    actor: Actor,
    team: uuid.UUID,
    *,
    projects_count: int,
    tasks_count: int,
    comments_count: int = 1,
    assignees: Sequence[uuid.UUID] = (),
) -> Board:
    """``projects_count`` projects of ``tasks_count`` tasks, each with the actor and
    ``assignees`` assigned, a label and ``comments_count`` comments (one transaction per
    project, as the actor, through the same services as the API)."""
    board = Board(team, {}, {})
    database = app.state.services.db
    for p in range(projects_count):
        async with database.transaction(user_id=actor.id, team_id=team) as tx:
            ctx = TeamContext(tx, team, actor.id, None)
            project = await projects.create_project(ctx, ProjectIn(key=f"P{p}", name=f"P{p}"))
            label = await labels.create_label(
                ctx, project["id"], LabelIn(name="bug", color="#ff0000")
            )
            key = project["key"]
            board.projects[key], board.tasks[key] = project["id"], []
            for t in range(tasks_count):
                body = TaskIn(
                    title=f"{key} task {t}",
                    priority=t % 5,
                    assignee_ids=[actor.id, *assignees],
                    label_ids=[label["id"]],
                )
                task = await tasks.create_task(ctx, project["id"], body)
                board.tasks[key].append(task.id)
                for c in range(comments_count):
                    await comments.create_comment(ctx, task.id, f"comment {c} on {t}")
    return board
