"""Flatness of the analytics dashboards: the same 90-day dashboards on two data sets (say
1M and 10M events), measured in ONE run, alternating, so that the ratio is not the drift of
a noisy machine between two runs.

    python -m bench.analytics --events 1000000 --keep      # note the database names
    python -m bench.analytics --events 10000000 --keep
    python -m bench.analytics_flat teamboard_bench_analytics_SMALL teamboard_bench_analytics_LARGE

Both databases are served at once (``teamboard serve`` each, stopped by their pids at the
end), the busiest generated team of each by its owner over HTTP. Each round measures every
dashboard on both, request by request: small then large, then large then small, and so on,
so that whatever else the machine does in a given second falls on both sets alike; the
samples of all rounds are pooled per dashboard and data set. Reported: p50/p95/p99 of
each, and the large/small ratios, against the issue's targets (p95 <= 20 ms; at most 1.2x
from the small set to the large one). Writes ``bench/results/analytics-flat-<UTC timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from bench.analytics import (
    DASHBOARDS,
    _log,
    _percentiles,
    _settings,
    start_server,
    teams_by_size,
)
from bench.harness import DEFAULT_DATABASE_URL, HOST, RESULTS_DIR, ServerProcess, with_database
from teamboard.auth.tokens import TokenService
from teamboard.ops import database

P95_TARGET_MS = 20.0
FLAT_TARGET = 1.2


class Target:
    """One served data set: its server, port and the busiest team's owner token."""

    def __init__(self, name: str, database_url: str, workers: int) -> None:
        self.name = name
        owner_url = with_database(database_url, name)
        settings = _settings(owner_url, name, "bench-analytics-" + name)
        database.prepare(settings, owner_url)
        busiest = teams_by_size(owner_url)[0]
        self.team: uuid.UUID = busiest["team"]
        self.events = busiest["events"]
        token = TokenService(settings).issue_access(busiest["owner"], uuid.uuid4())
        self.headers = {"Authorization": f"Bearer {token}"}
        self.server: ServerProcess
        self.server, self.port = start_server(
            settings, owner_url, workers, RESULTS_DIR / f"analytics-flat-{name}.log"
        )
        self.samples: dict[str, list[float]] = {dashboard: [] for dashboard in DASHBOARDS}

    def url(self, dashboard: str) -> str:
        return f"http://{HOST}:{self.port}/api/v1/teams/{self.team}/analytics/{dashboard}"

    async def get(self, client: httpx.AsyncClient, dashboard: str) -> float:
        """One request of the dashboard's 90-day window; its latency in ms."""
        started = time.perf_counter()
        response = await client.get(
            self.url(dashboard), params={"window": "90d"}, headers=self.headers
        )
        elapsed = (time.perf_counter() - started) * 1000
        response.raise_for_status()
        return elapsed


async def sample_pair(
    pair: tuple[tuple[Target, httpx.AsyncClient], tuple[Target, httpx.AsyncClient]],
    dashboard: str,
    warmup: int,
    requests: int,
) -> None:
    """``requests`` requests of ``dashboard`` on each set, interleaved one by one, the order
    swapping at every step (after ``warmup`` unmeasured ones on each)."""
    for target, client in pair:
        for _ in range(warmup):
            await target.get(client, dashboard)
    for step in range(requests):
        for target, client in pair if step % 2 == 0 else pair[::-1]:
            target.samples[dashboard].append(await target.get(client, dashboard))


def summarize(small: Target, large: Target) -> dict[str, Any]:
    """Per dashboard: both sets' percentiles, the ratios, and the verdicts."""
    report: dict[str, Any] = {}
    for dashboard in DASHBOARDS:
        a, b = _percentiles(small.samples[dashboard]), _percentiles(large.samples[dashboard])
        ratio_p50, ratio_p95 = b["p50"] / a["p50"], b["p95"] / a["p95"]
        report[dashboard] = {
            "small": {k: round(v, 2) for k, v in a.items()},
            "large": {k: round(v, 2) for k, v in b.items()},
            "ratio_p50": round(ratio_p50, 3),
            "ratio_p95": round(ratio_p95, 3),
            "p95_ok": b["p95"] <= P95_TARGET_MS and a["p95"] <= P95_TARGET_MS,
            "flat_ok": ratio_p95 <= FLAT_TARGET,
        }
    return report


async def run(args: argparse.Namespace) -> dict[str, Any]:
    RESULTS_DIR.mkdir(exist_ok=True)
    small = Target(args.small, args.database_url, args.workers)
    try:
        large = Target(args.large, args.database_url, args.workers)
        try:
            _log(f"busiest teams: {small.events:,} events (small), {large.events:,} (large)")
            async with (
                httpx.AsyncClient(timeout=60) as small_client,
                httpx.AsyncClient(timeout=60) as large_client,
            ):
                pair = ((small, small_client), (large, large_client))
                for round_ in range(args.rounds):
                    for dashboard in DASHBOARDS:
                        await sample_pair(pair, dashboard, args.warmup, args.requests)
                    _log(f"  round {round_ + 1}/{args.rounds} done")
            return {
                "small": {"database": small.name, "busiest_events": small.events},
                "large": {"database": large.name, "busiest_events": large.events},
                "rounds": args.rounds,
                "requests_per_round": args.requests,
                "dashboards": summarize(small, large),
            }
        finally:
            large.server.stop()
    finally:
        small.server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("small", help="the smaller data set's database")
    parser.add_argument("large", help="the larger data set's database")
    parser.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=100, help="per dashboard, set and round")
    parser.add_argument("--warmup", type=int, default=10, help="per dashboard, set and round")
    args = parser.parse_args()
    out = asyncio.run(run(args))
    failed = False
    for dashboard, row in out["dashboards"].items():
        _log(
            f"{dashboard:11s} p50 {row['small']['p50']:6.2f} -> {row['large']['p50']:6.2f} ms"
            f"  p95 {row['small']['p95']:6.2f} -> {row['large']['p95']:6.2f} ms"
            f"  ratio p95 {row['ratio_p95']:.2f}x"
            f"  {'PASS' if row['p95_ok'] and row['flat_ok'] else 'FAIL'}"
        )
        failed |= not (row["p95_ok"] and row["flat_ok"])
    path = RESULTS_DIR / f"analytics-flat-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(out, indent=2, default=str))
    _log(f"results: {path}")
    return 3 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
