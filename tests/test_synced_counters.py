"""API rate-limit counters with Redis: counted in process memory, merged into Redis in the
background (``teamboard.kit.ratelimit.SyncedCounters``).

The request path must not wait for Redis, a process's own counts must be exact at once,
other processes' spending must arrive within the sync interval, and a Redis outage must
lose no count.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager

from teamboard.app import create_app
from teamboard.config import Settings
from teamboard.kit.ratelimit import Count, RedisCounterStore, SyncedCounters

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL"),
]
WINDOW = 120
SYNC_DEADLINE_SECONDS = 5.0


@pytest.fixture
async def redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(os.environ["REDIS_URL"])
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"tb-test-{secrets.token_hex(4)}:"


class CountingStore:
    """The real Redis store, with its round trips counted, an outage switch, and a gate that
    holds round trips (to act while one is under way)."""

    def __init__(self, store: RedisCounterStore) -> None:
        self.store = store
        self.trips = 0
        self.down = False
        self.fail_on: int | None = None  # the round trip that fails
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = asyncio.Event()

    async def spend(self, charges: Sequence[tuple[str, int]], window_seconds: int) -> list[Count]:
        self.trips += 1
        if self.down or self.trips == self.fail_on:
            raise ConnectionError("redis is down")
        self.waiting.set()
        await self.gate.wait()
        return await self.store.spend(charges, window_seconds)

    async def aclose(self) -> None:
        return None


async def _stored(redis: aioredis.Redis, key: str) -> int:
    return int(await redis.get(key) or 0)


async def _values(counters: SyncedCounters, *keys: str) -> list[int]:
    """Read through ``totals``, what the API's limiter calls (``spend`` shares its count)."""
    return counters.totals([(key, 0) for key in keys], WINDOW)


async def _until(condition: Any, what: str) -> None:
    """Wait (bounded) until ``condition()`` (a coroutine function) is true."""
    deadline = time.monotonic() + SYNC_DEADLINE_SECONDS
    while not await condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def test_a_process_counts_exactly_without_a_round_trip(
    redis: aioredis.Redis, prefix: str
) -> None:
    shared = CountingStore(RedisCounterStore(redis, prefix))
    counters = SyncedCounters(shared, interval=60)  # no background sync within the test
    assert [c.value for c in await counters.spend([("a", 3), ("b", 1)], WINDOW)] == [3, 1]
    assert [c.value for c in await counters.spend([("a", 2)], WINDOW)] == [5]
    assert shared.trips == 0
    assert await _stored(redis, prefix + "a") == 0
    await counters.sync()
    assert shared.trips == 1
    assert (await _stored(redis, prefix + "a"), await _stored(redis, prefix + "b")) == (5, 1)
    assert await _values(counters, "a", "b") == [5, 1]  # nothing counted twice
    assert 1 <= (await counters.spend([("a", 0)], WINDOW))[0].reset_after <= WINDOW + 1
    await counters.aclose()


async def test_processes_see_each_others_spending_after_a_sync(
    redis: aioredis.Redis, prefix: str
) -> None:
    one = SyncedCounters(RedisCounterStore(redis, prefix), interval=60)
    two = SyncedCounters(RedisCounterStore(redis, prefix), interval=60)
    await one.spend([("k", 4)], WINDOW)
    await two.spend([("k", 1)], WINDOW)
    assert (await _values(one, "k"), await _values(two, "k")) == ([4], [1])
    await one.sync()
    await two.sync()
    assert await _values(two, "k") == [5]  # its sync brought back one's 4
    assert await _values(one, "k") == [4]  # one has not synced since two spent
    await one.sync()
    assert await _values(one, "k") == [5]
    await two.spend([("k", 2)], WINDOW)  # spent while a sync is under way: counted once
    sending = asyncio.create_task(two.sync())
    await asyncio.sleep(0)
    assert await _values(two, "k") == [7]
    await two.spend([("k", 1)], WINDOW)
    await sending
    assert await _values(two, "k") == [8]
    await two.sync()
    assert await _stored(redis, prefix + "k") == 8
    await one.aclose()
    await two.aclose()


async def test_counts_reach_redis_in_the_background_also_after_an_idle_time(
    redis: aioredis.Redis, prefix: str
) -> None:
    counters = SyncedCounters(RedisCounterStore(redis, prefix), interval=0.05)

    async def idle() -> bool:
        return counters._syncing is None or counters._syncing.done()

    async def stored(total: int) -> bool:
        return await _stored(redis, prefix + "bg") == total

    await counters.spend([("bg", 7)], WINDOW)
    await _until(lambda: stored(7), "the counts never reached Redis")
    await _until(idle, "the background sync never stopped")
    await counters.spend([("bg", 2)], WINDOW)  # syncing starts again
    await _until(lambda: stored(9), "the counts of a new burst never reached Redis")
    await counters.aclose()


async def test_the_background_sync_retries_until_redis_is_back(
    redis: aioredis.Redis, prefix: str
) -> None:
    shared = CountingStore(RedisCounterStore(redis, prefix))
    shared.down = True
    counters = SyncedCounters(shared, interval=0.02, retry_seconds=0.05)
    await counters.spend([("retry", 3)], WINDOW)

    async def failed_twice() -> bool:
        return shared.trips >= 2

    async def arrived() -> bool:
        return await _stored(redis, prefix + "retry") == 3

    await _until(failed_twice, "the sync was not retried")
    await counters.spend([("retry", 0)], WINDOW)  # a read during the outage: nothing to send
    shared.down = False
    await _until(arrived, "the counts kept during the outage never reached Redis")
    await counters.aclose()
    assert await _stored(redis, prefix + "retry") == 3


async def test_a_total_is_forgotten_when_its_window_is_over(
    redis: aioredis.Redis, prefix: str
) -> None:
    counters = SyncedCounters(RedisCounterStore(redis, prefix), interval=60)
    await counters.spend([("short", 5)], 1)  # a one-second window
    await counters.sync()
    assert (await counters.spend([("short", 0)], 1))[0].value == 5
    await asyncio.sleep(2.1)  # Redis expired the key; so does the known total
    assert (await counters.spend([("short", 0)], 1))[0].value == 0
    await counters.aclose()


async def test_large_batches_go_in_chunks_and_a_failed_chunk_is_kept(
    redis: aioredis.Redis, prefix: str
) -> None:
    shared = CountingStore(RedisCounterStore(redis, prefix))
    counters = SyncedCounters(shared, interval=60, chunk=100)
    await counters.spend([(f"c{n}", 1) for n in range(250)], WINDOW)
    shared.fail_on = 2
    with pytest.raises(ConnectionError):
        await counters.sync()
    assert await _stored(redis, prefix + "c0") == 1  # the first chunk went through
    assert await _stored(redis, prefix + "c100") == 0
    assert await _values(counters, "c0", "c100", "c249") == [1, 1, 1]
    await counters.sync()
    assert shared.trips == 2 + 2  # 150 keys left: two chunks
    stored = [int(v or 0) for v in await redis.mget([f"{prefix}c{n}" for n in range(250)])]
    assert stored == [1] * 250  # none lost, none sent twice
    await counters.aclose()


async def test_closing_waits_for_a_sync_under_way_and_sends_nothing_twice(
    redis: aioredis.Redis, prefix: str
) -> None:
    shared = CountingStore(RedisCounterStore(redis, prefix))
    counters = SyncedCounters(shared, interval=0.01)
    shared.gate.clear()
    await counters.spend([("close", 4)], WINDOW)
    await asyncio.wait_for(shared.waiting.wait(), SYNC_DEADLINE_SECONDS)  # a sync is held
    await counters.spend([("close", 1)], WINDOW)
    await asyncio.wait_for(counters.sync(), 1)  # one sync at a time: nothing to do here
    assert shared.trips == 1
    closing = asyncio.create_task(counters.aclose())
    await asyncio.sleep(0.05)
    assert not closing.done()  # it waits for the round trip under way
    shared.gate.set()
    await asyncio.wait_for(closing, SYNC_DEADLINE_SECONDS)
    assert await _stored(redis, prefix + "close") == 5
    await counters.spend([("close", 1)], WINDOW)  # after closing: counted here only
    assert counters._syncing is None
    assert await _values(counters, "close") == [6]


async def test_an_outage_loses_no_count_and_limits_go_on_per_process(
    redis: aioredis.Redis, prefix: str
) -> None:
    shared = CountingStore(RedisCounterStore(redis, prefix))
    counters = SyncedCounters(shared, interval=60)
    await counters.spend([("o", 2)], WINDOW)
    shared.down = True
    with pytest.raises(ConnectionError):
        await counters.sync()
    assert await _values(counters, "o") == [2]  # still counted, now per process
    await counters.spend([("o", 3)], WINDOW)
    assert await _values(counters, "o") == [5]
    shared.down = False
    await counters.sync()
    assert await _stored(redis, prefix + "o") == 5
    assert await _values(counters, "o") == [5]
    await counters.aclose()


async def test_pending_keys_are_bounded_during_an_outage_and_spent_budgets_are_kept(
    redis: aioredis.Redis, prefix: str
) -> None:
    """Reads of many keys (an outsider naming random teams peeks their budgets) cannot push
    out a caller's spending: reads go first, then the smallest amounts."""
    shared = CountingStore(RedisCounterStore(redis, prefix))
    shared.down = True
    counters = SyncedCounters(shared, interval=60, max_keys=100)
    await counters.spend([("victim", 6)], WINDOW)
    with pytest.raises(ConnectionError):
        await counters.sync()  # a failed sync; spending goes on
    for n in range(1_000):
        await counters.spend([(f"team{n}", 0)], WINDOW)
        await counters.spend([(f"small{n}", 1)], WINDOW)
    assert len(counters._pending) <= 100
    assert await _values(counters, "victim") == [6]
    await counters.aclose()  # logs the failed final sync, does not raise


async def test_the_api_never_waits_for_redis_and_sends_its_counts_at_exit(
    settings: Settings, make_user: Any, make_team: Any, redis: aioredis.Redis
) -> None:
    """With a sync interval longer than the test, requests leave Redis untouched and the
    caller's budget still shrinks request by request; shutting down sends the counts."""
    owner, actor = make_user("synced-owner"), make_user("synced")  # actor: only used here
    team = await make_team(owner, members=[(actor, "member")])
    application = create_app(
        settings.model_copy(
            update={"redis_url": os.environ["REDIS_URL"], "rate_limit_sync_seconds": 10}
        )
    )
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            left = []
            for _ in range(3):
                response = await client.get(f"/api/v1/teams/{team}", headers=actor.headers)
                assert response.status_code == 200
                left.append(response.headers["ratelimit"].split(";")[1])
            assert left == [f"r={settings.rate_limit_per_caller - n}" for n in (1, 2, 3)]
            assert await redis.keys(f"tb:user:{actor.id}@*") == []
    keys = await redis.keys(f"tb:user:{actor.id}@*")
    assert sum(int(value) for value in await redis.mget(keys)) == 3
