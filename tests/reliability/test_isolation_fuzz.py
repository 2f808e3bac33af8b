"""Property-based isolation fuzzing across REST, GraphQL and the SSE feed (issue 7, point 2).

Each example builds three teams (:mod:`tests.reliability.isolation_model`), opens a feed
subscription for every caller of every team on a live server, then runs a random program
of steps. A step is one caller (owner, member, guest or API key of one team) trying one
operation of one interface, either on its own team's objects or on another team's
(its ids, project and task keys, list cursors, team id, search markers).

Invariants, checked after every step:

* a caller never reads another team's data: no foreign id, marker (every name, title and
  body carries its team's marker) or cursor in any REST body, GraphQL result or SSE frame;
* a request aimed at another team is indistinguishable from the same request on ids that
  exist nowhere (same status, content type, and body once the foreign values are replaced
  by the missing ones; GraphQL: the same data, nulls and errors), and changes no row of
  any team (digests of every tenant table through the ``owner`` connection). The SQL
  statement count, a test-only header, is not compared: another team's valid cursor
  costs the page's fetch before the refusal;
* an operation on the caller's own team never answers 5xx and changes no other team;
* subscribing to another team's feed fails exactly like subscribing to a missing team;
  resuming one's own feed from another team's offset replays one's own events only; and
  every frame of every open subscription belongs to the subscriber's team.

Attempts per interface are counted and printed; the long profile must reach 10,000 each.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from teamboard.config import Settings
from tests.collab import create_project
from tests.conftest import Actor
from tests.live import Frame, LiveServer, Stream, live_server, subscribe
from tests.profile import LONG, pick
from tests.reliability.isolation_model import (
    API,
    ROLES,
    Owner,
    Secrets,
    Team,
    build_team,
    digest,
    missing_twin,
)
from tests.test_graphql_isolation import OPERATIONS, _used
from tests.test_isolation_rest import ROUTES, _fill
from tests.test_realtime import live_settings

INTERFACES = ("rest", "graphql", "sse")
TARGET = 10_000  # attempts per interface in the long profile (issue 7)
BUDGET = pick(75.0, 3_000.0)  # seconds: examples past it are skipped (the counts tell)
STEPS = pick((20, 40), (130, 170))  # program length (min, max)
EXAMPLES = pick(10, 250)
FEED_WAIT = 15.0  # seconds for a sentinel event to reach every subscriber

# Routes beyond the matrix of test_isolation_rest: cursors (a team's own, on its lists or
# another's), search, and references to another team's objects in the body of a write on
# one's own team.
NEW_TASK = "/api/v1/teams/{own}/projects/{own_project}/tasks"
EXTRA_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/v1/teams/{own}/tasks?limit=1&cursor={cursor}", None),
    ("GET", "/api/v1/teams/{own}/projects?limit=1&cursor={cursor}", None),
    ("GET", "/api/v1/teams/{team}/tasks?limit=1&cursor={cursor}", None),
    ("GET", "/api/v1/teams/{team}/projects/{project}/tasks?limit=1&cursor={cursor}", None),
    ("GET", "/api/v1/teams/{team}/time-entries?limit=1&cursor={cursor}", None),
    ("GET", "/api/v1/teams/{team}/tasks/{task}/attachments?limit=1&cursor={cursor}", None),
    ("GET", "/api/v1/teams/{team}/analytics/drilldown?limit=1&cursor={cursor}", None),
    ("GET", "/api/v1/teams/{own}/search?q={q}", None),
    ("GET", "/api/v1/teams/{team}/search?q={q}", None),
    ("GET", "/api/v1/teams/{own}/tasks?q={q}", None),
    ("GET", "/api/v1/teams/{own}/tasks?assignee_id={user}", None),
    ("POST", NEW_TASK, {"title": "x", "label_ids": ["{label}"]}),
    ("POST", NEW_TASK, {"title": "x", "status_id": "{status}"}),
    ("POST", NEW_TASK, {"title": "x", "parent_id": "{task}"}),
    ("POST", NEW_TASK, {"title": "x", "assignee_ids": ["{user}"]}),
    ("PATCH", "/api/v1/teams/{own}/tasks/{own_task}", {"assignee_ids": ["{user}"]}),
    ("PATCH", "/api/v1/teams/{own}/tasks/{own_task}", {"parent_id": "{task}"}),
    ("POST", "/api/v1/teams/{own}/tasks/{own_task}/move", {"before_id": "{task}"}),
    ("POST", "/api/v1/teams/{own}/projects/{own_project}/members", {"user_id": "{user}"}),
]
REST = [*ROUTES, *EXTRA_ROUTES]
# Routes a caller does not run on its own team: they would end the example's world (the
# team, its members) or never answer through the in-process client (the stream).
NOT_ON_OWN = {
    ("DELETE", "/api/v1/teams/{team}"),
    ("PATCH", "/api/v1/teams/{team}/members/{user}"),
    ("DELETE", "/api/v1/teams/{team}/members/{user}"),
    ("DELETE", "/api/v1/teams/{own}/projects/{project}/members/{user}"),
    ("DELETE", "/api/v1/teams/{own}/api-keys/{key_id}"),
    ("DELETE", "/api/v1/teams/{team}/api-keys/{key_id}"),
    ("GET", "/api/v1/teams/{team}/events/stream"),
}

# Reads of a whole team beyond the matrix of test_graphql_isolation, and references to
# another team's objects inside one's own team.
EXTRA_OPERATIONS = [
    """query($team: UUID!) { team(id: $team) {
      id name members(first: 50) { nodes { userId email displayName } }
      projects(first: 20) { nodes { id key name
        statuses(first: 20) { nodes { id name } } labels(first: 20) { nodes { id name } }
        members(first: 20) { nodes { userId displayName } }
        tasks(first: 20) { nodes { id key title description assignees { id displayName }
          labels { id name } parent { id title }
          comments(first: 5) { nodes { id body author { id displayName } } }
          attachments(first: 5) { nodes { id filename } }
          timeEntries(first: 5) { nodes { id note userId } }
          activity(first: 5) { nodes { id kind payload actor { id displayName } } } } } } }
      notifications(first: 20) { nodes { id task { id title ref } actor { id displayName } } }
      unreadNotificationCount } }""",
    "query($own: UUID!, $q: String!) {"
    " team(id: $own) { tasks(first: 20, filter: {q: $q}) { nodes { id title } } } }",
    "query($own: UUID!, $user: UUID!) {"
    " team(id: $own) { tasks(first: 20, filter: {assigneeIds: [$user]}) { nodes { id } } } }",
    "query($own: UUID!, $label: UUID!) {"
    " team(id: $own) { tasks(first: 20, filter: {labelIds: [$label]}) { nodes { id } } } }",
    "query($own: UUID!, $task: UUID!) { team(id: $own) {"
    " tasks(first: 20, filter: {parentId: $task}) { nodes { id } } } }",
    'query($own: UUID!, $project: UUID!) { team(id: $own) { analytics(window: "7d") {'
    " events(projectIds: [$project]) { total } flow(projectIds: [$project]) { series { started } }"
    " } } }",
    "{ viewer { id email } teams(first: 20) { nodes { id name } } }",
    "query($team: UUID!, $cursor: String!) {"
    " team(id: $team) { tasks(first: 1, after: $cursor) { nodes { key } } } }",
    "mutation($own: UUID!, $ownProject: UUID!, $label: UUID!) {"
    " createTask(teamId: $own, projectId: $ownProject,"
    ' input: {title: "x", labelIds: [$label]}) { id } }',
    "mutation($own: UUID!, $ownProject: UUID!, $user: UUID!) {"
    " createTask(teamId: $own, projectId: $ownProject,"
    ' input: {title: "x", assigneeIds: [$user]}) { id } }',
    "mutation($own: UUID!, $ownTask: UUID!, $task: UUID!) {"
    " updateTask(teamId: $own, id: $ownTask, input: {parentId: $task}) { id } }",
    "mutation($own: UUID!, $ownTask: UUID!, $task: UUID!) {"
    " moveTask(teamId: $own, id: $ownTask, input: {afterId: $task}) { id } }",
]
GRAPHQL = [*OPERATIONS, *EXTRA_OPERATIONS]
# SSE attempts: another team's feed (no offset, its offset, one's own offset), and one's
# own feed resumed from another team's offset.
SSE = ("foreign", "foreign-their-offset", "foreign-own-offset", "resume-from-foreign")
CATALOGUES: dict[str, list[Any]] = {"rest": REST, "graphql": GRAPHQL, "sse": list(SSE)}
CREATED_KINDS = {
    "projects": "project",
    "tasks": "task",
    "comments": "comment",
    "labels": "label",
    "statuses": "status",
    "time-entries": "entry",
    "start": "entry",
    "attachments": "attachment",
    "webhooks": "webhook",
    "api-keys": "key_id",
    "invitations": "invitation",
}


@dataclass(frozen=True)
class Step:
    """One attempt: a caller (``team``, ``role``) runs operation ``operation`` of
    ``interface`` on its own team's objects, or on those of team ``team + other``;
    ``pick`` chooses among the objects of each kind."""

    interface: str
    team: int
    role: str
    foreign: bool
    other: int
    operation: int
    pick: int


STEP = st.builds(
    Step,
    interface=st.sampled_from(INTERFACES),
    team=st.integers(0, 2),
    role=st.sampled_from(ROLES),
    foreign=st.booleans(),
    other=st.integers(1, 2),
    operation=st.integers(0, 10_000),
    pick=st.integers(0, 63),
)


class Subscriptions:
    """A feed subscription per caller of every team, read in the background."""

    def __init__(self) -> None:
        self.frames: list[tuple[Team, Frame]] = []
        self.checked = 0
        self._readers: list[asyncio.Task[None]] = []

    async def open(self, stack: AsyncExitStack, http: httpx.AsyncClient, teams: list[Team]) -> None:
        for team in teams:
            for actor in team.actors.values():
                stream = await stack.enter_async_context(subscribe(http, team.id, actor.headers))
                self._readers.append(asyncio.create_task(self._read(team, stream)))
        stack.push_async_callback(self._stop)

    async def _read(self, team: Team, stream: Stream) -> None:
        while (frame := await stream.next(within=3_600)) is not None:
            self.frames.append((team, frame))

    async def _stop(self) -> None:
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)

    def new(self) -> list[tuple[Team, Frame]]:
        fresh, self.checked = self.frames[self.checked :], len(self.frames)
        return fresh


class Fuzzer:
    """Runs steps against the world and checks the invariants after each."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        feed: httpx.AsyncClient,
        owner: Owner,
        teams: list[Team],
        counts: Counter[str],
    ) -> None:
        self.client, self.feed, self.owner, self.teams = client, feed, owner, teams
        self.secrets = Secrets(owner, teams)
        self.subscriptions = Subscriptions()
        self.counts = counts

    async def run(self, step: Step) -> None:
        operation = CATALOGUES[step.interface][step.operation % len(CATALOGUES[step.interface])]
        await getattr(self, step.interface)(step, operation)
        self.counts[step.interface] += 1
        self.check_frames()

    # ----------------------------------------------------------------------- REST

    async def rest(self, step: Step, route: tuple[str, str, dict[str, Any] | None]) -> None:
        method, template, body = route
        team = self.teams[step.team]
        actor = team.actors[step.role]

        def send(ids: dict[str, str]) -> Awaitable[httpx.Response]:
            values = {**ids, **self.own_values(team, step.pick)}
            return self.client.request(
                method,
                template.format(**values),
                json=None if body is None else _fill(body, values),
                headers=actor.headers,
            )

        if step.foreign or (method, template) in NOT_ON_OWN:
            await self.foreign(step, send, lambda r: (r.headers.get("content-type"), r.text))
            return
        others = self.other_teams(team)
        before = digest(self.owner, others)
        response = await send(team.ids(step.pick))
        self.check_own(team, response.status_code, response.text, f"{method} {template}")
        assert digest(self.owner, others) == before, f"{method} {template} changed another team"
        if method != "GET":
            self.secrets.stale = True
        if response.status_code == 201:
            segment = re.sub(r"\?.*", "", template).rstrip("/").rsplit("/", 1)[-1]
            if segment in CREATED_KINDS:
                team.remember(CREATED_KINDS[segment], response.json()["id"])

    # ----------------------------------------------------------------------- GraphQL

    async def graphql(self, step: Step, operation: str) -> None:
        team = self.teams[step.team]
        actor = team.actors[step.role]

        def send(ids: dict[str, str]) -> Awaitable[httpx.Response]:
            own = self.own_values(team, step.pick)
            values = {
                **ids,
                "own": own["own"],
                "ownTask": own["own_task"],
                "ownProject": own["own_project"],
            }
            return self.client.post(
                "/graphql",
                json={"query": operation, "variables": _used(operation, values)},
                headers=actor.headers,
            )

        if step.foreign:
            await self.foreign(step, send, lambda r: r.text)
            return
        others = self.other_teams(team)
        before = digest(self.owner, others)
        response = await send(team.ids(step.pick))
        self.check_own(team, response.status_code, response.text, operation)
        assert digest(self.owner, others) == before, f"{operation} changed another team"
        if operation.lstrip().startswith("mutation"):
            self.secrets.stale = True
            created = re.search(r"create(\w+)\(", operation)
            result = (response.json().get("data") or {}) if response.status_code == 200 else {}
            if created and result.get(f"create{created[1]}"):
                team.remember(created[1].lower(), result[f"create{created[1]}"]["id"])

    # ----------------------------------------------------------------------- SSE

    async def sse(self, step: Step, kind: str) -> None:
        team = self.teams[step.team]
        actor = team.actors[step.role]
        target = self.teams[(step.team + step.other) % len(self.teams)]
        if kind == "resume-from-foreign":
            await self.resume(team, actor, self.offset(target))
            return
        offset = {"foreign": None, "foreign-their-offset": target, "foreign-own-offset": team}
        source = offset[kind]
        extra = {} if source is None else {"Last-Event-ID": self.offset(source)}

        async def send(ids: dict[str, str]) -> tuple[int, str | None, str]:
            path = f"{API}/teams/{ids['team']}/events/stream"
            async with (
                asyncio.timeout(10),
                self.feed.stream("GET", path, headers={**actor.headers, **extra}) as response,
            ):
                if response.status_code == 200:
                    raise AssertionError(f"{step}: another team's feed opened")
                await response.aread()
                return response.status_code, response.headers.get("content-type"), response.text

        await self.foreign(step, send, lambda answer: answer, only=("team",))

    async def resume(self, team: Team, actor: Actor, offset: str) -> None:
        """Resume one's own feed from another team's offset: one's own events only."""
        async with subscribe(self.feed, team.id, {**actor.headers, "Last-Event-ID": offset}) as s:
            sentinel = await self.sentinel(team)
            async with asyncio.timeout(FEED_WAIT):
                while (frame := await s.next(FEED_WAIT)) is not None:
                    self.check_frame(team, frame)
                    if frame.event == "message" and _is(frame, sentinel):
                        return
        raise AssertionError("the resumed stream ended before the sentinel")

    # ----------------------------------------------------------------------- checks

    async def foreign(
        self,
        step: Step,
        send: Callable[[dict[str, str]], Awaitable[Any]],
        observe: Callable[[Any], Any],
        only: tuple[str, ...] | None = None,
    ) -> None:
        """The request on the other team's objects (``only``: just those values), then its
        twin on missing ones: the same answer once the foreign values are
        replaced by the missing ones, and no row of any team changed."""
        target = self.teams[(step.team + step.other) % len(self.teams)]
        ids = target.ids(step.pick)
        if only is not None:
            ids = {name: ids[name] for name in only}
        twin = missing_twin(ids)
        before = digest(self.owner, [t.id for t in self.teams])
        foreign, missing = await send(ids), await send(twin)
        assert digest(self.owner, [t.id for t in self.teams]) == before, f"{step} wrote"
        seen, expected = observe(foreign), observe(missing)
        if isinstance(foreign, httpx.Response):
            seen, expected = (foreign.status_code, seen), (missing.status_code, expected)
        assert _replace(seen, ids, twin) == expected, f"{step}: foreign differs from missing"

    def check_own(self, team: Team, status: int, text: str, what: str) -> None:
        assert status < 500, f"{what}: {status} {text}"
        leaks = self.secrets.leaks(team, text)
        assert not leaks, f"{what} leaked {leaks}: {text}"

    def check_frame(self, team: Team, frame: Frame) -> None:
        if frame.event != "message":
            return
        assert frame.data["team_id"] == str(team.id), frame
        leaks = self.secrets.leaks(team, orjson.dumps(frame.data).decode())
        assert not leaks, f"frame leaked {leaks}: {frame}"

    def check_frames(self) -> None:
        for team, frame in self.subscriptions.new():
            self.check_frame(team, frame)
            self.counts["frames"] += frame.event == "message"

    async def settle(self) -> None:
        """A sentinel event per team; once every subscriber received its own, every frame
        sent before it has been checked."""
        sentinels = {team.id: await self.sentinel(team) for team in self.teams}
        expected = sum(len(team.actors) for team in self.teams)
        deadline = time.monotonic() + FEED_WAIT
        while True:
            self.check_frames()
            arrived = {
                (team.id, id(frame))
                for team, frame in self.subscriptions.frames
                if frame.event == "message" and _is(frame, sentinels[team.id])
            }
            if len(arrived) == expected:
                return
            assert time.monotonic() < deadline, f"{len(arrived)}/{expected} sentinels arrived"
            await asyncio.sleep(0.01)

    async def sentinel(self, team: Team) -> str:
        """A comment of the team's owner on its feed task (every caller of the team sees it)."""
        owner = team.actors["owner"]
        response = await self.client.post(
            f"{API}/teams/{team.id}/tasks/{team.feed_task}/comments",
            json={"body": f"{team.marker} sentinel"},
            headers=owner.headers,
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    # ----------------------------------------------------------------------- values

    def other_teams(self, team: Team) -> list[uuid.UUID]:
        return [other.id for other in self.teams if other.id != team.id]

    def own_values(self, team: Team, pick: int) -> dict[str, str]:
        own = team.ids(pick)
        return {
            "own": own["team"],
            "own_task": own["task"],
            "own_project": own["project"],
            "own_webhook": own["webhook"],
        }

    def offset(self, team: Team) -> str:
        row = self.owner.execute(
            "select tx_id::text || '-' || seq as o from event where team_id = %s"
            " order by tx_id desc, seq desc limit 1",
            (team.id,),
        ).fetchone()
        assert row is not None
        return str(row["o"])


def _is(frame: Frame, comment_id: str) -> bool:
    return bool(frame.data.get("payload", {}).get("comment_id") == comment_id)


def _replace(value: Any, ids: dict[str, str], twin: dict[str, str]) -> Any:
    """``value`` with every foreign value in its strings replaced by its missing twin."""
    if isinstance(value, tuple):
        return tuple(_replace(item, ids, twin) for item in value)
    if isinstance(value, str):
        for name, foreign in ids.items():
            value = value.replace(foreign, twin[name])
    return value


def report(capsys: pytest.CaptureFixture[str], counts: Counter[str], started: float) -> None:
    """Print the attempts per interface so far (the figures of the closing note)."""
    with capsys.disabled():
        print(
            f"\nisolation fuzz ({'long' if LONG else 'short'} profile,"
            f" {time.monotonic() - started:.0f} s): {counts['examples']} examples,"
            f" REST {counts['rest']}, GraphQL {counts['graphql']}, SSE {counts['sse']} attempts;"
            f" {counts['subscriptions']} subscriptions open meanwhile,"
            f" {counts['frames']} of their frames checked",
            flush=True,
        )


@pytest.fixture(scope="module")
async def server(settings: Settings) -> AsyncIterator[LiveServer]:
    async with live_server(live_settings(settings)) as running:
        yield running


@pytest.fixture
async def loop() -> asyncio.AbstractEventLoop:
    """The session's event loop (the app's and the clients'), idle during a sync test."""
    return asyncio.get_running_loop()


def test_no_caller_reads_or_writes_another_team_or_tells_it_from_missing(
    loop: asyncio.AbstractEventLoop,
    client: httpx.AsyncClient,
    server: LiveServer,
    owner: Owner,
    make_user: Callable[..., Actor],
    make_team: Callable[..., Awaitable[uuid.UUID]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    counts: Counter[str] = Counter()
    started = time.monotonic()

    async def example(steps: list[Step]) -> None:
        async with (
            httpx.AsyncClient(base_url=server.url, timeout=30) as feed,
            AsyncExitStack() as stack,
        ):
            teams = [await build_team(client, owner, make_user, make_team) for _ in range(3)]
            fuzzer = Fuzzer(client, feed, owner, teams, counts)
            await fuzzer.subscriptions.open(stack, feed, teams)
            counts["subscriptions"] += len(teams) * len(ROLES)
            for step in steps:
                await fuzzer.run(step)
            await fuzzer.settle()
            counts["examples"] += 1

    @settings(max_examples=EXAMPLES)
    @given(st.lists(STEP, min_size=STEPS[0], max_size=STEPS[1]))
    def programs(steps: list[Step]) -> None:
        if time.monotonic() - started < BUDGET:
            loop.run_until_complete(example(steps))
            if LONG and counts["examples"] % 25 == 0:
                report(capsys, counts, started)  # progress of a long run

    programs()
    report(capsys, counts, started)
    if LONG:
        short = {name: counts[name] for name in INTERFACES if counts[name] < TARGET}
        assert not short, f"fewer than {TARGET} attempts within {BUDGET:.0f} s: {short}"


async def test_another_teams_cursor_does_not_tell_its_team(
    client: httpx.AsyncClient,
    make_user: Callable[..., Actor],
    make_team: Callable[..., Awaitable[uuid.UUID]],
) -> None:
    """The fuzzer's first find (fixed by ``TeamContext.cursor_for_members``): a cursor of
    team B answered an outsider 404 on B's list (valid for B, then membership failed) but
    400 ``invalid_cursor`` on a missing team's, telling which team it was signed for."""
    alice, outsider = make_user("alice"), make_user("outsider")
    team = await make_team(alice)
    project = await create_project(client, alice, team, "CUR")
    for title in ("one", "two"):
        created = await client.post(
            f"{API}/teams/{team}/projects/{project}/tasks",
            json={"title": title},
            headers=alice.headers,
        )
        assert created.status_code == 201, created.text
    listed = await client.get(f"{API}/teams/{team}/tasks?limit=1", headers=alice.headers)
    cursor = listed.json()["next_cursor"]
    answers = [
        await client.get(f"{API}/teams/{t}/tasks?limit=1&cursor={cursor}", headers=outsider.headers)
        for t in (team, uuid.uuid4())
    ]
    assert answers[0].status_code == answers[1].status_code == 404
