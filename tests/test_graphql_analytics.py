"""``Team.analytics``: the dashboards in GraphQL answer what REST answers (same periods,
filters, visibility, errors), through both executors, at two statements per dashboard, and
cost what REST spends so that many of them are refused before anything runs."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from teamboard.config import Settings
from teamboard.graphql.analytics import DASHBOARD_COST
from teamboard.ops.database import DatabaseUrls
from tests.analytics import GeneratedTeam, dashboard, linked_task, load, refresh
from tests.collab import create_project
from tests.conftest import Actor
from tests.gql import Credentials, both, data, error_codes, executor, gql, statements
from tests.test_graphql_limits import refused

pytestmark = pytest.mark.asyncio
Owner = psycopg.Connection[dict[str, Any]]
MakeUser = Callable[..., Actor]
MakeTeam = Callable[..., Awaitable[uuid.UUID]]

PERIOD = "period { start end timeZone bucket }"
#: Every field of each dashboard.
SELECTIONS = {
    "events": f"{PERIOD} total byKind {{ kind count }} series {{ bucket total counts }}",
    "actors": f"{PERIOD} uniqueActors series {{ bucket uniqueActors }}",
    "tasks": f"{PERIOD} created completed series {{ bucket created completed }}",
    "throughput": f"{PERIOD} completed byAssignee {{ assigneeId completed }}",
    "cycleTime": f"{PERIOD} completed leadTime {{ count p50 p85 p95 }}"
    " cycleTime { count p50 p85 p95 }",
    "flow": f"{PERIOD} series {{ bucket asOf backlog unstarted started completed canceled }}",
    "timeTracked": f"{PERIOD} groupBy totalSeconds entries groups {{ key seconds entries }}"
    " series { bucket seconds }",
}
#: The filter arguments of each dashboard, and the variable each one takes.
ARGUMENTS = {
    "events": {"projectIds": "projects", "kinds": "kinds"},
    "actors": {"projectIds": "projects", "kinds": "kinds"},
    "tasks": {"projectIds": "projects", "assigneeIds": "assignees", "labelIds": "labels"},
    "throughput": {"projectIds": "projects", "assigneeIds": "assignees", "labelIds": "labels"},
    "cycleTime": {"projectIds": "projects", "assigneeIds": "assignees", "labelIds": "labels"},
    "flow": {"projectIds": "projects"},
    "timeTracked": {
        "groupBy": "groupBy",
        "projectIds": "projects",
        "userIds": "users",
        "labelIds": "labels",
    },
}
VARIABLE_TYPES = {
    "projects": "[UUID!]",
    "kinds": "[String!]",
    "assignees": "[UUID!]",
    "labels": "[UUID!]",
    "users": "[UUID!]",
    "groupBy": "TimeGroupBy! = PROJECT",
}
#: The REST route and query parameter of each dashboard and variable.
ROUTES = {
    "events": "events",
    "actors": "actors",
    "tasks": "tasks",
    "throughput": "throughput",
    "cycleTime": "cycle-time",
    "flow": "flow",
    "timeTracked": "time",
}
PARAMETERS = {
    "projects": "project_id",
    "kinds": "kind",
    "assignees": "assignee_id",
    "labels": "label_id",
    "users": "user_id",
    "groupBy": "group_by",
}
#: Dashboards without buckets: REST describes their period with the default bucket.
UNBUCKETED = ("throughput", "cycleTime")


def analytics_query(names: list[str], selections: dict[str, str] = SELECTIONS) -> str:
    """The dashboards ``names`` of one period, with every filter they take as a variable."""
    used = sorted({variable for name in names for variable in ARGUMENTS[name].values()})
    declared = "".join(f", ${v}: {VARIABLE_TYPES[v]}" for v in used)
    fields = " ".join(
        f"{name}({', '.join(f'{arg}: ${var}' for arg, var in ARGUMENTS[name].items())})"
        f" {{ {selections[name]} }}"
        for name in names
    )
    return (
        "query($team: UUID!, $window: String, $start: Date, $end: Date,"
        f" $bucket: AnalyticsBucket!{declared}) {{ team(id: $team) {{"
        " analytics(window: $window, start: $start, end: $end, bucket: $bucket)"
        f" {{ {fields} }} }} }}"
    )


def as_rest(value: Any) -> Any:
    """A GraphQL answer with REST's snake_case keys (event kinds have no capitals)."""
    if isinstance(value, dict):
        return {re.sub("([A-Z])", r"_\1", key).lower(): as_rest(v) for key, v in value.items()}
    if isinstance(value, list):
        return [as_rest(item) for item in value]
    return value


async def compare_with_rest(
    app: Any,
    client: httpx.AsyncClient,
    who: Credentials,
    team: uuid.UUID,
    period: dict[str, Any],
    filters: dict[str, Any],
) -> dict[str, Any]:
    """Every dashboard through GraphQL (both executors, in one query) equals its REST
    route with the same period and filters; returns the GraphQL dashboards."""
    names = list(SELECTIONS)
    variables = {"team": str(team), **period, **filters}
    response = await both(app, client, who, analytics_query(names), variables)
    assert statements(response) == 1 + 2 * len(names)  # the team, then 2 per dashboard
    answers: dict[str, Any] = data(response)["team"]["analytics"]
    bucket = period["bucket"].lower()
    for name in names:
        params = {k: v for k, v in period.items() if k != "bucket" and v is not None}
        if name not in UNBUCKETED:
            params["bucket"] = bucket
        for variable in ARGUMENTS[name].values():
            if variable in filters:
                value = filters[variable]
                params[PARAMETERS[variable]] = value.lower() if variable == "groupBy" else value
        rest = await dashboard(client, who, team, ROUTES[name], **params)
        answer = as_rest(answers[name])
        assert answer["period"].pop("bucket") == period["bucket"]
        assert rest["period"].pop("bucket") == ("day" if name in UNBUCKETED else bucket)
        if name == "timeTracked":
            assert answer["group_by"] == rest["group_by"].upper()
            answer["group_by"] = rest["group_by"]
        assert answer == rest, name
    return answers


@pytest.fixture(scope="module")
def dataset(owner: Owner, db_urls: DatabaseUrls, settings: Settings) -> GeneratedTeam:
    """The larger of two generated teams (about 3,000 events in all), folded."""
    teams = load(owner, db_urls.owner, settings, events=3000, teams=2, seed=23)
    refresh(owner)
    return teams[0]


def _filters(owner: Owner, team: GeneratedTeam) -> dict[str, Any]:
    """A project, an assignee and a label of one task, kinds (prefix and exact), users."""
    row = linked_task(owner, team.id)
    return {
        "projects": [str(row["project_id"]), str(team.projects[-1])],
        "kinds": ["task.*", "custom.page_view"],
        "assignees": [row["assignee"]],
        "labels": [row["label"]],
        "users": [str(team.owner.id), str(team.member.id)],
        "groupBy": "LABEL",
    }


async def test_every_dashboard_answers_as_rest(
    app: Any, client: httpx.AsyncClient, owner: Owner, dataset: GeneratedTeam
) -> None:
    today = datetime.now(UTC).date()
    custom = {"start": str(today - timedelta(days=200)), "end": str(today - timedelta(days=20))}
    cases: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"window": None, "bucket": "DAY"}, {}),
        ({"window": "90d", "bucket": "WEEK"}, _filters(owner, dataset)),
        ({"window": None, **custom, "bucket": "MONTH"}, {"kinds": ["custom.*"], "groupBy": "USER"}),
    ]
    for who in (dataset.owner, dataset.member):
        for period, filters in cases:
            answers = await compare_with_rest(app, client, who, dataset.id, period, filters)
            # The owner sees events in every case (the member may see none of the filtered
            # projects: they may be private).
            assert answers["events"]["total"] > 0 or who is dataset.member


async def test_a_caller_counts_only_the_projects_they_see(
    app: Any,
    client: httpx.AsyncClient,
    owner: Owner,
    make_user: MakeUser,
    make_team: MakeTeam,
) -> None:
    alice, bob, guest = make_user("alice"), make_user("bob"), make_user("guest")
    team = await make_team(alice, members=[(bob, "member"), (guest, "guest")])
    public = await create_project(client, alice, team, "PUB")
    secret = await create_project(client, alice, team, "SEC", visibility="private")
    owner.execute(
        "insert into project_member (team_id, project_id, user_id) values (%s, %s, %s)",
        (team, public, guest.id),
    )
    for project, n in ((public, 2), (secret, 3), (None, 4)):
        events = [{"kind": "custom.view", "project_id": str(project) if project else None}] * n
        posted = await client.post(
            f"/api/v1/teams/{team}/events", json={"events": events}, headers=alice.headers
        )
        assert posted.status_code == 201, posted.text
    query = analytics_query(["events", "actors"])

    async def counted(who: Actor, projects: list[uuid.UUID] | None) -> int:
        variables = {
            "team": str(team),
            "bucket": "DAY",
            "kinds": ["custom.*"],
            "projects": [str(p) for p in projects] if projects is not None else None,
        }
        answers = data(await both(app, client, who, query, variables))["team"]["analytics"]
        total: int = answers["events"]["total"]
        return total

    assert await counted(alice, None) == 9
    assert await counted(alice, [secret]) == 3
    assert await counted(bob, None) == 6  # not the private project's
    assert await counted(bob, [secret]) == 0
    assert await counted(guest, None) == 2  # the project they were added to, nothing else
    assert await counted(guest, [secret]) == 0
    for who in (bob, guest):
        await compare_with_rest(app, client, who, team, {"window": "7d", "bucket": "DAY"}, {})


async def test_a_foreign_team_is_null(
    app: Any, client: httpx.AsyncClient, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice, mallory = make_user("alice"), make_user("mallory")
    team = await make_team(alice)
    posted = await client.post(
        f"/api/v1/teams/{team}/events",
        json={"events": [{"kind": "custom.secret"}]},
        headers=alice.headers,
    )
    assert posted.status_code == 201, posted.text
    query = analytics_query(["events", "timeTracked"])
    variables = {"team": str(team), "bucket": "DAY", "groupBy": "PROJECT"}
    response = await both(app, client, mallory, query, variables)
    assert response.json() == {"data": {"team": None}}
    assert statements(response) == 1


BAD_PERIODS = [
    ({"window": "14d"}, "invalid_window"),
    ({"window": "30d", "start": "2026-01-01", "end": "2026-01-02"}, "invalid_window"),
    ({"start": "2026-01-01"}, "invalid_window"),
    ({"start": "2026-02-01", "end": "2026-01-01"}, "invalid_range"),
    ({"start": "2020-01-01", "end": "2026-01-01"}, "invalid_range"),
]
BAD_FILTERS = [
    ({"kinds": ["Not A Kind"]}, "invalid_kind"),
    ({"kinds": [f"custom.k{i}" for i in range(51)]}, "too_many_filters"),
    ({"projects": [str(uuid.uuid4()) for _ in range(51)]}, "too_many_filters"),
]


@pytest.mark.parametrize(
    ("variables", "code", "path"),
    [(v, code, ["team", "analytics"]) for v, code in BAD_PERIODS]
    + [(v, code, ["team", "analytics", "events"]) for v, code in BAD_FILTERS],
)
async def test_invalid_arguments_are_errors_with_the_rest_codes(
    app: Any,
    client: httpx.AsyncClient,
    make_user: MakeUser,
    make_team: MakeTeam,
    variables: dict[str, Any],
    code: str,
    path: list[str],
) -> None:
    """The field is null with REST's error, and no dashboard statement ran."""
    alice = make_user("alice")
    team = await make_team(alice)
    query = analytics_query(["events"])
    sent = {"team": str(team), "bucket": "DAY", **variables}
    with executor(app, compiled=False):
        response = await gql(client, alice, query, sent)
    assert response.status_code == 200, response.text
    body = response.json()
    assert error_codes(response) == [code]
    (error,) = body["errors"]
    assert error["path"] == path
    assert error["extensions"]["status"] == 422
    partial: Any = {"events": None} if path[-1] == "events" else None
    assert body["data"] == {"team": {"analytics": partial}}
    assert statements(response) == 1  # the team only
    with executor(app, compiled=True):  # the compiled path hands it to the engine
        assert (await gql(client, alice, query, sent)).content == response.content


@pytest.mark.parametrize(
    ("variables", "code"),
    [
        ({"bucket": "YEAR"}, "invalid_variables"),
        ({"projects": ["not-a-uuid"]}, "invalid_variables"),
        ({"start": "2026-13-01", "end": "2026-12-31"}, "invalid_variables"),
    ],
)
async def test_ill_typed_arguments_are_refused_before_execution(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    make_team: MakeTeam,
    variables: dict[str, Any],
    code: str,
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    sent = {"team": str(team), "bucket": "DAY", **variables}
    refused(await gql(client, alice, analytics_query(["events"]), sent), code)


def _cost(app: Any, query: str, variables: dict[str, Any]) -> int:
    cost: int = app.state.graphql_engine.documents.prepare(query, None, variables).cost
    return cost


async def test_a_dashboard_costs_what_rest_spends_and_many_are_refused(
    app: Any,
    client: httpx.AsyncClient,
    settings: Settings,
    make_user: MakeUser,
    make_team: MakeTeam,
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    variables = {"team": str(team), "bucket": "DAY"}
    one = _cost(app, analytics_query(["events"]), variables)
    assert DASHBOARD_COST <= one < DASHBOARD_COST + 100
    assert math.ceil(one / settings.graphql_cost_per_rate_unit) in (10, 11)  # REST: 10

    def periods(windows: tuple[str, ...]) -> str:
        """Every dashboard (a small selection each) for each window, aliased."""
        fields = " ".join(f"{name} {{ period {{ end }} }}" for name in SELECTIONS)
        aliased = " ".join(
            f'p{i}: analytics(window: "{window}") {{ {fields} }}'
            for i, window in enumerate(windows)
        )
        return f"query($team: UUID!) {{ team(id: $team) {{ {aliased} }} }}"

    # Three periods of every dashboard: 21 dashboards, 3 aliases.
    three = periods(("7d", "30d", "90d"))
    error = refused(await gql(client, alice, three, {"team": str(team)}), "query_too_costly")
    assert error["extensions"]["cost"] > 21 * DASHBOARD_COST
    # Two periods (14 dashboards) are within the limit.
    response = await gql(client, alice, periods(("7d", "30d")), {"team": str(team)})
    assert response.status_code == 200, response.text
    assert statements(response) == 1 + 2 * 14
    # Twenty aliased dashboards hit the alias limit first: nothing runs either.
    many = " ".join(f'e{i}: events(kinds: ["custom.k{i}"]) {{ total }}' for i in range(20))
    aliased = f"query($team: UUID!) {{ team(id: $team) {{ analytics {{ {many} }} }} }}"
    refused(await gql(client, alice, aliased, {"team": str(team)}), "too_many_aliases")


@pytest.mark.parametrize("window", ["7d", "365d"])
async def test_each_dashboard_is_two_statements(
    app: Any, client: httpx.AsyncClient, dataset: GeneratedTeam, window: str
) -> None:
    base = {"team": str(dataset.id), "window": window, "bucket": "WEEK", "groupBy": "LABEL"}
    for name in SELECTIONS:
        response = await both(app, client, dataset.owner, analytics_query([name]), base)
        assert statements(response) == 1 + 2, name
        assert data(response)["team"]["analytics"][name]["period"]["bucket"] == "WEEK"
