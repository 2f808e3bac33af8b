"""Event-log consumers: commit order, several workers, crashes, and the worker process.

Test consumers record what they are handed (only the events of their own test's team: a
consumer reads every team's log). Events are appended on the app role, in transactions
whose length the tests control.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from teamboard.config import Settings
from teamboard.db import Database, Tx
from teamboard.events.log import LoggedEvent, Offset
from teamboard.events.repository import append
from teamboard.ops.database import DatabaseUrls
from teamboard.worker import consumers
from teamboard.worker.consumers import ConsumerRunner
from tests.collab import Owner, create_project, create_task, mention, post_comment
from tests.conftest import Actor
from tests.reliability.processes import COMMAND, process_env

MakeUser = Callable[..., Actor]
MakeTeam = Callable[..., Awaitable[uuid.UUID]]


@dataclass
class Recorder:
    """A consumer that records the test events of one team, with who handled them."""

    name: str
    team: uuid.UUID
    actor: Actor
    seen: list[tuple[str, LoggedEvent]] = field(default_factory=list)
    label: str = "main"
    delay: float = 0.0

    def handled_by(self, label: str) -> Recorder:
        """The same consumer (name, record) run by another worker."""
        return Recorder(self.name, self.team, self.actor, self.seen, label, self.delay)

    async def handle(self, events: Sequence[LoggedEvent], tx: Tx) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.seen += [
            (self.label, e) for e in events if e.team_id == self.team and e.kind == "test.written"
        ]

    @property
    def ids(self) -> list[uuid.UUID]:
        return [event.id for _, event in self.seen]


@pytest.fixture
async def recorder(worker_db: Database, make_user: MakeUser, make_team: MakeTeam) -> Recorder:
    """A fresh consumer, registered at the current position, for a fresh team."""
    actor = make_user("writer")
    recorder = Recorder(f"test_{uuid.uuid4().hex[:12]}", await make_team(actor), actor=actor)
    await consumers.register(worker_db, recorder.name)
    return recorder


def logged(owner: Owner, team: uuid.UUID) -> list[uuid.UUID]:
    """The team's events in offset order."""
    rows = owner.execute(
        "select id from event where team_id = %s and kind = 'test.written' order by tx_id, seq",
        (team,),
    ).fetchall()
    return [row["id"] for row in rows]


async def write(app: Any, actor: Actor, team: uuid.UUID, count: int = 1, hold: float = 0.0) -> None:
    """``count`` events in one transaction that stays open ``hold`` seconds after them."""
    async with app.state.services.db.transaction(user_id=actor.id, team_id=team) as tx:
        for n in range(count):
            await append(tx, "test.written", subject_id=None, payload={"n": n})
        await asyncio.sleep(hold)


@asynccontextmanager
async def running(runner: ConsumerRunner, idle: float = 0.05) -> AsyncIterator[asyncio.Event]:
    """Run a consumer (as the worker does) until the block ends; yields its stop flag."""
    stop = asyncio.Event()
    task = asyncio.create_task(consumers.run(runner, asyncio.Event(), stop, idle))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def until(predicate: Callable[[], bool], within: float = 90.0) -> None:
    """Poll ``predicate`` (state changed by other tasks, or in the database) until true."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - nothing to await but time
            await asyncio.sleep(0.02)


# --------------------------------------------------------------------------- commit order


async def test_a_transaction_that_commits_late_is_not_skipped(
    app: Any, owner: Owner, worker_db: Database, recorder: Recorder
) -> None:
    """A long transaction appends first (smaller transaction id) and commits last: the
    consumer holds back the later events until it commits, then reads it first."""
    runner = ConsumerRunner(worker_db, recorder, batch_size=100)
    appended, release = asyncio.Event(), asyncio.Event()

    async def long_transaction() -> None:
        async with app.state.services.db.transaction(
            user_id=recorder.actor.id, team_id=recorder.team
        ) as tx:
            await append(tx, "test.written", subject_id=None, payload={"long": True})
            appended.set()
            await release.wait()

    long = asyncio.create_task(long_transaction())
    await appended.wait()
    for _ in range(5):
        await write(app, recorder.actor, recorder.team)  # later ids, committed first
    assert await runner.acquire()
    try:
        result = await runner.run_batch()
        assert result.pending, "the committed events wait for the older transaction"
        assert recorder.ids == []
    finally:
        await runner.release()
    release.set()
    await long
    await consumers.drain(runner, within=90)
    assert recorder.ids == logged(owner, recorder.team)
    assert len(recorder.ids) == 6
    assert recorder.seen[0][1].payload == {"long": True}


async def test_concurrent_long_and_short_transactions_lose_nothing(
    app: Any, owner: Owner, worker_db: Database, recorder: Recorder
) -> None:
    """Writers with short and long transactions commit in every order while the consumer
    runs: it hands over every event once, in offset order."""
    rng = random.Random(5)

    async def writer() -> None:
        await asyncio.sleep(rng.uniform(0, 0.5))
        hold = rng.uniform(0.4, 1.5) if rng.random() < 0.2 else rng.uniform(0, 0.02)
        await write(app, recorder.actor, recorder.team, rng.randint(1, 3), hold)

    runner = ConsumerRunner(worker_db, recorder, batch_size=7)
    async with running(runner):
        await asyncio.gather(*(writer() for _ in range(60)))
        expected = logged(owner, recorder.team)
        await until(lambda: len(recorder.seen) >= len(expected))
    assert recorder.ids == expected
    offsets = [event.offset for _, event in recorder.seen]
    assert offsets == sorted(offsets)


# --------------------------------------------------------------------------- several workers


async def test_several_workers_process_each_event_once(
    app: Any, owner: Owner, worker_db: Database, recorder: Recorder
) -> None:
    """Three workers run the same consumer; the one that owns it stops halfway (as on
    SIGTERM) and another takes over: every event is handled exactly once."""
    runners = [
        ConsumerRunner(worker_db, recorder.handled_by(f"w{i}"), batch_size=5) for i in range(3)
    ]
    async with (
        running(runners[0]) as stop0,
        running(runners[1]) as stop1,
        running(runners[2]) as stop2,
    ):
        stops = {"w0": stop0, "w1": stop1, "w2": stop2}
        for n in range(30):
            await write(app, recorder.actor, recorder.team, 10)
            if n == 12:
                await until(lambda: len(recorder.seen) >= 100)
                stops[recorder.seen[-1][0]].set()  # the current owner leaves
        expected = logged(owner, recorder.team)
        await until(lambda: len(recorder.seen) >= len(expected))
        await asyncio.sleep(0.3)  # nobody handles anything twice meanwhile
    assert recorder.ids == expected
    assert len(expected) == 300
    assert len({label for label, _ in recorder.seen}) >= 2, "another worker took over"


async def test_a_worker_whose_session_dies_is_replaced_without_losing_events(
    app: Any, owner: Owner, worker_db: Database, recorder: Recorder
) -> None:
    """The owner's session is killed mid-batch (a crash): its lock goes with it, a standby
    takes over from the stored offset, and no event is lost (at least once: the batch in
    flight may be handed over again, which is why handlers are idempotent)."""
    slow = recorder.handled_by("crashing")
    slow.delay = 0.3
    crashing = ConsumerRunner(worker_db, slow, batch_size=20)
    standby = ConsumerRunner(worker_db, recorder.handled_by("standby"), batch_size=20)
    for _ in range(10):
        await write(app, recorder.actor, recorder.team, 10)
    async with running(crashing) as crash:
        await until(lambda: bool(recorder.seen))
        async with running(standby):
            killed = owner.execute(
                "select pg_terminate_backend(l.pid) as killed from pg_locks l"
                " cross join hashtextextended('tb_consumer:' || %s, 0) k"
                " where l.locktype = 'advisory' and l.objsubid = 1"
                " and l.classid::bigint = (k >> 32) & 4294967295"
                " and l.objid::bigint = k & 4294967295",
                (recorder.name,),
            ).fetchall()
            assert [row["killed"] for row in killed] == [True]
            crash.set()  # its process is gone with its session
            for _ in range(5):
                await write(app, recorder.actor, recorder.team, 10)
            expected = logged(owner, recorder.team)
            await until(lambda: set(expected) <= set(recorder.ids))
    assert any(label == "standby" for label, _ in recorder.seen)
    assert set(recorder.ids) == set(expected)
    assert len(recorder.ids) - len(expected) <= 20, "at most the batch in flight again"
    stored = owner.execute(
        "select tx_id::text || '-' || seq as o from event_consumer where name = %s",
        (recorder.name,),
    ).fetchone()
    assert stored is not None
    assert Offset.parse(stored["o"]) >= max(event.offset for _, event in recorder.seen)


# --------------------------------------------------------------------------- the process


async def test_the_worker_process_notifies_folds_and_stops_gracefully(
    client: httpx.AsyncClient,
    app: Any,
    owner: Owner,
    settings: Settings,
    db_urls: DatabaseUrls,
    make_user: MakeUser,
    make_team: MakeTeam,
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    team = await make_team(alice, members=[(bob, "member")])
    task = await create_task(app, alice, team, await create_project(client, alice, team, "WRK"))
    process = subprocess.Popen(  # noqa: S603, ASYNC220 - our own command, started once
        [COMMAND, "worker"],
        env=process_env(settings, db_urls, WORKER_IDLE_SECONDS="0.2", ANALYTICS_FOLD_SECONDS="0.2"),
    )
    try:
        await post_comment(client, alice, team, task, f"{mention(bob)} over to you")

        def notified() -> bool:
            row = owner.execute(
                "select count(*) as n from notification where recipient_id = %s", (bob.id,)
            ).fetchone()
            return row is not None and row["n"] == 1

        await until(notified, within=60)

        def folded() -> bool:
            row = owner.execute(
                "select coalesce(sum(value), 0) as n from analytics_daily"
                " where team_id = %s and metric = 'events' and dim = 'comment.created'",
                (team,),
            ).fetchone()
            return row is not None and row["n"] == 1

        await until(folded, within=60)
        held = owner.execute(
            "select count(*) as n from pg_locks l join pg_stat_activity a on a.pid = l.pid"
            " where l.locktype = 'advisory' and a.usename = %s",
            (db_urls.worker_role,),
        ).fetchone()
        assert held == {"n": 2}, "the worker owns both consumers"
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 30)
        assert code == 0
        assert time.monotonic() - started < 15
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    released = owner.execute(
        "select count(*) as n from pg_locks l join pg_stat_activity a on a.pid = l.pid"
        " where l.locktype = 'advisory' and a.usename = %s",
        (db_urls.worker_role,),
    ).fetchone()
    assert released == {"n": 0}, "its locks went with it: another worker may take over"
