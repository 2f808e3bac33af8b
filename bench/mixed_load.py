"""Mixed load: reads, lists, writes, GraphQL and the SSE feed together, for a bounded time.

    python -m bench.mixed_load --duration 60 --connections 32 --teams 20 --subscribers 2

Starts ``teamboard serve --workers 2`` and ``teamboard worker`` on a scratch database
(``bench.eventdata``: ``--teams`` teams, each with a project of ``--tasks`` tasks), opens
``--subscribers`` SSE streams per team, then runs ``--connections`` closed-loop clients for
``--duration`` seconds. Each client keeps one HTTP/1.1 connection and, request after request,
picks a team and an operation by weight (``MIX``): one task, one team, a page of 50 tasks,
a task created, a comment posted, or a GraphQL query of projects, tasks, assignees, labels
and comments. Every created task must reach every subscriber of its team: the feed's share
delivered and its delivery latency (from the write's response to the frame) are reported.

Reported per operation: requests, requests/s, p50/p99 latency and errors (any status other
than the expected one, or a broken connection; 0 expected), then the totals. The client
shares the machine's cores with the server: its own CPU use is printed, and throughput is a
floor. Exit status 0 when there were no errors and every delivery arrived, 3 otherwise.

Bounded everywhere: set-up, the run, the drain of the feed; the server and worker are
stopped by their own pids (SIGTERM, then SIGKILL of their group); the scratch database and
roles are dropped at the end, also on error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from bench.eventdata import (
    DEFAULT_DATABASE_URL,
    Scratch,
    Team,
    scratch_teamboard,
    seed,
    serving,
)
from bench.harness import DASHBOARD
from bench.realtime_latency import percentile, server_env, sse_lines
from teamboard.auth.tokens import TokenService

HOST = "127.0.0.1"
REQUEST_TIMEOUT_SECONDS = 10.0
DRAIN_SECONDS = 15.0

# Operation name -> weight. Reads dominate, as in a task tracker; every kind is present.
MIX: dict[str, int] = {
    "task_read": 35,
    "team_read": 10,
    "task_list": 20,
    "task_create": 10,
    "comment_create": 5,
    "graphql": 20,
}


@dataclass
class Member:
    team: Team
    token: str


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    acked: dict[str, tuple[uuid.UUID, float]] = field(default_factory=dict)  # task -> team, t

    def record(self, op: str, seconds: float, error: str | None) -> None:
        self.latencies.setdefault(op, []).append(seconds * 1000)
        if error is not None:
            self.errors.setdefault(op, []).append(error)


class Connection:
    """One keep-alive HTTP/1.1 connection: the smallest client that measures the server and
    not itself (requests are written whole; responses carry a Content-Length)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(
        self, method: str, path: str, token: str, body: bytes | None = None
    ) -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(HOST, self.port)
        reader, writer = self._streams
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body or b'')}\r\n\r\n"
        )
        writer.write(head.encode() + (body or b""))
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
                status_line = await reader.readuntil(b"\r\n")
                headers = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in headers.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                payload = await reader.readexactly(length)
        except BaseException:
            self.close()
            raise
        return int(status_line.split()[1]), payload

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


def operation(op: str, member: Member, rng: random.Random) -> tuple[str, str, bytes | None, int]:
    """``(method, path, body, expected status)`` of one request of kind ``op``."""
    team = member.team
    base = f"/api/v1/teams/{team.id}"
    project = f"{base}/projects/{team.project}"
    if op == "task_read":
        return "GET", f"{base}/tasks/{rng.choice(team.tasks)}", None, 200
    if op == "team_read":
        return "GET", base, None, 200
    if op == "task_list":
        return "GET", f"{project}/tasks?limit=50", None, 200
    if op == "task_create":
        body = {"title": f"Mixed load {rng.getrandbits(32)}", "priority": rng.randint(0, 4)}
        return "POST", f"{project}/tasks", orjson.dumps(body), 201
    if op == "comment_create":
        path = f"{base}/tasks/{rng.choice(team.tasks)}/comments"
        return "POST", path, orjson.dumps({"body": "A comment from the mixed load"}), 201
    query = {"query": DASHBOARD, "variables": {"team": str(team.id)}}
    return "POST", "/graphql", orjson.dumps(query), 200


async def client(
    port: int, members: Sequence[Member], deadline: float, seed_value: int, stats: Stats
) -> None:
    """One closed-loop client until ``deadline``."""
    rng = random.Random(seed_value)
    ops, weights = list(MIX), list(MIX.values())
    connection = Connection(port)
    try:
        while time.monotonic() < deadline:
            op = rng.choices(ops, weights)[0]
            member = rng.choice(members)
            method, path, body, expected = operation(op, member, rng)
            started = time.monotonic()
            error: str | None = None
            try:
                status, payload = await connection.request(method, path, member.token, body)
                if status != expected:
                    error = f"{status} {payload[:200]!r}"
                elif op == "task_create":
                    task = uuid.UUID(orjson.loads(payload)["id"])
                    stats.acked[str(task)] = (member.team.id, time.monotonic())
                elif op == "graphql" and b'"errors"' in payload:
                    error = payload[:200].decode(errors="replace")
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            stats.record(op, time.monotonic() - started, error)
    finally:
        connection.close()


@dataclass
class Feed:
    """What the SSE subscribers saw: task id -> arrival times, per subscriber."""

    arrivals: list[tuple[uuid.UUID, dict[str, float]]] = field(default_factory=list)
    ready: list[asyncio.Event] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def subscribe(port: int, member: Member, feed: Feed, stop: asyncio.Event) -> None:
    """One SSE stream on a raw connection; records when each ``task.created`` arrives."""
    seen: dict[str, float] = {}
    ready = asyncio.Event()
    feed.arrivals.append((member.team.id, seen))
    feed.ready.append(ready)
    async for line in sse_lines(port, member.team.id, member.token, feed.errors):
        if stop.is_set():
            return
        if line.startswith(b"event: ready"):
            ready.set()
        elif line.startswith(b"data: {") and b'"task.created"' in line:
            seen[orjson.loads(line[6:])["subject_id"]] = time.monotonic()
    if not stop.is_set() and ready.is_set():
        feed.errors.append("stream closed by the server")


def report(stats: Stats, feed: Feed, duration: float, cpu_seconds: float) -> int:
    """Print the table; 0 when nothing failed and the feed delivered everything."""
    header = f"{'operation':<16}{'requests':>10}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
    print(f"\n{header}{'errors':>8}")
    every: list[float] = []
    for op in MIX:
        samples = sorted(stats.latencies.get(op, []))
        every.extend(samples)
        errors = len(stats.errors.get(op, []))
        if samples:
            print(
                f"{op:<16}{len(samples):>10}{len(samples) / duration:>10.1f}"
                f"{percentile(samples, 0.5):>9.1f}{percentile(samples, 0.99):>9.1f}{errors:>8}"
            )
    every.sort()
    errors = sum(len(e) for e in stats.errors.values())
    print(
        f"{'all':<16}{len(every):>10}{len(every) / duration:>10.1f}"
        f"{percentile(every, 0.5):>9.1f}{percentile(every, 0.99):>9.1f}{errors:>8}"
    )
    for op, messages in stats.errors.items():
        print(f"  {op} errors, first: {messages[0]}")
    expected = delivered = 0
    delays: list[float] = []
    for team, seen in feed.arrivals:
        for task, (task_team, acked_at) in stats.acked.items():
            if task_team != team:
                continue
            expected += 1
            if task in seen:
                delivered += 1
                delays.append(max(0.0, seen[task] - acked_at) * 1000)
    delays.sort()
    latency = (
        f"; write response to frame p50 {percentile(delays, 0.5):.1f} ms,"
        f" p99 {percentile(delays, 0.99):.1f} ms"
        if delays
        else ""
    )
    print(
        f"SSE: {len(feed.arrivals)} streams, {delivered}/{expected} task.created delivered"
        f"{latency}{'; errors: ' + str(feed.errors[:3]) if feed.errors else ''}"
    )
    print(f"load generator CPU: {cpu_seconds:.1f}s over {duration:.0f}s")
    return 0 if errors == 0 and delivered == expected and not feed.errors else 3


async def measure(scratch: Scratch, port: int, args: argparse.Namespace) -> int:
    teams = seed(scratch.urls.owner, args.teams, 1, args.tasks)
    tokens = TokenService(scratch.settings)
    members = [Member(team, tokens.issue_access(team.members[0], uuid.uuid4())) for team in teams]
    stats, feed, stop = Stats(), Feed(), asyncio.Event()
    streams = [
        asyncio.create_task(subscribe(port, member, feed, stop))
        for member in members
        for _ in range(args.subscribers)
    ]
    async with asyncio.timeout(60):
        while len(feed.ready) < len(streams):  # noqa: ASYNC110 - each stream registers itself
            await asyncio.sleep(0.05)
        await asyncio.gather(*(ready.wait() for ready in feed.ready))
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    deadline = started + args.duration
    await asyncio.gather(
        *(client(port, members, deadline, i, stats) for i in range(args.connections))
    )
    elapsed = time.monotonic() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    drain_until = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < drain_until and not all(  # noqa: ASYNC110
        task in seen
        for team, seen in feed.arrivals
        for task, (t, _) in stats.acked.items()
        if t == team
    ):
        await asyncio.sleep(0.2)
    stop.set()
    for stream in streams:
        stream.cancel()
    await asyncio.gather(*streams, return_exceptions=True)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    print(
        f"{args.connections} connections over {args.teams} teams for {elapsed:.1f}s;"
        f" {len(streams)} SSE streams; mix {MIX}"
    )
    return report(stats, feed, elapsed, cpu)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--teams", type=int, default=20)
    parser.add_argument("--tasks", type=int, default=200, help="tasks per team at the start")
    parser.add_argument("--subscribers", type=int, default=2, help="SSE streams per team")
    parser.add_argument("--workers", type=int, default=2, help="server processes")
    parser.add_argument("--pool-size", type=int, default=16)
    parser.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    )
    args = parser.parse_args(argv)
    with (
        scratch_teamboard(args.database_url) as scratch,
        serving(server_env(scratch, args), args.workers, worker=True) as port,
    ):
        return asyncio.run(measure(scratch, port, args))


if __name__ == "__main__":
    sys.exit(main())
