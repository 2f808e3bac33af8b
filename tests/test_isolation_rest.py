"""The isolation matrix through REST: another team's id answers exactly like a missing id."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import Actor

pytestmark = pytest.mark.asyncio
Owner = psycopg.Connection[dict[str, Any]]
Ids = dict[str, uuid.UUID]


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


MANUAL_ENTRY = {"started_at": "2026-01-02T09:00:00Z", "duration_seconds": 60}


def _task_with_children(owner: Owner, team: uuid.UUID, project: str, user: uuid.UUID) -> Ids:
    """A task with an attachment and a time entry (rows only: no route may reach them)."""
    status = owner.execute(
        "select id from status where project_id = %s order by position limit 1", (project,)
    ).fetchone()
    assert status is not None
    ids = {"task": uuid.uuid4(), "attachment": uuid.uuid4(), "entry": uuid.uuid4()}
    owner.execute(
        "insert into task (team_id, id, project_id, number, title, status_id, created_by)"
        " values (%s, %s, %s, 99, 'victim task', %s, %s)",
        (team, ids["task"], project, status["id"], user),
    )
    owner.execute(
        "insert into attachment (team_id, id, project_id, task_id, filename, content_type,"
        " size_bytes, sha256, storage_key, uploaded_by)"
        " values (%s, %s, %s, %s, 'secret.txt', 'text/plain', 6, %s, %s, %s)",
        (
            team,
            ids["attachment"],
            project,
            ids["task"],
            "0" * 64,
            f"{team}/{ids['attachment']}",
            user,
        ),
    )
    owner.execute(
        "insert into time_entry (team_id, id, project_id, task_id, user_id, started_at)"
        " values (%s, %s, %s, %s, %s, now())",
        (team, ids["entry"], project, ids["task"], user),
    )
    return ids


def _children_unchanged(owner: Owner, ids: Ids) -> bool:
    row = owner.execute(
        "select (select count(*) from attachment where id = %s) as attachments,"
        " (select count(*) from time_entry where id = %s and note = '' and ended_at is null)"
        " as entries, (select count(*) from time_entry where task_id = %s) as all_entries",
        (ids["attachment"], ids["entry"], ids["task"]),
    ).fetchone()
    return row == {"attachments": 1, "entries": 1, "all_entries": 1}


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
    ("POST", "/api/v1/teams/{team}/tasks/{task}/attachments?filename=a.txt", None),
    ("POST", "/api/v1/teams/{own}/tasks/{task}/attachments?filename=a.txt", None),
    ("GET", "/api/v1/teams/{team}/tasks/{task}/attachments", None),
    ("GET", "/api/v1/teams/{own}/tasks/{task}/attachments", None),
    ("GET", "/api/v1/teams/{team}/attachments/{attachment}", None),
    ("GET", "/api/v1/teams/{own}/attachments/{attachment}", None),
    ("GET", "/api/v1/teams/{team}/attachments/{attachment}/content", None),
    ("GET", "/api/v1/teams/{own}/attachments/{attachment}/content", None),
    ("DELETE", "/api/v1/teams/{team}/attachments/{attachment}", None),
    ("DELETE", "/api/v1/teams/{own}/attachments/{attachment}", None),
    ("POST", "/api/v1/teams/{team}/tasks/{task}/time-entries/start", None),
    ("POST", "/api/v1/teams/{own}/tasks/{task}/time-entries/start", None),
    ("POST", "/api/v1/teams/{team}/tasks/{task}/time-entries", MANUAL_ENTRY),
    ("POST", "/api/v1/teams/{own}/tasks/{task}/time-entries", MANUAL_ENTRY),
    ("GET", "/api/v1/teams/{team}/tasks/{task}/time-entries", None),
    ("GET", "/api/v1/teams/{own}/tasks/{task}/time-entries", None),
    ("GET", "/api/v1/teams/{team}/tasks/{task}/time-entries/totals", None),
    ("GET", "/api/v1/teams/{own}/tasks/{task}/time-entries/totals", None),
    ("GET", "/api/v1/teams/{team}/projects/{project}/time-entries/totals", None),
    ("GET", "/api/v1/teams/{own}/projects/{project}/time-entries/totals", None),
    ("GET", "/api/v1/teams/{team}/members/{user}/time-entries/totals", None),
    ("GET", "/api/v1/teams/{own}/members/{user}/time-entries/totals", None),
    ("GET", "/api/v1/teams/{team}/time-entries", None),
    ("GET", "/api/v1/teams/{team}/time-entries/running", None),
    ("POST", "/api/v1/teams/{team}/time-entries/running/stop", None),
    ("GET", "/api/v1/teams/{team}/time-entries/{entry}", None),
    ("GET", "/api/v1/teams/{own}/time-entries/{entry}", None),
    ("PATCH", "/api/v1/teams/{team}/time-entries/{entry}", {"note": "hijacked"}),
    ("PATCH", "/api/v1/teams/{own}/time-entries/{entry}", {"note": "hijacked"}),
    ("DELETE", "/api/v1/teams/{team}/time-entries/{entry}", None),
    ("DELETE", "/api/v1/teams/{own}/time-entries/{entry}", None),
]


@pytest.mark.parametrize(("method", "template", "body"), ROUTES)
async def test_foreign_ids_are_indistinguishable_from_missing_ones(
    client: httpx.AsyncClient,
    make_user: Callable[..., Actor],
    make_team: Callable[..., Awaitable[uuid.UUID]],
    owner: Owner,
    method: str,
    template: str,
    body: dict[str, Any] | None,
) -> None:
    attacker, victim = make_user("attacker"), make_user("victim")
    own_team = await make_team(attacker)
    victim_team = await make_team(victim)
    victim_project = await _project(client, victim, victim_team, "VIC")
    victim_ids = _task_with_children(owner, victim_team, victim_project, victim.id)
    missing_ids = {name: uuid.uuid4() for name in victim_ids}

    def url(team: Any, project: Any, user: Any) -> str:
        ids = victim_ids if team == victim_team else missing_ids
        return template.format(team=team, own=own_team, project=project, user=user, **ids)

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
    assert _children_unchanged(owner, victim_ids)
