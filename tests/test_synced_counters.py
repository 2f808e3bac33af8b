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
    """The real Redis store, with its round trips counted and an outage switch."""

    def __init__(self, store: RedisCounterStore) -> None:
        self.store = store
        self.trips = 0
        self.down = False

    async def spend(self, charges: Sequence[tuple[str, int]], window_seconds: int) -> list[Count]:
        self.trips += 1
        if self.down:
            raise ConnectionError("redis is down")
        return await self.store.spend(charges, window_seconds)

    async def aclose(self) -> None:
        return None


async def _stored(redis: aioredis.Redis, key: str) -> int:
    return int(await redis.get(key) or 0)


async def _values(counters: SyncedCounters, *keys: str) -> list[int]:
    return [count.value for count in await counters.spend([(key, 0) for key in keys], WINDOW)]


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


async def test_counts_reach_redis_in_the_background_and_the_syncing_stops_when_idle(
    redis: aioredis.Redis, prefix: str
) -> None:
    counters = SyncedCounters(RedisCounterStore(redis, prefix), interval=0.05)
    await counters.spend([("bg", 7)], WINDOW)
    deadline = time.monotonic() + SYNC_DEADLINE_SECONDS
    while await _stored(redis, prefix + "bg") != 7:
        assert time.monotonic() < deadline, "the counts never reached Redis"
        await asyncio.sleep(0.02)
    while counters._syncing is not None and not counters._syncing.done():
        assert time.monotonic() < deadline, "the background sync never stopped"
        await asyncio.sleep(0.02)
    await counters.aclose()


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


async def test_pending_keys_are_bounded_during_an_outage(
    redis: aioredis.Redis, prefix: str
) -> None:
    shared = CountingStore(RedisCounterStore(redis, prefix))
    shared.down = True
    counters = SyncedCounters(shared, interval=60, max_keys=100)
    for n in range(1_000):
        await counters.spend([(f"key{n}", 1)], WINDOW)
    assert len(counters._pending) <= 100
    assert await _values(counters, "key999") == [1]  # the newest are kept
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
