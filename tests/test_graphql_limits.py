"""GraphQL abuse: every limit refuses the request before any resolver or SQL statement runs.

``X-GraphQL-Resolved-Fields`` counts the fields the executor resolved and
``X-SQL-Statements`` the statements: both are 0 for a refused request, and the same shape
within the limits resolves fields (the control that makes the zero meaningful).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from graphql.language import Lexer, Source, TokenKind

from teamboard.app import create_app
from teamboard.config import Settings
from tests.conftest import Actor
from tests.gql import data, error_codes, executor, gql, resolved_fields, statements

pytestmark = pytest.mark.asyncio
MakeUser = Callable[..., Actor]
MakeTeam = Callable[..., Awaitable[uuid.UUID]]


def refused(response: httpx.Response, code: str) -> dict[str, Any]:
    """The refusal's first error, after checking that nothing ran."""
    assert response.status_code == 400, response.text
    assert error_codes(response)[0] == code
    assert "data" not in response.json()
    assert resolved_fields(response) == 0
    assert statements(response) == 0
    error: dict[str, Any] = response.json()["errors"][0]
    return error


@pytest.fixture
async def alice(make_user: MakeUser, make_team: MakeTeam) -> tuple[Actor, uuid.UUID]:
    actor = make_user("alice")
    return actor, await make_team(actor)


def nested(levels: int) -> str:
    """``team > task > project > tasks > project ... > key``: ``levels`` fields deep."""
    opened, closed = [], []
    for level in range(levels - 3):  # team, task and the leaf
        opened.append("project {" if level % 2 == 0 else "tasks(first: 1) { nodes {")
        closed.append("}" if level % 2 == 0 else "} }")
    inner = " ".join([*opened, "key", *reversed(closed)])
    return f"query($team: UUID!) {{ team(id: $team) {{ task(id: $team) {{ {inner} }} }} }}"


async def test_depth_is_limited_to_six(
    client: httpx.AsyncClient, alice: tuple[Actor, uuid.UUID]
) -> None:
    actor, team = alice
    allowed = await gql(client, actor, nested(6), {"team": str(team)})
    assert allowed.status_code == 200, allowed.text
    assert resolved_fields(allowed) > 0
    error = refused(await gql(client, actor, nested(7), {"team": str(team)}), "query_too_deep")
    assert error["message"] == "The query is nested 7 levels deep; at most 6 are allowed"


DEEP_TASK = (
    "project { tasks(first: 1) { nodes { project { tasks(first: 1) { nodes { key } } } } } }"
)


@pytest.mark.parametrize(
    "query",
    [
        # a named fragment
        f"query($t: UUID!) {{ team(id: $t) {{ task(id: $t) {{ ...Deep }} }} }}"
        f" fragment Deep on Task {{ {DEEP_TASK} }}",
        # a fragment named like the introspection field
        f"query($t: UUID!) {{ team(id: $t) {{ task(id: $t) {{ ...__schema }} }} }}"
        f" fragment __schema on Task {{ {DEEP_TASK} }}",
        # fragments spreading fragments
        "query($t: UUID!) { team(id: $t) { task(id: $t) { ...A } } }"
        " fragment A on Task { project { ...B } }"
        " fragment B on Project { tasks(first: 1) { nodes { ...C } } }"
        " fragment C on Task { project { tasks(first: 1) { nodes { key } } } }",
        # inline fragments
        "query($t: UUID!) { team(id: $t) { task(id: $t) {"
        f" ... on Task {{ {DEEP_TASK} }} }} }} }}",
    ],
    ids=["fragment", "fragment-named-__schema", "fragment-chain", "inline-fragment"],
)
async def test_depth_counts_through_fragments(
    client: httpx.AsyncClient, alice: tuple[Actor, uuid.UUID], query: str
) -> None:
    actor, team = alice
    refused(await gql(client, actor, query, {"t": str(team)}), "query_too_deep")


async def test_fragments_spread_into_each_other_cannot_blow_the_checks_up(
    client: httpx.AsyncClient, alice: tuple[Actor, uuid.UUID]
) -> None:
    """Each fragment spreads the next one twice: 2^30 expansions if walked naively."""
    actor, team = alice
    fragments = " ".join(f"fragment F{i} on Team {{ ...F{i + 1} ...F{i + 1} }}" for i in range(30))
    query = (
        f"query($t: UUID!) {{ team(id: $t) {{ ...F0 }} }} {fragments}"
        " fragment F30 on Team { a: name }"
    )
    error = refused(await gql(client, actor, query, {"t": str(team)}), "too_many_aliases")
    assert error["extensions"]["aliases"] == 2**30


async def test_cost_is_limited_and_the_message_suggests_pagination(
    client: httpx.AsyncClient, alice: tuple[Actor, uuid.UUID]
) -> None:
    actor, team = alice
    query = """query($t: UUID!, $n: Int!) { team(id: $t) { projects(first: $n) {
      nodes { tasks(first: $n) { nodes { key title } } } } } }"""
    allowed = await gql(client, actor, query, {"t": str(team), "n": 50})
    assert allowed.status_code == 200, allowed.text
    error = refused(await gql(client, actor, query, {"t": str(team), "n": 200}), "query_too_costly")
    # team 5 + projects 5 + 200 x (tasks 5 + 200 x 2 fields)
    cost = 5 + 5 + 200 * (5 + 200 * 2)
    assert error["extensions"] == {"code": "query_too_costly", "cost": cost, "limit": 20000}
    assert f"The query costs {cost}, more than the limit of 20000" in error["message"]
    assert "first or last" in error["message"]
    assert "after/before" in error["message"]


async def test_lists_without_first_or_last_are_priced_at_the_largest_page(
    client: httpx.AsyncClient, alice: tuple[Actor, uuid.UUID]
) -> None:
    actor, team = alice
    query = "query($t: UUID!) { team(id: $t) { projects { nodes { tasks { nodes { key } } } } } }"
    error = refused(await gql(client, actor, query, {"t": str(team)}), "query_too_costly")
    assert error["extensions"]["cost"] == 5 + 5 + 200 * (5 + 200)
    paginated = query.replace("projects {", "projects(first: 20) {").replace(
        "tasks {", "tasks(first: 20) {"
    )
    assert (await gql(client, actor, paginated, {"t": str(team)})).status_code == 200


@pytest.mark.parametrize("first", [0, -1, 201])
async def test_page_sizes_are_bounded(
    client: httpx.AsyncClient, alice: tuple[Actor, uuid.UUID], first: int
) -> None:
    actor, team = alice
    query = "query($t: UUID!, $n: Int) { team(id: $t) { projects(first: $n) { nodes { key } } } }"
    refused(await gql(client, actor, query, {"t": str(team), "n": first}), "invalid_pagination")
    both = "query($t: UUID!) { team(id: $t) { projects(first: 1, last: 1) { nodes { key } } } }"
    refused(await gql(client, actor, both, {"t": str(team)}), "invalid_pagination")


async def test_at_most_fifteen_aliases(
    client: httpx.AsyncClient, alice: tuple[Actor, uuid.UUID]
) -> None:
    actor, team = alice

    def aliased(count: int) -> str:
        fields = " ".join(f"a{i}: name" for i in range(count))
        return f"query($t: UUID!) {{ team(id: $t) {{ {fields} }} }}"

    allowed = await gql(client, actor, aliased(15), {"t": str(team)})
    assert data(allowed)["team"]["a14"] == "Team"
    error = refused(await gql(client, actor, aliased(16), {"t": str(team)}), "too_many_aliases")
    assert error["message"] == "The query uses 16 aliases; at most 15 are allowed"


def tokens(query: str) -> int:
    lexer, count = Lexer(Source(query)), 0
    while lexer.advance().kind != TokenKind.EOF:
        count += 1
    return count


async def test_at_most_a_thousand_tokens(
    client: httpx.AsyncClient, alice: tuple[Actor, uuid.UUID]
) -> None:
    actor, team = alice

    def padded(count: int) -> str:
        """A valid query whose length is a list literal of ``count`` integers."""
        values = "1 " * count
        return (
            "query($t: UUID!) { team(id: $t) {"
            f" tasks(first: 1, filter: {{priorities: [{values}]}}) {{ nodes {{ key }} }} }} }}"
        )

    count = 1000 - tokens(padded(0))
    assert tokens(padded(count)) == 1000
    accepted = await gql(client, actor, padded(count), {"t": str(team)})
    assert accepted.status_code == 200  # executed (the filter itself is then refused)
    assert error_codes(accepted) == ["validation_failed"]
    error = refused(
        await gql(client, actor, padded(count + 1), {"t": str(team)}), "too_many_tokens"
    )
    assert "more than 1000 tokens" in error["message"]


async def test_batches_are_limited(
    client: httpx.AsyncClient, alice: tuple[Actor, uuid.UUID]
) -> None:
    actor, _ = alice
    operation = {"query": "{ viewer { id } }"}
    allowed = await client.post("/graphql", json=[operation] * 5, headers=actor.headers)
    assert allowed.status_code == 200
    assert len(allowed.json()) == 5
    assert resolved_fields(allowed) == 10
    too_many = await client.post("/graphql", json=[operation] * 6, headers=actor.headers)
    refused(too_many, "batch_too_large")
    empty = await client.post("/graphql", json=[], headers=actor.headers)
    refused(empty, "batch_too_large")


async def test_one_refused_operation_refuses_the_whole_batch(
    client: httpx.AsyncClient, alice: tuple[Actor, uuid.UUID]
) -> None:
    actor, _ = alice
    batch = [{"query": "{ viewer { id } }"}, {"query": "{ viewer { " + "id " * 1000 + "} }"}]
    refused(await client.post("/graphql", json=batch, headers=actor.headers), "too_many_tokens")


async def test_requests_need_credentials(client: httpx.AsyncClient) -> None:
    response = await gql(client, None, "{ viewer { id } }")
    assert response.status_code == 401
    assert error_codes(response) == ["unauthorized"]
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert statements(response) == 0


async def test_malformed_requests_are_refused(
    client: httpx.AsyncClient, alice: tuple[Actor, uuid.UUID]
) -> None:
    actor, _ = alice
    for body in (b"not json", b'{"query": 3}', b'{"query": "{ viewer { id } }", "variables": 1}'):
        response = await client.post(
            "/graphql",
            content=body,
            headers={**actor.headers, "content-type": "application/json"},
        )
        refused(response, "invalid_request")
    refused(await gql(client, actor, "{ viewer { id }"), "graphql_parse_failed")
    refused(await gql(client, actor, "{ nope }"), "graphql_validation_failed")
    two = "query A { viewer { id } } query B { viewer { id } }"
    refused(await gql(client, actor, two), "operation_name_required")
    typed = "query($t: UUID!) { team(id: $t) { name } }"
    refused(await gql(client, actor, typed, {"t": "not a uuid"}), "invalid_variables")


async def test_queries_over_get_and_no_mutations_over_get(
    client: httpx.AsyncClient, alice: tuple[Actor, uuid.UUID]
) -> None:
    actor, team = alice
    query = "query($t: UUID!) { team(id: $t) { name } }"
    params = {"query": query, "variables": f'{{"t": "{team}"}}'}
    response = await client.get("/graphql", params=params, headers=actor.headers)
    assert response.json() == {"data": {"team": {"name": "Team"}}}
    mutation = f'mutation {{ deleteTask(teamId: "{team}", id: "{uuid.uuid4()}") }}'
    refusal = await client.get("/graphql", params={"query": mutation}, headers=actor.headers)
    assert refusal.status_code == 405
    assert refusal.headers["allow"] == "POST"
    assert error_codes(refusal) == ["method_not_allowed"]


async def test_introspection_and_suggestions_outside_production(
    client: httpx.AsyncClient, alice: tuple[Actor, uuid.UUID]
) -> None:
    actor, _ = alice
    schema = await gql(client, actor, "{ __schema { queryType { name } } }")
    assert data(schema) == {"__schema": {"queryType": {"name": "Query"}}}
    typo = await gql(client, actor, "{ viewr { id } }")
    assert "Did you mean 'viewer'?" in typo.json()["errors"][0]["message"]


@pytest.fixture(scope="module")
async def production(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(settings.model_copy(update={"environment": "production"}))
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://prod") as client:
            yield client


async def test_production_refuses_introspection_and_gives_no_suggestions(
    production: httpx.AsyncClient, alice: tuple[Actor, uuid.UUID]
) -> None:
    actor, _ = alice
    for query in (
        "{ __schema { queryType { name } } }",
        '{ __type(name: "Task") { name } }',
        "query { ...F } fragment F on Query { __schema { types { name } } }",
    ):
        refused(await gql(production, actor, query), "introspection_disabled")
    assert data(await gql(production, actor, "{ viewer { __typename } }")) == {
        "viewer": {"__typename": "Viewer"}
    }
    typo = refused(await gql(production, actor, "{ viewr { id } }"), "graphql_validation_failed")
    assert typo["message"] == "Cannot query field 'viewr' on type 'Query'."
    variables = "query($s: TaskSort!) { viewer { id } }"
    bad = await gql(production, actor, variables, {"s": "CREATED_AT"})
    assert "Did you mean" not in bad.text


async def test_graphiql_in_development_only(
    client: httpx.AsyncClient, production: httpx.AsyncClient, settings: Settings
) -> None:
    html = {"accept": "text/html"}
    assert (await client.get("/graphql", headers=html)).status_code == 404  # test environment
    assert (await production.get("/graphql", headers=html)).status_code == 404
    application = create_app(settings.model_copy(update={"environment": "development"}))
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://dev") as dev:
            page = await dev.get("/graphql", headers=html)
    assert page.status_code == 200
    assert "graphiql" in page.text.lower()


# ------------------------------------------------------------------------- rate limits

CALLER, TEAM, PER_UNIT = 40, 60, 10


@pytest.fixture
async def limited(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with budgets(settings, CALLER, TEAM) as (client, _):
        yield client


@asynccontextmanager
async def budgets(
    settings: Settings, caller: int, team: int
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """A client of an application with these rate-limit budgets (counted in memory), and
    the application."""
    small = settings.model_copy(
        update={
            "redis_url": None,
            "rate_limit_per_caller": caller,
            "rate_limit_per_team": team,
            "graphql_cost_per_rate_unit": PER_UNIT,
        }
    )
    application = create_app(small)
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client, application


def remaining(response: httpx.Response) -> dict[str, int]:
    return {
        name: int(left)
        for name, left in re.findall(r'"(\w+)";r=(\d+);t=\d+', response.headers["ratelimit"])
    }


async def test_the_cost_is_spent_from_the_rest_budgets(
    limited: httpx.AsyncClient, alice: tuple[Actor, uuid.UUID]
) -> None:
    actor, team = alice
    # team 5 + name 1 + projects 5 + 10 x key 1 = 21: 3 units of 10
    query = "query($t: UUID!) { team(id: $t) { name projects(first: 10) { nodes { key } } } }"
    first = await gql(limited, actor, query, {"t": str(team)})
    assert first.status_code == 200
    assert remaining(first) == {"caller": CALLER - 3, "team": TEAM}  # team charged after
    rest = await limited.get(f"/api/v1/teams/{team}", headers=actor.headers)
    assert remaining(rest) == {"caller": CALLER - 3 - 1, "team": TEAM - 3}
    refusal = await gql(limited, actor, "{ viewer { " + "id " * 1000 + "} }")
    assert refusal.status_code == 400
    assert remaining(refusal) == {"caller": CALLER - 3 - 1 - 1}  # a refusal spends 1
    while (response := await gql(limited, actor, query, {"t": str(team)})).status_code == 200:
        pass
    assert response.status_code == 429
    assert error_codes(response) == ["rate_limited"]
    assert int(response.headers["retry-after"]) >= 1
    assert resolved_fields(response) == 0
    assert statements(response) == 0


async def test_a_query_reaching_two_teams_reports_every_budget_in_one_line(
    limited: httpx.AsyncClient, alice: tuple[Actor, uuid.UUID], make_team: MakeTeam
) -> None:
    actor, first = alice
    second = await make_team(actor)
    query = "query($a: UUID!, $b: UUID!) { a: team(id: $a) { name } b: team(id: $b) { name } }"
    response = await gql(limited, actor, query, {"a": str(first), "b": str(second)})
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["a"]["name"]
    assert data["b"]["name"]
    (policy,) = response.headers.get_list("ratelimit-policy")
    (state,) = response.headers.get_list("ratelimit")
    assert policy == f'"caller";q={CALLER};w=60, "team";q={TEAM};w=60, "team";q={TEAM};w=60'
    assert re.fullmatch(r'"caller";r=\d+;t=\d+, "team";r=\d+;t=\d+, "team";r=\d+;t=\d+', state)


async def test_introspection_fragments_are_measured_once(
    client: httpx.AsyncClient, alice: tuple[Actor, uuid.UUID], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chain of fragments that each spread the next twice: 2^n walks unless each fragment
    is measured once (outside production, where introspection is allowed). The walks are
    counted, and stopped, at the selection sets the limits visit."""
    from teamboard.graphql import limits

    links, visits = 40, 0
    visit = limits.fields_of

    def counted(selection_set: Any, fragments: Any) -> Any:
        nonlocal visits
        visits += 1
        if visits > 20 * links:
            raise RuntimeError("the walk visits the fragments again and again")
        return visit(selection_set, fragments)

    monkeypatch.setattr(limits, "fields_of", counted)
    actor, _ = alice
    chain = " ".join(f"fragment F{i} on __Type {{ ...F{i + 1} ...F{i + 1} }}" for i in range(links))
    query = f'{{ __type(name: "Task") {{ ...F0 }} }} {chain} fragment F{links} on __Type {{ name }}'
    response = await gql(client, actor, query)
    assert response.status_code == 200, response.text
    assert data(response) == {"__type": {"name": "Task"}}


async def test_aliases_inside_introspection_count(
    client: httpx.AsyncClient, alice: tuple[Actor, uuid.UUID]
) -> None:
    actor, _ = alice
    aliased = " ".join(f"a{i}: queryType {{ name }}" for i in range(16))
    response = await gql(client, actor, f"{{ __schema {{ {aliased} }} }}")
    error = refused(response, "too_many_aliases")
    assert error["message"] == "The query uses 16 aliases; at most 15 are allowed"


@pytest.fixture
async def team_limited(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """A team budget smaller than the caller's (the team's is the one that runs out)."""
    async with budgets(settings, 10_000, TEAM_BUDGET) as made:
        yield made


TEAM_BUDGET = 12
TEAM_QUERY = "query($t: UUID!) { team(id: $t) { name projects(first: 10) { nodes { key } } } }"


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "engine"])
async def test_a_spent_team_budget_refuses_every_access_to_the_team(
    team_limited: tuple[httpx.AsyncClient, Any], alice: tuple[Actor, uuid.UUID], compiled: bool
) -> None:
    client, application = team_limited
    actor, team = alice
    variables = {"t": str(team)}
    with executor(application, compiled=compiled):
        for _ in range(TEAM_BUDGET):  # 3 units a query: the budget runs out on the way
            response = await gql(client, actor, TEAM_QUERY, variables)
            if "errors" in response.json():
                break
        assert response.json()["data"] == {"team": None}
        assert error_codes(response) == ["rate_limited"]
        # Naming the team twice: the second access is refused like the first.
        twice = (
            "query($t: UUID!) { a: team(id: $t) { name }"
            " b: team(id: $t) { projects(first: 10) { nodes { key } } } }"
        )
        again = await gql(client, actor, twice, variables)
        assert again.json()["data"] == {"a": None, "b": None}
        assert error_codes(again) == ["rate_limited", "rate_limited"]
