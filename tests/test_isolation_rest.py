"""The isolation matrix through REST: another team's id answers exactly like a missing id."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import psycopg
import pytest

from tests.collab import create_task, post_comment
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
]


@pytest.mark.parametrize(("method", "template", "body"), ROUTES)
async def test_foreign_ids_are_indistinguishable_from_missing_ones(
    client: httpx.AsyncClient,
    app: Any,
    owner: psycopg.Connection[dict[str, Any]],
    make_user: Callable[..., Actor],
    make_team: Callable[..., Awaitable[uuid.UUID]],
    method: str,
    template: str,
    body: dict[str, Any] | None,
) -> None:
    attacker, victim = make_user("attacker"), make_user("victim")
    own_team = await make_team(attacker)
    own_task = await create_task(
        app, attacker, own_team, uuid.UUID(await _project(client, attacker, own_team, "OWN"))
    )
    victim_team = await make_team(victim)
    victim_project = await _project(client, victim, victim_team, "VIC")
    victim_task = await create_task(app, victim, victim_team, uuid.UUID(victim_project), "victim")
    victim_comment = (await post_comment(client, victim, victim_team, victim_task, "victim"))["id"]
    victim_notification = uuid.uuid4()
    owner.execute(
        "insert into notification (team_id, id, recipient_id, kind, task_id, project_id,"
        " actor_id) values (%s, %s, %s, 'assigned', %s, %s, %s)",
        (victim_team, victim_notification, victim.id, victim_task, victim_project, victim.id),
    )

    own_webhook = (
        await client.post(
            f"/api/v1/teams/{own_team}/webhooks",
            json={"url": "https://93.184.215.14/own", "kinds": ["*"]},
            headers=attacker.headers,
        )
    ).json()["id"]
    victim_webhook, victim_delivery = uuid.uuid4(), uuid.uuid4()
    owner.execute(
        "insert into webhook (team_id, id, url, kinds, secret_ciphertext, created_by)"
        " values (%s, %s, 'https://93.184.215.14/victim', '{*}', '\\x00', %s)",
        (victim_team, victim_webhook, victim.id),
    )
    owner.execute(
        "insert into webhook_delivery (team_id, id, webhook_id, event_id, event_occurred_at,"
        " event_kind, status, next_attempt_at, completed_at)"
        " values (%s, %s, %s, %s, now(), 'team.created', 'failed', null, now())",
        (victim_team, victim_delivery, victim_webhook, uuid.uuid4()),
    )

    def url(team: Any, project: Any, user: Any, foreign: bool = False) -> str:
        return template.format(
            team=team,
            own=own_team,
            own_task=own_task,
            project=project,
            user=user,
            task=victim_task if foreign else uuid.uuid4(),
            comment=victim_comment if foreign else uuid.uuid4(),
            notification=victim_notification if foreign else uuid.uuid4(),
            webhook=victim_webhook if foreign else uuid.uuid4(),
            own_webhook=own_webhook,
            delivery=victim_delivery if foreign else uuid.uuid4(),
        )

    def payload(user: Any) -> dict[str, Any] | None:
        if body is None:
            return None
        return {k: (str(user) if v == "{user}" else v) for k, v in body.items()}

    foreign = await client.request(
        method,
        url(victim_team, victim_project, victim.id, foreign=True),
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
    comment = owner.execute(
        "select body, deleted_at from comment where id = %s", (victim_comment,)
    ).fetchone()
    assert comment == {"body": "victim", "deleted_at": None}
    notification = owner.execute(
        "select read_at from notification where id = %s", (victim_notification,)
    ).fetchone()
    assert notification == {"read_at": None}
    follows = owner.execute(
        "select user_id from task_follower where task_id = %s", (victim_task,)
    ).fetchall()
    assert follows == [{"user_id": victim.id}]
    hooks = owner.execute(
        "select w.enabled, (select count(*) from webhook_delivery d where d.webhook_id = w.id)"
        " as deliveries from webhook w where w.team_id = %s",
        (victim_team,),
    ).fetchall()
    assert hooks == [{"enabled": True, "deliveries": 1}]
