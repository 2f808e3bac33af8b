"""``If-Match`` on the PATCH of a team, a membership, a webhook and a notification: each
carries a ``version`` raised by every change (migration ``2026-12-08_edit_versions``) and
answered as its ``ETag``; a stale precondition is 412 and changes nothing, as for the
resources of ``test_row_versions``."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest

from tests.collab import create_project, create_task, post_comment
from tests.conftest import Actor
from tests.test_teams import problem

pytestmark = pytest.mark.asyncio
API = "/api/v1"
Owner = psycopg.Connection[dict[str, Any]]
MakeUser = Callable[..., Actor]
MakeTeam = Callable[..., Awaitable[uuid.UUID]]
Notify = Callable[[], Awaitable[int]]


@dataclass
class Editable:
    url: str
    change: Callable[[int], dict[str, Any]]  # a distinct PATCH body per call
    stored: str  # SQL selecting (version, value) of the row
    key: tuple[Any, ...]
    field: str  # the answer's field the change writes


async def make_editable(
    kind: str, app: Any, client: httpx.AsyncClient, owner: Owner, notify: Notify, alice: Actor,
    bob: Actor, team: uuid.UUID,
) -> Editable:  # fmt: skip
    base = f"{API}/teams/{team}"
    if kind == "team":
        return Editable(
            base,
            lambda n: {"name": f"Team {n}"},
            "select version, name as value from team where id = %s",
            (team,),
            "name",
        )
    if kind == "member":
        return Editable(
            f"{base}/members/{bob.id}",
            lambda n: {"role": ("member", "admin")[n % 2]},
            "select version, role as value from team_member where team_id = %s and user_id = %s",
            (team, bob.id),
            "role",
        )
    if kind == "webhook":
        webhook = uuid.uuid4()
        owner.execute(
            "insert into webhook (team_id, id, url, kinds, secret_ciphertext, created_by)"
            " values (%s, %s, 'https://hooks.example.com/tb', '{*}', '\\x00', %s)",
            (team, webhook, alice.id),
        )
        return Editable(
            f"{base}/webhooks/{webhook}",
            lambda n: {"description": f"hook {n}"},
            "select version, description as value from webhook where id = %s",
            (webhook,),
            "description",
        )
    task = await create_task(app, alice, team, await create_project(client, alice, team, "VER"))
    await post_comment(client, bob, team, task, "for alice")
    await notify()
    (notification,) = owner.execute(
        "select id from notification where team_id = %s and recipient_id = %s", (team, alice.id)
    ).fetchall()
    return Editable(
        f"{base}/notifications/{notification['id']}",
        lambda n: {"read": n % 2 == 1},
        "select version, read_at is not null as value from notification where id = %s",
        (notification["id"],),
        "read_at",
    )


@pytest.mark.parametrize("kind", ["team", "member", "webhook", "notification"])
async def test_a_stale_if_match_is_412_and_changes_nothing(
    kind: str,
    app: Any,
    client: httpx.AsyncClient,
    owner: Owner,
    notify: Notify,
    make_user: MakeUser,
    make_team: MakeTeam,
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    team = await make_team(alice, members=[(bob, "member")])
    editable = await make_editable(kind, app, client, owner, notify, alice, bob, team)

    def stored() -> dict[str, Any]:
        row = owner.execute(editable.stored, editable.key).fetchone()
        assert row is not None
        return row

    assert stored()["version"] == 1
    changed = await client.patch(
        editable.url, json=editable.change(1), headers={**alice.headers, "If-Match": '"1"'}
    )
    assert changed.status_code == 200, changed.text
    assert changed.headers["etag"] == '"2"'
    assert changed.json()["version"] == 2
    after = stored()
    assert after["version"] == 2

    stale = await client.patch(
        editable.url, json=editable.change(2), headers={**alice.headers, "If-Match": '"1"'}
    )
    assert problem(stale, 412, "precondition_failed")["current_etag"] == '"2"'
    assert stored() == after
    garbled = await client.patch(
        editable.url, json=editable.change(2), headers={**alice.headers, "If-Match": "two"}
    )
    problem(garbled, 400, "invalid_if_match")
    assert stored() == after

    unconditional = await client.patch(editable.url, json=editable.change(2), headers=alice.headers)
    assert unconditional.status_code == 200, unconditional.text
    assert unconditional.headers["etag"] == '"3"'
    assert stored()["version"] == 3


async def test_reads_answer_the_version_as_etag(
    client: httpx.AsyncClient, owner: Owner, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    read = await client.get(f"{API}/teams/{team}", headers=alice.headers)
    assert read.headers["etag"] == '"1"'
    assert read.json()["version"] == 1
    members = await client.get(f"{API}/teams/{team}/members", headers=alice.headers)
    assert [member["version"] for member in members.json()["items"]] == [1]


async def test_a_foreign_if_match_target_is_not_found(
    client: httpx.AsyncClient, owner: Owner, make_user: MakeUser, make_team: MakeTeam
) -> None:
    """The precondition is checked once the resource is found: another team's webhook or a
    notification that is not the caller's is 404 with an ``If-Match``, never 412."""
    alice, mallory = make_user("alice"), make_user("mallory")
    team, theirs = await make_team(alice), await make_team(mallory)
    webhook = uuid.uuid4()
    owner.execute(
        "insert into webhook (team_id, id, url, kinds, secret_ciphertext, created_by)"
        " values (%s, %s, 'https://hooks.example.com/tb', '{*}', '\\x00', %s)",
        (theirs, webhook, mallory.id),
    )
    attempts = (
        (f"{API}/teams/{team}/webhooks/{webhook}", {"description": "x"}),
        (f"{API}/teams/{theirs}/webhooks/{webhook}", {"description": "x"}),
        (f"{API}/teams/{team}/notifications/{uuid.uuid4()}", {"read": True}),
    )
    for url, body in attempts:
        response = await client.patch(url, json=body, headers={**alice.headers, "If-Match": '"1"'})
        problem(response, 404, "not_found")
    row = owner.execute("select version, description from webhook where id = %s", (webhook,))
    assert row.fetchone() == {"version": 1, "description": ""}


async def test_a_refusal_comes_before_a_stale_precondition(
    client: httpx.AsyncClient, make_user: MakeUser, make_team: MakeTeam
) -> None:
    """An admin changing the owner's role with a stale ``If-Match`` is refused for the role
    (403), which a retry with the right version would get too, not told to refetch (412)."""
    alice, admin = make_user("alice"), make_user("admin")
    team = await make_team(alice, members=[(admin, "admin")])
    response = await client.patch(
        f"{API}/teams/{team}/members/{alice.id}",
        json={"role": "member"},
        headers={**admin.headers, "If-Match": '"7"'},
    )
    problem(response, 403, "insufficient_role")


async def test_a_role_set_to_the_one_held_changes_nothing(
    client: httpx.AsyncClient, owner: Owner, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    team = await make_team(alice, members=[(bob, "member")])
    url = f"{API}/teams/{team}/members/{bob.id}"
    same = await client.patch(url, json={"role": "member"}, headers=alice.headers)
    assert same.status_code == 200, same.text
    answer = same.json()
    assert (answer["role"], answer["version"], same.headers["etag"]) == ("member", 1, '"1"')
    assert same.json()["display_name"] == "bob"
    events = owner.execute(
        "select count(*) from event where team_id = %s and kind = 'member.role_changed'", (team,)
    )
    assert events.fetchone() == {"count": 0}
