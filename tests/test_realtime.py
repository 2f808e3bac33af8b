"""The realtime feed (``GET /teams/{team}/events/stream``) against a live server.

Mutations go through the regular in-process client (another app instance on the same
database, like a second API server); the streams are read from a uvicorn server on
127.0.0.1, which only learns of them through the event log and its wake-up signals.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from teamboard.auth.tokens import TokenService
from teamboard.config import Settings
from teamboard.events.repository import append
from teamboard.events.signals import PostgresSignals, RedisRelay
from teamboard.ops.database import DatabaseUrls
from tests.collab import API, Owner, add_to_project, create_project, create_task, post_comment
from tests.conftest import Actor
from tests.live import Frame, LiveServer, live_server, subscribe

MakeUser = Callable[..., Actor]
MakeTeam = Callable[..., Awaitable[uuid.UUID]]


def live_settings(settings: Settings, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "realtime_wakeup": "postgres",
        "realtime_heartbeat_seconds": 1.0,
        "log_level": "WARNING",
    }
    return settings.model_copy(update={**values, **overrides})


@pytest.fixture(scope="module")
async def server(settings: Settings) -> AsyncIterator[LiveServer]:
    async with live_server(live_settings(settings)) as running:
        yield running


@pytest.fixture(scope="module")
async def sse(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


def team_events(owner: Owner, team: uuid.UUID, but: Collection[str] = ()) -> list[str]:
    """Offsets of the team's events in offset order, but those in ``but``."""
    rows = owner.execute(
        "select tx_id::text || '-' || seq as o from event where team_id = %s order by tx_id, seq",
        (team,),
    ).fetchall()
    return [row["o"] for row in rows if row["o"] not in but]


def messages(frames: list[Frame]) -> list[Frame]:
    return [frame for frame in frames if frame.event == "message"]


async def comment(client: httpx.AsyncClient, actor: Actor, team: uuid.UUID, task: uuid.UUID) -> str:
    return str((await post_comment(client, actor, team, task, "hello"))["id"])


# --------------------------------------------------------------------------- delivery


async def test_events_arrive_with_offsets_and_replay_from_last_event_id(
    client: httpx.AsyncClient,
    sse: httpx.AsyncClient,
    app: Any,
    owner: Owner,
    make_user: MakeUser,
    make_team: MakeTeam,
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    team = await make_team(alice, members=[(bob, "member")])
    project = await create_project(client, alice, team, "RT")
    task = await create_task(app, alice, team, project)
    async with subscribe(sse, team, bob.headers) as stream:
        first = await comment(client, alice, team, task)
        await comment(client, alice, team, task)
        frames = await stream.events(2)
    assert [frame.data["kind"] for frame in frames] == ["comment.created"] * 2
    assert frames[0].data["payload"]["comment_id"] == first
    assert frames[0].data["project_id"] == str(project)
    assert [frame.id for frame in frames] == [frame.data["offset"] for frame in frames]
    assert [frame.id for frame in frames] == team_events(owner, team)[-2:]

    async with subscribe(sse, team, bob.headers, last_event_id=frames[0].id) as stream:
        [replayed] = await stream.events(1)
        assert replayed.id == frames[1].id
        assert messages(await stream.quiet(0.5)) == [], "exactly the missed events"


async def test_stream_errors_answer_before_streaming(
    client: httpx.AsyncClient, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice, outsider = make_user("alice"), make_user("outsider")
    team = await make_team(alice)
    path = f"{API}/teams/{team}/events/stream"
    for bad in ("x", "1-", "-1-2", "99999999999999999999-1", "1-2-3"):
        response = await client.get(path, headers={**alice.headers, "Last-Event-ID": bad})
        assert response.status_code == 400, bad
        assert response.json()["code"] == "invalid_offset"
    assert (await client.get(path)).status_code == 401
    foreign = await client.get(path, headers=outsider.headers)
    missing = await client.get(f"{API}/teams/{uuid.uuid4()}/events/stream", headers=alice.headers)
    assert foreign.status_code == missing.status_code == 404


# --------------------------------------------------------------------------- isolation


async def test_another_team_receives_none_of_a_thousand_mutations(
    client: httpx.AsyncClient,
    sse: httpx.AsyncClient,
    app: Any,
    owner: Owner,
    make_user: MakeUser,
    make_team: MakeTeam,
) -> None:
    """Team B listens while team A makes 1,000+ mutations (creations, edits, deletions):
    B receives none of them, and then its own event; A's subscriber receives all of A's."""
    alice, bob = make_user("alice"), make_user("bob")
    team_a, team_b = await make_team(alice), await make_team(bob)
    project = await create_project(client, alice, team_a, "ISO")
    task = await create_task(app, alice, team_a, project)
    b_project = await create_project(client, bob, team_b, "BEE")
    comments = f"{API}/teams/{team_a}/tasks/{task}/comments"
    follow = f"{API}/teams/{team_a}/tasks/{task}/followers/me"
    async with (
        subscribe(sse, team_b, bob.headers) as b_stream,
        subscribe(sse, team_a, alice.headers) as a_stream,
    ):
        before = team_events(owner, team_a)
        mutations = 0
        for i in range(200):
            created = await client.post(comments, json={"body": f"c{i}"}, headers=alice.headers)
            assert created.status_code == 201
            path = f"{comments}/{created.json()['id']}"
            edited = await client.patch(path, json={"body": f"e{i}"}, headers=alice.headers)
            deleted = await client.delete(path, headers=alice.headers)
            unfollowed = await client.delete(follow, headers=alice.headers)
            followed = await client.put(follow, headers=alice.headers)
            assert (edited.status_code, deleted.status_code) == (200, 204)
            assert (unfollowed.status_code, followed.status_code) == (204, 201)
            mutations += 5
        extra = await create_project(client, alice, team_a, "GONE")
        gone = await client.delete(f"{API}/teams/{team_a}/projects/{extra}", headers=alice.headers)
        assert gone.status_code == 204
        mutations += 2
        assert mutations >= 1000
        a_offsets = team_events(owner, team_a, but=before)
        assert len(a_offsets) == mutations
        received = await a_stream.events(len(a_offsets), within=60)
        assert [frame.id for frame in received] == a_offsets
        kinds = {frame.data["kind"] for frame in received}
        assert {"comment.deleted", "project.deleted", "task.unfollowed"} <= kinds

        renamed = await client.patch(
            f"{API}/teams/{team_b}/projects/{b_project}", json={"name": "B"}, headers=bob.headers
        )
        assert renamed.status_code == 200
        [own] = await b_stream.events(1)  # anything of A's would have come first
        assert messages(await b_stream.quiet(0.5)) == []
    assert own.data["kind"] == "project.updated"
    assert own.data["team_id"] == str(team_b)


async def test_guests_and_private_projects_see_only_what_they_may(
    client: httpx.AsyncClient,
    sse: httpx.AsyncClient,
    app: Any,
    make_user: MakeUser,
    make_team: MakeTeam,
) -> None:
    alice, member, guest = make_user("alice"), make_user("member"), make_user("guest")
    team = await make_team(alice, members=[(member, "member"), (guest, "guest")])
    shared = await create_project(client, alice, team, "SHR")
    other = await create_project(client, alice, team, "OTH")
    secret = await create_project(client, alice, team, "SEC", "private")
    await add_to_project(client, alice, team, shared, guest)
    tasks = {p: await create_task(app, alice, team, p) for p in (shared, other, secret)}
    async with (
        subscribe(sse, team, alice.headers) as owner_stream,
        subscribe(sse, team, member.headers) as member_stream,
        subscribe(sse, team, guest.headers) as guest_stream,
    ):
        for _project, task in tasks.items():
            created = await post_comment(client, alice, team, task, "note")
            deleted = await client.delete(
                f"{API}/teams/{team}/tasks/{task}/comments/{created['id']}", headers=alice.headers
            )
            assert deleted.status_code == 204
        renamed = await client.patch(
            f"{API}/teams/{team}", json={"name": "Renamed"}, headers=alice.headers
        )
        assert renamed.status_code == 200
        gone = await client.delete(f"{API}/teams/{team}/projects/{secret}", headers=alice.headers)
        assert gone.status_code == 204
        everything = await owner_stream.events(8)
        seen = {"member": await member_stream.events(5), "guest": await guest_stream.events(2)}
        for stream in (member_stream, guest_stream):
            assert messages(await stream.quiet(0.5)) == []

    def where(frames: list[Frame]) -> list[tuple[str, str | None]]:
        return [(frame.data["kind"], frame.data["project_id"]) for frame in frames]

    comment_events = [("comment.created", str(shared)), ("comment.deleted", str(shared))]
    assert where(everything) == [
        *comment_events,
        ("comment.created", str(other)),
        ("comment.deleted", str(other)),
        ("comment.created", str(secret)),
        ("comment.deleted", str(secret)),
        ("team.updated", None),
        ("project.deleted", str(secret)),
    ]
    assert where(seen["member"]) == [
        *comment_events,
        ("comment.created", str(other)),
        ("comment.deleted", str(other)),
        ("team.updated", None),
    ], "a member outside the private project sees none of it, deletion included"
    assert where(seen["guest"]) == comment_events, "a guest sees only their projects"


async def test_a_removed_member_stops_receiving_at_once(
    client: httpx.AsyncClient,
    sse: httpx.AsyncClient,
    app: Any,
    make_user: MakeUser,
    make_team: MakeTeam,
) -> None:
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    team = await make_team(alice, members=[(bob, "member"), (carol, "member")])
    private = await create_project(client, alice, team, "PRV", "private")
    await add_to_project(client, alice, team, private, bob)
    await add_to_project(client, alice, team, private, carol)
    task = await create_task(app, alice, team, private)
    async with (
        subscribe(sse, team, bob.headers) as bob_stream,
        subscribe(sse, team, carol.headers) as carol_stream,
    ):
        await comment(client, alice, team, task)
        assert len(await bob_stream.events(1)) == len(await carol_stream.events(1)) == 1

        # Carol leaves the private project: its events stop, the team's go on.
        removed = await client.delete(
            f"{API}/teams/{team}/projects/{private}/members/{carol.id}", headers=alice.headers
        )
        assert removed.status_code == 204
        await comment(client, alice, team, task)
        renamed = await client.patch(
            f"{API}/teams/{team}", json={"name": "Team 2"}, headers=alice.headers
        )
        assert renamed.status_code == 200
        kinds = [frame.data["kind"] for frame in await carol_stream.events(1)]
        assert kinds == ["team.updated"], "nothing more from the private project"

        # Bob leaves the team: his stream ends at once, with the reason.
        left_at = time.monotonic()
        gone = await client.delete(f"{API}/teams/{team}/members/{bob.id}", headers=alice.headers)
        assert gone.status_code == 204
        await comment(client, alice, team, task)
        frames = await bob_stream.until_closed()
        kinds = [f.data["kind"] for f in messages(frames)]
        assert kinds == ["project.member_removed", "comment.created", "team.updated"]
        end = [frame for frame in frames if frame.event == "end"]
        assert [frame.data for frame in end] == [{"reason": "membership_ended"}]
        assert end[0].received - left_at < 2
        assert bob_stream.closed


async def test_a_deleted_team_ends_its_streams_at_once(
    client: httpx.AsyncClient,
    settings: Settings,
    make_user: MakeUser,
    make_team: MakeTeam,
) -> None:
    """Deleting a team appends no event, but memberships that end wake the streams too
    (the next poll would be 30 s away)."""
    alice, bob = make_user("alice"), make_user("bob")
    team = await make_team(alice, members=[(bob, "member")])
    async with (
        live_server(live_settings(settings, realtime_heartbeat_seconds=30)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
        subscribe(http, team, bob.headers) as stream,
    ):
        deleted_at = time.monotonic()
        deleted = await client.delete(f"{API}/teams/{team}", headers=alice.headers)
        assert deleted.status_code == 204
        frames = await stream.until_closed()
    assert [(f.event, f.data) for f in frames] == [("end", {"reason": "membership_ended"})]
    assert frames[0].received - deleted_at < 5


async def test_an_expired_token_ends_the_stream(
    sse: httpx.AsyncClient, settings: Settings, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    tokens = TokenService(settings)
    tokens.access_ttl = 2
    short = {"Authorization": f"Bearer {tokens.issue_access(alice.id, uuid.uuid4())}"}
    async with subscribe(sse, team, short) as stream:
        opened = time.monotonic()
        frames = await stream.until_closed()
    assert frames[-1].event == "end"
    assert frames[-1].data == {"reason": "token_expired"}
    assert frames[-1].received - opened < 3.5
    assert stream.closed


async def test_api_key_streams_end_when_the_key_is_revoked(
    client: httpx.AsyncClient,
    sse: httpx.AsyncClient,
    make_user: MakeUser,
    make_team: MakeTeam,
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    created = await client.post(
        f"{API}/teams/{team}/api-keys", json={"name": "feed"}, headers=alice.headers
    )
    assert created.status_code == 201
    key = created.json()
    async with subscribe(sse, team, {"Authorization": f"Bearer {key['token']}"}) as stream:
        renamed = await client.patch(
            f"{API}/teams/{team}", json={"name": "Keyed"}, headers=alice.headers
        )
        assert renamed.status_code == 200
        [frame] = await stream.events(1)
        assert frame.data["kind"] == "team.updated"
        revoked = await client.delete(
            f"{API}/teams/{team}/api-keys/{key['id']}", headers=alice.headers
        )
        assert revoked.status_code == 204
        frames = await stream.until_closed()
    assert [f.data for f in frames if f.event == "end"] == [{"reason": "credentials_revoked"}]


# --------------------------------------------------------------------------- resumption


async def write_events(app: Any, actor: Actor, team: uuid.UUID, count: int, size: int = 0) -> None:
    """``count`` events straight into the log, ten per transaction (``size``: payload bytes)."""
    for first in range(0, count, 10):
        async with app.state.services.db.transaction(user_id=actor.id, team_id=team) as tx:
            for n in range(first, min(first + 10, count)):
                payload = {"n": n, "pad": "x" * size}
                await append(tx, "test.written", subject_id=None, payload=payload)


async def test_resume_across_a_server_restart_misses_and_repeats_nothing(
    settings: Settings, app: Any, owner: Owner, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    received: list[str | None] = []
    first = await LiveServer(live_settings(settings)).start()
    try:
        async with (
            httpx.AsyncClient(base_url=first.url, timeout=30) as http,
            subscribe(http, team, alice.headers) as stream,
        ):
            before = team_events(owner, team)
            await write_events(app, alice, team, 30)
            received += [frame.id for frame in await stream.events(30)]
            await write_events(app, alice, team, 20)
            received += [frame.id for frame in await stream.events(7)]
            await first.stop()  # mid-stream, as on SIGTERM
            tail = await stream.until_closed()
            received += [frame.id for frame in messages(tail)]
            assert tail[-1].event == "end"
            assert tail[-1].data == {"reason": "server_shutdown"}
            last = stream.last_id
    finally:
        await first.stop()
    await write_events(app, alice, team, 25)  # while no server runs
    async with (
        live_server(live_settings(settings)) as second,
        httpx.AsyncClient(base_url=second.url, timeout=30) as http,
        subscribe(http, team, alice.headers, last_event_id=last) as stream,
    ):
        await write_events(app, alice, team, 15)
        received += [frame.id for frame in await stream.events(90 - len(received))]
        assert messages(await stream.quiet(0.5)) == []
    expected = team_events(owner, team, but=before)
    assert len(expected) == 90
    assert received == expected, "0 missed, 0 duplicated, in order"


async def test_a_slow_client_is_cut_off_without_delaying_others(
    settings: Settings, app: Any, make_user: MakeUser, make_team: MakeTeam
) -> None:
    """One subscriber stops reading: the server disconnects it (its last complete event is
    its resume position) while another subscriber keeps receiving in time."""
    alice = make_user("alice")
    team = await make_team(alice)
    quick = live_settings(settings, realtime_send_timeout_seconds=1.0, realtime_batch_size=50)
    async with live_server(quick) as server:
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # before connecting
        slow.connect(("127.0.0.1", server.port))
        slow.sendall(
            f"GET /api/v1/teams/{team}/events/stream HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: {alice.headers['Authorization']}\r\n\r\n".encode()
        )
        async with (
            httpx.AsyncClient(base_url=server.url, timeout=30) as http,
            subscribe(http, team, alice.headers) as fast,
        ):
            total = 600
            began = time.monotonic()
            await write_events(app, alice, team, total, size=16_000)  # ~10 MB of events
            frames = await fast.events(total, within=60)
            assert frames[-1].received - began < 30
            await asyncio.sleep(2.5)  # the slow client's send times out meanwhile
        raw = await asyncio.to_thread(_read_until_closed, slow)
    complete = [
        line.removeprefix(b"id: ").decode()
        for block in raw.split(b"\n\n")[:-1]
        for line in block.split(b"\n")
        if line.startswith(b"id: ")
    ]
    got = [frame.id for frame in frames]
    assert 1 < len(complete) < total + 1, "the slow client was cut off before the end"
    resume = complete[-1]
    assert resume in got
    assert got[: got.index(resume) + 1] == complete[1:]  # complete[0]: the ready frame


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sent until it closed the connection (within 20 s)."""
    deadline = time.monotonic() + 20
    sock.settimeout(5)
    chunks = []
    with sock:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise AssertionError("the server did not close the slow client's stream")
    return b"".join(chunks)


# --------------------------------------------------------------------------- wake-ups


async def test_redis_carries_wake_ups_across_instances(
    settings: Settings,
    db_urls: DatabaseUrls,
    client: httpx.AsyncClient,
    make_user: MakeUser,
    make_team: MakeTeam,
) -> None:
    """With REALTIME_WAKEUP=redis the server has no LISTEN connection: the worker's relay
    republishes PostgreSQL's signals on Redis, and events arrive long before a poll."""
    if not settings.redis_url:
        pytest.skip("REDIS_URL is not set")
    redis = aioredis.from_url(settings.redis_url)
    stop = asyncio.Event()
    relay = PostgresSignals(db_urls.worker, RedisRelay(redis))
    relaying = asyncio.create_task(relay.run(stop))
    alice = make_user("alice")
    team = await make_team(alice)
    slow_poll = live_settings(settings, realtime_wakeup="redis", realtime_heartbeat_seconds=30)
    try:
        await asyncio.wait_for(relay.connected.wait(), 10)
        async with (
            live_server(slow_poll) as server,
            httpx.AsyncClient(base_url=server.url, timeout=30) as http,
            subscribe(http, team, alice.headers) as stream,
        ):
            await asyncio.sleep(0.3)  # the server's subscription is up
            sent = time.monotonic()
            renamed = await client.patch(
                f"{API}/teams/{team}", json={"name": "Via Redis"}, headers=alice.headers
            )
            assert renamed.status_code == 200
            [frame] = await stream.events(1)
            # Woken, not polled (the next poll is 30 s away). Not tighter: a transaction
            # running anywhere on the server delays every reader of the log.
            assert frame.received - sent < 15
    finally:
        stop.set()
        await relaying
        await redis.aclose()


async def test_idle_streams_get_heartbeats(
    sse: httpx.AsyncClient, make_user: MakeUser, make_team: MakeTeam
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    async with subscribe(sse, team, alice.headers) as stream:
        frames = await stream.quiet(2.5)
    assert [frame.comment for frame in frames].count("heartbeat") >= 2
