"""Mass assignment and the role matrix (issue 7, point 3).

Every write route of the API (discovered from the app's OpenAPI document) and every GraphQL
mutation (from its schema) is called by every kind of caller: the team's owner, an admin, a
member, a guest added to one project, a member of another team, nobody, and the owner's API
keys with the ``read``, ``read+write`` and ``read+write+admin`` scopes. The expected outcome
of each call comes from the product's rules (``write_routes.expected``): a caller that must
be refused gets the documented 401/403/404 problem and **nothing changes in the database**
(every table's rows of the teams, and every non-tenant row, compared through the owner
connection); a legitimate caller succeeds.

Then server-owned fields (``team_id``, ``id``, authorship, ``role``, ``number``,
``version``, timestamps, counters...) are slipped into otherwise valid bodies, GraphQL inputs
and arguments: each is refused with 422 ``validation_failed`` (or a GraphQL validation
error) and nothing is written; routes without a JSON body get them as query parameters,
which must be ignored (no stored row carries an injected value). Role changes get their own
rules: nobody raises themselves, only owners make or unmake owners, the last owner stays,
and an API key never does more than its creator's current role.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.gql import gql
from tests.profile import pick
from tests.reliability.write_routes import (
    API,
    INJECTED,
    MUTATIONS,
    NEEDLES,
    ROLES,
    ROUTES,
    SENTINEL_ID,
    MakeTeam,
    MakeUser,
    Owner,
    World,
    body_fields,
    build_world,
    camel,
    changed,
    discovered_mutations,
    discovered_routes,
    expected,
    fingerprint,
    gql_outcome,
    inject,
    injectable,
    insert_keys,
    legitimate,
    outcome,
    query_parameters,
    send,
    stored_anywhere,
)

WRITE_ROUTES = discovered_routes()
JSON_ROUTES = [key for key in WRITE_ROUTES if body_fields(*key) is not None]


@pytest.fixture
async def world(
    client: httpx.AsyncClient, owner: Owner, make_user: MakeUser, make_team: MakeTeam
) -> World:
    return await build_world(client, owner, make_user, make_team)


def teams_of(world: World, *more: uuid.UUID) -> list[uuid.UUID]:
    return [world.team.id, world.other_team, *more]


def test_every_write_route_and_mutation_has_an_entry() -> None:
    """A write route or mutation added later must say who may call it and how (no
    untested writes); an entry for a route that is gone must go too."""
    assert sorted(ROUTES) == WRITE_ROUTES
    assert sorted(MUTATIONS) == discovered_mutations()
    assert all(m.route in ROUTES for m in MUTATIONS.values())


@pytest.mark.parametrize("key", WRITE_ROUTES, ids=" ".join)
async def test_role_matrix(key: tuple[str, str], world: World, owner: Owner) -> None:
    """Each caller gets exactly its promised outcome; a refused call writes nothing."""
    route = ROUTES.get(key)
    assert route is not None, f"{key} has no entry in write_routes.ROUTES: say how to reach it"
    wrong = []
    for role in ROLES:
        target = await route.setup(world, role)
        teams = teams_of(world, *([target.team.id] if target.team else []))
        before = fingerprint(owner, teams)
        response = await send(world, key, target, role)
        got, want = outcome(response), expected(route.rule, role)
        touched = [] if want.allowed else changed(before, fingerprint(owner, teams))
        if got != want or touched:
            wrong.append(f"{role}: got {got}, want {want}, wrote {touched}: {response.text}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("name", sorted(MUTATIONS))
async def test_graphql_role_matrix(name: str, world: World, owner: Owner) -> None:
    """Mutations follow the REST route's rules: the same refusals, and no write."""
    mutation = MUTATIONS[name]
    route = ROUTES[mutation.route]
    wrong = []
    for role in ROLES:
        target = await route.setup(world, role)
        before = fingerprint(owner, teams_of(world))
        variables = mutation.variables(world.team.id, target)
        response = await gql(
            world.client, None, mutation.document(name), variables, **world.headers(role)
        )
        got, want = gql_outcome(response, name), expected(route.rule, role)
        touched = [] if want.allowed else changed(before, fingerprint(owner, teams_of(world)))
        if got.code != want.code or touched:
            wrong.append(f"{role}: got {got}, want {want}, wrote {touched}: {response.text}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("key", WRITE_ROUTES, ids=" ".join)
async def test_injected_fields(key: tuple[str, str], world: World, owner: Owner) -> None:
    """Each server-owned field slipped into a valid body is refused (422, nothing written);
    the same body without it succeeds. Without a JSON body, the fields go in the query
    string and are ignored: the request succeeds and no row carries an injected value."""
    route = ROUTES[key]
    role = legitimate(route.rule)
    target = await route.setup(world, role)
    teams = teams_of(world, *([target.team.id] if target.team else []))
    fields = injectable(key)
    if body_fields(*key) is None:
        declared = query_parameters(*key)
        target.query = {
            **{k: str(v) for k, v in fields.items() if k not in declared},
            **target.query,
        }
        response = await send(world, key, target, role)
        assert response.is_success, response.text
        assert stored_anywhere(owner, teams, NEEDLES) == []
        return
    clean = target.json
    before = fingerprint(owner, teams)
    wrong = []
    for name, value in fields.items():
        target.json = inject(key, clean, {name: value})
        response = await send(world, key, target, role)
        got = outcome(response)
        touched = changed(before, fingerprint(owner, teams))
        if (got.status, got.code) != (422, "validation_failed") or touched:
            wrong.append(f"{name}: got {got}, wrote {touched}")
    assert not wrong, "\n".join(wrong)
    target.json = clean
    response = await send(world, key, target, role)
    assert response.is_success, f"the clean body is refused: {response.text}"
    assert stored_anywhere(owner, teams, NEEDLES) == []


@pytest.mark.parametrize("name", sorted(MUTATIONS))
async def test_graphql_injected_fields(name: str, world: World, owner: Owner) -> None:
    """Server-owned fields in a mutation's input, or as extra arguments, are refused by the
    schema before anything runs: nothing is written."""
    mutation = MUTATIONS[name]
    route = ROUTES[mutation.route]
    role = legitimate(route.rule)
    target = await route.setup(world, role)
    variables = mutation.variables(world.team.id, target)
    before = fingerprint(owner, teams_of(world))
    attempts: list[tuple[str, str, dict[str, Any]]] = []
    for field, value in INJECTED.items():
        literal = orjson.dumps(value).decode()
        attempts.append((field, mutation.document(name, f"{camel(field)}: {literal}"), variables))
        if mutation.input:
            slipped = {**variables, "input": {**variables["input"], camel(field): value}}
            attempts.append((f"input.{field}", mutation.document(name), slipped))
    wrong = []
    for label, document, sent in attempts:
        response = await gql(world.client, None, document, sent, **world.headers(role))
        body = response.json()
        if not body.get("errors") or body.get("data"):
            wrong.append(f"{label}: accepted: {response.text}")
    assert not wrong, "\n".join(wrong)
    assert changed(before, fingerprint(owner, teams_of(world))) == []
    clean = await gql(world.client, None, mutation.document(name), variables, **world.headers(role))
    assert gql_outcome(clean, name).allowed, clean.text


#: (caller, method, member changed, new role or None for a removal, expected status, code).
ROLE_CHANGES = [
    ("member", "PATCH", "member", "admin", 403, "insufficient_role"),
    ("member", "PATCH", "member", "owner", 403, "insufficient_role"),
    ("guest", "PATCH", "guest", "member", 403, "insufficient_role"),
    ("admin", "PATCH", "admin", "owner", 403, "insufficient_role"),
    ("admin", "PATCH", "member", "owner", 403, "insufficient_role"),
    ("admin", "PATCH", "owner", "member", 403, "insufficient_role"),
    ("admin", "DELETE", "owner", None, 403, "insufficient_role"),
    ("member", "DELETE", "admin", None, 403, "insufficient_role"),
    ("key_write", "PATCH", "member", "admin", 403, "insufficient_scope"),
    ("owner", "PATCH", "owner", "admin", 409, "last_owner"),
    ("owner", "DELETE", "owner", None, 409, "last_owner"),
    ("admin", "PATCH", "member", "admin", 200, None),
    ("owner", "PATCH", "member", "owner", 200, None),
    ("key_admin", "PATCH", "admin", "owner", 200, None),
    ("member", "DELETE", "member", None, 204, None),
]


@pytest.mark.parametrize(("caller", "method", "subject", "role", "status", "code"), ROLE_CHANGES)
async def test_role_changes(
    caller: str,
    method: str,
    subject: str,
    role: str | None,
    status: int,
    code: str | None,
    world: World,
    owner: Owner,
) -> None:
    """Nobody raises themselves; only owners make or unmake owners; admins cannot remove
    those above them; the last owner neither steps down nor leaves; anybody may leave."""
    user = world.actors[subject].id
    before = fingerprint(owner, teams_of(world))
    response = await world.call(
        caller,
        method,
        f"{API}/teams/{world.team.id}/members/{user}",
        **({"json": {"role": role}} if role else {}),
    )
    assert response.status_code == status, response.text
    stored = member_role(owner, world.team.id, user)
    if code is None:
        assert stored == role
    else:
        assert response.json()["code"] == code
        assert changed(before, fingerprint(owner, teams_of(world))) == []


async def test_invitations_cannot_make_owners(world: World, owner: Owner) -> None:
    """An invitation names admin, member or guest, never owner; its acceptance cannot pick
    another role (see the injection matrix for ``role`` in the acceptance body)."""
    before = fingerprint(owner, teams_of(world))
    response = await world.call(
        "admin",
        "POST",
        f"{API}/teams/{world.team.id}/invitations",
        json={"email": "boss@example.com", "role": "owner"},
    )
    assert (response.status_code, response.json()["code"]) == (422, "validation_failed")
    assert changed(before, fingerprint(owner, teams_of(world))) == []


async def test_an_api_key_never_does_more_than_its_creator(
    world: World, owner: Owner, make_user: MakeUser
) -> None:
    """A key with every scope acts with its creator's current role: a member's key, or an
    admin's key once the admin is demoted, is refused the admin routes."""
    member_keys = insert_keys(owner, world.team.id, world.actors["member"].id)
    created = await world.ok(
        "admin", "POST", "/api-keys", json={"name": "mine", "scopes": ["read", "write", "admin"]}
    )
    demoted = world.actors["admin"].id
    await world.ok("owner", "PATCH", f"/members/{demoted}", json={"role": "member"})
    newcomer = make_user("newcomer")
    for token in (member_keys["key_admin"], created["token"]):
        before = fingerprint(owner, teams_of(world))
        headers = {"Authorization": f"Bearer {token}"}
        team = f"{API}/teams/{world.team.id}"
        refused = [
            await world.client.patch(team, json={"name": "Mine now"}, headers=headers),
            await world.client.post(
                f"{team}/api-keys", json={"name": "more", "scopes": ["admin"]}, headers=headers
            ),
            await world.client.patch(
                f"{team}/members/{token_owner(owner, token)}",
                json={"role": "admin"},
                headers=headers,
            ),
            await world.client.post(
                f"{team}/invitations", json={"email": newcomer.email}, headers=headers
            ),
        ]
        assert [(r.status_code, r.json()["code"]) for r in refused] == [
            (403, "insufficient_role")
        ] * len(refused)
        assert changed(before, fingerprint(owner, teams_of(world))) == []


def member_role(owner: Owner, team: uuid.UUID, user: uuid.UUID) -> str | None:
    row = owner.execute(
        "select role from team_member where team_id = %s and user_id = %s", (team, user)
    ).fetchone()
    return None if row is None else str(row["role"])


def token_owner(owner: Owner, token: str) -> uuid.UUID:
    prefix = token.split("_")[1]
    row = owner.execute("select created_by from api_key where prefix = %s", (prefix,)).fetchone()
    assert row is not None
    return uuid.UUID(str(row["created_by"]))


#: Field names for the random injections: the server-owned ones, also in camelCase.
FIELD_NAMES = sorted({*INJECTED, *(camel(name) for name in INJECTED)})
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.just(SENTINEL_ID),
    st.sampled_from(["owner", "admin", "2001-02-03T04:05:06Z", ""]),
    st.text(max_size=20),
    st.lists(st.just(SENTINEL_ID), max_size=2),
    st.dictionaries(st.sampled_from(["id", "role"]), st.just(SENTINEL_ID), max_size=2),
)


@hypothesis_settings(max_examples=pick(12, 600))
@given(
    key=st.sampled_from(JSON_ROUTES),
    fields=st.dictionaries(st.sampled_from(FIELD_NAMES), VALUES, min_size=1, max_size=6),
)
async def test_random_injections(
    key: tuple[str, str],
    fields: dict[str, Any],
    client: httpx.AsyncClient,
    owner: Owner,
    make_user: MakeUser,
    make_team: MakeTeam,
) -> None:
    """Random sets of server-owned fields with values of any JSON type, in any valid body,
    sent by a legitimate caller: always 422, never a write."""
    fields = {k: v for k, v in fields.items() if k not in (body_fields(*key) or set())}
    if not fields:
        return
    world = await build_world(client, owner, make_user, make_team)
    route = ROUTES[key]
    role = legitimate(route.rule)
    target = await route.setup(world, role)
    teams = teams_of(world, *([target.team.id] if target.team else []))
    before = fingerprint(owner, teams)
    target.json = inject(key, target.json, fields)
    response = await send(world, key, target, role)
    assert (response.status_code, response.json()["code"]) == (422, "validation_failed")
    assert changed(before, fingerprint(owner, teams)) == []
