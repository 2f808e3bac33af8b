"""Analytics benchmark: dashboards over a generated data set, against the same dashboards
computed from raw events, and custom event ingestion.

    python -m bench.analytics --events 1000000 --teams 50
    python -m bench.analytics --events 10000000 --teams 50 --keep   # keep the database
    python -m bench.analytics --reuse teamboard_bench_analytics_ab12cd34   # measure again

One run:

1. creates a scratch database ``teamboard_bench_analytics_<random>`` (and a scratch app role)
   on ``DATABASE_URL``'s server, generates the data set with the product's generator
   (``teamboard seed --events``: COPY as the owner, skewed teams, years of history), runs
   VACUUM ANALYZE and a full rollup rebuild (timed);
2. starts ``teamboard serve`` on a free 127.0.0.1 port (its own process group, stopped by
   its pid at the end) and times every 90-day dashboard over HTTP for the busiest team
   (sequential requests after a warm-up: p50/p95/p99), and the events dashboard for the
   median team;
3. times, in this process as the app role, the 90-day events dashboard from the rollups and
   from raw events only (``raw=True``: the same answer, computed the slow way), alternating;
4. posts batches of 1,000 custom events for a bounded time with several concurrent clients
   (events/s), then times the incremental fold of those events and of one day of events;
5. drops the database (unless ``--keep``), prints the figures and writes
   ``bench/results/analytics-<UTC timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

from bench.harness import (
    ADMIN_CONNECT,
    DEFAULT_DATABASE_URL,
    HOST,
    PROJECT_DIR,
    RESULTS_DIR,
    ServerProcess,
    free_port,
    with_database,
)
from teamboard.analytics import service
from teamboard.analytics.period import DashboardQuery, Span
from teamboard.analytics.rollups import RollupConsumer, rebuild
from teamboard.auth.tokens import TokenService
from teamboard.config import Settings
from teamboard.db import Database
from teamboard.deps import TeamContext
from teamboard.ops import database, generate

PREFIX = "teamboard_bench_analytics_"
DASHBOARDS = ("events", "tasks", "actors", "throughput", "cycle-time", "flow", "time")
BATCH = 1000


def _log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {"p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "n": len(ordered)}


def _settings(owner_url: str, name: str, secret: str) -> Settings:
    return Settings(
        environment="development",
        secret_key=secret,
        database_url=owner_url,
        database_app_role=f"{name}_app",
        pool_min_size=1,
        pool_max_size=4,
        statement_timeout_ms=600_000,
        redis_url=None,
    )


def load(settings: Settings, owner_url: str, events: int, teams: int) -> dict[str, Any]:
    database.prepare(settings, owner_url)
    started = time.monotonic()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if time.monotonic() - last[0] > 30:
            last[0] = time.monotonic()
            _log(f"  generated {done:,} / {total:,} events")

    summary = generate.generate(
        owner_url, generate.GeneratorConfig(events, teams, years=3.0, seed=7), progress
    )
    loaded = time.monotonic() - started
    _log(f"loaded {summary.events:,} events in {loaded:.0f}s; vacuum analyze")
    generate.analyze(owner_url)
    return {"summary": summary.__dict__, "load_seconds": round(loaded, 1)}


async def full_rebuild(settings: Settings, owner_url: str) -> dict[str, Any]:
    db = Database(owner_url, settings)
    await db.open()
    try:
        started = time.monotonic()
        result = await rebuild(db)
        seconds = time.monotonic() - started
    finally:
        await db.close()
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute("vacuum analyze")  # visibility maps of the fresh rollups: index-only scans
    _log(f"full rollup rebuild: {result.folded:,} events in {seconds:.1f}s")
    return {"folded": result.folded, "seconds": round(seconds, 2)}


def teams_by_size(owner_url: str) -> list[dict[str, Any]]:
    with psycopg.connect(owner_url) as conn:
        rows = conn.execute(
            "select d.team_id, sum(d.value) as events,"
            " (select m.user_id from team_member m where m.team_id = d.team_id"
            "  and m.role = 'owner' limit 1) as owner"
            " from analytics_daily d join team t on t.id = d.team_id"
            " where d.metric = 'events' and t.name like 'Team %' group by d.team_id"
            " order by events desc"
        ).fetchall()
        in_90d = dict(
            conn.execute(
                "select team_id, sum(value) from analytics_daily where metric = 'events'"
                " and day > current_date - 90 group by team_id"
            ).fetchall()
        )
    return [
        {"team": r[0], "events": int(r[1]), "events_90d": int(in_90d.get(r[0], 0)), "owner": r[2]}
        for r in rows
    ]


def ingestion_team(owner_url: str, owner: uuid.UUID) -> uuid.UUID:
    """A team of its own for the ingestion runs, so that the generated teams stay as
    generated (for later runs on the same database)."""
    team = uuid.uuid4()
    with psycopg.connect(owner_url) as conn:
        conn.execute(
            "insert into team (id, name, created_by) values (%s, 'Bench ingestion', %s)",
            (team, owner),
        )
        conn.execute(
            "insert into team_member (team_id, user_id, role) values (%s, %s, 'owner')",
            (team, owner),
        )
    return team


async def http_latencies(
    port: int, headers: dict[str, str], team: uuid.UUID, names: tuple[str, ...], requests: int
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", timeout=60) as client:
        for name in names:
            url = f"/api/v1/teams/{team}/analytics/{name}"
            for _ in range(max(5, requests // 10)):  # warm-up: plans, pools, caches
                response = await client.get(url, params={"window": "90d"}, headers=headers)
                response.raise_for_status()
            samples = []
            for _ in range(requests):
                started = time.perf_counter()
                response = await client.get(url, params={"window": "90d"}, headers=headers)
                samples.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
            results[name] = {k: round(v, 2) for k, v in _percentiles(samples).items()}
            _log(f"  HTTP {name} 90d: {results[name]}")
    return results


async def rollup_vs_raw(
    settings: Settings, app_url: str, team: uuid.UUID, owner: uuid.UUID, rounds: int
) -> dict[str, Any]:
    """The 90-day events dashboard from the rollups and from raw events, alternating, in
    this process (service call: both statements and the answer's shaping)."""
    db = Database(app_url, settings)
    await db.open()
    query = DashboardQuery(Span(days=90))

    async def timed(raw: bool) -> tuple[float, dict[str, Any]]:
        async with db.transaction(user_id=owner, team_id=team, write=False) as tx:
            started = time.perf_counter()
            answer = await service.events(TeamContext(tx, team, owner, None), query, raw=raw)
            return (time.perf_counter() - started) * 1000, answer

    try:
        for _ in range(10):
            await timed(False)
        await timed(True)
        fast: list[float] = []
        slow: list[float] = []
        for _ in range(rounds):
            for _ in range(10):
                elapsed, rolled = await timed(False)
                fast.append(elapsed)
            elapsed, scanned = await timed(True)
            slow.append(elapsed)
            assert rolled == scanned, "rollups and raw events disagree"
    finally:
        await db.close()
    result = {
        "rollups_ms": {k: round(v, 3) for k, v in _percentiles(fast).items()},
        "raw_ms": {k: round(v, 2) for k, v in _percentiles(slow).items()},
    }
    result["speedup_p50"] = round(result["raw_ms"]["p50"] / result["rollups_ms"]["p50"], 1)
    _log(f"  rollups vs raw (events 90d): {result}")
    return result


def _batch_body() -> bytes:
    return json.dumps(
        {
            "events": [
                {
                    "kind": "custom.bench_view",
                    "actor": f"v{i % 97}",
                    "properties": {"path": f"/p/{i % 13}", "ms": i % 300},
                }
                for i in range(BATCH)
            ]
        }
    ).encode()


async def ingest(
    port: int,
    headers: dict[str, str],
    team: uuid.UUID,
    *,
    clients: int,
    seconds: float | None = None,
    batches: int | None = None,
) -> dict[str, Any]:
    """Post batches of 1,000 events from ``clients`` concurrent clients, for ``seconds`` or
    until ``batches`` were sent."""
    body, sent, latencies = _batch_body(), [0], []
    deadline = time.monotonic() + (seconds or 3600)

    def more() -> bool:
        if batches is not None:
            return sent[0] < batches * BATCH
        return time.monotonic() < deadline

    async def client_loop() -> None:
        async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", timeout=60) as client:
            while more():
                sent[0] += BATCH
                started = time.perf_counter()
                response = await client.post(
                    f"/api/v1/teams/{team}/events",
                    content=body,
                    headers={**headers, "Content-Type": "application/json"},
                )
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 201:
                    raise RuntimeError(f"ingestion: {response.status_code} {response.text[:200]}")

    started = time.monotonic()
    await asyncio.gather(*(client_loop() for _ in range(clients)))
    elapsed = time.monotonic() - started
    return {
        "events": sent[0],
        "seconds": round(elapsed, 2),
        "events_per_second": round(sent[0] / elapsed),
        "clients": clients,
        "batch_ms": {k: round(v, 1) for k, v in _percentiles(latencies).items()},
    }


async def fold_time(settings: Settings, app_url: str) -> dict[str, Any]:
    """One incremental fold of everything committed since the last one (the app role, as
    the worker runs it); repeated until the watermark passes (other transactions of the
    server may hold it back)."""
    db = Database(app_url, settings)
    await db.open()
    try:
        consumer = RollupConsumer(db)
        total, spent = 0, 0.0
        for _ in range(50):
            started = time.perf_counter()
            result = await consumer.fold()
            spent += time.perf_counter() - started
            total += result.folded
            if total and not result.folded:
                break
            await asyncio.sleep(0.2)
    finally:
        await db.close()
    return {"folded": total, "ms": round(spent * 1000, 1)}


def start_server(
    settings: Settings, owner_url: str, workers: int, logs: Path
) -> tuple[ServerProcess, int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_APP_URL", "REDIS_URL")}
    env.update(
        {
            "DATABASE_URL": owner_url,
            "DATABASE_APP_ROLE": settings.database_app_role,
            "SECRET_KEY": settings.secret_key.get_secret_value(),
            "LOG_LEVEL": "WARNING",
            "EXPOSE_SQL_COUNT": "false",
            "STATEMENT_TIMEOUT_MS": "600000",
            "RATE_LIMIT_PER_CALLER": "100000000",
            "RATE_LIMIT_PER_TEAM": "100000000",
            "ACCESS_TOKEN_TTL_SECONDS": "86400",
            "PYTHONUNBUFFERED": "1",
        }
    )
    teamboard = shutil.which("teamboard")
    if teamboard is None:
        raise SystemExit("the `teamboard` command was not found: pip install -e '.[test]'")
    argv = [teamboard, "serve", "--host", HOST, "--port", str(port), "--workers", str(workers)]
    server = ServerProcess("teamboard", argv, env, PROJECT_DIR, logs)
    server.wait_ready(port, "/health/ready", 180)
    return server, port


async def measure(
    args: argparse.Namespace, settings: Settings, owner_url: str, out: dict[str, Any]
) -> None:
    teams = teams_by_size(owner_url)
    busiest, median = teams[0], teams[len(teams) // 2]
    out["teams"] = {"busiest": busiest, "median": median, "count": len(teams)}
    out["teams"]["busiest"]["team"] = str(busiest["team"])
    tokens = TokenService(settings)
    headers = {"Authorization": f"Bearer {tokens.issue_access(busiest['owner'], uuid.uuid4())}"}
    app_url = database.provision_app_role(owner_url, settings).app
    RESULTS_DIR.mkdir(exist_ok=True)
    server, port = start_server(
        settings, owner_url, args.workers, RESULTS_DIR / "analytics-server.log"
    )
    try:
        _log(f"server on {HOST}:{port}; busiest team {busiest['events']:,} events")
        out["http_busiest"] = await http_latencies(
            port, headers, busiest["team"], DASHBOARDS, args.requests
        )
        median_headers = {
            "Authorization": f"Bearer {tokens.issue_access(median['owner'], uuid.uuid4())}"
        }
        out["http_median_team"] = await http_latencies(
            port, median_headers, median["team"], ("events",), args.requests
        )
        out["rollups_vs_raw"] = await rollup_vs_raw(
            settings, app_url, busiest["team"], busiest["owner"], args.raw_rounds
        )
        sink = ingestion_team(owner_url, busiest["owner"])
        out["ingestion"] = await ingest(
            port, headers, sink, clients=args.clients, seconds=args.ingest_seconds
        )
        _log(f"  ingestion: {out['ingestion']}")
        out["fold_ingested"] = await fold_time(settings, app_url)
        _log(f"  fold of the ingested events: {out['fold_ingested']}")
        # About one day of the data set's events (three years, growing: ~1/700 of them).
        day = max(1, args.events // 700 // BATCH)
        await ingest(port, headers, sink, clients=1, batches=day)
        out["fold_one_day"] = {**await fold_time(settings, app_url), "day_events": day * BATCH}
        _log(f"  fold of one day of events: {out['fold_one_day']}")
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--teams", type=int, default=50)
    parser.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    parser.add_argument("--reuse", help="measure on this existing database (not dropped)")
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--raw-rounds", type=int, default=8)
    parser.add_argument("--ingest-seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()

    name = args.reuse or PREFIX + secrets.token_hex(4)
    owner_url = with_database(args.database_url, name)
    secret = "bench-analytics-" + name  # stable per database: the app role password follows it
    settings = _settings(owner_url, name, secret)
    out: dict[str, Any] = {"database": name, "events_requested": args.events, "teams": args.teams}
    created = False
    try:
        if args.reuse is None:
            with psycopg.connect(args.database_url, **ADMIN_CONNECT) as admin:
                admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
            created = True
            _log(f"database {name}: generating {args.events:,} events in {args.teams} teams")
            out["load"] = load(settings, owner_url, args.events, args.teams)
            out["rebuild"] = asyncio.run(full_rebuild(settings, owner_url))
        else:
            database.prepare(settings, owner_url)
        with psycopg.connect(owner_url) as conn:
            out["database_bytes"] = conn.execute(
                "select pg_database_size(current_database())"
            ).fetchone()[0]  # type: ignore[index]
            out["event_rows"] = conn.execute("select count(*) from event").fetchone()[0]  # type: ignore[index]
        asyncio.run(measure(args, settings, owner_url, out))
    finally:
        if created and not args.keep:
            with psycopg.connect(args.database_url, **ADMIN_CONNECT) as admin:
                admin.execute(
                    sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
                )
                admin.execute(
                    sql.SQL("drop role if exists {}").format(sql.Identifier(f"{name}_app"))
                )
        RESULTS_DIR.mkdir(exist_ok=True)
        path = RESULTS_DIR / f"analytics-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
        path.write_text(json.dumps(out, indent=2, default=str))
        _log(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
