"""A worker killed mid-batch loses no event and delivers no webhook twice beyond its key.

Tasks are created (each with an assignee: ``task.created`` and ``task.assigned`` events)
while a real ``teamboard worker`` process consumes the log in small batches and delivers a
``task.*`` webhook to a receiver on 127.0.0.1 that records every request. The worker is
killed with SIGKILL while it is delivering (after the receiver saw some of the deliveries
since its start), restarted, and killed again, a few times; then it is left to finish and
stopped with SIGTERM.

A kill cuts everything at once: a consumer batch whose offset did not commit (its events
come again), deliveries claimed and maybe already received whose outcome was not recorded
(their lease must expire before another worker takes them: at least once), an analytics
fold in progress (rolled back). What must hold afterwards:

* every webhook event has exactly one delivery, succeeded, and the receiver saw every event;
  a redelivery carries the delivery id of the first attempt (``Teamboard-Delivery``, the
  receiver's idempotency key), so after dedup by key each event arrived exactly once;
* every ``task.assigned`` event notified its assignee exactly once;
* the analytics rollups count exactly the raw events (nothing skipped, nothing folded twice).

A dead worker's deliveries stay leased for ``2 x WEBHOOK_TIMEOUT_SECONDS + 30`` seconds. The
short profile ages those leases (through the owner connection, as if the time had passed)
to stay within CI's budget; the long profile waits for them to expire.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from teamboard.webhooks import signing
from tests.collab import API, Owner, create_project
from tests.conftest import Actor
from tests.live import served_in_thread
from tests.profile import pick
from tests.reliability.processes import (  # noqa: F401 - processes_fixture: a fixture
    Process,
    Processes,
    processes_fixture,
    until,
)
from tests.work import MakeTeam, MakeUser

KILLS = pick(3, 12)
TASKS_PER_ROUND = pick(40, 80)
AGE_LEASES = pick(True, False)
RECEIVER_DELAY = 0.02  # seconds per delivery: deliveries are in flight when the kill comes
WORKER = {
    "WORKER_BATCH_SIZE": "10",  # small batches: a kill lands in the middle of the log
    "WORKER_IDLE_SECONDS": "0.2",
    "ANALYTICS_FOLD_SECONDS": "0.2",
    "WEBHOOK_CONCURRENCY": "4",
    "WEBHOOK_TIMEOUT_SECONDS": "2",
    "WEBHOOK_RETRY_BASE_SECONDS": "0.1",
    "WEBHOOK_RETRY_MAX_SECONDS": "0.5",
}


@dataclass(frozen=True)
class Delivery:
    """One request the receiver got."""

    delivery_id: str  # the idempotency key of a webhook delivery
    event_id: str
    kind: str


@dataclass
class Receiver:
    """Records every delivery as it arrives (before answering, as a receiver that processes
    first and acknowledges after would), then answers 200 after a short delay."""

    port: int = 0
    received: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    async def received_more(self, count: int, since: int) -> None:
        """Wait until ``count`` more deliveries arrived than the ``since`` first ones."""
        await until(
            lambda: self.count() >= since + count,
            within=90,
            what=f"{since + count} deliveries received",
        )

    def snapshot(self) -> list[Delivery]:
        with self.lock:
            return list(self.received)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            delivery = Delivery(
                self.headers[signing.DELIVERY_HEADER], body["event"]["id"], body["event"]["kind"]
            )
            with state.lock:
                state.received.append(delivery)
            time.sleep(RECEIVER_DELAY)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # the worker was killed while we answered: its connection is gone

    with served_in_thread(Server(("127.0.0.1", 0), Handler)) as state.port:
        yield state


@dataclass
class Scene:
    """A team whose owner writes tasks assigned to a member, with a ``task.*`` webhook."""

    client: httpx.AsyncClient
    owner: Owner
    team: uuid.UUID
    alice: Actor
    bob: Actor
    tasks_path: str

    async def create_tasks(self, count: int) -> None:
        """``count`` tasks, four requests at a time (each: two events)."""
        gate = asyncio.Semaphore(4)

        async def one(n: int) -> None:
            async with gate:
                response = await self.client.post(
                    self.tasks_path,
                    json={"title": f"task {n}", "assignee_ids": [str(self.bob.id)]},
                    headers=self.alice.headers,
                )
                assert response.status_code == 201, response.text

        await asyncio.gather(*(one(n) for n in range(count)))

    def rows(self, query: str) -> list[dict[str, Any]]:
        return list(self.owner.execute(query, {"team": self.team}).fetchall())

    def leased(self) -> int:
        """Deliveries claimed by a worker and not finished (in flight)."""
        return len(
            self.rows(
                "select id from webhook_delivery where team_id = %(team)s"
                " and status = 'pending' and locked_until > now()"
            )
        )

    def unconsumed(self) -> int:
        """Webhook events the ``webhooks`` consumer has not queued yet (its backlog)."""
        return len(
            self.rows(
                "select e.id from event e where e.team_id = %(team)s and e.kind like 'task.%%'"
                " and not exists (select from webhook_delivery d"
                "  where d.team_id = e.team_id and d.event_id = e.id)"
            )
        )

    def age_leases(self) -> None:
        """What the passing of the lease time does to a dead worker's claims."""
        self.owner.execute(
            "update webhook_delivery set locked_until = now() where team_id = %(team)s"
            " and status = 'pending' and locked_until > now()",
            {"team": self.team},
        )


@pytest.fixture
async def scene(
    client: httpx.AsyncClient,
    owner: Owner,
    make_user: MakeUser,
    make_team: MakeTeam,
    receiver: Receiver,
) -> Scene:
    alice, bob = make_user("alice"), make_user("bob")
    team = await make_team(alice, members=[(bob, "member")])
    project = await create_project(client, alice, team, "WRK")
    hook = await client.post(
        f"{API}/teams/{team}/webhooks",
        json={"url": receiver.url, "kinds": ["task.*"]},
        headers=alice.headers,
    )
    assert hook.status_code == 201, hook.text
    return Scene(
        client,
        owner,
        team,
        alice,
        bob,
        f"{API}/teams/{team}/projects/{project}/tasks",
    )


async def test_a_worker_killed_mid_batch_loses_nothing_and_delivers_once_per_key(
    scene: Scene, receiver: Receiver, processes: Processes
) -> None:
    rng = random.Random(9)
    started = time.monotonic()
    worker: Process = processes.worker(**WORKER)
    cut_in_flight = backlog_at_kills = 0
    for _ in range(KILLS):
        if not worker.running:
            worker.start()
        seen = receiver.count()
        production = asyncio.create_task(scene.create_tasks(TASKS_PER_ROUND))
        await receiver.received_more(rng.randint(5, TASKS_PER_ROUND), since=seen)
        await worker.kill()
        cut_in_flight += scene.leased()
        backlog_at_kills += scene.unconsumed()
        await production
        if AGE_LEASES:
            scene.age_leases()

    await scene.create_tasks(TASKS_PER_ROUND)  # while the worker is down
    worker.start()
    expected = expected_events(scene)
    await until(
        lambda: everything_arrived(scene, receiver, expected),
        within=pick(90, 150),
        what="every event consumed, delivered, notified and folded",
    )
    assert await worker.stop() == 0, worker.tail()

    received = receiver.snapshot()
    keys_by_event = check_deliveries(scene, received, expected)
    check_notifications(scene)
    check_rollups(scene)
    print(
        f"\n[kill-worker] kills={KILLS} events={sum(expected.values())}"
        f" webhook_events={len(keys_by_event)} received={len(received)}"
        f" raw_redeliveries={len(received) - len(keys_by_event)}"
        f" deliveries_cut_in_flight={cut_in_flight} unconsumed_at_kills={backlog_at_kills}"
        f" after_dedup_by_key=1_per_event"
        f" lost=0 aged_leases={AGE_LEASES} elapsed={time.monotonic() - started:.1f}s"
    )


def expected_events(scene: Scene) -> Counter[str]:
    """The team's whole log by kind (final: nothing is being written any more)."""
    rows = scene.rows(
        "select kind, count(*) as n from event where team_id = %(team)s group by kind"
    )
    return Counter({row["kind"]: row["n"] for row in rows})


def everything_arrived(scene: Scene, receiver: Receiver, expected: Counter[str]) -> bool:
    webhook_events = sum(n for kind, n in expected.items() if kind.startswith("task."))
    delivered = {d.event_id for d in receiver.snapshot()}
    done = scene.rows(
        "select count(*) as n from webhook_delivery where team_id = %(team)s"
        " and status <> 'pending'"
    )[0]["n"]
    notified = scene.rows(
        "select count(distinct event_id) as n from notification where team_id = %(team)s"
    )[0]["n"]
    return (
        len(delivered) >= webhook_events
        and done >= webhook_events
        and notified >= expected["task.assigned"]
        and folded(scene) == expected
    )


def folded(scene: Scene) -> Counter[str]:
    rows = scene.rows(
        "select dim, sum(value) as n from analytics_team_daily"
        " where team_id = %(team)s and metric = 'events' group by dim"
    )
    return Counter({row["dim"]: int(row["n"]) for row in rows})


def check_deliveries(
    scene: Scene, received: list[Delivery], expected: Counter[str]
) -> dict[str, set[str]]:
    """One succeeded delivery per webhook event; the receiver saw each event, and every
    request for an event carried that delivery's id. Returns the keys seen per event."""
    stored = scene.rows(
        "select event_id::text, id::text, status from webhook_delivery"
        " where team_id = %(team)s and redelivery_of is null"
    )
    events = scene.rows(
        "select id::text from event where team_id = %(team)s and kind like 'task.%%'"
    )
    assert sorted(row["event_id"] for row in stored) == sorted(row["id"] for row in events)
    assert sum(n for kind, n in expected.items() if kind.startswith("task.")) == len(events)
    assert {row["status"] for row in stored} == {"succeeded"}
    keys_by_event: dict[str, set[str]] = defaultdict(set)
    for delivery in received:
        assert delivery.kind.startswith("task.")
        keys_by_event[delivery.event_id].add(delivery.delivery_id)
    assert set(keys_by_event) == {row["event_id"] for row in stored}, "an event never arrived"
    assert {row["event_id"]: {row["id"]} for row in stored} == keys_by_event, (
        "an event arrived under two idempotency keys"
    )
    return keys_by_event


def check_notifications(scene: Scene) -> None:
    """Each ``task.assigned`` event notified bob, once."""
    assigned = scene.rows(
        "select id from event where team_id = %(team)s and kind = 'task.assigned'"
    )
    notified = scene.rows(
        "select event_id, recipient_id, kind from notification where team_id = %(team)s"
    )
    assert sorted(row["event_id"] for row in notified) == sorted(row["id"] for row in assigned)
    assert {(row["recipient_id"], row["kind"]) for row in notified} == {(scene.bob.id, "assigned")}


def check_rollups(scene: Scene) -> None:
    """The rollups count each raw task event once, per local day, project and kind, and
    each created task once."""
    mismatched = scene.rows(
        "select coalesce(r.day, e.day) as day, coalesce(r.dim, e.kind) as kind,"
        " r.n as folded, e.n as raw from"
        " (select day, project_id, dim, value as n from analytics_daily"
        "  where team_id = %(team)s and metric = 'events' and dim like 'task.%%') r"
        " full join (select (e.occurred_at at time zone s.time_zone)::date as day,"
        "  e.project_id, e.kind, count(*) as n from event e"
        "  join analytics_state s on s.team_id = e.team_id"
        "  where e.team_id = %(team)s and e.kind like 'task.%%' group by 1, 2, 3) e"
        " on e.day = r.day and e.project_id = r.project_id and e.kind = r.dim"
        " where r.n is distinct from e.n"
    )
    assert mismatched == []
    created = scene.rows(
        "select (select sum(value) from analytics_daily where team_id = %(team)s"
        " and metric = 'created') as folded,"
        " (select count(*) from task where team_id = %(team)s) as raw"
    )
    assert created[0]["folded"] == created[0]["raw"]
