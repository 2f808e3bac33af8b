"""Noisy neighbour: team B's latency while team A is throttled by its per-team rate limit.

    python -m bench.noisy_neighbour --duration 20 --rate 50 --flood-rate 500

Serves teamboard on 127.0.0.1 (a scratch database, ``bench.eventdata``), with a per-team
budget of ``--team-budget`` units per ``--window`` seconds and no per-caller limit in the
way. Two phases of ``--duration`` seconds each, after ``--warmup`` seconds of B alone:

1. **alone**: team B reads its tasks (``GET /teams/{B}/tasks/{id}``) at a steady
   ``--rate`` per second;
2. **flood**: the same, while team A reads its own tasks at ``--flood-rate`` per second,
   far above its budget: after its budget's worth of successes, A is answered 429.

A's stream runs in a process of its own (a neighbour is another client: its load must not
delay B's measurements in the measuring process). Both streams are open-loop (a request
is sent at its scheduled time on one of ``--connections`` keep-alive connections, whatever
the previous answers), and latency runs
from the scheduled time, so a stalled server shows up in the percentiles instead of
slowing the load down. Printed: B's p50/p99 per phase, the ratio of the p99s (target
``--target-ratio``, 1.20), A's requests, 429 share and 429 p50, errors (B: anything but
200; A: anything but 200 or 429; broken connections), and the load generator's CPU. Exit
status 0 when the ratio is met and there were no errors, 3 otherwise.

The server and the scratch database are stopped and dropped at the end (by pid; also on
error or Ctrl-C); every phase is bounded in time and every request by a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing
import os
import resource
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from bench.eventdata import (
    DEFAULT_DATABASE_URL,
    Scratch,
    Team,
    scratch_teamboard,
    seed,
    serving,
)
from bench.mixed_load import REQUEST_TIMEOUT_SECONDS, Connection
from bench.realtime_latency import percentile, server_env
from teamboard.auth.tokens import TokenService

DRAIN_SECONDS = REQUEST_TIMEOUT_SECONDS + 2  # outstanding requests after a phase


@dataclass
class Stream:
    """What one team's requests saw during one phase."""

    latencies: dict[int, list[float]] = field(default_factory=dict)  # status -> ms
    errors: Counter[str] = field(default_factory=Counter)

    def record(self, status: int, milliseconds: float) -> None:
        self.latencies.setdefault(status, []).append(milliseconds)

    def count(self, status: int | None = None) -> int:
        if status is None:
            return sum(len(samples) for samples in self.latencies.values())
        return len(self.latencies.get(status, []))

    def p(self, status: int, q: float) -> float:
        samples = sorted(self.latencies.get(status, []))
        return percentile(samples, q) if samples else float("nan")


@dataclass(frozen=True)
class Load:
    port: int
    team: Team
    token: str
    rate: float
    connections: int


async def run_stream(load: Load, seconds: float, stream: Stream) -> None:
    """Send ``load.rate`` requests per second for ``seconds``, open-loop."""
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(load.connections):
        idle.put_nowait(Connection(load.port))
    tasks = itertools.cycle(load.team.tasks)
    base = f"/api/v1/teams/{load.team.id}/tasks/"

    async def one(path: str, scheduled: float) -> None:
        connection = await idle.get()
        try:
            status, _ = await connection.request("GET", path, load.token)
            stream.record(status, (time.monotonic() - scheduled) * 1000)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            stream.errors[type(exc).__name__] += 1
        finally:
            idle.put_nowait(connection)

    started = time.monotonic()
    pending: set[asyncio.Task[None]] = set()
    for n in range(int(seconds * load.rate)):
        scheduled = started + n / load.rate
        await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
        task = asyncio.create_task(one(base + str(next(tasks)), scheduled))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        _, late = await asyncio.wait(pending, timeout=DRAIN_SECONDS)
        for task in late:
            task.cancel()
            stream.errors["unfinished"] += 1
    while not idle.empty():
        idle.get_nowait().close()


@dataclass
class Phase:
    name: str
    quiet: Stream
    noisy: Stream | None
    cpu_seconds: float


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def flood(load: Load, seconds: float) -> tuple[Stream, float]:
    """Team A's stream, run in a process of its own: a neighbour is another client, and
    its load must not delay B's measurements inside the measuring process."""
    before = _cpu_seconds()
    stream = Stream()
    asyncio.run(run_stream(load, seconds, stream))
    return stream, _cpu_seconds() - before


async def phase(
    name: str,
    quiet: Load,
    noisy: Load | None,
    seconds: float,
    pool: ProcessPoolExecutor,
    lead: float = 0.0,
) -> Phase:
    """B's stream for ``seconds``; with ``noisy``, A's flood starts ``lead`` seconds earlier
    (so that B is measured while A is being throttled, not while A spends its budget)."""
    before = _cpu_seconds()
    stream = Stream()
    noisy_run = None
    if noisy is not None:
        noisy_run = asyncio.get_running_loop().run_in_executor(pool, flood, noisy, lead + seconds)
        await asyncio.sleep(lead)
    await run_stream(quiet, seconds, stream)
    noisy_stream, noisy_cpu = (None, 0.0) if noisy_run is None else await noisy_run
    return Phase(name, stream, noisy_stream, _cpu_seconds() - before + noisy_cpu)


def report(phases: Sequence[Phase], args: argparse.Namespace) -> int:
    """Print the figures; 0 when the p99 ratio is met and nothing failed."""
    alone, flood = phases
    print(f"\n{'phase':<8}{'B req':>8}{'B p50 ms':>10}{'B p99 ms':>10}{'B errors':>10}", end="")
    print(f"{'A req':>9}{'A 429 %':>9}{'A 429 p50':>11}{'A errors':>10}{'client CPU s':>14}")
    errors = 0
    for current in phases:
        quiet, noisy = current.quiet, current.noisy
        quiet_errors = sum(quiet.errors.values()) + quiet.count() - quiet.count(200)
        errors += quiet_errors
        row = (
            f"{current.name:<8}{quiet.count():>8}{quiet.p(200, 0.5):>10.2f}"
            f"{quiet.p(200, 0.99):>10.2f}{quiet_errors:>10}"
        )
        if noisy is None:
            row += f"{'-':>9}{'-':>9}{'-':>11}{'-':>10}"
        else:
            total = noisy.count()
            noisy_errors = sum(noisy.errors.values()) + total - noisy.count(200) - noisy.count(429)
            errors += noisy_errors
            share = 100 * noisy.count(429) / total if total else 0.0
            row += f"{total:>9}{share:>9.1f}{noisy.p(429, 0.5):>11.2f}{noisy_errors:>10}"
        print(f"{row}{current.cpu_seconds:>14.1f}")
        for stream in (quiet, noisy):
            if stream is not None and stream.errors:
                print(f"  {current.name} connection errors: {dict(stream.errors)}")
    ratio = flood.quiet.p(200, 0.99) / alone.quiet.p(200, 0.99)
    met = ratio <= args.target_ratio
    print(
        f"B p99 under the flood / alone: {ratio:.2f} (target ≤ {args.target_ratio:.2f}:"
        f" {'PASS' if met else 'FAIL'}); errors: {errors}"
    )
    return 0 if met and errors == 0 else 3


async def measure(scratch: Scratch, port: int, args: argparse.Namespace) -> int:
    noisy_team, quiet_team = seed(scratch.urls.owner, 2, 1, args.tasks)
    tokens = TokenService(scratch.settings)

    def load(team: Team, rate: float) -> Load:
        token = tokens.issue_access(team.members[0], uuid.uuid4())
        return Load(port, team, token, rate, args.connections)

    quiet, noisy = load(quiet_team, args.rate), load(noisy_team, args.flood_rate)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        await asyncio.get_running_loop().run_in_executor(pool, _cpu_seconds)  # started
        await phase("warm-up", quiet, None, args.warmup, pool)
        phases = [
            await phase("alone", quiet, None, args.duration, pool),
            await phase("flood", quiet, noisy, args.duration, pool, args.flood_lead),
        ]
    print(
        f"B: {args.rate:g}/s; A: {args.flood_rate:g}/s against a team budget of"
        f" {args.team_budget} per {args.window} s ({args.team_budget / args.window:g}/s);"
        f" {args.workers} server worker(s), {args.connections} connections per team,"
        f" {args.duration:g} s per phase, rate limits in {'Redis' if args.redis_url else 'memory'}"
    )
    return report(phases, args)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds, B alone, discarded")
    parser.add_argument(
        "--flood-lead",
        type=float,
        default=5.0,
        help="seconds A floods before B is measured (A spends its budget, then is throttled)",
    )
    parser.add_argument("--rate", type=float, default=50.0, help="team B's requests per second")
    parser.add_argument("--flood-rate", type=float, default=500.0, help="team A's requests/s")
    parser.add_argument("--team-budget", type=int, default=600, help="units per window")
    parser.add_argument("--window", type=int, default=10, help="rate-limit window, seconds")
    parser.add_argument("--connections", type=int, default=16, help="per team")
    parser.add_argument("--tasks", type=int, default=100, help="tasks per team")
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument("--target-ratio", type=float, default=1.20)
    parser.add_argument(
        "--redis-url",
        default=None,
        help="keep the rate limits in Redis (needed for exact budgets with several workers)",
    )
    parser.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    )
    args = parser.parse_args(argv)
    if args.rate * args.window > args.team_budget:
        parser.error("team B's own load must fit in the team budget (--rate × --window)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with scratch_teamboard(args.database_url) as scratch:
        args.pool_size = 16  # server_env's pool size
        env = server_env(scratch, args)
        env.update(
            RATE_LIMIT_PER_TEAM=str(args.team_budget),
            RATE_LIMIT_WINDOW_SECONDS=str(args.window),
            **({"REDIS_URL": args.redis_url} if args.redis_url else {}),
        )
        with serving(env, args.workers) as port:
            return asyncio.run(measure(scratch, port, args))


if __name__ == "__main__":
    sys.exit(main())
