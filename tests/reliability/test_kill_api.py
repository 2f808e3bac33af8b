"""kill -9 of the API under a write load: idempotent retries lose nothing and duplicate nothing.

Writers create tasks and comments concurrently against a real ``teamboard serve`` process,
each write with its own ``Idempotency-Key``, retrying with the same key and body on
connection errors, timeouts, 5xx and 409 ``idempotency_in_flight`` until it is answered.
Meanwhile the process is killed with SIGKILL at random moments of the load and restarted.
A kill lands anywhere: before a transaction commits (rolled back; the retry does the work),
after it commits but before the answer leaves (the retry gets the stored answer), or
between requests.

Afterwards, through the owner connection: every acknowledged write exists exactly once,
with the id it was acknowledged with; nothing exists that was not acknowledged (every write
was eventually answered); no write exists twice; each write appended exactly one event.
Then every key is sent again: it answers the acknowledged response, byte for byte, marked
as a replay.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from tests.collab import Owner, create_project, create_task
from tests.conftest import Actor
from tests.profile import pick
from tests.reliability.processes import (  # noqa: F401 - processes_fixture: a fixture
    Api,
    Processes,
    processes_fixture,
    until,
)
from tests.work import MakeTeam, MakeUser

API = "/api/v1"
CYCLES = pick(3, 20)
WRITERS = 8
#: Writes acknowledged after a (re)start before the next kill, at least: the kill then
#: lands under load, at a random moment after that.
WRITES_PER_CYCLE = pick(15, 25)
MAX_WRITES = pick(2_000, 20_000)
TIME_BUDGET = pick(120.0, 900.0)  # seconds, for the whole load
TITLE = "kill-api"


@dataclass
class Write:
    """One idempotent POST, and what the client finally saw."""

    kind: str  # "task" | "comment"
    path: str
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    attempts: int = 0
    status: int = 0
    body: bytes = b""
    replayed: bool = False

    @property
    def text(self) -> str:
        """The title or comment body: names the write in the database."""
        return f"{TITLE} {self.key}"

    @property
    def json(self) -> dict[str, str]:
        return {"title": self.text} if self.kind == "task" else {"body": self.text}

    @property
    def headers(self) -> dict[str, str]:
        return {"Idempotency-Key": self.key}


@dataclass
class Load:
    """Writers that retry each write until it is answered (bounded in time)."""

    client: httpx.AsyncClient
    tasks_path: str
    comments_path: str
    deadline: float
    rng: random.Random
    acknowledged: list[Write] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)

    async def submit(self, write: Write) -> None:
        """Send until a 2xx; a client error other than "still in flight" fails the test."""
        backoff = 0.05
        while True:
            if time.monotonic() > self.deadline:
                raise AssertionError(f"{write.kind} {write.key} unanswered: {self.failures}")
            write.attempts += 1
            try:
                response = await self.client.post(
                    write.path, json=write.json, headers=write.headers
                )
            except httpx.TransportError as exc:  # refused, reset, timed out: the API is down
                self.failures[type(exc).__name__] += 1
            else:
                if response.is_success:
                    write.status, write.body = response.status_code, response.content
                    write.replayed = response.headers.get("idempotent-replayed") == "true"
                    self.acknowledged.append(write)
                    return
                code = _code(response)
                if response.status_code < 500 and code != "idempotency_in_flight":
                    raise AssertionError(f"{write.kind} refused: {response.status_code} {code}")
                self.failures[f"{response.status_code} {code}"] += 1
            await asyncio.sleep(backoff * self.rng.uniform(0.5, 1.0))
            backoff = min(backoff * 2, 0.5)

    async def writer(self, stop: asyncio.Event) -> None:
        while not stop.is_set() and len(self.acknowledged) < MAX_WRITES:
            if self.rng.random() < 0.25:
                await self.submit(Write("comment", self.comments_path))
            else:
                await self.submit(Write("task", self.tasks_path))

    async def acknowledged_more(self, count: int) -> None:
        """Wait until the writers got ``count`` more writes acknowledged."""
        target = len(self.acknowledged) + count
        await until(
            lambda: len(self.acknowledged) >= target,
            within=self.deadline - time.monotonic(),
            what=f"{target} writes acknowledged",
        )

    @property
    def retries(self) -> int:
        return sum(write.attempts - 1 for write in self.acknowledged)


def _code(response: httpx.Response) -> str:
    if response.headers.get("content-type", "").startswith("application/problem+json"):
        return str(response.json().get("code"))
    return ""


async def test_kill_9_of_the_api_under_writes_loses_and_duplicates_nothing(
    client: httpx.AsyncClient,
    app: Any,
    owner: Owner,
    processes: Processes,
    make_user: MakeUser,
    make_team: MakeTeam,
) -> None:
    alice: Actor = make_user("alice")
    team = await make_team(alice)
    project = await create_project(client, alice, team, "KIL")
    commented = await create_task(app, alice, team, project, "commented on")
    api: Api = await processes.api()
    rng = random.Random(20)
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=api.url, headers=alice.headers, timeout=10) as http:
        load = Load(
            http,
            f"{API}/teams/{team}/projects/{project}/tasks",
            f"{API}/teams/{team}/tasks/{commented}/comments",
            deadline=started + TIME_BUDGET,
            rng=rng,
        )
        stop = asyncio.Event()
        restarts: list[float] = []
        async with asyncio.TaskGroup() as writers:  # a failing writer stops the kills
            for _ in range(WRITERS):
                writers.create_task(load.writer(stop))
            try:
                for _ in range(CYCLES):
                    await load.acknowledged_more(WRITES_PER_CYCLE)
                    await asyncio.sleep(rng.uniform(0, 0.3))
                    await api.kill()
                    restarts.append(await api.restart())
            finally:
                stop.set()

        check_database(owner, team, load.acknowledged)
        await check_replays(http, load.acknowledged)

    replays = sum(write.replayed for write in load.acknowledged)
    print(
        f"\n[kill-api] cycles={CYCLES} acknowledged={len(load.acknowledged)}"
        f" retries={load.retries} replayed_during_load={replays} duplicates=0 lost=0"
        f" failures={dict(load.failures)} restart_to_ready_max={max(restarts):.1f}s"
        f" elapsed={time.monotonic() - started:.1f}s"
    )


def check_database(owner: Owner, team: uuid.UUID, acknowledged: list[Write]) -> None:
    """Every acknowledged write exists once with its acknowledged id; nothing else does."""
    rows = owner.execute(
        "select 'task' as kind, id, title as text from task where team_id = %(team)s"
        " and title like %(prefix)s"
        " union all select 'comment', id, body from comment where team_id = %(team)s"
        " and body like %(prefix)s",
        {"team": team, "prefix": f"{TITLE} %"},
    ).fetchall()
    stored = Counter((row["kind"], row["text"]) for row in rows)
    duplicates = {name: n for name, n in stored.items() if n > 1}
    assert duplicates == {}, f"{len(duplicates)} writes exist more than once"
    expected = {(write.kind, write.text) for write in acknowledged}
    lost = expected - set(stored)
    assert lost == set(), f"{len(lost)} acknowledged writes are missing"
    assert set(stored) - expected == set(), "a write exists that was never acknowledged"
    ids = {(row["kind"], row["text"]): str(row["id"]) for row in rows}
    for write in acknowledged:
        acknowledged_id = orjson.loads(write.body)["id"]
        assert acknowledged_id == ids[(write.kind, write.text)], f"{write.key}: another id"
    events = owner.execute(
        "select kind, count(*) as n, count(distinct coalesce(payload ->> 'comment_id',"
        " subject_id::text)) as subjects from event where team_id = %s"
        " and kind in ('task.created', 'comment.created') group by kind",
        (team,),
    ).fetchall()
    counts = Counter(write.kind for write in acknowledged)
    assert {row["kind"]: (row["n"], row["subjects"]) for row in events} == {
        # + the task that is commented on, created before the load
        "task.created": (counts["task"] + 1, counts["task"] + 1),
        "comment.created": (counts["comment"], counts["comment"]),
    }


async def check_replays(http: httpx.AsyncClient, acknowledged: list[Write]) -> None:
    """Each key, sent again after the restarts, answers its acknowledged response."""
    for write in acknowledged:
        again = await http.post(write.path, json=write.json, headers=write.headers)
        assert again.status_code == write.status, write.key
        assert again.content == write.body, write.key
        assert again.headers.get("idempotent-replayed") == "true", write.key
