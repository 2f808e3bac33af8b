"""Fixed-window counters in Redis when configured, in process memory otherwise, and the API
rate limits built on them.

Used by login throttling and by :class:`RateLimiter`. A window's counter expires with the
window, so a blocked caller learns exactly when to retry (``Retry-After``). Without Redis
the counters are per process: with N workers a limit is effectively N times higher. With
Redis, API rate limits count in process memory and merge into Redis in the background
(:class:`SyncedCounters`); login throttling asks Redis on every attempt and fails closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import time
from collections.abc import Callable, MutableMapping, Sequence
from typing import Any, NamedTuple, Protocol, TypeVar

import redis.asyncio as aioredis

logger = logging.getLogger("teamboard.kit.ratelimit")


class Count(NamedTuple):
    value: int
    reset_after: int  # seconds until the window ends


class Counters(Protocol):
    """A store that may be shared (Redis): what :class:`SyncedCounters` merges into."""

    async def spend(self, charges: Sequence[tuple[str, int]], window_seconds: int) -> list[Count]:
        """Add each amount to its key's counter (one round trip for all); the totals after."""
        ...

    async def aclose(self) -> None:
        """Send what is held locally (a shared client is closed by its owner)."""
        ...


class LocalCounters(Protocol):
    """A store that counts in process memory and answers at once: the API rate limits'
    (every request counts twice; an ``await`` per count cost more than the counting)."""

    def totals(self, charges: Sequence[tuple[str, int]], window_seconds: int) -> list[int]:
        """Add each amount to its key's counter; the totals after, without any I/O."""
        ...

    async def aclose(self) -> None: ...


class CounterStore(Counters, Protocol):
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
        return (await self.spend([(key, 1)], window_seconds))[0]

    async def spend(self, charges: Sequence[tuple[str, int]], window_seconds: int) -> list[Count]:
        now = time.monotonic()
        return [
            Count(value, int(expires - now) + 1)
            for value, expires in self._add(charges, window_seconds, now)
        ]

    def totals(self, charges: Sequence[tuple[str, int]], window_seconds: int) -> list[int]:
        return [value for value, _ in self._add(charges, window_seconds, time.monotonic())]

    def _add(
        self, charges: Sequence[tuple[str, int]], window_seconds: int, now: float
    ) -> list[tuple[int, float]]:
        self._prune(now)
        counts = []
        for key, amount in charges:
            value, expires = self._counts.get(key, (0, 0.0))
            if expires <= now:
                value, expires = 0, now + window_seconds
            counts.append((value + amount, expires))
            self._counts[key] = counts[-1]
        return counts

    async def reset(self, key: str) -> None:
        self._counts.pop(key, None)

    async def mark(self, key: str, ttl_seconds: int) -> None:
        self._marks[key] = time.monotonic() + ttl_seconds

    async def is_marked(self, key: str) -> bool:
        return self._marks.get(key, 0.0) > time.monotonic()

    async def aclose(self) -> None:
        return None


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

    async def aclose(self) -> None:
        return None  # the client belongs to the application


_UNKNOWN = (0, 0.0)  # a key's shared total and expiry before the store has answered


class SyncedCounters:
    """Counters kept in process memory and merged into a shared store in the background.

    Every API request checks its caller's and its team's budgets. Asking Redis on every
    request cost more server CPU than the rest of a task read (bench/README.md, "Rate
    limits without a Redis round trip"). Here a request never waits for the shared store:
    it adds its cost to this process's pending amount, and reads a counter as the shared
    total last seen plus what this process has added since. Every ``interval`` seconds the
    pending amounts go to the shared store, which answers with the totals of every key
    used meanwhile (in round trips of at most ``chunk`` keys).

    So a process's own counts are exact at once, and another process's spending is seen
    at most about two intervals (and two round trips) late: it sends within an interval,
    this process learns within the next. With N processes a caller can overshoot a budget
    by what the other N - 1 serve it in that time.

    While the shared store fails, counting goes on here (per-process limits, as without
    Redis), the amounts are kept and sent once it answers again, tried every
    ``retry_seconds``. A round trip that failed after the store had applied it is sent
    again: counts may err high, never low. Memory is bounded by ``max_keys``: beyond it,
    pending reads (zero amounts) are dropped first, then the smallest amounts.
    """

    def __init__(
        self,
        shared: Counters,
        interval: float,
        *,
        retry_seconds: float = 1.0,
        max_keys: int = 100_000,
        chunk: int = 500,
    ) -> None:
        self._shared = shared
        self._interval = interval
        self._retry_seconds = retry_seconds
        self._max_keys = max_keys
        self._chunk = chunk
        self._known: dict[str, tuple[int, float]] = {}  # shared total, monotonic expiry
        self._pending: dict[str, int] = {}  # added here, not sent yet (0: only read)
        self._sending: dict[str, int] = {}  # in the sync under way, not acknowledged yet
        self._window_seconds = 1  # the longest asked for: a key never expires too soon
        self._syncing: asyncio.Task[None] | None = None
        self._closed = False
        self._failing = False

    async def spend(self, charges: Sequence[tuple[str, int]], window_seconds: int) -> list[Count]:
        now = time.monotonic()
        expiries: list[float] = []
        totals = self.totals(charges, window_seconds, now, expiries)
        return [
            Count(total, int(expires - now) + 1)
            for total, expires in zip(totals, expiries, strict=True)
        ]

    def totals(
        self,
        charges: Sequence[tuple[str, int]],
        window_seconds: int,
        now: float | None = None,
        expiries: list[float] | None = None,
    ) -> list[int]:
        """Count ``charges`` here; the totals (and, into ``expiries``, when each ends, from
        ``now``, the monotonic clock's time by default)."""
        if now is None:
            now = time.monotonic()
        if window_seconds > self._window_seconds:
            self._window_seconds = window_seconds
        pending_of, known, sending = self._pending, self._known, self._sending
        totals = []
        for key, amount in charges:
            pending = pending_of[key] = pending_of.get(key, 0) + amount
            total, expires = known.get(key, _UNKNOWN)
            if expires <= now:  # never seen, or its window is over: the counter starts now
                total, expires = 0, now + window_seconds
            totals.append(total + sending.get(key, 0) + pending if sending else total + pending)
            if expiries is not None:
                expiries.append(expires)
        if len(pending_of) > self._max_keys:
            self._shed()
        if not self._closed:
            task = self._syncing  # running on this loop: the common case, without a call
            if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
                self._keep_syncing()
        return totals

    async def sync(self) -> None:
        """Send the pending amounts and learn the shared totals; nothing to do while another
        sync is under way. Raises what the shared store raised, the amounts it did not
        acknowledge pending again."""
        if not self._pending or self._sending:
            return
        batch, self._pending = self._pending, {}
        self._sending = batch  # shrinks as the store acknowledges
        keys = list(batch)
        try:
            for start in range(0, len(keys), self._chunk):
                charges = [(key, batch[key]) for key in keys[start : start + self._chunk]]
                counts = await self._shared.spend(charges, self._window_seconds)
                self._learn(charges, counts)
                for key, _ in charges:
                    del batch[key]
        except BaseException:
            self._restore(batch)
            raise
        finally:
            self._sending = {}

    async def aclose(self) -> None:
        """Stop syncing in the background and send what is pending (one bounded attempt); a
        sync under way ends first, so nothing is sent twice. Later counts stay here."""
        self._closed = True
        task, self._syncing = self._syncing, None
        if task is not None and not task.done():
            if self._sending:
                await asyncio.wait([task])  # its round trip is bounded by the store's timeout
            else:
                task.cancel()  # it is waiting for its next sync
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        try:
            await self.sync()
        except Exception:
            logger.warning("rate-limit counts not sent to the shared store at exit", exc_info=True)

    def _learn(self, charges: Sequence[tuple[str, int]], counts: Sequence[Count]) -> None:
        now = time.monotonic()
        if len(self._known) + len(charges) > self._max_keys:
            live = {key: known for key, known in self._known.items() if known[1] > now}
            if len(live) + len(charges) > self._max_keys:  # all live: keep the newest half
                live = dict(list(live.items())[len(live) // 2 :])
            self._known = live
        for (key, _), count in zip(charges, counts, strict=True):
            self._known[key] = (count.value, now + count.reset_after)

    def _restore(self, unsent: dict[str, int]) -> None:
        """Put amounts a failed sync did not send back before the newer ones (reads are
        not kept: the next request reads again)."""
        merged = {key: amount for key, amount in unsent.items() if amount}
        for key, amount in self._pending.items():
            merged[key] = merged.get(key, 0) + amount
        self._pending = merged

    def _shed(self) -> None:
        """Bound the pending keys (a long outage of the shared store): drop the reads, then
        keep the largest half of the amounts, those nearest their limits."""
        kept = {key: amount for key, amount in self._pending.items() if amount}
        if len(kept) > self._max_keys // 2:
            kept = dict(heapq.nlargest(self._max_keys // 2, kept.items(), key=lambda kv: kv[1]))
        self._pending = kept

    def _keep_syncing(self) -> None:
        """Start syncing on the running loop (none yet, the last sync ended, or it ran on
        another loop, which a test's loop may have closed)."""
        self._syncing = asyncio.get_running_loop().create_task(self._sync_while_pending())

    async def _sync_while_pending(self) -> None:
        delay = self._interval
        while self._pending and not self._closed:
            await asyncio.sleep(delay)
            try:
                await self.sync()
            except Exception as exc:
                if not self._failing:
                    logger.warning(
                        "rate-limit store unavailable (%s: %s); counting per process",
                        type(exc).__name__,
                        exc,
                    )
                self._failing, delay = True, self._retry_seconds
            else:
                if self._failing:
                    logger.warning("rate-limit store available again")
                self._failing, delay = False, self._interval


# ------------------------------------------------------------------------------------------
# API rate limits
# ------------------------------------------------------------------------------------------

ITEM_COST, LIST_COST, WRITE_COST = 1, 5, 2
#: ``RateLimit-Policy`` lines kept: one per sequence of budget names and limits, a handful
#: (the limits are settings; a GraphQL request lists one team per team it reached).
_MAX_POLICY_SHAPES = 256
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


class Budget(NamedTuple):
    """One bucket: ``name`` as it appears in the headers, a store key, units per window."""

    name: str
    key: str
    limit: int


class Usage(NamedTuple):
    budget: Budget
    used: int
    reset_after: int

    @property
    def remaining(self) -> int:
        return max(0, self.budget.limit - self.used)


#: ``_new_usage(Usage, (budget, used, reset_after))`` is ``Usage(budget, used,
#: reset_after)`` without the Python-level ``__new__`` a named tuple's class has (every
#: request builds one or two).
_new_usage = tuple.__new__


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

    def __init__(self, store: LocalCounters, window_seconds: int) -> None:
        self._store = store
        self.window = window_seconds
        self._suffixes = (-1, "", "")  # a window's index and its keys' current, previous suffix
        self._policies: dict[tuple[tuple[str, int], ...], bytes] = {}  # per names and limits

    async def aclose(self) -> None:
        await self._store.aclose()

    def add(self, budgets: Sequence[Budget], cost: int) -> None:
        """Add ``cost`` to each budget without reading it back (a charge after the fact)."""
        current = self._window(time.time())[1]
        charges = []
        for budget in budgets:  # a loop, not a comprehension: see settle
            charges.append((budget.key + current, cost))
        self._store.totals(charges, 2 * self.window)

    def settle(
        self,
        charged: Sequence[Budget],
        cost: int,
        peeked: Sequence[Budget] = (),
        room: int = 1,
    ) -> list[Usage]:
        """Add ``cost`` to each ``charged`` budget and read each ``peeked`` one, in one call
        of the store: the usages, charged first (a peeked usage's ``reset_after`` says when
        ``room`` more units fit).

        A request checks its caller's budget and its team's before it runs, both in this
        one call (the store counts in memory: nothing waits for Redis).
        """
        budgets = [*charged, *peeked]
        if not budgets:
            return []
        now = time.time()
        index, current, previous = self._window(now)
        window = self.window
        elapsed = now - index * window
        # Loops rather than comprehensions, and the usual usage written out here: each
        # comprehension and each call costs about a thousand instructions, for one or two
        # budgets per request (every request comes through here).
        charges = []
        for budget in charged:
            charges.append((budget.key + current, cost))
        for budget in peeked:
            charges.append((budget.key + current, 0))
        for budget in budgets:  # the previous windows, read in the same call
            charges.append((budget.key + previous, 0))
        totals = self._store.totals(charges, 2 * window)
        older, first_peeked = len(budgets), len(charged)
        weight = 1 - elapsed / window
        until_next = max(1, math.ceil(window - elapsed))
        usages = []
        for i, budget in enumerate(budgets):
            wanted = 1 if i < first_peeked else room
            used = math.ceil(totals[older + i] * weight + totals[i] - 1e-9)
            if used <= budget.limit - wanted:  # room left: reset when this window ends
                usages.append(_new_usage(Usage, (budget, used, until_next)))
            else:
                previous_total, current_total = totals[older + i], totals[i]
                usages.append(
                    self._spent(budget, used, previous_total, current_total, elapsed, wanted)
                )
        return usages

    def _window(self, now: float) -> tuple[int, str, str]:
        """The window ``now`` falls in: its index and the key suffixes of it and the one
        before (kept until the window changes)."""
        index = int(now // self.window)
        if index != self._suffixes[0]:
            self._suffixes = (index, f"@{index}", f"@{index - 1}")
        return self._suffixes

    def _spent(
        self, budget: Budget, used: int, previous: int, current: int, elapsed: float, room: int
    ) -> Usage:
        """The usage of a budget without ``room`` more units (``previous`` and ``current``
        windows' counts): ``reset_after`` says when they fit."""
        allowed = budget.limit - room
        if current <= allowed and previous > 0:  # the previous window's share fades first
            wait = self.window * (1 - (allowed - current) / previous) - elapsed
        else:  # then this window's count, once it has become the previous one
            wait = self.window - elapsed + max(0.0, self.window * (1 - allowed / max(current, 1)))
        return Usage(budget, used, max(1, math.ceil(wait)))

    def headers(self, usages: Sequence[Usage]) -> list[tuple[bytes, bytes]]:
        """The ``RateLimit-Policy`` and ``RateLimit`` fields of ``usages``, in their order
        (``r`` is ``Usage.remaining``, written out: every response has these fields, and
        each call or comprehension less is about a thousand instructions).

        The policy line depends on the budgets' names and limits only, and is kept."""
        policies: list[tuple[str, int]] = []
        state = []
        for budget, used, reset_after in usages:
            policies.append((budget.name, budget.limit))
            left = budget.limit - used
            state.append(f'"{budget.name}";r={left if left > 0 else 0};t={reset_after}')
        shape = tuple(policies)  # names and limits only: the same few lines for everyone
        policy = self._policies.get(shape)
        if policy is None:
            text = ", ".join(f'"{name}";q={limit};w={self.window}' for name, limit in shape)
            policy = text.encode()
            if len(self._policies) < _MAX_POLICY_SHAPES:
                self._policies[shape] = policy
        return [(b"ratelimit-policy", policy), (b"ratelimit", ", ".join(state).encode())]


class ResponseUsages:
    """The budgets a request's response reports, in its ``RateLimit`` fields: those checked
    before it ran (the caller's, and a team's that refused it), and the team charges due
    once it has succeeded, which :meth:`finish` makes and then reports too.

    One record per request, however many times it spends (GraphQL spends per team), and the
    fields built once, when the response starts: one ``RateLimit-Policy`` and one
    ``RateLimit`` line listing every budget, the same list as one line per budget.
    """

    __slots__ = ("_limiter", "due", "shown")

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter
        self.shown: list[Usage] = []
        self.due: list[tuple[Budget, int, Usage]] = []  # budget, cost, usage before it

    def finish(self, succeeded: bool) -> list[tuple[bytes, bytes]]:
        """The response's fields; when it ``succeeded``, the due charges are made (each on
        its own: a charge that fails is logged, and the others and the fields stand)."""
        due, self.due = self.due, []  # made now, or dropped with the failure: never twice
        shown = self.shown
        if succeeded and due:
            shown = list(shown)
            for budget, cost, usage in due:
                try:
                    self._limiter.add([budget], cost)
                except Exception:
                    logger.warning("a team's rate-limit charge failed", exc_info=True)
                shown.append(usage)
        return self._limiter.headers(shown) if shown else []
