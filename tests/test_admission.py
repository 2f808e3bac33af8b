"""The admission gate: a bounded number of requests inside the app, the rest wait in order,
a bounded time, then 503; probes and realtime streams never wait."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from teamboard.app import create_server_app
from teamboard.config import Settings
from teamboard.deps import Services
from teamboard.kit.admission import AdmissionMiddleware, Places
from teamboard.kit.throttled import Refusal
from teamboard.logging import RequestMiddleware, access_log
from tests.work import Board, board

__all__ = ["board"]


class Held:
    """An ASGI app whose requests stay inside until released; records who got in."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered: list[str] = []
        self._entry = asyncio.Event()

    async def until(self, count: int) -> None:
        """Wait until ``count`` requests got in."""
        while len(self.entered) < count:
            self._entry.clear()
            await self._entry.wait()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.entered.append(scope["path"])
        self._entry.set()
        if scope["path"].startswith("/hold"):
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_the_excess_waits_in_order_then_gets_in() -> None:
    inner = Held()
    gate = AdmissionMiddleware(inner, limit=2, wait_seconds=5.0)
    async with _client(gate) as client:
        holders = [asyncio.create_task(client.get(f"/hold/{i}")) for i in range(2)]
        await inner.until(2)
        waiting = []
        for i in range(3):
            waiting.append(asyncio.create_task(client.get(f"/next/{i}")))
            await asyncio.sleep(0.01)  # arrival order
        # Never gated: probes, the realtime stream, attachment downloads and uploads.
        exempt = [
            ("GET", "/health/ready"),
            ("GET", "/api/v1/teams/x/events/stream"),
            ("GET", "/api/v1/teams/x/attachments/a/content"),
            ("POST", "/api/v1/teams/x/tasks/t/attachments"),
        ]
        for method, path in exempt:
            assert (await client.request(method, path)).status_code == 200
        assert inner.entered == ["/hold/0", "/hold/1", *(path for _, path in exempt)]
        inner.release.set()
        assert [r.status_code for r in await asyncio.gather(*holders, *waiting)] == [200] * 5
    assert inner.entered[6:] == ["/next/0", "/next/1", "/next/2"]


async def test_a_request_that_waits_too_long_gets_503_having_done_nothing() -> None:
    inner = Held()
    gate = AdmissionMiddleware(inner, limit=1, wait_seconds=0.05)
    async with _client(gate) as client:
        holder = asyncio.create_task(client.get("/hold/0"))
        await inner.until(1)
        for method, path in (("GET", "/api/v1/teams/x/tasks/t/attachments"), ("POST", "/x")):
            assert (await client.request(method, path)).status_code == 503  # gated
        refused = await client.get("/api/v1/teams/x/tasks")
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["retry-after"] == "1"
        body = refused.json()
        assert (body["code"], body["status"], body["instance"]) == (
            "overloaded",
            503,
            "/api/v1/teams/x/tasks",
        )
        assert inner.entered == ["/hold/0"]
        inner.release.set()
        assert (await holder).status_code == 200
        assert (await client.get("/api/v1/teams/x/tasks")).status_code == 200  # place freed


@asynccontextmanager
async def _served_with_one_connection(
    settings: Settings, gate: dict[str, Any]
) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    """What ``teamboard serve`` runs, with a pool of one connection and the gate's
    settings ``gate``; yields its services and a client."""
    application = create_server_app(settings.model_copy(update={"pool_max_size": 1, **gate}))
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield application.app.state.services, client


async def test_the_app_gates_requests_before_they_reach_the_database(
    settings: Settings, make_user: Any, make_team: Any
) -> None:
    owner = make_user("admission")
    team = await make_team(owner)
    # MAX_CONCURRENT_REQUESTS unset: as many places as the pool has connections, so the
    # second request waits at the gate, not inside the app for the held connection.
    gate = {"max_concurrent_requests": None, "admission_wait_seconds": 0.2}
    async with _served_with_one_connection(settings, gate) as (services, client):
        held = await services.db.acquire()  # the first request waits for it, inside the app
        inside = asyncio.create_task(client.get(f"/api/v1/teams/{team}", headers=owner.headers))
        await asyncio.sleep(0.05)
        refused = await client.get(f"/api/v1/teams/{team}", headers=owner.headers)
        assert refused.status_code == 503
        assert refused.json()["code"] == "overloaded"
        assert refused.headers["x-sql-statements"] == "0"
        assert "x-request-id" in refused.headers
        assert (await client.get("/health/live")).status_code == 200
        services.db.release(held)
        assert (await inside).status_code == 200
        again = await client.get(f"/api/v1/teams/{team}", headers=owner.headers)
        assert again.status_code == 200


async def test_a_throttled_credential_is_refused_without_waiting_at_a_full_gate(
    settings: Settings, make_user: Any, make_team: Any
) -> None:
    """The gate stands in front of the application: a credential that the app refuses 429
    from memory (``teamboard.kit.throttled``) goes in at once rather than wait in line
    behind the callers it would delay; the others still wait, and are logged."""
    owner, flooding = make_user("admission-first"), make_user("admission-throttled")
    team = await make_team(owner, members=[(flooding, "member")])
    gate = {"max_concurrent_requests": 1, "admission_wait_seconds": 5.0}
    async with _served_with_one_connection(settings, gate) as (services, client):
        held = await services.db.acquire()  # the one request let in waits for it, inside
        refusal = Refusal(until=time.monotonic() + 60, budget="team", limit=1, window=60)
        services.throttled.record(flooding.headers["Authorization"], str(team), refusal)
        inside = asyncio.create_task(client.get(f"/api/v1/teams/{team}", headers=owner.headers))
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(
            client.get(f"/api/v1/teams/{team}/projects", headers=owner.headers)
        )
        refused = await client.get(f"/api/v1/teams/{team}", headers=flooding.headers)
        assert refused.status_code == 429  # not a 503 after a 5-second wait
        assert refused.json()["code"] == "rate_limited"
        assert refused.headers["x-sql-statements"] == "0"
        assert not waiting.done()
        services.db.release(held)
        assert (await inside).status_code == 200
        assert (await waiting).status_code == 200


async def _call(
    app: Any, path: str, receive: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> list[dict[str, Any]]:
    """One GET through ``app`` with the given ``receive``; the messages it sent."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "headers": headers or []}
    await app(scope, receive, send)
    return sent


async def _request() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _gone() -> dict[str, Any]:
    return {"type": "http.disconnect"}


async def test_a_request_whose_client_left_while_waiting_is_dropped_unrun() -> None:
    inner = Held()
    gate = AdmissionMiddleware(inner, limit=1, wait_seconds=5.0)
    holder = asyncio.create_task(_call(gate, "/hold/0", _request))
    await inner.until(1)
    left = asyncio.create_task(_call(gate, "/left", _gone))
    stays = asyncio.create_task(_call(gate, "/stays", _request))
    await asyncio.sleep(0.01)
    inner.release.set()
    assert await left == []  # nothing sent: nobody to read it
    assert (await stays)[0]["status"] == 200
    assert (await holder)[0]["status"] == 200
    assert inner.entered == ["/hold/0", "/stays"]  # the place went to the next in line
    assert (await _call(gate, "/after", _request))[0]["status"] == 200  # and came back


async def test_the_gate_does_not_read_a_body_the_request_declares() -> None:
    """Reading a declared body could wait for the client (or answer its ``Expect:
    100-continue`` before the body limit): such a request goes in, and the app reads."""
    inner = Held()
    gate = AdmissionMiddleware(inner, limit=1, wait_seconds=5.0)
    holder = asyncio.create_task(_call(gate, "/hold/0", _request))
    await inner.until(1)
    declared = [
        [(b"content-length", b"3")],
        [(b"transfer-encoding", b"chunked")],
    ]
    waiting = [
        asyncio.create_task(_call(gate, f"/body/{i}", _gone, h)) for i, h in enumerate(declared)
    ]
    await asyncio.sleep(0.01)
    inner.release.set()
    await asyncio.gather(holder, *waiting)
    assert inner.entered == ["/hold/0", "/body/0", "/body/1"]


async def test_places_belong_to_one_event_loop() -> None:
    places = Places(1, wait_seconds=5.0)
    assert places.take()
    waiter = asyncio.create_task(places.wait())
    await asyncio.sleep(0)
    with ThreadPoolExecutor(1) as pool:  # another thread, another loop
        refused = pool.submit(asyncio.run, places.wait())
        with pytest.raises(RuntimeError, match="another event loop"):
            refused.result(timeout=5)
    places.give_back()
    assert await waiter is True


async def test_a_waiter_reads_the_request_once_then_the_server_again() -> None:
    """The gate's check reads the request's first message; the app still gets it."""
    received: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        received.extend([await receive(), await receive()])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    inner = Held()
    gate = AdmissionMiddleware(inner, limit=1, wait_seconds=5.0)
    holder = asyncio.create_task(_call(gate, "/hold/0", _request))
    await inner.until(1)
    body, gone = {"type": "http.request", "body": b"abc"}, {"type": "http.disconnect"}
    messages = iter([body, gone])

    async def receive() -> dict[str, Any]:
        return next(messages)

    gate.app = app
    waiter = asyncio.create_task(_call(gate, "/body", receive))
    await asyncio.sleep(0.01)
    inner.release.set()
    await holder
    assert (await waiter)[0]["status"] == 200
    assert received == [body, gone]


async def test_places_turn_away_waiters_in_order_past_their_deadline() -> None:
    places = Places(1, wait_seconds=0.05)
    assert places.take()
    assert not places.take()
    first = asyncio.create_task(places.wait())
    await asyncio.sleep(0.03)
    second = asyncio.create_task(places.wait())
    assert await first is False
    assert not second.done()  # its own deadline is later
    assert await second is False
    places.give_back()
    assert places.take()


async def test_a_place_handed_to_a_cancelled_waiter_goes_to_the_next() -> None:
    places = Places(1, wait_seconds=5.0)
    assert places.take()
    cancelled_early = asyncio.create_task(places.wait())
    handed = asyncio.create_task(places.wait())
    after = asyncio.create_task(places.wait())
    await asyncio.sleep(0)
    cancelled_early.cancel()  # skipped when a place is freed
    await asyncio.sleep(0)
    places.give_back()  # to ``handed``, cancelled before it could run: passed on
    handed.cancel()
    for task in (cancelled_early, handed):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await asyncio.wait_for(after, 1.0) is True
    assert not places.take()  # ``after`` holds the one place
    places.give_back()
    assert places.take()


class Recorded(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_the_access_log_says_499_for_a_request_dropped_unanswered() -> None:
    handler = Recorded()
    records = handler.records
    inner = Held()

    def logged(answer: Any) -> Any:
        return RequestMiddleware(answer, expose_sql_count=False)

    app = AdmissionMiddleware(logged(inner), limit=1, wait_seconds=5.0, edge=logged)
    level = access_log.level
    access_log.addHandler(handler)
    access_log.setLevel(logging.INFO)
    try:
        holder = asyncio.create_task(_call(app, "/hold/0", _request))
        await inner.until(1)
        left = asyncio.create_task(_call(app, "/left", _gone))
        await asyncio.sleep(0.01)
        inner.release.set()
        await asyncio.gather(holder, left)
    finally:
        access_log.removeHandler(handler)
        access_log.setLevel(level)
    logged = sorted((r.__dict__["path"], r.__dict__["status"]) for r in records)
    assert logged == [("/hold/0", 200), ("/left", 499)]
    # The logged duration counts the wait at the gate (at least the 10 ms slept above).
    assert next(r for r in records if r.__dict__["path"] == "/left").__dict__["duration_ms"] >= 10


async def test_a_client_gone_while_its_body_is_read_is_a_499_not_an_error(
    board: Board, app: Any
) -> None:
    """Under overload clients give up, some with their POST body still unread (the GraphQL
    endpoint reads it after authenticating): nothing has run, so the access log says 499
    and nothing is logged as an error, where ``ClientDisconnect`` used to be an unhandled
    500 with its traceback."""
    body = b'{"query": "{ __typename }"}'
    headers = [
        (b"host", b"testserver"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in board.alice.headers.items()),
    ]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/graphql", "raw_path": b"/graphql", "root_path": "",
        "query_string": b"", "headers": headers, "server": ("testserver", 80),
        "client": ("127.0.0.1", 50000), "state": {},
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    errors, access = Recorded(), Recorded()
    errors.setLevel(logging.ERROR)
    root, level = logging.getLogger(), access_log.level
    root.addHandler(errors)
    access_log.addHandler(access)
    access_log.setLevel(logging.INFO)
    try:
        await app(scope, _gone, send)
    finally:
        root.removeHandler(errors)
        access_log.removeHandler(access)
        access_log.setLevel(level)
    assert [r.getMessage() for r in errors.records] == []
    assert [(r.__dict__["path"], r.__dict__["status"]) for r in access.records] == [
        ("/graphql", 499)
    ]
    assert sent[0]["status"] == 499
