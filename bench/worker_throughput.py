"""Events per second one worker process sustains, and webhook deliveries per second.

    python -m bench.worker_throughput --events 20000 --teams 20

Over a scratch database (``bench.eventdata``): ``--teams`` teams of ``--members`` members,
with tasks, comments and (for half the teams) a webhook on ``task.*`` pointing at a local
receiver on 127.0.0.1 (``bench.receiver``, its own process). A backlog of ``--events``
events is appended (a third
``comment.created`` mentioning two members, a third ``task.assigned`` to one, a third
``task.updated``), then the two consumers run concurrently in this process, exactly as in
``teamboard worker`` (same classes, same batch size, worker role for the log and the
offsets, app role with each event's context for notifications): events per second is the
backlog over the time until both offsets are past it. Then the queued webhook deliveries
are sent (signed, to the receiver) by the worker's deliverer: deliveries per second.

Bounded: every phase has a timeout; the receiver is a thread of this process; the scratch
database and roles are dropped at the end, also on error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
import psycopg

from bench.eventdata import (
    DEFAULT_DATABASE_URL,
    Scratch,
    Team,
    longest_other_write,
    scratch_teamboard,
    seed,
)
from bench.harness import ADMIN_CONNECT, PROJECT_DIR, free_port
from teamboard.db import Database
from teamboard.kit.crypto import SecretBox
from teamboard.notifications.consumer import NotificationsConsumer
from teamboard.webhooks.delivery import Deliverer, secret_binding
from teamboard.webhooks.fanout import WebhooksConsumer
from teamboard.worker.consumers import ConsumerRunner, drain


def received(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=5) as response:
        return int(response.read())


def backlog(scratch: Scratch, teams: Sequence[Team], events: int, url: str) -> int:
    """Webhooks for half the teams, then the events; returns how many deliveries to expect."""
    box = SecretBox(scratch.settings.derived_key("webhook-secret"))
    hooked = teams[: len(teams) // 2]
    rows: list[tuple[Any, ...]] = []
    for i in range(events):
        team = teams[i % len(teams)]
        task = i // len(teams) % len(team.tasks)
        subject = team.tasks[task]
        members = team.members
        if i % 3 == 0:
            kind = "comment.created"
            payload = {
                "comment_id": str(team.comments[task]),
                "mentions": [str(m) for m in members[1:3]],
            }
        elif i % 3 == 1:
            kind, payload = (
                "task.assigned",
                {"user_ids": [str(members[1 + i % (len(members) - 1)])]},
            )
        else:
            kind, payload = "task.updated", {"fields": ["title"]}
        rows.append((team.id, uuid.uuid4(), members[0], kind, subject, team.project, payload))
    with psycopg.connect(scratch.urls.owner, **ADMIN_CONNECT) as conn:
        for team in hooked:
            webhook = uuid.uuid4()
            conn.execute(
                "insert into webhook (team_id, id, url, kinds, secret_ciphertext, created_by)"
                " values (%s, %s, %s, '{task.*}', %s, %s)",
                (
                    team.id,
                    webhook,
                    url,
                    box.seal("whsec_bench", secret_binding(team.id, webhook)),
                    team.members[0],
                ),
            )
        with conn.cursor() as cur:
            cur.executemany(
                "insert into event (team_id, id, actor_id, kind, subject_id, project_id, payload)"
                " values (%s, %s, %s, %s, %s, %s, %s::jsonb)",
                [(*row[:6], orjson.dumps(row[6]).decode()) for row in rows],
            )
    hooked_ids = {team.id for team in hooked}
    return sum(1 for row in rows if row[0] in hooked_ids and str(row[3]).startswith("task."))


async def measure(scratch: Scratch, args: argparse.Namespace) -> int:
    settings = scratch.settings
    teams = seed(scratch.urls.owner, args.teams, args.members, tasks=50)
    port = free_port()
    receiver = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
        [sys.executable, "-m", "bench.receiver", str(port)], cwd=PROJECT_DIR
    )
    url = f"http://127.0.0.1:{port}/hook"
    try:
        async with asyncio.timeout(20):
            while True:
                with contextlib.suppress(OSError):
                    received(port)
                    break
                await asyncio.sleep(0.1)
        started = time.monotonic()
        expected = backlog(scratch, teams, args.events, url)
        print(f"backlog of {args.events} events written in {time.monotonic() - started:.1f}s")
        worker_db, app_db = (
            Database(scratch.urls.worker, settings),
            Database(scratch.urls.app, settings),
        )
        await worker_db.open()
        await app_db.open()
        try:
            runners = [
                ConsumerRunner(
                    worker_db, NotificationsConsumer(app_db), settings.worker_batch_size
                ),
                ConsumerRunner(worker_db, WebhooksConsumer(), settings.worker_batch_size),
            ]
            started = time.monotonic()
            timings: dict[str, float] = {}

            async def run(runner: ConsumerRunner) -> int:
                handled = await drain(runner, within=args.timeout)
                timings[runner.consumer.name] = time.monotonic() - started
                return handled

            stop = asyncio.Event()
            others = asyncio.create_task(longest_other_write(scratch.urls.owner, stop))
            handled = await asyncio.gather(*(run(r) for r in runners))
            elapsed = time.monotonic() - started
            stop.set()
            for runner, count in zip(runners, handled, strict=True):
                name = runner.consumer.name
                rate = count / timings[name]
                print(f"  {name:<13} {count} events in {timings[name]:.2f}s: {rate:,.0f} events/s")
            print(f"both consumers: {args.events / elapsed:,.0f} events/s (one worker process)")
            print(f"  longest write transaction in other databases: {await others:.2f}s")
            with psycopg.connect(scratch.urls.owner, **ADMIN_CONNECT) as conn:
                made = conn.execute("select count(*) from notification").fetchone()
                queued = conn.execute("select count(*) from webhook_delivery").fetchone()
            made_count, queued_count = made[0] if made else 0, queued[0] if queued else 0
            print(
                f"  notifications created: {made_count}; deliveries queued:"
                f" {queued_count}/{expected}"
            )

            deliverer = Deliverer(settings, worker_db, app_db)
            started = time.monotonic()
            stop = asyncio.Event()
            running = asyncio.create_task(deliverer.run(asyncio.Event(), stop, 0.05))
            async with asyncio.timeout(args.timeout):
                while await asyncio.to_thread(received, port) < expected:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            stop.set()
            await running
            elapsed = time.monotonic() - started
            await deliverer.aclose()
            print(
                f"webhook deliveries: {expected} in {elapsed:.2f}s: {expected / elapsed:,.0f}/s"
                f" (concurrency {settings.webhook_concurrency})"
            )
        finally:
            await worker_db.close()
            await app_db.close()
    finally:
        receiver.terminate()
        receiver.wait(10)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--teams", type=int, default=20)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8, help="webhook deliveries at once")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per phase")
    parser.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    )
    args = parser.parse_args(argv)
    overrides = {
        "worker_batch_size": args.batch_size,
        "webhook_concurrency": args.concurrency,
        "webhook_allow_http": True,
        "webhook_allowed_networks": "127.0.0.1/32",
    }
    with scratch_teamboard(args.database_url, **overrides) as scratch:
        return asyncio.run(measure(scratch, args))


if __name__ == "__main__":
    sys.exit(main())
