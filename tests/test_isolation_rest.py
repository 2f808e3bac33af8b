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
    ("GET", "/api/v1/teams/{own}/projects/{project}/statuses", None),
    (
        "POST",
        "/api/v1/teams/{own}/projects/{project}/statuses",
        {"name": "X", "category": "started"},
    ),
    ("PUT", "/api/v1/teams/{own}/projects/{project}/statuses/order", {"status_ids": ["{status}"]}),
    ("PATCH", "/api/v1/teams/{own}/projects/{project}/statuses/{status}", {"name": "hijacked"}),
    ("DELETE", "/api/v1/teams/{own}/projects/{project}/statuses/{status}?move_to={status}", None),
    ("GET", "/api/v1/teams/{own}/projects/{project}/labels", None),
    ("POST", "/api/v1/teams/{own}/projects/{project}/labels", {"name": "x", "color": "#000000"}),
    ("PATCH", "/api/v1/teams/{own}/projects/{project}/labels/{label}", {"name": "hijacked"}),
    ("DELETE", "/api/v1/teams/{own}/projects/{project}/labels/{label}", None),
    ("GET", "/api/v1/teams/{own}/projects/{project}/tasks", None),
    ("POST", "/api/v1/teams/{own}/projects/{project}/tasks", {"title": "hijacked"}),
    ("GET", "/api/v1/teams/{team}/tasks", None),
    ("GET", "/api/v1/teams/{own}/tasks/{task}", None),
    ("GET", "/api/v1/teams/{own}/tasks/by-key/{key}", None),
    ("PATCH", "/api/v1/teams/{own}/tasks/{task}", {"title": "hijacked"}),
    ("POST", "/api/v1/teams/{own}/tasks/{task}/move", {"status_id": "{status}"}),
    ("DELETE", "/api/v1/teams/{own}/tasks/{task}", None),
    ("POST", "/api/v1/teams/{own}/tasks/{task}/restore", None),
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
    victim_ids = await _work_items(client, victim, victim_team, victim_project)
    # The attacker's own team has a project with the same key: keys resolve per team.
    await _project(client, attacker, own_team, "VIC")

    def url(ids: dict[str, Any]) -> str:
        return template.format(own=own_team, **ids)

    def payload(ids: dict[str, Any]) -> Any:
        if body is None:
            return None
        return _fill(body, ids)

    foreign = await client.request(
        method, url(victim_ids), json=payload(victim_ids), headers=attacker.headers
    )
    missing_ids = {name: uuid.uuid4() for name in victim_ids} | {"key": "NOPE-1"}
    missing = await client.request(
        method, url(missing_ids), json=payload(missing_ids), headers=attacker.headers
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
    task = await client.get(
        f"/api/v1/teams/{victim_team}/tasks/{victim_ids['task']}", headers=victim.headers
    )
    assert task.status_code == 200
    assert task.json()["title"] == "victim task"
    assert task.json()["version"] == 1


def _fill(value: Any, ids: dict[str, Any]) -> Any:
    """Replace ``"{name}"`` placeholders in a JSON body with the ids of the target."""
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return str(ids[value[1:-1]])
    return value


async def _work_items(
    client: httpx.AsyncClient, actor: Actor, team: uuid.UUID, project: str
) -> dict[str, Any]:
    """A task, a status and a label in ``project``, and the ids the route templates use."""
    base = f"/api/v1/teams/{team}/projects/{project}"
    task = await client.post(f"{base}/tasks", json={"title": "victim task"}, headers=actor.headers)
    assert task.status_code == 201, task.text
    label = await client.post(
        f"{base}/labels", json={"name": "bug", "color": "#ff0000"}, headers=actor.headers
    )
    assert label.status_code == 201, label.text
    return {
        "team": team,
        "project": project,
        "user": actor.id,
        "task": task.json()["id"],
        "status": task.json()["status_id"],
        "label": label.json()["id"],
        "key": task.json()["key"],
    }
