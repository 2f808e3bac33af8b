"""The isolation matrix through REST: another team's id answers exactly like a missing id."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import psycopg
import pytest

from tests.collab import post_comment
from tests.conftest import Actor

Owner = psycopg.Connection[dict[str, Any]]
Ids = dict[str, uuid.UUID]

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


MANUAL_ENTRY = {"started_at": "2026-01-02T09:00:00Z", "duration_seconds": 60}


def _attach_children(owner: Owner, team: uuid.UUID, project: str, task: uuid.UUID) -> Ids:
    """An attachment and a time entry on the victim's task (rows only)."""
    ids = {"attachment": uuid.uuid4(), "entry": uuid.uuid4()}
    user = owner.execute("select created_by from task where id = %s", (task,)).fetchone()
    assert user is not None
    owner.execute(
        "insert into attachment (team_id, id, project_id, task_id, filename, content_type,"
        " size_bytes, sha256, storage_key, uploaded_by)"
        " values (%s, %s, %s, %s, 'secret.txt', 'text/plain', 6, %s, %s, %s)",
        (
            team,
            ids["attachment"],
            project,
            task,
            "0" * 64,
            f"{team}/{ids['attachment']}",
            user["created_by"],
        ),
    )
    owner.execute(
        "insert into time_entry (team_id, id, project_id, task_id, user_id, started_at)"
        " values (%s, %s, %s, %s, %s, now())",
        (team, ids["entry"], project, task, user["created_by"]),
    )
    return ids


def _children_unchanged(owner: Owner, ids: Ids, task: uuid.UUID) -> bool:
    row = owner.execute(
        "select (select count(*) from attachment where id = %s) as attachments,"
        " (select count(*) from time_entry where id = %s and note = '' and ended_at is null)"
        " as entries, (select count(*) from time_entry where task_id = %s) as all_entries",
        (ids["attachment"], ids["entry"], task),
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
    ("DELETE", "/api/v1/teams/{team}/invitations/{invitation}", None),
    ("DELETE", "/api/v1/teams/{own}/invitations/{invitation}", None),
    ("GET", "/api/v1/teams/{team}/api-keys", None),
    ("POST", "/api/v1/teams/{team}/api-keys", {"name": "k"}),
    ("DELETE", "/api/v1/teams/{team}/api-keys/{key_id}", None),
    ("DELETE", "/api/v1/teams/{own}/api-keys/{key_id}", None),
    ("GET", "/api/v1/teams/{team}/projects", None),
    ("POST", "/api/v1/teams/{team}/projects", {"key": "NEW", "name": "n"}),
    ("GET", "/api/v1/teams/{own}/projects/{project}", None),
    ("PATCH", "/api/v1/teams/{own}/projects/{project}", {"name": "hijacked"}),
    ("DELETE", "/api/v1/teams/{own}/projects/{project}", None),
    ("GET", "/api/v1/teams/{own}/projects/{project}/members", None),
    ("POST", "/api/v1/teams/{own}/projects/{project}/members", {"user_id": "{user}"}),
    ("DELETE", "/api/v1/teams/{own}/projects/{project}/members/{user}", None),
    ("GET", "/api/v1/teams/{own}/tasks/{task}/comments", None),
    ("POST", "/api/v1/teams/{own}/tasks/{task}/comments", {"body": "hijacked"}),
    ("GET", "/api/v1/teams/{own}/tasks/{task}/comments/{comment}", None),
    ("PATCH", "/api/v1/teams/{own}/tasks/{task}/comments/{comment}", {"body": "hijacked"}),
    ("DELETE", "/api/v1/teams/{own}/tasks/{task}/comments/{comment}", None),
    ("GET", "/api/v1/teams/{own}/tasks/{own_task}/comments/{comment}", None),
    ("PATCH", "/api/v1/teams/{own}/tasks/{own_task}/comments/{comment}", {"body": "hijacked"}),
    ("DELETE", "/api/v1/teams/{own}/tasks/{own_task}/comments/{comment}", None),
    ("GET", "/api/v1/teams/{own}/tasks/{task}/followers", None),
    ("PUT", "/api/v1/teams/{own}/tasks/{task}/followers/me", None),
    ("DELETE", "/api/v1/teams/{own}/tasks/{task}/followers/me", None),
    ("GET", "/api/v1/teams/{own}/tasks/{task}/activity", None),
    ("GET", "/api/v1/teams/{team}/search?q=victim", None),
    ("GET", "/api/v1/teams/{team}/notifications", None),
    ("GET", "/api/v1/teams/{team}/notifications/unread-count", None),
    ("POST", "/api/v1/teams/{team}/notifications/read-all", None),
    ("PATCH", "/api/v1/teams/{own}/notifications/{notification}", {"read": True}),
    ("PATCH", "/api/v1/teams/{team}/notifications/{notification}", {"read": True}),
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
    ("GET", "/api/v1/teams/{team}/events/stream", None),
    ("GET", "/api/v1/teams/{team}/webhooks", None),
    ("POST", "/api/v1/teams/{team}/webhooks", {"url": "https://example.com/in", "kinds": ["*"]}),
    ("GET", "/api/v1/teams/{team}/webhooks/{webhook}", None),
    ("PATCH", "/api/v1/teams/{team}/webhooks/{webhook}", {"enabled": False}),
    ("DELETE", "/api/v1/teams/{team}/webhooks/{webhook}", None),
    ("GET", "/api/v1/teams/{own}/webhooks/{webhook}", None),
    ("PATCH", "/api/v1/teams/{own}/webhooks/{webhook}", {"enabled": False}),
    ("DELETE", "/api/v1/teams/{own}/webhooks/{webhook}", None),
    ("GET", "/api/v1/teams/{own}/webhooks/{webhook}/deliveries", None),
    ("GET", "/api/v1/teams/{own}/webhooks/{webhook}/deliveries/{delivery}", None),
    ("POST", "/api/v1/teams/{own}/webhooks/{webhook}/deliveries/{delivery}/redeliver", None),
    ("GET", "/api/v1/teams/{own}/webhooks/{own_webhook}/deliveries/{delivery}", None),
    ("POST", "/api/v1/teams/{own}/webhooks/{own_webhook}/deliveries/{delivery}/redeliver", None),
    ("GET", "/api/v1/teams/{team}/analytics/events?window=90d", None),
    ("GET", "/api/v1/teams/{team}/analytics/actors?kind=custom.*", None),
    ("GET", "/api/v1/teams/{team}/analytics/tasks?bucket=week", None),
    ("GET", "/api/v1/teams/{team}/analytics/throughput", None),
    ("GET", "/api/v1/teams/{team}/analytics/cycle-time?window=365d", None),
    ("GET", "/api/v1/teams/{team}/analytics/flow", None),
    ("GET", "/api/v1/teams/{team}/analytics/time?group_by=label", None),
    ("GET", "/api/v1/teams/{team}/analytics/drilldown", None),
    ("POST", "/api/v1/teams/{team}/events", {"events": [{"kind": "custom.probe"}]}),
]


@pytest.mark.parametrize(("method", "template", "body"), ROUTES)
async def test_foreign_ids_are_indistinguishable_from_missing_ones(
    client: httpx.AsyncClient,
    owner: Owner,
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
    victim_task = uuid.UUID(victim_ids["task"])
    comment = await post_comment(client, victim, victim_team, victim_task, "victim")
    notification = uuid.uuid4()
    victim_ids |= {"comment": comment["id"], "notification": notification}
    owner.execute(
        "insert into notification (team_id, id, recipient_id, kind, task_id, project_id,"
        " actor_id) values (%s, %s, %s, 'assigned', %s, %s, %s)",
        (victim_team, notification, victim.id, victim_task, victim_project, victim.id),
    )
    victim_ids |= _attach_children(owner, victim_team, victim_project, victim_task)
    victim_ids |= await _credentials(client, victim, victim_team)
    # The attacker's own team has a project with the same key: keys resolve per team.
    await _project(client, attacker, own_team, "VIC")
    own_project = await _project(client, attacker, own_team, "OWN")
    own_task = (await _work_items(client, attacker, own_team, own_project))["task"]

    own_webhook = (
        await client.post(
            f"/api/v1/teams/{own_team}/webhooks",
            json={"url": "https://93.184.215.14/own", "kinds": ["*"]},
            headers=attacker.headers,
        )
    ).json()["id"]
    victim_ids |= {"webhook": uuid.uuid4(), "delivery": uuid.uuid4()}
    owner.execute(
        "insert into webhook (team_id, id, url, kinds, secret_ciphertext, created_by)"
        " values (%s, %s, 'https://93.184.215.14/victim', '{*}', '\\x00', %s)",
        (victim_team, victim_ids["webhook"], victim.id),
    )
    owner.execute(
        "insert into webhook_delivery (team_id, id, webhook_id, event_id, event_occurred_at,"
        " event_kind, status, next_attempt_at, completed_at)"
        " values (%s, %s, %s, %s, now(), 'team.created', 'failed', null, now())",
        (victim_team, victim_ids["delivery"], victim_ids["webhook"], uuid.uuid4()),
    )

    def url(ids: dict[str, Any]) -> str:
        return template.format(own=own_team, own_task=own_task, own_webhook=own_webhook, **ids)

    def payload(ids: dict[str, Any]) -> Any:
        return None if body is None else _fill(body, ids)

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
        f"/api/v1/teams/{victim_team}/tasks/{victim_task}", headers=victim.headers
    )
    assert task.status_code == 200
    assert task.json()["title"] == "victim task"
    assert task.json()["version"] == 1
    stored_comment = owner.execute(
        "select body, deleted_at from comment where id = %s", (comment["id"],)
    ).fetchone()
    assert stored_comment == {"body": "victim", "deleted_at": None}
    stored_notification = owner.execute(
        "select read_at from notification where id = %s", (notification,)
    ).fetchone()
    assert stored_notification == {"read_at": None}
    follows = owner.execute(
        "select user_id from task_follower where task_id = %s", (victim_task,)
    ).fetchall()
    assert follows == [{"user_id": victim.id}]
    assert _children_unchanged(owner, victim_ids, victim_task)
    hooks = owner.execute(
        "select w.enabled, (select count(*) from webhook_delivery d where d.webhook_id = w.id)"
        " as deliveries from webhook w where w.team_id = %s",
        (victim_team,),
    ).fetchall()
    assert hooks == [{"enabled": True, "deliveries": 1}]
    revoked = owner.execute(
        "select (select revoked_at from invitation where id = %s) as invitation,"
        " (select revoked_at from api_key where id = %s) as api_key",
        (victim_ids["invitation"], victim_ids["key_id"]),
    ).fetchone()
    assert revoked == {"invitation": None, "api_key": None}


async def _credentials(client: httpx.AsyncClient, victim: Actor, team: uuid.UUID) -> Ids:
    """An invitation and an API key of the victim's team."""
    ids: Ids = {}
    for name, path, body in (
        ("invitation", "invitations", {"email": "invitee@example.com"}),
        ("key_id", "api-keys", {"name": "victim key"}),
    ):
        response = await client.post(
            f"/api/v1/teams/{team}/{path}", json=body, headers=victim.headers
        )
        assert response.status_code == 201, response.text
        ids[name] = uuid.UUID(response.json()["id"])
    return ids


async def test_every_team_route_is_in_the_matrix(app: Any) -> None:
    """A new route under ``/teams/{team_id}`` must join ``ROUTES`` (compared by method and
    path, parameters' names aside)."""
    from fastapi.routing import APIRoute, iter_route_contexts

    def shape(path: str) -> str:
        return re.sub(r"{[^}]+}", "{}", path.split("?")[0])

    listed = {(method, shape(template)) for method, template, _ in ROUTES}
    missing = [
        (method, context.path_format)
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
        and (context.path_format or "").startswith("/api/v1/teams/{team_id}")
        for method in sorted(context.original_route.methods)
        if (method, shape(context.path_format or "")) not in listed
    ]
    assert missing == []


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
