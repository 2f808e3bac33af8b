"""The write surface of the API and who may use it: the table behind the mass-assignment and
role-matrix suite (``test_mass_assignment.py``).

* :func:`discovered_routes` lists every POST/PUT/PATCH/DELETE under ``/api/v1`` from the
  app's own OpenAPI document, and :func:`discovered_mutations` every GraphQL mutation from
  its schema, so a new write joins the matrix by itself; one without an entry in
  :data:`ROUTES` / :data:`MUTATIONS` fails the suite.
* An entry says who may call the route (:class:`Rule`, from DESIGN.md, the docs and the
  services) and how to reach it (``setup``: fresh resources, path parameters and a valid
  body), for any caller.
* :func:`expected` turns (rule, role) into the outcome the product promises: success, or the
  documented refusal (401 / 403 with its code / 404).
* :func:`fingerprint` and :func:`stored_anywhere` read the database through the owner
  connection: "nothing changed" and "no injected value was stored".
"""

from __future__ import annotations

import functools
import secrets
import uuid
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
import psycopg
from psycopg import sql

from teamboard.app import create_app
from teamboard.auth.api_keys import generate_api_key
from teamboard.deps import ROLE_RANK
from teamboard.graphql.schema import build_schema
from tests.conftest import PASSWORD, Actor, add_member
from tests.dbsetup import test_settings

API = "/api/v1"
Owner = psycopg.Connection[dict[str, Any]]
MakeUser = Callable[..., Actor]
MakeTeam = Callable[..., Awaitable[uuid.UUID]]

#: Team members by role, a member of another team, nobody, and API keys of the team's owner
#: with restricted scopes (a key acts as its creator, within its scopes).
MEMBERS = ("owner", "admin", "member", "guest")
KEYS: dict[str, list[str]] = {
    "key_read": ["read"],
    "key_write": ["read", "write"],
    "key_admin": ["read", "write", "admin"],
}
ROLES = (*MEMBERS, "outsider", "anonymous", *KEYS)


# -- discovery ------------------------------------------------------------------------------


@functools.cache
def _openapi() -> dict[str, Any]:
    with warnings.catch_warnings():  # GET and POST /graphql share an operation id
        warnings.simplefilter("ignore", UserWarning)
        doc: dict[str, Any] = create_app(test_settings()).openapi()
    return doc


def discovered_routes() -> list[tuple[str, str]]:
    """Every write route of the API, as (METHOD, path template)."""
    return sorted(
        (method.upper(), path)
        for path, operations in _openapi()["paths"].items()
        if path.startswith(f"{API}/")
        for method in operations
        if method in ("post", "put", "patch", "delete")
    )


def body_fields(method: str, path: str) -> set[str] | None:
    """The properties of the route's JSON body model, or None when it takes no JSON body."""
    doc = _openapi()
    body = doc["paths"][path][method.lower()].get("requestBody", {})
    schema = body.get("content", {}).get("application/json", {}).get("schema")
    if schema is None:
        return None
    fields: set[str] = set()
    for option in schema.get("anyOf", [schema]):
        ref = option.get("$ref")
        if ref:
            fields |= set(doc["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"])
    return fields


def query_parameters(method: str, path: str) -> set[str]:
    operation = _openapi()["paths"][path][method.lower()]
    return {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}


def discovered_mutations() -> list[str]:
    mutation = build_schema()._schema.mutation_type
    assert mutation is not None
    return sorted(mutation.fields)


# -- the world ------------------------------------------------------------------------------


@dataclass
class Team:
    """A team where ``owner``, ``admin``, ``member`` and ``guest`` of :class:`World` hold
    their roles, and the owner's API keys by role name."""

    id: uuid.UUID
    keys: dict[str, str]


@dataclass
class World:
    """The callers, their team (project ``project``, team-visible, the guest added to it)
    and the outsider's own team."""

    client: httpx.AsyncClient
    owner_db: Owner
    make_user: MakeUser
    make_team: MakeTeam
    actors: dict[str, Actor]
    team: Team
    other_team: uuid.UUID
    project: uuid.UUID = field(default_factory=uuid.uuid4)
    serial: int = 0

    def unique(self, prefix: str = "X") -> str:
        """A new name (project keys, status and label names must be unique)."""
        self.serial += 1
        return f"{prefix}{self.serial}{secrets.token_hex(2).upper()}"

    def acting(self, role: str) -> Actor | None:
        """The user a role acts as (an API key acts as its creator, the owner)."""
        if role in KEYS:
            return self.actors["owner"]
        return self.actors.get(role)

    def headers(self, role: str, team: Team | None = None) -> dict[str, str]:
        if role == "anonymous":
            return {}
        if role in KEYS:
            return {"Authorization": f"Bearer {(team or self.team).keys[role]}"}
        return self.actors[role].headers

    async def call(
        self, role: str, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        sent = {**self.headers(role), **(headers or {})}
        return await self.client.request(method, path, headers=sent, **kw)

    async def ok(self, role: str, method: str, path: str, **kwargs: Any) -> Any:
        """A setup request that must succeed; its JSON (None for 204)."""
        response = await self.call(role, method, f"{API}/teams/{self.team.id}{path}", **kwargs)
        assert response.is_success, (method, path, response.text)
        return response.json() if response.content else None

    async def new_team(self) -> Team:
        """Another team with the same members in the same roles, and its keys."""
        owner = self.actors["owner"]
        team_id = await self.make_team(
            owner, members=[(self.actors[role], role) for role in MEMBERS[1:]]
        )
        return Team(team_id, insert_keys(self.owner_db, team_id, owner.id))

    async def new_member(self, role: str = "member") -> Actor:
        user = self.make_user("extra")
        add_member(self.owner_db, self.team.id, user, role)
        return user

    async def task(self, role: str = "owner") -> str:
        task = await self.ok(role, "POST", f"/projects/{self.project}/tasks", json={"title": "t"})
        return str(task["id"])


def insert_keys(owner_db: Owner, team_id: uuid.UUID, creator: uuid.UUID) -> dict[str, str]:
    """The API keys of :data:`KEYS`, made by the product's generator and stored as the
    ``POST …/api-keys`` route stores them.

    They are marked as used now: a key's use is recorded at most once a minute, on any
    authenticated call, a refused upload included (its first, read-only transaction commits
    the record). That bookkeeping is not a change the caller made, so the matrix's "nothing
    changed" checks start after it.
    """
    tokens = {}
    for role, scopes in KEYS.items():
        key = generate_api_key()
        owner_db.execute(
            "insert into api_key (team_id, id, name, prefix, secret_hash, scopes, created_by,"
            " last_used_at) values (%s, %s, %s, %s, %s, %s, %s, now())",
            (team_id, uuid.uuid4(), role, key.prefix, key.secret_hash, scopes, creator),
        )
        tokens[role] = key.token
    return tokens


async def build_world(
    client: httpx.AsyncClient, owner_db: Owner, make_user: MakeUser, make_team: MakeTeam
) -> World:
    actors = {role: make_user(role) for role in (*MEMBERS, "outsider")}
    team_id = await make_team(
        actors["owner"], members=[(actors[role], role) for role in MEMBERS[1:]]
    )
    team = Team(team_id, insert_keys(owner_db, team_id, actors["owner"].id))
    other = await make_team(actors["outsider"])
    world = World(client, owner_db, make_user, make_team, actors, team, other)
    project = await world.ok("owner", "POST", "/projects", json={"key": "ENG", "name": "Eng"})
    world.project = uuid.UUID(project["id"])
    await world.ok(
        "owner",
        "POST",
        f"/projects/{world.project}/members",
        json={"user_id": str(actors["guest"].id)},
    )
    return world


# -- who may call what ----------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """Who may call a route.

    ``team``: team members from ``minimum`` up. ``author``: the resource's author (the
    ``member``: setups make it as them), and other members from ``minimum`` up (None:
    nobody else, refused with ``code``). ``recipient``: only the ``member`` it is addressed
    to; everybody else gets the 404 of a missing row. ``user``: any signed-in user (no API
    key). ``public``: anybody.
    """

    kind: Literal["team", "author", "recipient", "user", "public"]
    minimum: str | None = "member"
    code: str = "insufficient_role"


@dataclass(frozen=True)
class Outcome:
    """Success (any 2xx), or a refusal with its status and problem ``code``."""

    status: int | None = None
    code: str | None = None

    @property
    def allowed(self) -> bool:
        return self.status is None

    def __str__(self) -> str:
        return "2xx" if self.allowed else f"{self.status} {self.code}"


ALLOWED = Outcome()
NOT_FOUND = Outcome(404, "not_found")


def expected(rule: Rule, role: str) -> Outcome:
    """What the product promises when ``role`` calls a route of ``rule``."""
    if rule.kind == "public":
        return ALLOWED
    if role == "anonymous":
        return Outcome(401, "unauthorized")
    if rule.kind == "user":
        return Outcome(403, "api_key_not_allowed") if role in KEYS else ALLOWED
    if role == "outsider":
        return NOT_FOUND
    if role == "key_read":
        return Outcome(403, "insufficient_scope")
    if rule.kind == "recipient":
        return ALLOWED if role == "member" else NOT_FOUND
    if rule.kind == "author" and role == "member":
        return ALLOWED
    if rule.minimum is None:
        return Outcome(403, rule.code)
    acting = "owner" if role in KEYS else role
    if ROLE_RANK[acting] < ROLE_RANK[rule.minimum]:
        return Outcome(403, rule.code)
    if role == "key_write" and ROLE_RANK[rule.minimum] >= ROLE_RANK["admin"]:
        return Outcome(403, "insufficient_scope")
    return ALLOWED


def legitimate(rule: Rule) -> str:
    """A caller the route must serve (the one that injects fields)."""
    return {"author": "member", "recipient": "member", "public": "anonymous"}.get(
        rule.kind, "owner"
    )


# -- how to reach each route ----------------------------------------------------------------


@dataclass
class Target:
    """A route made concrete: path parameters, body (``json`` or raw ``content``), query,
    headers, and the team (when not the world's)."""

    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None
    query: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    team: Team | None = None


Setup = Callable[[World, str], Awaitable[Target]]


@dataclass(frozen=True)
class Route:
    rule: Rule
    setup: Setup


def _body(**json: Any) -> Setup:
    async def setup(world: World, role: str) -> Target:
        return Target(json=json)

    return setup


async def _team(world: World, role: str) -> Target:
    return Target()


async def _project(world: World, role: str) -> Target:
    return Target({"project_id": world.project})


async def _new_project(world: World, role: str) -> Target:
    key = world.unique("P")[:10]
    project = await world.ok("owner", "POST", "/projects", json={"key": key, "name": key})
    return Target({"project_id": project["id"]})


async def _task(world: World, role: str) -> Target:
    return Target({"task_id": await world.task()})


async def _status(world: World, role: str) -> Target:
    status = await world.ok(
        "owner",
        "POST",
        f"/projects/{world.project}/statuses",
        json={"name": world.unique("S"), "category": "started"},
    )
    return Target({"project_id": world.project, "status_id": status["id"]})


async def _label(world: World, role: str) -> Target:
    label = await world.ok(
        "owner",
        "POST",
        f"/projects/{world.project}/labels",
        json={"name": world.unique("L"), "color": "#336699"},
    )
    return Target({"project_id": world.project, "label_id": label["id"]})


async def _comment(world: World, role: str) -> Target:
    task = await world.task()
    comment = await world.ok("member", "POST", f"/tasks/{task}/comments", json={"body": "hi"})
    return Target({"task_id": task, "comment_id": comment["id"]})


async def _time_entry(world: World, role: str) -> Target:
    task = await world.task()
    entry = await world.ok("member", "POST", f"/tasks/{task}/time-entries", json=_manual_entry())
    return Target({"entry_id": entry["id"]})


def _manual_entry() -> dict[str, Any]:
    started = datetime.now(UTC) - timedelta(hours=2)
    return {"started_at": started.isoformat(), "duration_seconds": 60}


async def _attachment(world: World, role: str) -> Target:
    task = await world.task()
    attachment = await world.ok(
        "member",
        "POST",
        f"/tasks/{task}/attachments",
        params={"filename": "a.txt"},
        content=b"hello",
        headers={"Content-Type": "text/plain"},
    )
    return Target({"attachment_id": attachment["id"]})


async def _upload(world: World, role: str) -> Target:
    return Target(
        {"task_id": await world.task()},
        content=b"hello",
        query={"filename": "a.txt"},
        headers={"Content-Type": "text/plain"},
    )


async def _webhook(world: World, role: str) -> Target:
    hook = await world.ok("owner", "POST", "/webhooks", json=_webhook_body())
    return Target({"webhook_id": hook["id"]})


def _webhook_body() -> dict[str, Any]:
    return {"url": "http://127.0.0.1:9/hook", "kinds": ["task.*"]}


async def _delivery(world: World, role: str) -> Target:
    target = await _webhook(world, role)
    delivery = uuid.uuid4()
    world.owner_db.execute(
        "insert into webhook_delivery (team_id, id, webhook_id, event_id, event_occurred_at,"
        " event_kind, status, attempts, next_attempt_at, completed_at)"
        " select team_id, %s, %s, id, occurred_at, kind, 'failed', 1, null, now() from event"
        " where team_id = %s limit 1",
        (delivery, target.params["webhook_id"], world.team.id),
    )
    return Target({**target.params, "delivery_id": delivery})


async def _timer(world: World, role: str) -> Target:
    """A task, and no running timer for the caller (one runs per user and team)."""
    actor = world.acting(role)
    if actor is not None:
        world.owner_db.execute(
            "delete from time_entry where team_id = %s and user_id = %s and ended_at is null",
            (world.team.id, actor.id),
        )
    return Target({"task_id": await world.task()}, json={"note": "go"})


async def _running_timer(world: World, role: str) -> Target:
    """A running timer of the caller's (when they are in the team)."""
    target = await _timer(world, role)
    if role in MEMBERS or role in KEYS:
        acting = "owner" if role in KEYS else role
        task = target.params["task_id"]
        await world.ok(acting, "POST", f"/tasks/{task}/time-entries/start", json={"note": "go"})
    return Target()


async def _followed(world: World, role: str) -> Target:
    target = await _task(world, role)
    for acting in MEMBERS:
        await world.ok(acting, "PUT", f"/tasks/{target.params['task_id']}/followers/me")
    return target


async def _notification(world: World, role: str) -> Target:
    """An unread notification addressed to the member."""
    task = await world.task()
    notification = uuid.uuid4()
    world.owner_db.execute(
        "insert into notification (team_id, id, recipient_id, kind, task_id, project_id,"
        " actor_id) values (%s, %s, %s, 'assigned', %s, %s, %s)",
        (
            world.team.id,
            notification,
            world.actors["member"].id,
            task,
            world.project,
            world.actors["owner"].id,
        ),
    )
    return Target({"notification_id": notification}, json={"read": True})


async def _member(world: World, role: str) -> Target:
    return Target({"user_id": (await world.new_member()).id}, json={"role": "guest"})


async def _project_member(world: World, role: str) -> Target:
    user = await world.new_member()
    return Target({"project_id": world.project}, json={"user_id": str(user.id)})


async def _in_project(world: World, role: str) -> Target:
    user = await world.new_member()
    path = f"/projects/{world.project}/members"
    await world.ok("owner", "POST", path, json={"user_id": str(user.id)})
    return Target({"project_id": world.project, "user_id": user.id})


async def _invitation(world: World, role: str) -> Target:
    email = f"{world.unique('inv').lower()}@example.com"
    invitation = await world.ok("owner", "POST", "/invitations", json={"email": email})
    return Target({"invitation_id": invitation["id"]})


async def _invite(world: World, role: str) -> Target:
    return Target(json={"email": f"{world.unique('inv').lower()}@example.com", "role": "guest"})


async def _accept(world: World, role: str) -> Target:
    """An invitation to a new team, addressed to the caller (or to nobody in particular)."""
    host = world.make_user("host")
    team = await world.make_team(host)
    invitee = world.acting(role) if role in (*MEMBERS, "outsider") else None
    email = invitee.email if invitee else f"{world.unique('x').lower()}@example.com"
    response = await world.client.post(
        f"{API}/teams/{team}/invitations", json={"email": email}, headers=host.headers
    )
    assert response.status_code == 201, response.text
    return Target(json={"token": response.json()["token"]})


async def _api_key(world: World, role: str) -> Target:
    key = await world.ok("owner", "POST", "/api-keys", json={"name": "k", "scopes": ["read"]})
    return Target({"key_id": key["id"]})


async def _statuses(world: World, role: str) -> Target:
    listed = await world.ok("owner", "GET", f"/projects/{world.project}/statuses")
    ids = [item["id"] for item in listed["items"]]
    return Target({"project_id": world.project}, json={"status_ids": ids[::-1]})


async def _status_with_target(world: World, role: str) -> Target:
    target = await _status(world, role)
    other = await _status(world, role)
    return Target(target.params, query={"move_to": other.params["status_id"]})


async def _deleted_task(world: World, role: str) -> Target:
    target = await _task(world, role)
    await world.ok("owner", "DELETE", f"/tasks/{target.params['task_id']}")
    return target


async def _fresh_team(world: World, role: str) -> Target:
    return Target(team=await world.new_team())


async def _register(world: World, role: str) -> Target:
    email = f"{world.unique('reg').lower()}@example.com"
    return Target(json={"email": email, "password": PASSWORD, "display_name": "Reg"})


async def _login(world: World, role: str) -> Target:
    return Target(json={"email": world.make_user("login").email, "password": PASSWORD})


async def _refresh(world: World, role: str) -> Target:
    target = await _login(world, role)
    response = await world.client.post(f"{API}/auth/login", json=target.json)
    assert response.status_code == 200, response.text
    return Target(json={"refresh_token": response.json()["refresh_token"]})


def _then(setup: Setup, **json: Any) -> Setup:
    """``setup``, with a fixed body."""

    async def run(world: World, role: str) -> Target:
        target = await setup(world, role)
        target.json = json
        return target

    return run


def _named(setup: Setup, *names: str, **json: Any) -> Setup:
    """``setup``, with a body whose ``names`` are fresh unique names."""

    async def run(world: World, role: str) -> Target:
        target = await setup(world, role)
        target.json = {**json, **{name: world.unique("N") for name in names}}
        return target

    return run


async def _create_project(world: World, role: str) -> Target:
    return Target(json={"key": world.unique("P")[:10], "name": "New"})


TEAM = "/api/v1/teams/{team_id}"
PROJECT = TEAM + "/projects/{project_id}"
TASK = TEAM + "/tasks/{task_id}"
GUEST, MEMBER, ADMIN, OWNER = (Rule("team", r) for r in MEMBERS[::-1])

#: Every write route: who may call it and how to reach it.
ROUTES: dict[tuple[str, str], Route] = {
    ("POST", API + "/auth/register"): Route(Rule("public"), _register),
    ("POST", API + "/auth/login"): Route(Rule("public"), _login),
    ("POST", API + "/auth/refresh"): Route(Rule("public"), _refresh),
    ("POST", API + "/auth/logout"): Route(Rule("user"), _team),
    ("POST", API + "/invitations/accept"): Route(Rule("user"), _accept),
    ("POST", API + "/teams"): Route(Rule("user"), _body(name="New team")),
    ("PATCH", TEAM): Route(ADMIN, _body(name="Renamed")),
    ("DELETE", TEAM): Route(OWNER, _fresh_team),
    ("PATCH", TEAM + "/members/{user_id}"): Route(ADMIN, _member),
    ("DELETE", TEAM + "/members/{user_id}"): Route(ADMIN, _member),
    ("POST", TEAM + "/invitations"): Route(ADMIN, _invite),
    ("DELETE", TEAM + "/invitations/{invitation_id}"): Route(ADMIN, _invitation),
    ("POST", TEAM + "/api-keys"): Route(ADMIN, _body(name="k", scopes=["read"])),
    ("DELETE", TEAM + "/api-keys/{key_id}"): Route(ADMIN, _api_key),
    ("POST", TEAM + "/projects"): Route(MEMBER, _create_project),
    ("PATCH", PROJECT): Route(MEMBER, _then(_project, description="changed")),
    ("DELETE", PROJECT): Route(ADMIN, _new_project),
    ("POST", PROJECT + "/members"): Route(MEMBER, _project_member),
    ("DELETE", PROJECT + "/members/{user_id}"): Route(MEMBER, _in_project),
    ("POST", PROJECT + "/statuses"): Route(MEMBER, _named(_project, "name", category="started")),
    ("PUT", PROJECT + "/statuses/order"): Route(MEMBER, _statuses),
    ("PATCH", PROJECT + "/statuses/{status_id}"): Route(MEMBER, _named(_status, "name")),
    ("DELETE", PROJECT + "/statuses/{status_id}"): Route(MEMBER, _status_with_target),
    ("POST", PROJECT + "/labels"): Route(MEMBER, _named(_project, "name", color="#112233")),
    ("PATCH", PROJECT + "/labels/{label_id}"): Route(MEMBER, _then(_label, color="#445566")),
    ("DELETE", PROJECT + "/labels/{label_id}"): Route(MEMBER, _label),
    ("POST", PROJECT + "/tasks"): Route(MEMBER, _then(_project, title="New task", priority=2)),
    ("PATCH", TASK): Route(MEMBER, _then(_task, title="Renamed")),
    ("DELETE", TASK): Route(MEMBER, _task),
    ("POST", TASK + "/move"): Route(MEMBER, _then(_task)),
    ("POST", TASK + "/restore"): Route(MEMBER, _deleted_task),
    ("POST", TASK + "/comments"): Route(GUEST, _then(_task, body="a comment")),
    ("PATCH", TASK + "/comments/{comment_id}"): Route(
        Rule("author", None, "not_comment_author"), _then(_comment, body="edited")
    ),
    ("DELETE", TASK + "/comments/{comment_id}"): Route(Rule("author", "admin"), _comment),
    ("PUT", TASK + "/followers/me"): Route(GUEST, _task),
    ("DELETE", TASK + "/followers/me"): Route(GUEST, _followed),
    ("POST", TASK + "/attachments"): Route(GUEST, _upload),
    ("DELETE", TEAM + "/attachments/{attachment_id}"): Route(Rule("author", "admin"), _attachment),
    ("POST", TASK + "/time-entries/start"): Route(GUEST, _timer),
    ("POST", TASK + "/time-entries"): Route(GUEST, _then(_task, **_manual_entry())),
    ("POST", TEAM + "/time-entries/running/stop"): Route(GUEST, _running_timer),
    ("PATCH", TEAM + "/time-entries/{entry_id}"): Route(
        Rule("author", "admin"), _then(_time_entry, note="edited")
    ),
    ("DELETE", TEAM + "/time-entries/{entry_id}"): Route(Rule("author", "admin"), _time_entry),
    ("POST", TEAM + "/notifications/read-all"): Route(GUEST, _body()),
    ("PATCH", TEAM + "/notifications/{notification_id}"): Route(Rule("recipient"), _notification),
    ("POST", TEAM + "/webhooks"): Route(ADMIN, _body(**_webhook_body())),
    ("PATCH", TEAM + "/webhooks/{webhook_id}"): Route(
        ADMIN, _then(_webhook, description="changed")
    ),
    ("DELETE", TEAM + "/webhooks/{webhook_id}"): Route(ADMIN, _webhook),
    ("POST", TEAM + "/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"): Route(
        ADMIN, _delivery
    ),
    ("POST", TEAM + "/events"): Route(MEMBER, _body(events=[{"kind": "custom.clicked"}])),
}


async def send(world: World, key: tuple[str, str], target: Target, role: str) -> httpx.Response:
    """Call the route ``key`` on ``target`` as ``role``."""
    method, template = key
    team = target.team or world.team
    extra: dict[str, Any] = {"content": target.content} if target.content is not None else {}
    if target.json is not None:
        extra["json"] = target.json
    return await world.client.request(
        method,
        template.format(team_id=team.id, **target.params),
        params=target.query,
        headers={**world.headers(role, team), **target.headers},
        **extra,
    )


def outcome(response: httpx.Response) -> Outcome:
    """What a REST answer was: success, or a problem+json refusal with its code."""
    if response.is_success:
        return ALLOWED
    assert response.headers["content-type"].startswith("application/problem+json"), response
    return Outcome(response.status_code, response.json()["code"])


# -- the database, through the owner connection ---------------------------------------------

_TABLES = """
select c.relname as name,
       exists (select 1 from pg_attribute a
               where a.attrelid = c.oid and a.attname = 'team_id' and not a.attisdropped)
         as tenant
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relispartition
order by c.relname
"""


def _rows(owner_db: Owner) -> list[tuple[str, sql.Composable]]:
    """Per table, the rows that matter: a tenant table's rows of the teams ``%(teams)s``,
    and every row of the others (users, sessions, teams...)."""
    tables = owner_db.execute(_TABLES).fetchall()
    return [
        (
            t["name"],
            sql.SQL("select t::text as row from {} t {}").format(
                sql.Identifier(t["name"]),
                sql.SQL("where t.team_id = any(%(teams)s)" if t["tenant"] else ""),
            ),
        )
        for t in tables
    ]


def fingerprint(owner_db: Owner, teams: list[uuid.UUID]) -> dict[str, str]:
    """An MD5 per table of its rows (as :func:`_rows` selects them): equal fingerprints mean
    that no row was added, changed or removed."""
    parts = [
        sql.SQL(
            "select {} as name, md5(coalesce(string_agg(r.row, '|' order by r.row), ''))"
            " as digest from ({}) r"
        ).format(sql.Literal(name), rows)
        for name, rows in _rows(owner_db)
    ]
    query = sql.SQL(" union all ").join(parts)
    return {r["name"]: r["digest"] for r in owner_db.execute(query, {"teams": teams})}


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(name for name in after if before.get(name) != after[name])


def stored_anywhere(owner_db: Owner, teams: list[uuid.UUID], needles: list[str]) -> list[str]:
    """The tables where any row (as :func:`_rows` selects them) contains one of ``needles``."""
    parts = [
        sql.SQL("select {} as name from ({}) r where r.row like any(%(patterns)s)").format(
            sql.Literal(name), rows
        )
        for name, rows in _rows(owner_db)
    ]
    query = sql.SQL(" union ").join(parts)
    patterns = [f"%{needle}%" for needle in needles]
    return sorted(
        r["name"] for r in owner_db.execute(query, {"teams": teams, "patterns": patterns})
    )


# -- fields a client must never control -----------------------------------------------------

SENTINEL_ID = str(uuid.UUID("5e471e1d-0000-4000-8000-00000000dead"))
SENTINEL_NUMBER = 987_654_321
SENTINEL_TIME = "2001-02-03T04:05:06+00:00"
#: How each injected value looks in a stored row (``row::text``).
NEEDLES = [SENTINEL_ID, str(SENTINEL_NUMBER), "2001-02-03 04:05:06"]

#: Server-owned fields (snake_case, as REST bodies spell them) and the values slipped in.
INJECTED: dict[str, Any] = {
    **dict.fromkeys(
        (
            "team_id",
            "id",
            "user_id",
            "owner_id",
            "author_id",
            "created_by",
            "creator_id",
            "uploaded_by",
            "invited_by",
            "recipient_id",
            "actor_id",
            "project_id",
            "task_id",
        ),
        SENTINEL_ID,
    ),
    "role": "owner",
    "is_admin": True,
    **dict.fromkeys(
        ("number", "version", "position", "consecutive_failures", "attempts", "duration_seconds"),
        SENTINEL_NUMBER,
    ),
    **dict.fromkeys(
        (
            "created_at",
            "updated_at",
            "deleted_at",
            "completed_at",
            "archived_at",
            "edited_at",
            "read_at",
            "revoked_at",
            "last_used_at",
            "occurred_at",
        ),
        SENTINEL_TIME,
    ),
}


def injectable(key: tuple[str, str]) -> dict[str, Any]:
    """The injected fields that the route's body does not declare (declared ones, like
    ``role`` of a role change, are the route's business and checked by its rules)."""
    declared = body_fields(*key) or set()
    if key == ("POST", TEAM + "/events"):
        declared = {"kind", "occurred_at", "actor", "project_id", "properties"}
    return {name: value for name, value in INJECTED.items() if name not in declared}


def inject(key: tuple[str, str], body: Any, fields: dict[str, Any]) -> Any:
    """``body`` with ``fields`` added at the top level (to every event of a batch)."""
    if key == ("POST", TEAM + "/events"):
        return {"events": [{**event, **fields} for event in body["events"]]}
    return {**(body or {}), **fields}


# -- GraphQL mutations ----------------------------------------------------------------------


@dataclass(frozen=True)
class Mutation:
    """A mutation and the REST route it shares rules and setup with; ``id`` is the path
    parameter its ``id`` argument takes, ``input`` the type of its ``input`` argument."""

    route: tuple[str, str]
    id: str | None = None
    input: str | None = None
    returns_object: bool = True

    def document(self, name: str, extra: str = "") -> str:
        args = {"teamId": "UUID!"}
        if "{project_id}" in self.route[1] and self.id != "project_id":
            args["projectId"] = "UUID!"
        if "{task_id}" in self.route[1] and self.id != "task_id":
            args["taskId"] = "UUID!"
        if self.id:
            args["id"] = "UUID!"
        if self.input:
            args["input"] = f"{self.input}!"
        if name.endswith("Comment") and not name.startswith("delete"):
            args["body"] = "String!"
        declared = ", ".join(f"${a}: {t}" for a, t in args.items())
        passed = ", ".join([*(f"{a}: ${a}" for a in args), *([extra] if extra else [])])
        selection = " { id }" if self.returns_object else ""
        return f"mutation({declared}) {{ {name}({passed}){selection} }}"

    def variables(self, team: uuid.UUID, target: Target) -> dict[str, Any]:
        values: dict[str, Any] = {"teamId": str(team)}
        params = {k: str(v) for k, v in target.params.items()}
        if "project_id" in params and self.id != "project_id":
            values["projectId"] = params["project_id"]
        if "task_id" in params and self.id != "task_id":
            values["taskId"] = params["task_id"]
        if self.id:
            values["id"] = params[self.id]
        if self.input:
            values["input"] = {camel(k): v for k, v in (target.json or {}).items()}
        elif target.json and "body" in target.json:
            values["body"] = target.json["body"]
        return values


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


MUTATIONS: dict[str, Mutation] = {
    "createProject": Mutation(("POST", TEAM + "/projects"), input="CreateProjectInput"),
    "updateProject": Mutation(("PATCH", PROJECT), "project_id", "UpdateProjectInput"),
    "deleteProject": Mutation(("DELETE", PROJECT), "project_id", returns_object=False),
    "createLabel": Mutation(("POST", PROJECT + "/labels"), input="CreateLabelInput"),
    "updateLabel": Mutation(
        ("PATCH", PROJECT + "/labels/{label_id}"), "label_id", "UpdateLabelInput"
    ),
    "deleteLabel": Mutation(
        ("DELETE", PROJECT + "/labels/{label_id}"), "label_id", returns_object=False
    ),
    "createTask": Mutation(("POST", PROJECT + "/tasks"), input="CreateTaskInput"),
    "updateTask": Mutation(("PATCH", TASK), "task_id", "UpdateTaskInput"),
    "moveTask": Mutation(("POST", TASK + "/move"), "task_id", "MoveTaskInput"),
    "deleteTask": Mutation(("DELETE", TASK), "task_id", returns_object=False),
    "restoreTask": Mutation(("POST", TASK + "/restore"), "task_id"),
    "createComment": Mutation(("POST", TASK + "/comments")),
    "editComment": Mutation(("PATCH", TASK + "/comments/{comment_id}"), "comment_id"),
    "deleteComment": Mutation(
        ("DELETE", TASK + "/comments/{comment_id}"), "comment_id", returns_object=False
    ),
}


def gql_outcome(response: httpx.Response, name: str) -> Outcome:
    """What a GraphQL answer was: success (the field has a value), or the refusal's code
    (the HTTP problem's, or the field error's ``extensions.code``)."""
    if response.headers["content-type"].startswith("application/problem+json"):
        return Outcome(response.status_code, response.json()["code"])
    body = response.json()
    if body.get("errors"):
        return Outcome(response.status_code, body["errors"][0]["extensions"]["code"])
    assert body["data"][name] is not None, body
    return ALLOWED
