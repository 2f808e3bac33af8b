"""Fixed-window counters in Redis when configured, in process memory otherwise, and the API
rate limits built on them.

Used by login throttling and by :class:`RateLimiter`. A window's counter expires with the
window, so a blocked caller learns exactly when to retry (``Retry-After``). Without Redis
the counters are per process: with N workers a limit is effectively N times higher; API
rate limits also fall back to them while Redis is down (:class:`FallbackCounterStore`).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

logger = logging.getLogger("teamboard.kit.ratelimit")
T = TypeVar("T")


@dataclass(frozen=True)
class Count:
    value: int
    reset_after: int  # seconds until the window ends


class CounterStore(Protocol):
    async def get(self, key: str) -> Count: ...
    async def hit(self, key: str, window_seconds: int) -> Count: ...
    async def spend(self, charges: Sequence[tuple[str, int]], window_seconds: int) -> list[Count]:
        """Add each amount to its key's counter (one round trip for all)."""
        ...

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
        return (await self.spend([(key, 1)], window_seconds))[0]

    async def spend(self, charges: Sequence[tuple[str, int]], window_seconds: int) -> list[Count]:
        now = time.monotonic()
        self._prune(now)
        counts = []
        for key, amount in charges:
            value, expires = self._counts.get(key, (0, 0.0))
            if expires <= now:
                value, expires = 0, now + window_seconds
            self._counts[key] = (value + amount, expires)
            counts.append(Count(value + amount, int(expires - now) + 1))
        return counts

    async def reset(self, key: str) -> None:
        self._counts.pop(key, None)

    async def mark(self, key: str, ttl_seconds: int) -> None:
        self._marks[key] = time.monotonic() + ttl_seconds

    async def is_marked(self, key: str) -> bool:
        return self._marks.get(key, 0.0) > time.monotonic()


class RedisCounterStore:
    """Shared across processes and instances."""

    # INCRBY each key and start its window on first use, atomically for all keys.
    _SPEND = """
    local out = {}
    for i, key in ipairs(KEYS) do
        local value = redis.call('INCRBY', key, ARGV[i + 1])
        local ttl = redis.call('TTL', key)
        if ttl < 0 then
            redis.call('EXPIRE', key, ARGV[1])
            ttl = tonumber(ARGV[1])
        end
        out[#out + 1] = value
        out[#out + 1] = ttl
    end
    return out
    """

    def __init__(self, client: aioredis.Redis, prefix: str = "tb:") -> None:
        self._redis = client
        self._prefix = prefix
        self._spend = client.register_script(self._SPEND)

    async def get(self, key: str) -> Count:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self._prefix + key)
            pipe.ttl(self._prefix + key)
            value, ttl = await pipe.execute()
        return Count(int(value or 0), max(int(ttl), 0))

    async def hit(self, key: str, window_seconds: int) -> Count:
        return (await self.spend([(key, 1)], window_seconds))[0]

    async def spend(self, charges: Sequence[tuple[str, int]], window_seconds: int) -> list[Count]:
        keys = [self._prefix + key for key, _ in charges]
        args = [window_seconds, *(amount for _, amount in charges)]
        flat: list[Any] = await self._spend(keys=keys, args=args)
        return [Count(int(flat[i]), max(int(flat[i + 1]), 1)) for i in range(0, len(flat), 2)]

    async def reset(self, key: str) -> None:
        await self._redis.delete(self._prefix + key)

    async def mark(self, key: str, ttl_seconds: int) -> None:
        await self._redis.set(self._prefix + key, b"1", ex=ttl_seconds)

    async def is_marked(self, key: str) -> bool:
        return bool(await self._redis.exists(self._prefix + key))


class FallbackCounterStore:
    """A shared store (Redis) that degrades to another (process memory) while it fails.

    API rate limits must not turn a Redis outage into an API outage: while the primary
    fails, counts go to the fallback (limits become per process, as without Redis), and the
    primary is tried again ``retry_seconds`` after its last failure, so an unreachable Redis
    costs one timeout per interval rather than one per request. Login throttling does not
    use this: it fails closed (``teamboard.auth.throttle``).
    """

    def __init__(
        self, primary: CounterStore, fallback: CounterStore, retry_seconds: float = 1.0
    ) -> None:
        self._primary = primary
        self._fallback = fallback
        self._retry_seconds = retry_seconds
        self._retry_at = 0.0  # monotonic time before which the primary is not tried

    async def _use(self, call: Callable[[CounterStore], Awaitable[T]]) -> T:
        if time.monotonic() >= self._retry_at:
            try:
                return await call(self._primary)
            except (RedisError, OSError) as exc:
                self._retry_at = time.monotonic() + self._retry_seconds
                logger.warning("rate-limit store unavailable (%s); counting per process", exc)
        return await call(self._fallback)

    async def get(self, key: str) -> Count:
        return await self._use(lambda store: store.get(key))

    async def hit(self, key: str, window_seconds: int) -> Count:
        return await self._use(lambda store: store.hit(key, window_seconds))

    async def spend(self, charges: Sequence[tuple[str, int]], window_seconds: int) -> list[Count]:
        return await self._use(lambda store: store.spend(charges, window_seconds))

    async def reset(self, key: str) -> None:
        await self._use(lambda store: store.reset(key))

    async def mark(self, key: str, ttl_seconds: int) -> None:
        await self._use(lambda store: store.mark(key, ttl_seconds))

    async def is_marked(self, key: str) -> bool:
        return await self._use(lambda store: store.is_marked(key))


# ------------------------------------------------------------------------------------------
# API rate limits
# ------------------------------------------------------------------------------------------

ITEM_COST, LIST_COST, WRITE_COST = 1, 5, 2
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
E = TypeVar("E", bound=Callable[..., Any])


def costs(units: int) -> Callable[[E], E]:
    """Declare an endpoint's cost in rate-limit units (default: see :func:`route_cost`)."""

    def mark(endpoint: E) -> E:
        endpoint.rate_cost = units  # type: ignore[attr-defined]
        return endpoint

    return mark


def route_cost(scope: MutableMapping[str, Any]) -> int:
    """The request's cost: the endpoint's declared cost, else a read of one resource
    (a path ending in an id) 1, a list 5, a write 2."""
    route = scope.get("route")
    declared = getattr(getattr(route, "endpoint", None), "rate_cost", None)
    if isinstance(declared, int):
        return declared
    if scope["method"] not in SAFE_METHODS:
        return WRITE_COST
    return ITEM_COST if str(getattr(route, "path", "")).endswith("}") else LIST_COST


@dataclass(frozen=True)
class Budget:
    """One bucket: ``name`` as it appears in the headers, a store key, units per window."""

    name: str
    key: str
    limit: int


@dataclass(frozen=True)
class Usage:
    budget: Budget
    used: int
    reset_after: int

    @property
    def remaining(self) -> int:
        return max(0, self.budget.limit - self.used)


class RateLimiter:
    """Cost-weighted sliding windows, reported with the IETF ``RateLimit`` and
    ``RateLimit-Policy`` fields (draft-ietf-httpapi-ratelimit-headers).

    A budget's use is its current fixed window's count plus the previous window's, weighted
    by how much of the previous window still overlaps the last ``window`` seconds (the
    sliding-window counter). Unlike plain fixed windows, a client that keeps asking gets its
    budget spread evenly over time instead of all of it at each window's start, which would
    hit the server, and every other team on it, in bursts (``bench/noisy_neighbour.py``).
    Windows are aligned on the wall clock, so every process and instance sharing a store
    agrees on them; each window's counter lives two windows.
    """

    def __init__(self, store: CounterStore, window_seconds: int) -> None:
        self._store = store
        self.window = window_seconds

    async def charge(self, budgets: Sequence[Budget], cost: int) -> list[Usage]:
        """Add ``cost`` to each budget; their use afterwards (one store round trip)."""
        return await self.settle(budgets, cost)

    async def peek(self, budget: Budget, room: int = 1) -> Usage:
        """The budget's use now, without spending (``reset_after``: when ``room`` fits)."""
        return (await self.settle((), 0, [budget], room))[0]

    async def settle(
        self,
        charged: Sequence[Budget],
        cost: int,
        peeked: Sequence[Budget] = (),
        room: int = 1,
    ) -> list[Usage]:
        """Add ``cost`` to each ``charged`` budget and read each ``peeked`` one (as
        :meth:`peek` with ``room``), in one store round trip: the usages, charged first.

        A request checks its caller's budget and its team's before it runs; doing both in
        one trip saves a Redis round trip per request.
        """
        now = time.time()
        index = int(now // self.window)
        elapsed = now - index * self.window
        budgets = [*charged, *peeked]
        if not budgets:
            return []
        charges = [(f"{b.key}@{index}", cost) for b in charged]
        charges += [(f"{b.key}@{index}", 0) for b in peeked]
        charges += [(f"{b.key}@{index - 1}", 0) for b in budgets]  # read with the same trip
        counts = await self._store.spend(charges, 2 * self.window)
        current, previous = counts[: len(budgets)], counts[len(budgets) :]
        rooms = [1] * len(charged) + [room] * len(peeked)
        return [
            self._usage(budget, before.value, now_.value, elapsed, budget_room)
            for budget, now_, before, budget_room in zip(
                budgets, current, previous, rooms, strict=True
            )
        ]

    def _usage(
        self, budget: Budget, previous: int, current: int, elapsed: float, room: int
    ) -> Usage:
        """``reset_after``: seconds until ``room`` more units fit when the budget is spent,
        else until the current window ends."""
        weight = 1 - elapsed / self.window
        used = math.ceil(previous * weight + current - 1e-9)
        allowed = budget.limit - room
        if used <= allowed:
            return Usage(budget, used, max(1, math.ceil(self.window - elapsed)))
        if current <= allowed and previous > 0:  # the previous window's share fades first
            wait = self.window * (1 - (allowed - current) / previous) - elapsed
        else:  # then this window's count, once it has become the previous one
            wait = self.window - elapsed + max(0.0, self.window * (1 - allowed / max(current, 1)))
        return Usage(budget, used, max(1, math.ceil(wait)))

    def headers(self, usages: Sequence[Usage]) -> list[tuple[bytes, bytes]]:
        policy = self._policy(tuple((u.budget.name, u.budget.limit) for u in usages))
        state = ", ".join(f'"{u.budget.name}";r={u.remaining};t={u.reset_after}' for u in usages)
        return [(b"ratelimit-policy", policy), (b"ratelimit", state.encode())]

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one limiter per process, few policies
    def _policy(self, budgets: tuple[tuple[str, int], ...]) -> bytes:
        return ", ".join(f'"{name}";q={limit};w={self.window}' for name, limit in budgets).encode()
