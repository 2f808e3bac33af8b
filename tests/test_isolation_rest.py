"""The isolation matrix through REST: another team's id answers exactly like a missing id."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.conftest import Actor

pytestmark = pytest.mark.asyncio


def _without_instance(response: httpx.Response) -> tuple[int, str | None, dict[str, Any]]:
    body = response.json()
    body.pop("instance", None)
    return response.status_code, response.headers.get("content-type"), body


async def _project(client: httpx.AsyncClient, actor: Actor, team: uuid.UUID, key: str) -> str:
    response = await client.post(
        f"/api/v1/teams/{team}/projects", json={"key": key, "name": key}, headers=actor.headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


ROUTES = [
    ("GET", "/api/v1/teams/{team}", None),
    ("PATCH", "/api/v1/teams/{team}", {"name": "hijacked"}),
    ("DELETE", "/api/v1/teams/{team}", None),
    ("GET", "/api/v1/teams/{team}/members", None),
    ("PATCH", "/api/v1/teams/{team}/members/{user}", {"role": "guest"}),
    ("DELETE", "/api/v1/teams/{team}/members/{user}", None),
    ("GET", "/api/v1/teams/{team}/invitations", None),
    ("POST", "/api/v1/teams/{team}/invitations", {"email": "x@example.com"}),
    ("GET", "/api/v1/teams/{team}/api-keys", None),
    ("POST", "/api/v1/teams/{team}/api-keys", {"name": "k"}),
    ("GET", "/api/v1/teams/{team}/projects", None),
    ("POST", "/api/v1/teams/{team}/projects", {"key": "NEW", "name": "n"}),
    ("GET", "/api/v1/teams/{own}/projects/{project}", None),
    ("PATCH", "/api/v1/teams/{own}/projects/{project}", {"name": "hijacked"}),
    ("DELETE", "/api/v1/teams/{own}/projects/{project}", None),
    ("GET", "/api/v1/teams/{own}/projects/{project}/members", None),
    ("POST", "/api/v1/teams/{own}/projects/{project}/members", {"user_id": "{user}"}),
    ("DELETE", "/api/v1/teams/{own}/projects/{project}/members/{user}", None),
]


@pytest.mark.parametrize(("method", "template", "body"), ROUTES)
async def test_foreign_ids_are_indistinguishable_from_missing_ones(
    client: httpx.AsyncClient,
    make_user: Callable[..., Actor],
    make_team: Callable[..., Awaitable[uuid.UUID]],
    method: str,
    template: str,
    body: dict[str, Any] | None,
) -> None:
    attacker, victim = make_user("attacker"), make_user("victim")
    own_team = await make_team(attacker)
    victim_team = await make_team(victim)
    victim_project = await _project(client, victim, victim_team, "VIC")

    def url(team: Any, project: Any, user: Any) -> str:
        return template.format(team=team, own=own_team, project=project, user=user)

    def payload(user: Any) -> dict[str, Any] | None:
        if body is None:
            return None
        return {k: (str(user) if v == "{user}" else v) for k, v in body.items()}

    foreign = await client.request(
        method,
        url(victim_team, victim_project, victim.id),
        json=payload(victim.id),
        headers=attacker.headers,
    )
    missing = await client.request(
        method,
        url(uuid.uuid4(), uuid.uuid4(), uuid.uuid4()),
        json=payload(uuid.uuid4()),
        headers=attacker.headers,
    )
    assert foreign.status_code == 404, foreign.text
    assert _without_instance(foreign) == _without_instance(missing)

    # And nothing changed on the victim's side.
    check = await client.get(f"/api/v1/teams/{victim_team}", headers=victim.headers)
    assert check.status_code == 200
    assert check.json()["name"] == "Team"
    project = await client.get(
        f"/api/v1/teams/{victim_team}/projects/{victim_project}", headers=victim.headers
    )
    assert project.status_code == 200
    assert project.json()["name"] == "VIC"
