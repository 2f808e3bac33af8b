"""Helpers shared by the work-management tests: a team with a project and its workflow."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import Actor

API = "/api/v1"
Owner = psycopg.Connection[dict[str, Any]]
MakeUser = Callable[..., Actor]
MakeTeam = Callable[..., Awaitable[uuid.UUID]]


@dataclass
class Board:
    """A team (``alice`` owner, ``bob`` member, ``gina`` guest added to the project) with
    the project ``ENG`` and its default workflow."""

    client: httpx.AsyncClient
    team: uuid.UUID
    alice: Actor
    bob: Actor
    gina: Actor
    project: str
    statuses: dict[str, str]  # name -> id

    @property
    def tasks(self) -> str:
        return f"{API}/teams/{self.team}/projects/{self.project}/tasks"

    @property
    def project_path(self) -> str:
        return f"{API}/teams/{self.team}/projects/{self.project}"

    def task_path(self, task_id: str, suffix: str = "") -> str:
        return f"{API}/teams/{self.team}/tasks/{task_id}{suffix}"

    async def create(self, actor: Actor | None = None, **body: Any) -> dict[str, Any]:
        body.setdefault("title", "A task")
        response = await self.client.post(
            self.tasks, json=body, headers=(actor or self.alice).headers
        )
        assert response.status_code == 201, response.text
        task: dict[str, Any] = response.json()
        return task

    async def patch(
        self, task_id: str, body: dict[str, Any], actor: Actor | None = None, **headers: str
    ) -> httpx.Response:
        return await self.client.patch(
            self.task_path(task_id),
            json=body,
            headers={**(actor or self.alice).headers, **headers},
        )

    async def get(self, task_id: str, actor: Actor | None = None) -> httpx.Response:
        return await self.client.get(self.task_path(task_id), headers=(actor or self.alice).headers)

    async def label(self, name: str, color: str = "#336699") -> str:
        response = await self.client.post(
            f"{self.project_path}/labels",
            json={"name": name, "color": color},
            headers=self.alice.headers,
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def list(self, actor: Actor | None = None, path: str | None = None, **params: Any) -> Any:
        response = await self.client.get(
            path or self.tasks, params=params, headers=(actor or self.alice).headers
        )
        assert response.status_code == 200, response.text
        return response.json()


async def project(
    client: httpx.AsyncClient, actor: Actor, team: uuid.UUID, key: str, visibility: str = "team"
) -> str:
    response = await client.post(
        f"{API}/teams/{team}/projects",
        json={"key": key, "name": key, "visibility": visibility},
        headers=actor.headers,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def statuses_of(client: httpx.AsyncClient, actor: Actor, path: str) -> dict[str, str]:
    response = await client.get(f"{path}/statuses", headers=actor.headers)
    assert response.status_code == 200, response.text
    return {item["name"]: item["id"] for item in response.json()["items"]}


async def make_board(client: httpx.AsyncClient, make_user: MakeUser, make_team: MakeTeam) -> Board:
    alice, bob, gina = make_user("alice"), make_user("bob"), make_user("gina")
    team = await make_team(alice, members=[(bob, "member"), (gina, "guest")])
    project_id = await project(client, alice, team, "ENG")
    path = f"{API}/teams/{team}/projects/{project_id}"
    added = await client.post(
        f"{path}/members", json={"user_id": str(gina.id)}, headers=alice.headers
    )
    assert added.status_code == 201, added.text
    statuses = await statuses_of(client, alice, path)
    return Board(client, team, alice, bob, gina, project_id, statuses)


@pytest.fixture
async def board(client: httpx.AsyncClient, make_user: MakeUser, make_team: MakeTeam) -> Board:
    return await make_board(client, make_user, make_team)


def task_events(owner: Owner, team: uuid.UUID, kind: str) -> list[dict[str, Any]]:
    rows = owner.execute(
        "select kind, actor_id, subject_id, project_id, payload from event"
        " where team_id = %s and kind = %s order by occurred_at, id",
        (team, kind),
    ).fetchall()
    return list(rows)


def sql_count(response: httpx.Response) -> int:
    return int(response.headers["x-sql-statements"])
