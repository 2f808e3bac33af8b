"""The connection pool: bounded size, FIFO waiters, bounded waits, no leaked connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from teamboard.app import create_app
from teamboard.config import Settings
from teamboard.db import Database
from teamboard.dbpool import ConnectionPool, PoolTimeout

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def small_db(settings: Settings) -> AsyncIterator[Database]:
    assert settings.database_app_url
    small = settings.model_copy(update={"pool_max_size": 2, "pool_timeout_seconds": 0.3})
    database = Database(settings.database_app_url, small)
    await database.open()
    yield database
    await database.close()


def _pool(database: Database) -> ConnectionPool:
    pool: ConnectionPool = database._pool
    return pool


async def test_size_is_bounded_and_waits_time_out(small_db: Database) -> None:
    first, second = await small_db.acquire(), await small_db.acquire()
    assert _pool(small_db).size == 2
    with pytest.raises(PoolTimeout):
        await small_db.acquire()
    small_db.release(first)
    small_db.release(second)
    assert _pool(small_db).size == 2


async def test_waiters_are_served_in_order(small_db: Database) -> None:
    held = [await small_db.acquire(), await small_db.acquire()]
    order: list[int] = []

    async def wait(n: int) -> None:
        conn = await small_db.acquire()
        order.append(n)
        small_db.release(conn)

    waiters = [asyncio.create_task(wait(n)) for n in range(4)]
    await asyncio.sleep(0.01)
    for conn in held:
        small_db.release(conn)
    await asyncio.gather(*waiters)
    assert order == [0, 1, 2, 3]


async def test_a_cancelled_waiter_passes_its_connection_on(small_db: Database) -> None:
    held = [await small_db.acquire(), await small_db.acquire()]
    cancelled = asyncio.create_task(small_db.acquire())
    served = asyncio.create_task(small_db.acquire())
    await asyncio.sleep(0.01)
    small_db.release(held[0])  # handed to the first waiter...
    cancelled.cancel()  # ...which is cancelled before it runs
    conn = await asyncio.wait_for(served, 1)
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    small_db.release(conn)
    small_db.release(held[1])
    assert _pool(small_db).size == 2


async def test_unusable_connections_are_terminated_and_replaced(small_db: Database) -> None:
    conn = await small_db.acquire()
    before = _pool(small_db).size
    small_db.release(conn, reusable=False)
    assert conn.is_closed()
    assert _pool(small_db).size == before - 1
    fresh = await small_db.acquire()
    assert fresh is not conn
    assert await fresh.fetchval("select 1") == 1
    small_db.release(fresh)


async def test_an_interrupted_statement_never_returns_its_connection(small_db: Database) -> None:
    tx = small_db.unit(write=True)
    task = asyncio.create_task(tx.fetch_value("select pg_sleep(5)"))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await tx.finish(commit=False)
    idle = [conn for conn, _ in _pool(small_db)._idle]
    assert all(not conn.is_closed() for conn in idle)
    async with small_db.transaction(write=False) as read:
        assert await read.fetch_value("select 1") == 1


async def test_an_exhausted_pool_answers_503(
    settings: Settings, make_user: Any, make_team: Any
) -> None:
    owner = make_user("pool-503")
    team = await make_team(owner)
    tight = settings.model_copy(update={"pool_max_size": 1, "pool_timeout_seconds": 0.2})
    application = create_app(tight)
    async with LifespanManager(application):
        database: Database = application.state.services.db
        held = await database.acquire()
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get(f"/api/v1/teams/{team}", headers=owner.headers)
            assert response.status_code == 503
            assert response.json()["code"] == "database_unavailable"
            assert response.headers["retry-after"] == "1"
            database.release(held)
            again = await client.get(f"/api/v1/teams/{team}", headers=owner.headers)
            assert again.status_code == 200
