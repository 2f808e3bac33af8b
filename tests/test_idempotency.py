"""Idempotency-Key on POST: replay byte for byte, refuse reuse, one resource under a race."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import Actor
from tests.test_auth import create_key

pytestmark = pytest.mark.asyncio
API = "/api/v1"


def _with_key(actor: Actor, key: str) -> dict[str, str]:
    return {**actor.headers, "Idempotency-Key": key}


def _projects(owner: Any, team: uuid.UUID, key: str) -> int:
    row = owner.execute(
        "select count(*) as n from project where team_id = %s and key = %s", (team, key)
    ).fetchone()
    return int(row["n"])


async def test_a_retry_replays_the_first_response_byte_for_byte(
    client: httpx.AsyncClient, owner: Any, make_user: Any, make_team: Any
) -> None:
    actor = make_user("idem")
    team = await make_team(actor)
    url, body = f"{API}/teams/{team}/projects", {"key": "IDM", "name": "Idem"}
    first = await client.post(url, json=body, headers=_with_key(actor, "k-1"))
    again = await client.post(url, json=body, headers=_with_key(actor, "k-1"))
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert _projects(owner, team, "IDM") == 1


async def test_the_same_key_with_another_request_is_refused(
    client: httpx.AsyncClient, owner: Any, make_user: Any, make_team: Any
) -> None:
    actor = make_user("idem-reuse")
    team = await make_team(actor)
    url = f"{API}/teams/{team}/projects"
    created = await client.post(
        url, json={"key": "RU1", "name": "One"}, headers=_with_key(actor, "k-2")
    )
    assert created.status_code == 201
    reused = await client.post(
        url, json={"key": "RU2", "name": "Two"}, headers=_with_key(actor, "k-2")
    )
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"
    assert _projects(owner, team, "RU2") == 0


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "naïve"])
async def test_malformed_keys_are_refused(
    client: httpx.AsyncClient, make_user: Any, make_team: Any, key: str
) -> None:
    actor = make_user("idem-bad")
    team = await make_team(actor)
    response = await client.post(
        f"{API}/teams/{team}/projects",
        json={"key": "BAD", "name": "Bad"},
        headers=[*actor.headers.items(), ("Idempotency-Key", key.encode())],
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_idempotency_key"


async def test_keys_are_scoped_per_caller(
    client: httpx.AsyncClient, owner: Any, make_user: Any, make_team: Any
) -> None:
    first, second = make_user("idem-a"), make_user("idem-b")
    team = await make_team(first, members=[(second, "member")])
    key = await create_key(client, first, team, ["write"])
    url = f"{API}/teams/{team}/projects"
    as_key = {"Authorization": f"Bearer {key['token']}", "Idempotency-Key": "shared"}
    senders = [("SA", _with_key(first, "shared")), ("SB", _with_key(second, "shared"))]
    responses = [
        await client.post(url, json={"key": project, "name": project}, headers=headers)
        for project, headers in [*senders, ("SC", as_key)]
    ]
    assert [r.status_code for r in responses] == [201, 201, 201]
    assert all("idempotent-replayed" not in r.headers for r in responses)


@pytest.mark.parametrize("resource", ["project", "task"])
async def test_fifty_concurrent_requests_create_one_resource(
    resource: str, client: httpx.AsyncClient, owner: Any, make_user: Any, make_team: Any
) -> None:
    actor = make_user("idem-race")
    team = await make_team(actor)
    url, body = f"{API}/teams/{team}/projects", {"key": "RACE", "name": "Race"}
    if resource == "task":
        project = await client.post(url, json=body, headers=actor.headers)
        assert project.status_code == 201, project.text
        url, body = f"{url}/{project.json()['id']}/tasks", {"title": "Only once"}
    responses = await asyncio.gather(
        *(client.post(url, json=body, headers=_with_key(actor, "race")) for _ in range(50))
    )
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 409}, statuses
    created = [r for r in responses if r.status_code == 201]
    assert len({r.content for r in created}) == 1
    assert sum("idempotent-replayed" not in r.headers for r in created) == 1
    for conflict in (r for r in responses if r.status_code == 409):
        assert conflict.json()["code"] == "idempotency_in_flight"
        assert conflict.headers["retry-after"] == "1"
    assert _projects(owner, team, "RACE") == 1
    tasks = owner.execute("select count(*) as n from task where team_id = %s", (team,))
    assert tasks.fetchone() == {"n": 1 if resource == "task" else 0}


async def test_failed_requests_store_nothing(
    client: httpx.AsyncClient, owner: Any, make_user: Any, make_team: Any
) -> None:
    actor = make_user("idem-fail")
    team = await make_team(actor)
    url, body = f"{API}/teams/{team}/projects", {"key": "FAIL", "name": "Fail"}
    assert (await client.post(url, json=body, headers=actor.headers)).status_code == 201
    for _ in range(2):  # the duplicate key fails both times: nothing was kept to replay
        duplicate = await client.post(url, json=body, headers=_with_key(actor, "k-fail"))
        assert duplicate.status_code == 409
        assert duplicate.json()["code"] == "already_exists"
    stored = owner.execute(
        "select count(*) as n from idempotency_record where user_id = %s", (actor.id,)
    ).fetchone()
    assert stored["n"] == 0


async def test_an_expired_key_runs_again(
    client: httpx.AsyncClient, owner: Any, make_user: Any, make_team: Any
) -> None:
    actor = make_user("idem-exp")
    team = await make_team(actor)
    url = f"{API}/teams/{team}/projects"
    first = await client.post(url, json={"key": "EX", "name": "E"}, headers=_with_key(actor, "e"))
    assert first.status_code == 201
    retention = owner.execute(
        "select expires_at - created_at as kept from idempotency_record where user_id = %s",
        (actor.id,),
    ).fetchone()
    assert retention["kept"].total_seconds() >= 24 * 3600
    owner.execute(
        "update idempotency_record set expires_at = now() - interval '1 second' where user_id = %s",
        (actor.id,),
    )
    again = await client.post(url, json={"key": "EX", "name": "E"}, headers=_with_key(actor, "e"))
    assert again.status_code == 409  # it ran again (and met the first project's key)
    assert again.json()["code"] == "already_exists"


async def test_routes_outside_a_team_replay_too(
    client: httpx.AsyncClient, owner: Any, make_user: Any
) -> None:
    actor = make_user("idem-team")
    first = await client.post(f"{API}/teams", json={"name": "Once"}, headers=_with_key(actor, "t"))
    again = await client.post(f"{API}/teams", json={"name": "Once"}, headers=_with_key(actor, "t"))
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    teams = owner.execute(
        "select count(*) as n from team_member where user_id = %s", (actor.id,)
    ).fetchone()
    assert teams["n"] == 1


async def test_other_users_cannot_see_idempotency_records(
    client: httpx.AsyncClient, make_user: Any, make_team: Any, db_urls: Any
) -> None:
    import psycopg

    actor, other = make_user("idem-own"), make_user("idem-other")
    team = await make_team(actor)
    await client.post(
        f"{API}/teams/{team}/projects",
        json={"key": "OWN", "name": "Own"},
        headers=_with_key(actor, "own"),
    )
    with psycopg.connect(db_urls.app, autocommit=True) as conn:
        for user, expected in ((other.id, 0), (actor.id, 1)):
            with conn.transaction():
                conn.execute("select set_config('app.user_id', %s, true)", (str(user),))
                rows = conn.execute("select count(*) from idempotency_record").fetchone()
                assert rows is not None
                assert rows[0] == expected


async def test_a_body_of_another_json_type_is_part_of_the_fingerprint(
    client: httpx.AsyncClient, owner: Any, make_user: Any, make_team: Any
) -> None:
    """The framework parses ``application/*+json`` as JSON: two bodies of one length under
    one key are two requests (422), not a replay of the first."""
    actor = make_user("idem-type")
    team = await make_team(actor)
    url = f"{API}/teams/{team}/projects"
    headers = {**_with_key(actor, "k-type"), "content-type": "application/vnd.api+json"}
    created = await client.post(url, content=b'{"key":"TY1","name":"One"}', headers=headers)
    assert created.status_code == 201, created.text
    reused = await client.post(url, content=b'{"key":"TY2","name":"One"}', headers=headers)
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"
    assert _projects(owner, team, "TY2") == 0


@pytest.mark.parametrize(
    ("path", "body", "secret"),
    [
        ("api-keys", {"name": "ci", "scopes": ["read"]}, "token"),
        ("invitations", {"email": "sealed@example.com"}, "token"),
    ],
)
async def test_a_kept_answer_holding_a_secret_is_stored_encrypted(
    client: httpx.AsyncClient,
    owner: Any,
    make_user: Any,
    make_team: Any,
    path: str,
    body: dict[str, Any],
    secret: str,
) -> None:
    actor = make_user("idem-secret")
    team = await make_team(actor)
    url = f"{API}/teams/{team}/{path}"
    first = await client.post(url, json=body, headers=_with_key(actor, "k-secret"))
    assert first.status_code == 201, first.text
    shown = first.json()[secret]
    stored = owner.execute(
        "select body from idempotency_record where key = 'k-secret' and team_scope = %s", (team,)
    ).fetchone()
    assert shown.encode() not in bytes(stored["body"])
    assert bytes(stored["body"])[:1] == b"\x01"  # kit.crypto's sealed format
    again = await client.post(url, json=body, headers=_with_key(actor, "k-secret"))
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    # Sealed under another SECRET_KEY (or altered): it no longer opens, a clear 409.
    owner.execute(
        "update idempotency_record set body = '\\x01' || substr(body, 2, 12) || '\\x00'"
        " where key = 'k-secret' and team_scope = %s",
        (team,),
    )
    lost = await client.post(url, json=body, headers=_with_key(actor, "k-secret"))
    assert lost.status_code == 409
    assert lost.json()["code"] == "idempotency_replay_unavailable"


async def test_every_route_answering_a_secret_keeps_it_encrypted(app: Any) -> None:
    """A POST whose answer has a ``token`` or ``secret`` field is marked ``returns_secret``,
    so that no new route of the kind can keep its secret in clear."""
    from fastapi.routing import APIRoute, iter_route_contexts

    from teamboard.idempotency import returns_secret

    answering: list[str] = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or "POST" not in route.methods:
            continue
        fields = getattr(route.response_model, "model_fields", {})
        if fields.keys() & {"token", "secret"}:
            answering.append(context.path_format or "")
            assert getattr(route.endpoint, returns_secret.__name__, False), context.path_format
    assert len(answering) >= 3, answering  # API keys, invitations, webhooks
