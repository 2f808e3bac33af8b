"""Helpers of the analytics tests: a generated data set, callers with tokens, folds, and
dashboards computed both ways (rollups through the API, raw events through the service)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import psycopg

from teamboard.analytics import service
from teamboard.analytics.period import DashboardQuery
from teamboard.auth.tokens import TokenService
from teamboard.config import Settings
from teamboard.deps import Services, TeamContext
from teamboard.kit.responses import dumps
from teamboard.ops import generate
from tests.gql import Credentials

Owner = psycopg.Connection[dict[str, Any]]
API = "/api/v1"
DASHBOARDS = ("events", "actors", "tasks", "throughput", "cycle-time", "flow", "time")


@dataclass(frozen=True)
class Caller:
    id: uuid.UUID
    headers: dict[str, str]


@dataclass(frozen=True)
class GeneratedTeam:
    id: uuid.UUID
    time_zone: str
    owner: Caller
    guest: Caller | None
    member: Caller  # a member who is not in every private project, when there is one
    projects: list[uuid.UUID]
    private_projects: list[uuid.UUID]


def caller(settings: Settings, user_id: uuid.UUID) -> Caller:
    token = TokenService(settings).issue_access(user_id, uuid.uuid4())
    return Caller(user_id, {"Authorization": f"Bearer {token}"})


def load(
    owner: Owner, owner_url: str, settings: Settings, events: int, teams: int, seed: int
) -> list[GeneratedTeam]:
    """Generate a small data set; returns its teams (largest first)."""
    before = {row["id"] for row in owner.execute("select id from team").fetchall()}
    generate.generate(owner_url, generate.GeneratorConfig(events, teams, years=2, seed=seed))
    rows = owner.execute(
        "select t.id, t.time_zone, count(e.id) as n from team t join event e on e.team_id = t.id"
        " group by t.id order by n desc"
    ).fetchall()
    return [_team(owner, settings, row) for row in rows if row["id"] not in before]


def _team(owner: Owner, settings: Settings, row: dict[str, Any]) -> GeneratedTeam:
    team_id = row["id"]
    members = owner.execute(
        "select user_id, role from team_member where team_id = %s order by user_id", (team_id,)
    ).fetchall()
    projects = owner.execute(
        "select id, visibility from project where team_id = %s order by key", (team_id,)
    ).fetchall()
    private = [p["id"] for p in projects if p["visibility"] == "private"]
    in_all_private = {
        r["user_id"]
        for r in owner.execute(
            "select user_id from project_member where team_id = %s and project_id = any(%s)"
            " group by user_id having count(*) = %s",
            (team_id, private, len(private)),
        ).fetchall()
    }
    by_role: dict[str, list[uuid.UUID]] = {}
    for member in members:
        by_role.setdefault(member["role"], []).append(member["user_id"])
    plain = [m for m in by_role.get("member", []) if m not in in_all_private or not private]
    return GeneratedTeam(
        id=team_id,
        time_zone=row["time_zone"],
        owner=caller(settings, by_role["owner"][0]),
        guest=caller(settings, by_role["guest"][0]) if by_role.get("guest") else None,
        member=caller(settings, (plain or by_role.get("member") or by_role["owner"])[0]),
        projects=[p["id"] for p in projects],
        private_projects=private,
    )


def refresh(owner: Owner) -> dict[str, Any]:
    """One incremental fold (what the worker's RollupConsumer runs)."""
    row = owner.execute(
        "select folded, watermark::text::bigint as watermark, rebucketed"
        " from tb_analytics_refresh()"
    ).fetchone()
    assert row is not None, "another fold was running"
    return row


def fold_past(owner: Owner, xid: int, timeout: float = 60.0) -> None:
    """Fold until the watermark passes ``xid``. Any older transaction of the cluster (other
    databases included: transaction ids are cluster-wide) holds the watermark back, so this
    may take a few folds on a shared server."""
    deadline = time.monotonic() + timeout
    while refresh(owner)["watermark"] <= xid:
        assert time.monotonic() < deadline, "the watermark did not pass the transaction"
        time.sleep(0.2)


async def dashboard(
    client: httpx.AsyncClient, who: Credentials, team: uuid.UUID, name: str, **query: Any
) -> dict[str, Any]:
    response = await client.get(
        f"{API}/teams/{team}/analytics/{name}", params=query, headers=who.headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-sql-statements"] == "2"
    body: dict[str, Any] = response.json()
    return body


def plain(value: dict[str, Any]) -> dict[str, Any]:
    """A service answer as the API serializes it (dates and ids as strings)."""
    decoded: dict[str, Any] = orjson.loads(dumps(value))
    return decoded


async def raw_dashboard(
    services: Services, who: Caller, team: uuid.UUID, name: str, query: DashboardQuery
) -> dict[str, Any]:
    """The same dashboard computed from raw events only, as the same caller."""
    async with services.db.transaction(user_id=who.id, team_id=team, write=False) as tx:
        ctx = TeamContext(tx, team, who.id, None)
        if name == "time":
            return plain(await service.time_tracked(ctx, query, "project", raw=True))
        return plain(await service.BY_ROUTE[name](ctx, query, raw=True))


def linked_task(owner: Owner, team: uuid.UUID) -> dict[str, Any]:
    """The project, an assignee and a label of a generated task created with both."""
    row = owner.execute(
        "select e.project_id, e.payload -> 'assignee_ids' ->> 0 as assignee,"
        " e.payload -> 'label_ids' ->> 0 as label from event e"
        " where e.team_id = %s and e.kind = 'task.created'"
        " and jsonb_array_length(e.payload -> 'assignee_ids') > 0"
        " and jsonb_array_length(e.payload -> 'label_ids') > 0 limit 1",
        (team,),
    ).fetchone()
    assert row is not None
    return row
