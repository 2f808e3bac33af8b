"""Helpers for the comment, notification, activity and search tests.

Tasks are created through the tasks service (``tests.taskdata``) as their creator.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import psycopg

from tests import taskdata
from tests.conftest import Actor

API = "/api/v1"
Owner = psycopg.Connection[dict[str, Any]]


async def create_project(
    client: httpx.AsyncClient, actor: Actor, team: uuid.UUID, key: str, visibility: str = "team"
) -> uuid.UUID:
    response = await client.post(
        f"{API}/teams/{team}/projects",
        json={"key": key, "name": f"Project {key}", "visibility": visibility},
        headers=actor.headers,
    )
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


async def add_to_project(
    client: httpx.AsyncClient, actor: Actor, team: uuid.UUID, project: uuid.UUID, user: Actor
) -> None:
    response = await client.post(
        f"{API}/teams/{team}/projects/{project}/members",
        json={"user_id": str(user.id)},
        headers=actor.headers,
    )
    assert response.status_code == 201, response.text


async def create_task(
    app: Any,
    actor: Actor,
    team: uuid.UUID,
    project: uuid.UUID,
    title: str = "A task",
    description: str = "",
) -> uuid.UUID:
    return await taskdata.create_task(app, actor.id, team, project, title, description)


async def post_comment(
    client: httpx.AsyncClient, actor: Actor, team: uuid.UUID, task: uuid.UUID, body: str
) -> dict[str, Any]:
    response = await client.post(
        f"{API}/teams/{team}/tasks/{task}/comments", json={"body": body}, headers=actor.headers
    )
    assert response.status_code == 201, response.text
    comment: dict[str, Any] = response.json()
    return comment


async def walk(
    client: httpx.AsyncClient, actor: Actor, path: str, limit: int = 1, **params: Any
) -> list[dict[str, Any]]:
    """Every item of a list, page by page; checks that the statement count is constant."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    counts: set[str] = set()
    for _ in range(100):
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = await client.get(path, params=query, headers=actor.headers)
        assert response.status_code == 200, response.text
        counts.add(response.headers["x-sql-statements"])
        body = response.json()
        assert len(body["items"]) <= limit
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            assert len(counts) == 1, f"statement count varies across pages: {counts}"
            return items
    raise AssertionError("pagination does not terminate")


async def statement_counts(
    client: httpx.AsyncClient, actor: Actor, path: str, **params: Any
) -> tuple[int, int]:
    """X-SQL-Statements of a list at limit 1 and limit 200 (both must answer 200)."""
    counts = []
    for limit in (1, 200):
        response = await client.get(path, params={**params, "limit": limit}, headers=actor.headers)
        assert response.status_code == 200, response.text
        counts.append(int(response.headers["x-sql-statements"]))
    return counts[0], counts[1]


def events(owner: Owner, team: uuid.UUID, kind: str) -> list[dict[str, Any]]:
    rows = owner.execute(
        "select kind, actor_id, subject_id, project_id, payload from event"
        " where team_id = %s and kind = %s order by occurred_at, id",
        (team, kind),
    ).fetchall()
    return list(rows)


def mention(actor: Actor) -> str:
    """``@local-part`` of the actor's email."""
    return "@" + actor.email.split("@")[0]
