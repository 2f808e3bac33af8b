"""Commit-to-client latency of the realtime feed with many subscribers on one server.

    python -m bench.realtime_latency --subscribers 1000 --teams 50 --rate 20 --duration 20

Starts ``teamboard serve --workers 1`` on a free 127.0.0.1 port over a scratch database
(``bench.eventdata``), opens ``--subscribers`` SSE streams spread over ``--teams`` teams (one
user per stream, every user a member of their team), then appends ``--rate`` events per
second, round-robin over the teams, each in its own transaction on the app role with the
team context, exactly as a mutation does. The latency of one delivery is the time from the
writer's ``COMMIT`` returning to the subscriber having read the event's frame; every
delivery to every subscriber is one sample. The client and the server share the machine:
the client's own scheduling delays are included (a pessimistic figure).

Everything is bounded: connection set-up, the run (``--duration``), the drain after it; the
server is stopped by its own pid (SIGTERM, then SIGKILL of its group), the scratch database
and roles are dropped at the end, also on error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import asyncpg
import orjson

from bench.eventdata import (
    DEFAULT_DATABASE_URL,
    Scratch,
    Team,
    longest_other_write,
    scratch_teamboard,
    seed,
    serving,
)
from teamboard.auth.tokens import TokenService
from teamboard.db import connect_arguments

HOST = "127.0.0.1"


@dataclass
class Subscriber:
    user: uuid.UUID
    team: uuid.UUID
    token: str
    received: dict[int, float] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    errors: list[str] = field(default_factory=list)


async def sse_lines(
    port: int, team: uuid.UUID, token: str, errors: list[str]
) -> AsyncIterator[bytes]:
    """The lines of one team's SSE stream, over a raw connection (cheap enough for a
    thousand of them), until the server closes it; a refusal is added to ``errors``."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(
        f"GET /api/v1/teams/{team}/events/stream HTTP/1.1\r\nHost: {HOST}\r\n"
        f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    try:
        status = await reader.readline()
        if b" 200 " not in status:
            errors.append(status.decode(errors="replace").strip())
            return
        while (await reader.readline()) not in (b"\r\n", b""):
            pass  # headers
        while line := await reader.readline():
            yield line
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def listen(port: int, subscriber: Subscriber, stop: asyncio.Event) -> None:
    """One subscriber's stream: when each ``bench.tick`` arrives."""
    async for line in sse_lines(port, subscriber.team, subscriber.token, subscriber.errors):
        if stop.is_set():
            break
        if line.startswith(b"event: ready"):
            subscriber.ready.set()
        elif line.startswith(b"data: {") and b'"bench.tick"' in line:
            payload = orjson.loads(line[6:])["payload"]
            subscriber.received[int(payload["n"])] = time.monotonic()


async def write(
    urls_app: str,
    teams: Sequence[Team],
    rate: float,
    duration: float,
    commits: dict[int, tuple[float, int]],
) -> dict[int, uuid.UUID]:
    """Append events at ``rate`` per second, recording when each commit returned and its
    transaction id; returns the team of each event number."""
    conn = await asyncpg.connect(**connect_arguments(urls_app))
    sent: dict[int, uuid.UUID] = {}
    try:
        started = time.monotonic()
        n = 0
        while (now := time.monotonic()) < started + duration:
            due = started + n / rate
            if due > now:
                await asyncio.sleep(due - now)
            team = teams[n % len(teams)]
            async with conn.transaction():
                await conn.execute(
                    "select set_config('app.user_id', $1, true),"
                    " set_config('app.team_id', $2, true)",
                    str(team.members[0]),
                    str(team.id),
                )
                tx_id = await conn.fetchval(
                    "insert into event (team_id, id, actor_id, kind, payload)"
                    " values ($1, $2, $3, 'bench.tick', $4::jsonb) returning tx_id",
                    team.id,
                    uuid.uuid4(),
                    team.members[0],
                    orjson.dumps({"n": n}).decode(),
                )
            commits[n] = (time.monotonic(), int(tx_id))
            sent[n] = team.id
            n += 1
    finally:
        await conn.close()
    return sent


@dataclass
class Horizon:
    """Samples of the snapshot xmin, every ~2 ms: ``final_at`` tells when an event's
    transaction fell below it, i.e. when the feed could first read it."""

    samples: list[tuple[float, int]] = field(default_factory=list)

    def final_at(self, tx_id: int) -> float | None:
        return next((at for at, xmin in self.samples if xmin > tx_id), None)


async def sample_xmin(admin_url: str, stop: asyncio.Event, horizon: Horizon) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        while not stop.is_set():
            xmin = await conn.fetchval("select pg_snapshot_xmin(pg_current_snapshot())")
            horizon.samples.append((time.monotonic(), int(xmin)))
            await asyncio.sleep(0.002)
    finally:
        await conn.close()


def percentile(sorted_values: Sequence[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def measure(scratch: Scratch, port: int, args: argparse.Namespace) -> int:
    teams = seed(scratch.urls.owner, args.teams, args.subscribers // args.teams)
    tokens = TokenService(scratch.settings)
    subscribers = [
        Subscriber(user, team.id, tokens.issue_access(user, uuid.uuid4()))
        for team in teams
        for user in team.members
    ]
    stop = asyncio.Event()
    tasks = []
    for i, subscriber in enumerate(subscribers):
        tasks.append(asyncio.create_task(listen(port, subscriber, stop)))
        if i % 50 == 49:
            await asyncio.sleep(0.05)  # do not open a thousand connections in one burst
    opened = time.monotonic()
    async with asyncio.timeout(120):
        await asyncio.gather(*(s.ready.wait() for s in subscribers))
    print(f"{len(subscribers)} streams open in {time.monotonic() - opened:.1f}s", flush=True)
    await asyncio.sleep(args.warmup)
    commits: dict[int, tuple[float, int]] = {}
    watched, horizon = asyncio.Event(), Horizon()
    sampler = asyncio.create_task(sample_xmin(scratch.urls.owner, watched, horizon))
    others = asyncio.create_task(longest_other_write(scratch.urls.owner, watched))
    sent = await write(scratch.urls.app, teams, args.rate, args.duration, commits)
    deadline = time.monotonic() + 30
    expected = sum(1 for s in subscribers for n, team in sent.items() if team == s.team)

    def delivered() -> int:
        return sum(len(s.received) for s in subscribers)

    while delivered() < expected and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    stop.set()
    watched.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await sampler
    longest_other = await others

    samples = sorted(
        (at - commits[n][0]) * 1000 for s in subscribers for n, at in s.received.items()
    )
    finals = {n: horizon.final_at(tx_id) or at for n, (at, tx_id) in commits.items()}
    own = sorted(
        (at - max(commits[n][0], finals[n])) * 1000
        for s in subscribers
        for n, at in s.received.items()
    )
    errors = [e for s in subscribers for e in s.errors]
    print(
        f"\nsubscribers {len(subscribers)} in {args.teams} teams; {len(sent)} events at"
        f" {args.rate:g}/s for {args.duration:g}s; deliveries {len(samples)}/{expected}"
        f"{'; errors: ' + str(errors[:3]) if errors else ''}"
    )
    if samples:
        print(
            f"commit-to-client latency ms: p50 {percentile(samples, 0.5):.1f}"
            f"  p90 {percentile(samples, 0.9):.1f}  p99 {percentile(samples, 0.99):.1f}"
            f"  max {samples[-1]:.1f}  mean {statistics.fmean(samples):.1f}"
        )
        print(
            f"  from the event being final to the client: p50 {percentile(own, 0.5):.1f}"
            f"  p99 {percentile(own, 0.99):.1f}  max {own[-1]:.1f}"
        )
    print(f"longest write transaction in other databases: {longest_other:.2f}s")
    ok = samples and len(samples) == expected and not errors
    return 0 if ok and percentile(samples, 0.99) <= args.target_p99 else 3


def server_env(scratch: Scratch, args: argparse.Namespace) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env.update(
        DATABASE_URL=scratch.urls.owner,
        DATABASE_APP_ROLE=scratch.app_role,
        SECRET_KEY=scratch.secret_key,
        LOG_LEVEL="WARNING",
        REALTIME_WAKEUP="postgres",
        REALTIME_MAX_SUBSCRIBERS="20000",
        POOL_MAX_SIZE=str(args.pool_size),
        RATE_LIMIT_PER_CALLER="1000000",
        RATE_LIMIT_PER_TEAM="1000000",
        GRACEFUL_SHUTDOWN_SECONDS="3",
    )
    return env


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--teams", type=int, default=50)
    parser.add_argument("--rate", type=float, default=20.0, help="events per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of writing")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--pool-size", type=int, default=16)
    parser.add_argument("--target-p99", type=float, default=100.0, help="ms")
    parser.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    )
    args = parser.parse_args(argv)
    if args.subscribers % args.teams:
        parser.error("--subscribers must be a multiple of --teams")
    with (
        scratch_teamboard(args.database_url) as scratch,
        serving(server_env(scratch, args), 1) as port,
    ):
        return asyncio.run(measure(scratch, port, args))


if __name__ == "__main__":
    sys.exit(main())
