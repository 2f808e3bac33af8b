"""Resource limits (issue 7, point 4): request bodies, page sizes, statement_timeout and
per-team rate limits under a noisy neighbour.

GraphQL's own limits (depth, cost, aliases, tokens, batch size, page size of one
connection) are in ``tests/test_graphql_limits.py``; its body size is here, since one ASGI
limit (``teamboard.kit.body_limit``) serves REST and GraphQL alike. Bodies are sent by
generators that count what the app pulled, so "refused before being buffered" is asserted
in bytes read, never in time.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from asgi_lifespan import LifespanManager
from graphql import GraphQLObjectType, GraphQLSchema, get_named_type, is_non_null_type
from psycopg import sql

from teamboard.app import create_app
from teamboard.config import Settings
from teamboard.kit.pagination import MAX_LIMIT
from teamboard.ops.audit import audit
from teamboard.ops.database import DatabaseUrls
from tests.conftest import Actor
from tests.gql import error_codes, gql
from tests.test_teams import problem
from tests.work import API, MakeTeam, MakeUser, Owner, make_board, sql_count

LIMIT = 4096  # REQUEST_MAX_BYTES of the app built here: small bodies, the same code path
CHUNK = 512  # what the body generators yield at a time
TEAM_BUDGET = 20  # RATE_LIMIT_PER_TEAM of the noisy-neighbour app
TIMEOUT_CODE = "app_role_statement_timeout"


@asynccontextmanager
async def served(settings: Settings, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app of its own, built with ``overrides`` (in-memory rate limits)."""
    application = create_app(settings.model_copy(update={"redis_url": None, **overrides}))
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


@pytest.fixture(scope="module")
async def small(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with served(settings, request_max_bytes=LIMIT) as client:
        yield client


# -- request bodies ----------------------------------------------------------------------


class Counted:
    """A body sent in ``CHUNK``-byte pieces by a generator that counts what was pulled."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.pulled = 0

    async def stream(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.body), CHUNK):
            piece = self.body[start : start + CHUNK]
            self.pulled += len(piece)
            yield piece


def padded(document: dict[str, Any], size: int) -> bytes:
    """``document`` as JSON followed by whitespace (still valid JSON), ``size`` bytes long."""
    encoded = orjson.dumps(document)
    assert len(encoded) <= size
    return encoded + b" " * (size - len(encoded))


@dataclass(frozen=True)
class Target:
    """A write that creates a project: REST or GraphQL."""

    name: str
    accepted: int
    path: Callable[[uuid.UUID], str]
    document: Callable[[uuid.UUID, str], dict[str, Any]]


CREATE_PROJECT = (
    "mutation($t: UUID!, $k: String!) { createProject(teamId: $t, input: {key: $k, name: $k})"
    " { id } }"
)
TARGETS = [
    Target(
        "rest", 201, lambda team: f"{API}/teams/{team}/projects", lambda _, k: {"key": k, "name": k}
    ),
    Target(
        "graphql",
        200,
        lambda _: "/graphql",
        lambda team, k: {"query": CREATE_PROJECT, "variables": {"t": str(team), "k": k}},
    ),
]


@pytest.fixture
async def writer(make_user: MakeUser, make_team: MakeTeam) -> tuple[Actor, uuid.UUID]:
    actor = make_user("body")
    return actor, await make_team(actor)


def projects_keyed(owner: Owner, team: uuid.UUID, key: str) -> int:
    row = owner.execute(
        "select count(*) as n from project where team_id = %s and key = %s", (team, key)
    ).fetchone()
    assert row is not None
    return int(row["n"])


async def send(
    client: httpx.AsyncClient,
    target: Target,
    writer: tuple[Actor, uuid.UUID],
    size: int,
    *,
    declared: str | None,
) -> tuple[httpx.Response, Counted, str]:
    """Create a project with a body of ``size`` bytes, with ``Content-Length: declared``
    (None: chunked); returns the response, the body sent and the project key."""
    actor, team = writer
    key = f"L{uuid.uuid4().hex[:6].upper()}"
    body = Counted(padded(target.document(team, key), size))
    headers = {**actor.headers, "content-type": "application/json"}
    if declared is not None:
        headers["content-length"] = declared
    response = await client.post(target.path(team), content=body.stream(), headers=headers)
    return response, body, key


def refused(response: httpx.Response) -> None:
    problem(response, 413, "payload_too_large")
    assert response.headers["connection"] == "close"
    assert sql_count(response) == 0


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
async def test_a_declared_length_over_the_limit_is_refused_unread(
    small: httpx.AsyncClient, owner: Owner, writer: tuple[Actor, uuid.UUID], target: Target
) -> None:
    response, body, key = await send(small, target, writer, LIMIT + 1, declared=str(LIMIT + 1))
    refused(response)
    assert body.pulled == 0
    assert projects_keyed(owner, writer[1], key) == 0


async def test_rest_refuses_a_declared_length_before_authentication(
    small: httpx.AsyncClient,
) -> None:
    """FastAPI reads a route's body before its dependencies: an anonymous client gets the
    413 too, and cannot make the server read (GraphQL authenticates first: 401)."""
    body = Counted(b" " * CHUNK)
    path = TARGETS[0].path(uuid.uuid4())
    anonymous = await small.post(
        path, content=body.stream(), headers={"content-length": "99999999"}
    )
    refused(anonymous)
    assert body.pulled == 0


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
@pytest.mark.parametrize("declared", [None, "100"], ids=["chunked", "lying-length"])
async def test_a_longer_body_is_cut_off_as_it_crosses_the_limit(
    small: httpx.AsyncClient,
    owner: Owner,
    writer: tuple[Actor, uuid.UUID],
    target: Target,
    declared: str | None,
) -> None:
    response, body, key = await send(small, target, writer, 16 * LIMIT, declared=declared)
    refused(response)
    assert LIMIT < body.pulled <= LIMIT + CHUNK  # the chunk that crossed it, nothing after
    assert projects_keyed(owner, writer[1], key) == 0


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
@pytest.mark.parametrize("declared", [True, False], ids=["declared", "chunked"])
async def test_a_body_of_exactly_the_limit_is_accepted(
    small: httpx.AsyncClient,
    owner: Owner,
    writer: tuple[Actor, uuid.UUID],
    target: Target,
    declared: bool,
) -> None:
    response, body, key = await send(
        small, target, writer, LIMIT, declared=str(LIMIT) if declared else None
    )
    assert response.status_code == target.accepted, response.text
    assert "errors" not in response.json()
    assert body.pulled == LIMIT
    assert projects_keyed(owner, writer[1], key) == 1


async def test_routes_that_declare_their_own_limit(
    small: httpx.AsyncClient,
    client: httpx.AsyncClient,
    make_user: MakeUser,
    make_team: MakeTeam,
) -> None:
    """Attachments stream under ATTACHMENT_MAX_BYTES and custom event batches may reach
    8 MiB: both pass REQUEST_MAX_BYTES, and a batch above its own limit is refused unread."""
    board = await make_board(client, make_user, make_team)
    task = await board.create()
    upload = await small.post(
        board.task_path(task["id"], "/attachments"),
        params={"filename": "notes.txt"},
        content=b"notes\n" * LIMIT,
        headers={**board.alice.headers, "content-type": "text/plain"},
    )
    assert upload.status_code == 201, upload.text
    assert upload.json()["size_bytes"] == 6 * LIMIT
    events = {"events": [{"kind": "custom.padded", "properties": {"pad": "x" * 3000}}] * 4}
    batch = await small.post(
        f"{API}/teams/{board.team}/events", json=events, headers=board.alice.headers
    )
    assert batch.status_code == 201, batch.text
    huge = Counted(b" " * CHUNK)
    over = await small.post(
        f"{API}/teams/{board.team}/events",
        content=huge.stream(),
        headers={**board.alice.headers, "content-length": str(8 * 1024 * 1024 + 1)},
    )
    refused(over)
    assert huge.pulled == 0


# -- page sizes --------------------------------------------------------------------------


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def list_operations(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every GET answering the list contract ``{"items", "next_cursor"}``, by path."""
    found = {}
    for path, operations in spec["paths"].items():
        operation = operations.get("get", {})
        content = operation.get("responses", {}).get("200", {}).get("content", {})
        schema = _resolve(spec, content.get("application/json", {}).get("schema", {}))
        if {"items", "next_cursor"} <= set(schema.get("properties", {})):
            found[path] = operation
    return found


#: Values of the other required query parameters of lists (a new one must be added here).
LIST_QUERY = {"q": "task"}


async def test_every_rest_list_caps_its_page_size(
    client: httpx.AsyncClient, make_user: MakeUser, make_team: MakeTeam
) -> None:
    board = await make_board(client, make_user, make_team)
    task = await board.create()
    hook = await client.post(
        f"{API}/teams/{board.team}/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "kinds": ["*"]},
        headers=board.alice.headers,
    )
    assert hook.status_code == 201, hook.text
    ids = {
        "team_id": board.team,
        "project_id": board.project,
        "task_id": task["id"],
        "webhook_id": hook.json()["id"],
    }
    spec = (await client.get("/openapi.json")).json()
    lists = list_operations(spec)
    assert len(lists) >= 20, sorted(lists)  # the enumeration found the lists
    for path, operation in lists.items():
        parameters = {p["name"]: p for p in operation.get("parameters", [])}
        assert parameters["limit"]["in"] == "query", path
        assert parameters["limit"]["schema"]["maximum"] == MAX_LIMIT, path
        query = {
            name: LIST_QUERY[name]
            for name, p in parameters.items()
            if p["in"] == "query" and p.get("required")
        }
        url = path.format(**ids)
        over = await client.get(
            url, params={**query, "limit": MAX_LIMIT + 1}, headers=board.alice.headers
        )
        body = problem(over, 422, "validation_failed")
        assert [(e["location"], e["field"]) for e in body["errors"]] == [("query", "limit")], path
        capped = await client.get(
            url, params={**query, "limit": MAX_LIMIT}, headers=board.alice.headers
        )
        assert capped.status_code == 200, (path, capped.text)


#: How to reach an object through a field that needs an argument: (type, field) -> variable.
GRAPHQL_IDS = {("Query", "team"): "team", ("Team", "project"): "project", ("Team", "task"): "task"}


@dataclass(frozen=True)
class Step:
    opening: str
    closing: str
    variable: str | None = None


def connection_paths(schema: GraphQLSchema) -> dict[tuple[str, str], list[Step]]:
    """Every connection field reachable from ``Query`` (breadth first: the shortest path),
    with the selections that lead to its parent object."""
    assert schema.query_type is not None
    queue: deque[tuple[GraphQLObjectType, list[Step]]] = deque([(schema.query_type, [])])
    visited, found = {schema.query_type.name}, {}
    while queue:
        parent, path = queue.popleft()
        for name, field in parent.fields.items():
            target = get_named_type(field.type)
            if not isinstance(target, GraphQLObjectType):
                continue
            required = [a for a, arg in field.args.items() if is_non_null_type(arg.type)]
            if target.name.endswith("Connection"):
                found.setdefault((parent.name, name), path)
                node = get_named_type(target.fields["nodes"].type)
                step = Step(f"{name}(first: 1) {{ nodes {{", "} }")
            elif not required:
                node, step = target, Step(f"{name} {{", "}")
            elif required == ["id"] and (parent.name, name) in GRAPHQL_IDS:
                variable = GRAPHQL_IDS[parent.name, name]
                node, step = target, Step(f"{name}(id: ${variable}) {{", "}", variable)
            else:
                continue
            if isinstance(node, GraphQLObjectType) and node.name not in visited:
                visited.add(node.name)
                queue.append((node, [*path, step]))
    return found


def paged(path: list[Step], field: str, argument: str, size: int) -> str:
    variables = ", ".join(f"${s.variable}: UUID!" for s in path if s.variable)
    inner = f"{field}({argument}: {size}) {{ pageInfo {{ hasNextPage }} }}"
    selection = " ".join([*(s.opening for s in path), inner, *(s.closing for s in reversed(path))])
    return f"query{f'({variables})' if variables else ''} {{ {selection} }}"


async def test_every_graphql_connection_caps_first_and_last(
    app: Any, client: httpx.AsyncClient, make_user: MakeUser, make_team: MakeTeam
) -> None:
    schema: GraphQLSchema = app.state.graphql_engine.graphql_schema
    paths = connection_paths(schema)
    connections = {name for name in schema.type_map if name.endswith("Connection")}
    reached = {get_named_type(schema.type_map[t].fields[f].type).name for t, f in paths}  # type: ignore[union-attr]
    assert reached == connections  # every connection type is reachable, hence tested
    board = await make_board(client, make_user, make_team)
    task = await board.create()
    ids = {"team": str(board.team), "project": board.project, "task": task["id"]}
    for (parent, field), path in sorted(paths.items()):
        used = {s.variable: ids[s.variable] for s in path if s.variable}
        for argument in ("first", "last"):
            over = await gql(client, board.alice, paged(path, field, argument, MAX_LIMIT + 1), used)
            assert over.status_code == 400, (parent, field, over.text)
            assert error_codes(over) == ["invalid_pagination"], (parent, field)
            capped = await gql(client, board.alice, paged(path, field, argument, MAX_LIMIT), used)
            assert capped.status_code == 200, (parent, field, capped.text)
            assert "errors" not in capped.json(), (parent, field, capped.text)


# -- statement_timeout -------------------------------------------------------------------


@contextmanager
def role_timeout(owner: Owner, role: str, milliseconds: int) -> Iterator[None]:
    """The role's statement_timeout in this test database only (roles are cluster-wide and
    shared with other runs; a database-specific setting overrides the role's own for the
    connections opened meanwhile)."""
    database = owner.execute("select current_database() as name").fetchone()
    assert database is not None
    alter = sql.SQL("alter role {} in database {} ").format(
        sql.Identifier(role), sql.Identifier(database["name"])
    )
    owner.execute(alter + sql.SQL("set statement_timeout = {}").format(f"{milliseconds}ms"))
    try:
        yield
    finally:
        owner.execute(alter + sql.SQL("reset statement_timeout"))


def test_migrate_sets_the_app_roles_statement_timeout_and_no_jit(
    owner: Owner, settings: Settings, db_urls: DatabaseUrls
) -> None:
    rows = owner.execute(
        "select setdatabase, setconfig from pg_db_role_setting where setrole = %s::regrole",
        (db_urls.app_role,),
    ).fetchall()
    expected = [f"statement_timeout={settings.statement_timeout_ms}ms", "jit=off"]
    assert [row["setconfig"] for row in rows if row["setdatabase"] == 0] == [expected]
    with psycopg.connect(db_urls.app) as conn:
        shown = conn.execute("show statement_timeout").fetchone()
        jit = conn.execute("show jit").fetchone()
    assert shown == (f"{settings.statement_timeout_ms // 1000}s",)
    assert jit == ("off",)


def test_a_statement_past_the_timeout_is_cancelled_on_the_app_role(
    owner: Owner, db_urls: DatabaseUrls
) -> None:
    with (
        role_timeout(owner, db_urls.app_role, 100),
        psycopg.connect(db_urls.app) as conn,
        pytest.raises(psycopg.errors.QueryCanceled),
    ):
        conn.execute("select pg_sleep(5)")


def test_db_audit_requires_a_statement_timeout(db_urls: DatabaseUrls) -> None:
    with psycopg.connect(db_urls.owner) as conn:  # one transaction, rolled back

        def found(role: str) -> list[str]:
            return [f.check for f in audit(conn, role) if f.check == TIMEOUT_CODE]

        assert found(db_urls.app_role) == []
        assert found(db_urls.worker_role) == []
        database = conn.execute("select current_database()").fetchone()
        assert database is not None
        conn.execute(
            sql.SQL("alter role {} in database {} set statement_timeout = 0").format(
                sql.Identifier(db_urls.app_role), sql.Identifier(database[0])
            )
        )
        assert found(db_urls.app_role) == [TIMEOUT_CODE]
        bare = f"teamboard_bare_{uuid.uuid4().hex[:8]}"
        conn.execute(sql.SQL("create role {}").format(sql.Identifier(bare)))
        assert found(bare) == [TIMEOUT_CODE]
        conn.rollback()


async def test_a_cancelled_statement_answers_503_not_500(
    settings: Settings,
    owner: Owner,
    db_urls: DatabaseUrls,
    make_user: MakeUser,
    make_team: MakeTeam,
) -> None:
    """A write waiting on a row lock the owner holds is cancelled by the app role's
    statement_timeout; REST and GraphQL answer 503 ``statement_timeout``."""
    actor = make_user("timeout")
    team = await make_team(actor)
    with role_timeout(owner, db_urls.app_role, 300):
        async with served(settings) as timed:  # its connections open under the short timeout
            created = await timed.post(
                f"{API}/teams/{team}/projects",
                json={"key": "LOCK", "name": "Locked"},
                headers=actor.headers,
            )
            assert created.status_code == 201, created.text
            project = created.json()["id"]
            with psycopg.connect(db_urls.owner) as locker:
                locker.execute(
                    "select 1 from project where team_id = %s and id = %s for update",
                    (team, project),
                )
                response = await timed.patch(
                    f"{API}/teams/{team}/projects/{project}",
                    json={"name": "Renamed"},
                    headers=actor.headers,
                )
                problem(response, 503, "statement_timeout")
                assert response.headers["retry-after"] == "1"
                mutation = (
                    "mutation($t: UUID!, $p: UUID!) { updateProject(teamId: $t, id: $p,"
                    ' input: {name: "Renamed"}) { id } }'
                )
                answer = await gql(timed, actor, mutation, {"t": str(team), "p": project})
                assert answer.status_code == 200, answer.text
                [error] = answer.json()["errors"]
                assert error["extensions"] == {"code": "statement_timeout", "status": 503}
                locker.rollback()
    row = owner.execute("select name from project where id = %s", (project,)).fetchone()
    assert row == {"name": "Locked"}


# -- per-team rate limits under a noisy neighbour ----------------------------------------


async def test_a_noisy_team_is_throttled_while_its_neighbour_is_served(
    settings: Settings, make_user: MakeUser, make_team: MakeTeam
) -> None:
    """Team A spends twice its budget; team B, in the same window, is never refused. A's
    first refusal costs one statement (the membership check: outsiders never learn of a
    team's budget), the next ones none: they are refused before the app."""
    noisy, quiet = make_user("noisy"), make_user("quiet")
    team_a, team_b = await make_team(noisy), await make_team(quiet)
    async with served(
        settings, rate_limit_per_team=TEAM_BUDGET, rate_limit_window_seconds=3600
    ) as limited:
        noisy_statuses, quiet_statuses = [], []
        for attempt in range(2 * TEAM_BUDGET):
            a = await limited.get(f"{API}/teams/{team_a}", headers=noisy.headers)
            noisy_statuses.append(a.status_code)
            if a.status_code == 429:
                problem(a, 429, "rate_limited")
                # A sliding window: this window's count fades out over the next window,
                # so the wait can reach the end of the next one (near an hour's start,
                # more than one window away).
                assert 1 <= int(a.headers["retry-after"]) <= 2 * 3600
                assert '"team";r=0' in a.headers["ratelimit"]
                assert sql_count(a) == (1 if noisy_statuses.count(429) == 1 else 0)
            if attempt % 4 == 0:
                b = await limited.get(f"{API}/teams/{team_b}", headers=quiet.headers)
                quiet_statuses.append(b.status_code)
    assert noisy_statuses == [200] * TEAM_BUDGET + [429] * TEAM_BUDGET
    assert quiet_statuses == [200] * (TEAM_BUDGET // 2)
