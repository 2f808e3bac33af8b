"""API rate limits: cost-weighted budgets per caller and per team, IETF headers, 429s."""

from __future__ import annotations

import os
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager

from teamboard.app import create_app
from teamboard.config import Settings
from teamboard.kit import ratelimit
from teamboard.kit.ratelimit import RedisCounterStore

pytestmark = pytest.mark.asyncio
NEEDS_REDIS = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL")
API = "/api/v1"
CALLER, TEAM = 12, 20


COUNTERS = ["memory", pytest.param("redis", marks=NEEDS_REDIS)]


@pytest.fixture(params=COUNTERS)
async def limited(
    settings: Settings, request: pytest.FixtureRequest
) -> AsyncIterator[httpx.AsyncClient]:
    """An app with small budgets (fresh for each test), counting in process memory or in
    memory synced to Redis: a process's own counts are exact either way. The synced app does
    not sync during the test: the session's app charges the same callers in Redis (when it
    creates their teams), and those counts would arrive at a time that depends on the
    machine's speed (syncing is tested in ``test_synced_counters``)."""
    small = settings.model_copy(
        update={
            "redis_url": os.environ["REDIS_URL"] if request.param == "redis" else None,
            "rate_limit_sync_seconds": 10,
            "rate_limit_per_caller": CALLER,
            "rate_limit_per_team": TEAM,
            "rate_limit_window_seconds": 60,
        }
    )
    application = create_app(small)
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


def _remaining(response: httpx.Response) -> dict[str, int]:
    return {
        name: int(left)
        for name, left in re.findall(r'"(\w+)";r=(\d+);t=\d+', response.headers["ratelimit"])
    }


async def test_headers_report_policy_and_cost_weighted_use(
    limited: httpx.AsyncClient, make_user: Any, make_team: Any
) -> None:
    actor = make_user("rl-headers")
    team = await make_team(actor)
    read = await limited.get(f"{API}/teams/{team}", headers=actor.headers)
    assert read.status_code == 200
    assert read.headers["ratelimit-policy"] == f'"caller";q={CALLER};w=60, "team";q={TEAM};w=60'
    assert _remaining(read) == {"caller": CALLER - 1, "team": TEAM}  # team charged after
    # Each field once, listing both budgets (the same list as a line per budget).
    assert len(read.headers.get_list("ratelimit-policy")) == 1
    assert len(read.headers.get_list("ratelimit")) == 1
    listed = await limited.get(f"{API}/teams/{team}/members", headers=actor.headers)
    assert listed.status_code == 200
    assert _remaining(listed) == {"caller": CALLER - 1 - 5, "team": TEAM - 1}


async def test_an_exhausted_caller_gets_429_with_retry_after(
    limited: httpx.AsyncClient, make_user: Any, make_team: Any
) -> None:
    actor = make_user("rl-caller")
    team = await make_team(actor)
    statuses = [
        (await limited.get(f"{API}/teams/{team}", headers=actor.headers)).status_code
        for _ in range(CALLER + 1)
    ]
    assert statuses == [200] * CALLER + [429]
    refused = await limited.get(f"{API}/teams/{team}", headers=actor.headers)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 2 * 60  # the window slides
    assert _remaining(refused)["caller"] == 0


async def test_outsiders_cannot_spend_a_teams_budget(
    limited: httpx.AsyncClient, make_user: Any, make_team: Any
) -> None:
    member, outsider = make_user("rl-member"), make_user("rl-outsider")
    team = await make_team(member)
    for _ in range(CALLER):
        response = await limited.get(f"{API}/teams/{team}", headers=outsider.headers)
        assert response.status_code == 404
    ok = await limited.get(f"{API}/teams/{team}", headers=member.headers)
    assert ok.status_code == 200
    assert _remaining(ok)["team"] == TEAM


async def test_members_share_the_team_budget(
    limited: httpx.AsyncClient, make_user: Any, make_team: Any
) -> None:
    members = [make_user(f"rl-share-{n}") for n in range(3)]
    team = await make_team(members[0], members=[(m, "member") for m in members[1:]])
    for actor in members[:2]:
        for _ in range(TEAM // 2):
            assert (await limited.get(f"{API}/teams/{team}", headers=actor.headers)).is_success
    refused = await limited.get(f"{API}/teams/{team}", headers=members[2].headers)
    assert refused.status_code == 429
    assert _remaining(refused) == {"caller": CALLER - 1, "team": 0}


@NEEDS_REDIS
async def test_redis_budgets_are_spent_atomically_and_expire() -> None:
    client = aioredis.from_url(os.environ["REDIS_URL"])
    store = RedisCounterStore(client, prefix=f"tb-test-{secrets.token_hex(4)}:")
    try:
        first = await store.spend([("a", 5), ("b", 2)], 60)
        second = await store.spend([("a", 1), ("b", 3)], 60)
        assert [c.value for c in first] == [5, 2]
        assert [c.value for c in second] == [6, 5]
        assert all(1 <= c.reset_after <= 60 for c in second)
    finally:
        await client.aclose()


async def _exhaust(client: httpx.AsyncClient, team: Any, members: list[Any]) -> None:
    """Spend the team's whole budget, spread over ``members`` (each caller has less)."""
    for n in range(TEAM):
        actor = members[n % len(members)]
        assert (await client.get(f"{API}/teams/{team}", headers=actor.headers)).is_success


async def test_a_teams_budget_is_hidden_from_outsiders(
    limited: httpx.AsyncClient, make_user: Any, make_team: Any
) -> None:
    """An outsider naming a team learns nothing of its budget: not its use (no ``team``
    field), not its exhaustion (404, as for a team that does not exist, never 429)."""
    members = [make_user(f"rl-hidden-{n}") for n in range(2)]
    outsider = make_user("rl-hidden-outsider")
    team = await make_team(members[0], members=[(members[1], "member")])
    await _exhaust(limited, team, members)
    assert (await limited.get(f"{API}/teams/{team}", headers=members[0].headers)).status_code == 429
    foreign = await limited.get(f"{API}/teams/{team}", headers=outsider.headers)
    missing = await limited.get(f"{API}/teams/{uuid.uuid4()}", headers=outsider.headers)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["code"] == missing.json()["code"]
    for response in (foreign, missing):
        assert response.headers["ratelimit-policy"] == f'"caller";q={CALLER};w=60'
        assert set(_remaining(response)) == {"caller"}


async def test_a_throttled_credential_is_refused_before_the_app(
    limited: httpx.AsyncClient, make_user: Any, make_team: Any
) -> None:
    """After a 429 the same credential is refused without SQL until the window resets, on
    that team's routes only; another member's credential is refused once by the budget."""
    first, helper, second = (make_user(f"rl-edge-{n}") for n in range(3))
    team = await make_team(first, members=[(helper, "member"), (second, "member")])
    other = await make_team(first)
    await _exhaust(limited, team, [first, helper])
    refused = await limited.get(f"{API}/teams/{team}", headers=first.headers)
    assert refused.status_code == 429
    assert int(refused.headers["x-sql-statements"]) == 1  # the membership check
    again = await limited.get(f"{API}/teams/{team}/projects", headers=first.headers)
    assert again.status_code == 429
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["code"] == "rate_limited"
    assert again.json()["instance"] == f"{API}/teams/{team}/projects"
    assert 1 <= int(again.headers["retry-after"]) <= 2 * 60
    assert again.headers["ratelimit"].startswith('"team";r=0;t=')
    assert again.headers["x-sql-statements"] == "0"  # not even the membership check
    elsewhere = await limited.get(f"{API}/teams/{other}", headers=first.headers)
    assert elsewhere.status_code == 200  # the team's budget, not the caller's
    assert (await limited.get(f"{API}/teams/{team}", headers=second.headers)).status_code == 429
    edge = await limited.get(f"{API}/teams/{team}", headers=second.headers)
    assert edge.status_code == 429
    assert edge.headers["x-sql-statements"] == "0"


async def test_a_caller_throttled_everywhere_is_refused_everywhere_at_the_edge(
    limited: httpx.AsyncClient, make_user: Any, make_team: Any
) -> None:
    actor = make_user("rl-edge-caller")
    teams = [await make_team(actor) for _ in range(2)]
    for _ in range(CALLER):
        assert (await limited.get(f"{API}/teams/{teams[0]}", headers=actor.headers)).is_success
    assert (await limited.get(f"{API}/teams/{teams[0]}", headers=actor.headers)).status_code == 429
    for path in (f"{API}/teams/{teams[1]}", f"{API}/me", f"{API}/teams"):
        response = await limited.get(path, headers=actor.headers)
        assert response.status_code == 429, path
        assert response.headers["ratelimit"].startswith('"caller";r=0;t=')
        assert response.headers["x-sql-statements"] == "0"


async def _charge(limiter: ratelimit.RateLimiter, budget: ratelimit.Budget, cost: int) -> int:
    return limiter.settle([budget], cost)[0].used


async def _peek(
    limiter: ratelimit.RateLimiter, budget: ratelimit.Budget, room: int = 1
) -> ratelimit.Usage:
    return limiter.settle((), 0, [budget], room)[0]


async def test_budgets_slide_instead_of_refilling_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The previous window's use fades over the current one: a budget spent at the end of a
    window comes back gradually, not whole at the next window's start (a throttled client
    is spread evenly over time, instead of hitting the server in bursts)."""
    now = [60_000.0 + 59]  # the last second of a window
    monkeypatch.setattr(ratelimit.time, "time", lambda: now[0])
    limiter = ratelimit.RateLimiter(ratelimit.MemoryCounterStore(), window_seconds=60)
    budget = ratelimit.Budget("team", f"team:{uuid.uuid4()}", 10)
    assert await _charge(limiter, budget, 10) == 10
    now[0] = 60_060.0  # the next window starts: all of the previous one still overlaps
    spent = await _peek(limiter, budget)
    assert (spent.used, spent.remaining, spent.reset_after) == (10, 0, 6)  # 1 unit in 6 s
    now[0] = 60_090.0  # half-way: half of it has faded
    assert (await _peek(limiter, budget)).remaining == 5
    assert await _charge(limiter, budget, 5) == 10
    assert (await _peek(limiter, budget, room=5)).reset_after == 30  # 10 → 5 + 5 at 60_120
    limiter.add([budget], 2)  # a charge after the fact: counted, not read back
    assert (await _peek(limiter, budget)).used == 12
    now[0] = 60_180.0  # two windows later, nothing is left
    assert (await _peek(limiter, budget)).used == 0


async def test_fields_list_every_budget_and_one_policy_line_per_limits_not_per_caller() -> None:
    limiter = ratelimit.RateLimiter(ratelimit.MemoryCounterStore(), 60)
    for i in range(300):  # more callers than the kept lines: the line is shared by all
        caller = ratelimit.Budget("caller", f"user:{i}", 10)
        team = ratelimit.Budget("team", f"team:{i}", 100)
        fields = dict(
            limiter.headers([ratelimit.Usage(caller, 3, 5), ratelimit.Usage(team, 120, 7)])
        )
        assert fields[b"ratelimit-policy"] == b'"caller";q=10;w=60, "team";q=100;w=60'
        assert fields[b"ratelimit"] == b'"caller";r=7;t=5, "team";r=0;t=7'  # never below 0
    assert len(limiter._policies) == 1
