"""Fixed-window counters in Redis when configured, in process memory otherwise.

Used by login throttling (and the API rate limits built on it). A window's counter expires
with the window, so a blocked caller learns exactly when to retry (``Retry-After``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis


@dataclass(frozen=True)
class Count:
    value: int
    reset_after: int  # seconds until the window ends


class CounterStore(Protocol):
    async def get(self, key: str) -> Count: ...
    async def hit(self, key: str, window_seconds: int) -> Count: ...
    async def reset(self, key: str) -> None: ...
    async def mark(self, key: str, ttl_seconds: int) -> None: ...
    async def is_marked(self, key: str) -> bool: ...


class MemoryCounterStore:
    """Single-process store; bounded by pruning expired windows as it goes."""

    _MAX_KEYS = 100_000

    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, float]] = {}
        self._marks: dict[str, float] = {}

    def _prune(self, now: float) -> None:
        if len(self._counts) > self._MAX_KEYS:
            self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
        if len(self._marks) > self._MAX_KEYS:
            self._marks = {k: v for k, v in self._marks.items() if v > now}

    async def get(self, key: str) -> Count:
        now = time.monotonic()
        value, expires = self._counts.get(key, (0, now))
        if expires <= now:
            return Count(0, 0)
        return Count(value, int(expires - now) + 1)

    async def hit(self, key: str, window_seconds: int) -> Count:
        now = time.monotonic()
        self._prune(now)
        value, expires = self._counts.get(key, (0, 0.0))
        if expires <= now:
            value, expires = 0, now + window_seconds
        self._counts[key] = (value + 1, expires)
        return Count(value + 1, int(expires - now) + 1)

    async def reset(self, key: str) -> None:
        self._counts.pop(key, None)

    async def mark(self, key: str, ttl_seconds: int) -> None:
        self._marks[key] = time.monotonic() + ttl_seconds

    async def is_marked(self, key: str) -> bool:
        return self._marks.get(key, 0.0) > time.monotonic()


class RedisCounterStore:
    """Shared across processes and instances."""

    def __init__(self, client: aioredis.Redis, prefix: str = "tb:") -> None:
        self._redis = client
        self._prefix = prefix

    async def get(self, key: str) -> Count:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self._prefix + key)
            pipe.ttl(self._prefix + key)
            value, ttl = await pipe.execute()
        return Count(int(value or 0), max(int(ttl), 0))

    async def hit(self, key: str, window_seconds: int) -> Count:
        name = self._prefix + key
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(name)
            pipe.expire(name, window_seconds, nx=True)
            pipe.ttl(name)
            value, _, ttl = await pipe.execute()
        return Count(int(value), max(int(ttl), 1))

    async def reset(self, key: str) -> None:
        await self._redis.delete(self._prefix + key)

    async def mark(self, key: str, ttl_seconds: int) -> None:
        await self._redis.set(self._prefix + key, b"1", ex=ttl_seconds)

    async def is_marked(self, key: str) -> bool:
        return bool(await self._redis.exists(self._prefix + key))
