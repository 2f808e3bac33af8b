"""Dependencies going down (issue 7, point 5): PostgreSQL and Redis, under a running API.

The API runs under uvicorn on 127.0.0.1 (``tests.live``), against a private PostgreSQL
cluster of this module (``tests.reliability.pgcluster``: stopping it disturbs nobody) and
the machine's Redis, both reached through a fault proxy (``tests.reliability.faultproxy``).
The conftest fixtures (``make_user``, ``make_team``...) are pointed at them by overriding
``server_url``, ``db_urls``, ``settings``, ``client``, ``owner`` and ``password_hash``.

What is proved, with the issue's budgets:

* PostgreSQL stopped with ``-m immediate``: every kind of request (read, list, write,
  GraphQL, the SSE feed, readiness) answers 503 problem+json within 1 s; after the restart
  the same API instance serves again within 10 s, with no broken connection left in its pool.
* PostgreSQL black-holed (up, but its packets lost): requests fail with 503 within the
  configured connect and answer timeouts instead of hanging, and recover the same way.
* Redis refused or black-holed: reads and writes keep working (rate limits count per
  process), login fails closed (503 ``login_unavailable``), and everything uses Redis again
  once it is back, without a restart; the rate-limit counts of the outage reach Redis then.

Detection latency (time to the first 503) and recovery time are printed (``pytest -s``) for
the closing note. Short profile: one cycle per fault; long profile: several.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
import redis.asyncio as aioredis
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from teamboard.auth.passwords import PasswordHasher
from teamboard.config import Settings
from teamboard.ops import database
from teamboard.ops.database import DatabaseUrls
from tests.conftest import PASSWORD, Actor
from tests.dbsetup import test_settings
from tests.live import LiveServer, subscribe
from tests.profile import pick
from tests.reliability.faultproxy import FaultProxy
from tests.reliability.pgcluster import PrivateCluster, private_cluster
from tests.work import API, Board, make_board

DETECTION_BUDGET = 1.0  # seconds to a 503 once PostgreSQL is down (the budget)
RECOVERY_BUDGET = 10.0  # seconds to the first success after the restart (the budget)
# Timeouts of the app under test: small, so that a black hole is detected quickly.
CONNECT_TIMEOUT, ANSWER_TIMEOUT, STATEMENT_TIMEOUT_MS = 1.5, 2.5, 2000
REDIS_TIMEOUT = 0.5
# A black hole is detected by timeouts: the slowest path waits for one connection attempt
# and one answer (plus scheduling slack on a busy 2-core machine).
BLACKHOLE_BUDGET = CONNECT_TIMEOUT + ANSWER_TIMEOUT + 1.0
REDIS_DOWN_BUDGET = 4 * REDIS_TIMEOUT + 1.0  # a command and its one retry, for two calls
CYCLES = pick(1, 5)


# -- the private stack (overrides of the conftest fixtures) -------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivateCluster]:
    with private_cluster() as running:
        yield running


@pytest.fixture(scope="module")
async def pg_proxy(cluster: PrivateCluster) -> AsyncIterator[FaultProxy]:
    async with FaultProxy("127.0.0.1", cluster.port) as proxy:
        yield proxy


@pytest.fixture(scope="module")
async def redis_proxy() -> AsyncIterator[FaultProxy | None]:
    """A proxy in front of the machine's Redis (None without ``REDIS_URL``: the app then runs
    without Redis and the Redis test is skipped)."""
    url = os.environ.get("REDIS_URL")
    if not url:
        yield None
        return
    target = httpx.URL(url)
    async with FaultProxy(target.host or "127.0.0.1", target.port or 6379) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def server_url(cluster: PrivateCluster) -> str:
    return cluster.url


@pytest.fixture(scope="module")
def db_urls(server_url: str) -> DatabaseUrls:
    return database.prepare(test_settings(statement_timeout_ms=STATEMENT_TIMEOUT_MS), server_url)


def _through(url: str, proxy: FaultProxy) -> str:
    return make_conninfo(url, host=proxy.host, hostaddr=proxy.host, port=str(proxy.port))


@pytest.fixture(scope="module")
def settings(
    db_urls: DatabaseUrls,
    pg_proxy: FaultProxy,
    redis_proxy: FaultProxy | None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Settings:
    """The app reaches PostgreSQL and Redis through the proxies only."""
    redis_url = None
    if redis_proxy is not None:
        db = int(httpx.URL(os.environ["REDIS_URL"]).path.strip("/") or 0)
        redis_url = f"redis://{redis_proxy.host}:{redis_proxy.port}/{db}"
    return test_settings(
        database_url=db_urls.owner,
        database_app_url=_through(db_urls.app, pg_proxy),
        database_worker_url=db_urls.worker,
        data_dir=tmp_path_factory.mktemp("data"),
        redis_url=redis_url,
        statement_timeout_ms=STATEMENT_TIMEOUT_MS,
        database_connect_timeout_seconds=CONNECT_TIMEOUT,
        database_answer_timeout_seconds=ANSWER_TIMEOUT,
        redis_timeout_seconds=REDIS_TIMEOUT,
    )


@pytest.fixture(scope="module")
async def live(settings: Settings) -> AsyncIterator[LiveServer]:
    server = await LiveServer(settings).start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(scope="module")
async def client(live: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    timeout = httpx.Timeout(30.0)  # a guard only: the assertions use the budgets above
    async with httpx.AsyncClient(base_url=live.url, timeout=timeout) as c:
        yield c


@pytest.fixture
def owner(db_urls: DatabaseUrls) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """Per test: PostgreSQL restarts between tests, which ends every connection."""
    with psycopg.connect(db_urls.owner, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture(scope="module")
def password_hash(settings: Settings) -> str:
    return PasswordHasher(settings)._hasher.hash(PASSWORD)


@pytest.fixture
async def stack(
    client: httpx.AsyncClient,
    make_user: Callable[..., Actor],
    make_team: Callable[..., Awaitable[uuid.UUID]],
    pg_proxy: FaultProxy,
    redis_proxy: FaultProxy | None,
) -> AsyncIterator[Board]:
    """A board on the healthy stack; every fault is cleared afterwards."""
    yield await make_board(client, make_user, make_team)
    await pg_proxy.restore()
    if redis_proxy is not None:
        await redis_proxy.restore()


# -- requests of every kind -----------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One request: what it is called in the figures, and how to send it."""

    name: str
    method: str
    path: str
    body: Any = None
    ok: int = 200
    stream: bool = False  # the SSE feed: only the status and the first frame are read


def probes(board: Board, task_id: str) -> list[Probe]:
    team_query = "query($id: UUID!) { team(id: $id) { id name } }"
    return [
        Probe("read", "GET", board.task_path(task_id)),
        Probe("list", "GET", board.tasks),
        Probe("write", "POST", board.tasks, {"title": "written under faults"}, ok=201),
        Probe(
            "graphql",
            "POST",
            "/graphql",
            {"query": team_query, "variables": {"id": str(board.team)}},
        ),
        Probe("sse", "GET", f"{API}/teams/{board.team}/events/stream", stream=True),
        Probe("me", "GET", f"{API}/me"),
    ]


@dataclass
class Answer:
    status: int
    seconds: float
    body: dict[str, Any]
    content_type: str


async def send(client: httpx.AsyncClient, probe: Probe, actor: Actor) -> Answer:
    """Send ``probe`` as ``actor``; an open stream is closed after its first frame."""
    started = time.monotonic()
    body = None if probe.stream else probe.body
    request = client.build_request(probe.method, probe.path, json=body, headers=actor.headers)
    response = await client.send(request, stream=True)
    try:
        if probe.stream and response.status_code == 200:
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    break
            payload: dict[str, Any] = {}
        else:
            await response.aread()
            json = response.headers.get("content-type", "").endswith("json")
            payload = response.json() if json else {}
    finally:
        await response.aclose()
    return Answer(
        response.status_code,
        time.monotonic() - started,
        payload,
        response.headers.get("content-type", ""),
    )


def assert_unavailable(answer: Answer, probe: Probe, code: str, budget: float) -> None:
    assert answer.status == 503, (probe.name, answer)
    assert answer.content_type.startswith("application/problem+json"), (probe.name, answer)
    assert answer.body["code"] == code, (probe.name, answer)
    assert answer.seconds <= budget, (probe.name, answer.seconds)


async def assert_all_ok(client: httpx.AsyncClient, board: Board, task_id: str) -> None:
    for probe in probes(board, task_id):
        answer = await send(client, probe, board.alice)
        assert answer.status == probe.ok, (probe.name, answer)
    async with subscribe(client, board.team, board.alice.headers):
        pass


async def until_ok(client: httpx.AsyncClient, board: Board, task_id: str, within: float) -> float:
    """Poll a read every 50 ms until it succeeds; the seconds it took (bounded)."""
    started = time.monotonic()
    deadline = started + within
    while True:
        response = await client.get(board.task_path(task_id), headers=board.alice.headers)
        if response.status_code == 200:
            return time.monotonic() - started
        assert response.status_code == 503, response.text
        if time.monotonic() > deadline:
            raise AssertionError(f"not recovered within {within} s: {response.text}")
        await asyncio.sleep(0.05)


async def fill_pool(client: httpx.AsyncClient, board: Board, task_id: str, count: int) -> None:
    """Concurrent reads, so that the pool holds many connections when the fault starts."""
    responses = await asyncio.gather(
        *(client.get(board.task_path(task_id), headers=board.alice.headers) for _ in range(count))
    )
    assert [r.status_code for r in responses] == [200] * count


def report(case: str, **figures: float) -> None:
    shown = ", ".join(f"{name} {value * 1000:.0f} ms" for name, value in figures.items())
    print(f"\n[faults] {case}: {shown}")


# -- PostgreSQL ---------------------------------------------------------------------------


async def test_postgres_immediate_stop_answers_503_then_recovers(
    stack: Board, client: httpx.AsyncClient, cluster: PrivateCluster, settings: Settings
) -> None:
    board = stack
    task_id = str((await board.create())["id"])
    for cycle in range(CYCLES):
        await fill_pool(client, board, task_id, settings.pool_max_size)
        await asyncio.to_thread(cluster.stop, "immediate")
        down = time.monotonic()
        first_503: float | None = None
        slowest = 0.0
        for probe in [*probes(board, task_id), Probe("ready", "GET", "/health/ready")]:
            answer = await send(client, probe, board.alice)
            code = "not_ready" if probe.name == "ready" else "database_unavailable"
            assert_unavailable(answer, probe, code, DETECTION_BUDGET)
            first_503 = first_503 or time.monotonic() - down
            slowest = max(slowest, answer.seconds)
        restart = time.monotonic()
        start_seconds = await asyncio.to_thread(cluster.start)
        recovery = await until_ok(client, board, task_id, RECOVERY_BUDGET)
        since_restart = time.monotonic() - restart
        assert since_restart <= RECOVERY_BUDGET
        # The same instance serves everything again, with no broken connection pooled.
        await fill_pool(client, board, task_id, 2 * settings.pool_max_size)
        await assert_all_ok(client, board, task_id)
        report(
            f"postgres -m immediate, cycle {cycle + 1}",
            first_503=first_503 or 0.0,
            slowest_503=slowest,
            pg_start=start_seconds,
            recovery_after_ready=recovery,
            recovery_after_restart=since_restart,
        )


async def test_postgres_blackhole_fails_in_bounded_time(
    stack: Board, client: httpx.AsyncClient, pg_proxy: FaultProxy, settings: Settings
) -> None:
    board = stack
    task_id = str((await board.create())["id"])
    for cycle in range(CYCLES):
        await fill_pool(client, board, task_id, settings.pool_max_size)
        pg_proxy.blackhole()
        slowest = 0.0
        for probe in probes(board, task_id):
            answer = await send(client, probe, board.alice)
            assert_unavailable(answer, probe, "database_unavailable", BLACKHOLE_BUDGET)
            slowest = max(slowest, answer.seconds)
        pg_proxy.pass_through()
        recovery = await until_ok(client, board, task_id, RECOVERY_BUDGET)
        await fill_pool(client, board, task_id, 2 * settings.pool_max_size)
        await assert_all_ok(client, board, task_id)
        report(
            f"postgres black hole, cycle {cycle + 1}",
            slowest_503=slowest,
            recovery=recovery,
        )


# -- Redis ------------------------------------------------------------------------------------


async def login(client: httpx.AsyncClient, actor: Actor) -> httpx.Response:
    return await client.post(f"{API}/auth/login", json={"email": actor.email, "password": PASSWORD})


async def redis_counter(actor: Actor) -> int:
    """The caller's rate-limit use as Redis holds it (read directly, not via the proxy): the
    sum of its windows' counters (``RateLimiter`` keeps one per window)."""
    client = aioredis.from_url(os.environ["REDIS_URL"])
    try:
        keys = await client.keys(f"tb:user:{actor.id}@*")
        return sum(int(value or 0) for value in await client.mget(keys)) if keys else 0
    finally:
        await client.aclose()


@pytest.mark.parametrize("fault", ["refused", "blackhole"])
async def test_redis_down_keeps_reads_and_fails_login_closed(
    stack: Board, client: httpx.AsyncClient, redis_proxy: FaultProxy | None, fault: str
) -> None:
    if redis_proxy is None:
        pytest.skip("REDIS_URL is not set")
    board = stack
    task_id = str((await board.create())["id"])
    assert (await login(client, board.bob)).status_code == 200
    for cycle in range(CYCLES):
        at_start = await redis_counter(board.alice)
        if fault == "refused":
            await redis_proxy.refuse()
            redis_proxy.reset()
        else:
            redis_proxy.blackhole()
        down = time.monotonic()
        refused = await login(client, board.bob)
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "login_unavailable"
        login_503 = time.monotonic() - down
        slowest = 0.0
        for probe in probes(board, task_id):
            answer = await send(client, probe, board.alice)
            assert answer.status == probe.ok, (probe.name, answer)
            assert answer.seconds <= REDIS_DOWN_BUDGET, (probe.name, answer.seconds)
            slowest = max(slowest, answer.seconds)
        healed = time.monotonic()
        await redis_proxy.restore()
        while (response := await login(client, board.bob)).status_code != 200:
            assert response.status_code == 503, response.text
            assert time.monotonic() - healed <= RECOVERY_BUDGET, "login did not recover"
            await asyncio.sleep(0.05)
        login_recovery = time.monotonic() - healed
        # What was counted during the outage reaches Redis (each probe costs at least one
        # unit), with no further request.
        while await redis_counter(board.alice) < at_start + len(probes(board, task_id)):
            assert time.monotonic() - healed <= RECOVERY_BUDGET, "rate limits did not recover"
            await asyncio.sleep(0.05)
        await assert_all_ok(client, board, task_id)
        report(
            f"redis {fault}, cycle {cycle + 1}",
            login_503=login_503,
            slowest_read_or_write=slowest,
            login_recovery=login_recovery,
            ratelimit_recovery=time.monotonic() - healed,
        )
