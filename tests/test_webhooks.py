"""Webhooks: registration, signed deliveries, retries, auto-disable, redelivery, SSRF.

Deliveries go to a real HTTP receiver on 127.0.0.1 (allowed by the tests' settings, see
``tests.dbsetup``), driven the way the worker drives them: the ``webhooks`` consumer
queues, the :class:`Deliverer` sends.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from teamboard.config import Settings
from teamboard.db import Database
from teamboard.events.log import Offset
from teamboard.kit.crypto import SecretBox
from teamboard.ops.database import DatabaseUrls
from teamboard.webhooks import signing
from teamboard.webhooks.delivery import Deliverer, retry_delay, secret_binding
from teamboard.webhooks.fanout import WebhooksConsumer, matches
from teamboard.webhooks.repository import deliveries_query
from teamboard.webhooks.ssrf import Guard, RefusedUrl, parse_networks, system_resolver
from teamboard.worker.consumers import ConsumerRunner, drain
from tests.collab import API, Owner, create_project, create_task, events, post_comment
from tests.conftest import Actor, add_member
from tests.live import served_in_thread
from tests.plans import AppCaller, applied_as, explain

MakeUser = Callable[..., Actor]
MakeTeam = Callable[..., Awaitable[uuid.UUID]]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records requests and answers as scripted."""

    requests: list[Received] = field(default_factory=list)
    script: deque[tuple[int, dict[str, str]]] = field(default_factory=deque)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/teamboard"

    def answer(self, *statuses: int, headers: dict[str, str] | None = None) -> None:
        self.script.extend((status, headers or {}) for status in statuses)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.requests.append(Received(self.path, dict(self.headers.items()), body))
            status, headers = state.script.popleft() if state.script else (200, {})
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    with served_in_thread(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as state.port:
        yield state


def webhook_settings(settings: Settings, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "webhook_retry_base_seconds": 0.05,
        "webhook_retry_max_seconds": 0.2,
        "webhook_max_attempts": 3,
        "webhook_failure_threshold": 5,
        "webhook_timeout_seconds": 3.0,
    }
    return settings.model_copy(update={**values, **overrides})


@dataclass
class Worker:
    """What ``teamboard worker`` does for webhooks: queue, then send."""

    runner: ConsumerRunner
    deliverer: Deliverer

    async def run(self, until: Callable[[], bool], within: float = 30.0) -> None:
        await drain(self.runner, within=90)
        async with asyncio.timeout(within):
            while not until():
                if not await self.deliverer.run_once():
                    await asyncio.sleep(0.05)


@pytest.fixture
async def worker(app: Any, settings: Settings, worker_db: Database) -> AsyncIterator[Worker]:
    deliverer = Deliverer(webhook_settings(settings), worker_db, app.state.services.db)
    yield Worker(ConsumerRunner(worker_db, WebhooksConsumer(), 1000), deliverer)
    await deliverer.aclose()


async def register(
    client: httpx.AsyncClient, admin: Actor, team: uuid.UUID, url: str, kinds: list[str]
) -> dict[str, Any]:
    response = await client.post(
        f"{API}/teams/{team}/webhooks", json={"url": url, "kinds": kinds}, headers=admin.headers
    )
    assert response.status_code == 201, response.text
    webhook: dict[str, Any] = response.json()
    return webhook


async def deliveries(
    client: httpx.AsyncClient, admin: Actor, team: uuid.UUID, webhook: str
) -> list[dict[str, Any]]:
    response = await client.get(
        f"{API}/teams/{team}/webhooks/{webhook}/deliveries", headers=admin.headers
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def detail(
    client: httpx.AsyncClient, admin: Actor, team: uuid.UUID, webhook: str, delivery: str
) -> dict[str, Any]:
    response = await client.get(
        f"{API}/teams/{team}/webhooks/{webhook}/deliveries/{delivery}", headers=admin.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def offset_of(request: Received) -> Offset:
    return Offset.parse(json.loads(request.body)["event"]["offset"])


# --------------------------------------------------------------------------- management


async def test_admins_manage_webhooks_and_see_the_secret_once(
    client: httpx.AsyncClient,
    owner: Owner,
    settings: Settings,
    make_user: MakeUser,
    make_team: MakeTeam,
    receiver: Receiver,
) -> None:
    alice, member = make_user("alice"), make_user("member")
    team = await make_team(alice, members=[(member, "member")])
    base = f"{API}/teams/{team}/webhooks"
    refused = await client.post(
        base, json={"url": receiver.url, "kinds": ["*"]}, headers=member.headers
    )
    assert refused.status_code == 403
    for bad in (
        {"url": receiver.url, "kinds": []},
        {"url": receiver.url, "kinds": ["Task.created"]},
        {"url": receiver.url, "kinds": ["*"], "secret": "mine"},
        {"url": receiver.url, "kinds": ["*"], "team_id": str(uuid.uuid4())},
    ):
        response = await client.post(base, json=bad, headers=alice.headers)
        assert response.status_code == 422, bad

    created = await register(client, alice, team, receiver.url, ["task.*", "comment.created"])
    secret = created.pop("secret")
    assert secret.startswith("whsec_")
    assert created["enabled"] is True
    assert created["kinds"] == ["task.*", "comment.created"]
    path = f"{base}/{created['id']}"
    fetched = await client.get(path, headers=alice.headers)
    assert fetched.json() == created
    assert "secret" not in fetched.text
    listed = await client.get(base, headers=alice.headers)
    assert [w["id"] for w in listed.json()["items"]] == [created["id"]]
    assert (await client.get(path, headers=member.headers)).status_code == 403

    row = owner.execute(
        "select secret_ciphertext from webhook where id = %s", (created["id"],)
    ).fetchone()
    assert row is not None
    sealed = bytes(row["secret_ciphertext"])
    assert secret.encode() not in sealed
    box = SecretBox(settings.derived_key("webhook-secret"))
    assert box.open(sealed, secret_binding(team, uuid.UUID(created["id"]))) == secret
    with pytest.raises(ValueError, match="decrypted"):
        box.open(sealed, secret_binding(team, uuid.uuid4()))  # copied to another row

    patched = await client.patch(path, json={"kinds": ["*"]}, headers=alice.headers)
    assert patched.status_code == 200
    assert patched.json()["kinds"] == ["*"]
    assert (await client.delete(path, headers=alice.headers)).status_code == 204
    assert (await client.get(path, headers=alice.headers)).status_code == 404
    logged = events(owner, team, "webhook.created") + events(owner, team, "webhook.updated")
    assert [e["payload"] for e in logged] == [
        {"kinds": ["task.*", "comment.created"]},
        {"kinds": ["*"]},
    ], "no URL in the event log"


def test_kind_patterns() -> None:
    assert matches(["*"], "task.created")
    assert matches(["task.*"], "task.created")
    assert not matches(["task.*"], "tasks.created")
    assert not matches(["task.created"], "task.updated")
    assert matches(["comment.created", "task.updated"], "task.updated")


# --------------------------------------------------------------------------- deliveries


async def test_deliveries_are_signed_and_logged(
    client: httpx.AsyncClient,
    app: Any,
    make_user: MakeUser,
    make_team: MakeTeam,
    receiver: Receiver,
    worker: Worker,
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    hook = await register(client, alice, team, receiver.url, ["comment.*"])
    task = await create_task(app, alice, team, await create_project(client, alice, team, "HK"))
    comment = await post_comment(client, alice, team, task, "ship it")
    deleted = await client.delete(
        f"{API}/teams/{team}/tasks/{task}/comments/{comment['id']}", headers=alice.headers
    )
    assert deleted.status_code == 204
    renamed = await client.patch(f"{API}/teams/{team}", json={"name": "x"}, headers=alice.headers)
    assert renamed.status_code == 200  # team.updated: not a comment event, not delivered
    await worker.run(lambda: len(receiver.requests) >= 2)
    await asyncio.sleep(0.2)
    assert len(receiver.requests) == 2

    # Deliveries go out concurrently, in no guaranteed order (the offset in each body
    # orders them).
    first, second = sorted(receiver.requests, key=offset_of)
    body = json.loads(first.body)
    assert first.path == "/hooks/teamboard"
    assert body["event"]["kind"] == "comment.created"
    assert body["event"]["payload"]["comment_id"] == comment["id"]
    assert body["webhook_id"] == hook["id"]
    assert json.loads(second.body)["event"]["kind"] == "comment.deleted"
    headers = first.headers
    assert headers[signing.EVENT_HEADER] == "comment.created"
    assert headers[signing.DELIVERY_HEADER] == body["delivery_id"]
    timestamp, signature = headers[signing.TIMESTAMP_HEADER], headers[signing.SIGNATURE_HEADER]
    assert signature.startswith("v1=")
    assert signing.verify(hook["secret"], signature, timestamp, first.body)
    assert not signing.verify(hook["secret"], signature, timestamp, first.body + b" ")
    assert not signing.verify("whsec_other", signature, timestamp, first.body)
    assert not signing.verify(
        hook["secret"], signature, timestamp, first.body, now=int(timestamp) + 301
    ), "a replay after the tolerance is refused"

    log = await deliveries(client, alice, team, hook["id"])
    assert [(d["event_kind"], d["status"], d["last_status_code"]) for d in log] == [
        ("comment.deleted", "succeeded", 200),
        ("comment.created", "succeeded", 200),
    ]
    one = await detail(client, alice, team, hook["id"], log[1]["id"])
    assert [(a["status_code"], a["error"]) for a in one["attempt_log"]] == [(200, None)]
    # Successes on a healthy webhook change nothing an admin edits against (its ETag).
    read = await client.get(f"{API}/teams/{team}/webhooks/{hook['id']}", headers=alice.headers)
    assert (read.json()["version"], read.headers["etag"]) == (1, '"1"')

    # Queuing the same events again (a replayed batch) queues nothing twice.
    worker.runner = ConsumerRunner(worker.runner._db, WebhooksConsumer(), 1000)
    await drain(worker.runner, within=90)
    assert len(await deliveries(client, alice, team, hook["id"])) == 2


async def test_failures_are_retried_with_backoff_then_redelivered_by_hand(
    client: httpx.AsyncClient,
    owner: Owner,
    make_user: MakeUser,
    make_team: MakeTeam,
    receiver: Receiver,
    worker: Worker,
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    hook = await register(client, alice, team, receiver.url, ["team.updated"])
    receiver.answer(500, 503, 500)
    renamed = await client.patch(f"{API}/teams/{team}", json={"name": "R"}, headers=alice.headers)
    assert renamed.status_code == 200
    await worker.run(lambda: len(receiver.requests) >= 3)
    [failed] = await deliveries(client, alice, team, hook["id"])
    assert (failed["status"], failed["attempts"], failed["last_status_code"]) == ("failed", 3, 500)
    attempts = (await detail(client, alice, team, hook["id"], failed["id"]))["attempt_log"]
    assert [(a["status_code"], a["error"]) for a in attempts] == [
        (500, "HTTP 500"),
        (503, "HTTP 503"),
        (500, "HTTP 500"),
    ]
    times = [
        row["created_at"]
        for row in owner.execute(
            "select created_at from webhook_attempt where delivery_id = %s order by id",
            (failed["id"],),
        ).fetchall()
    ]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert gaps[0] >= 0.025, "the first retry waits at least half of the base delay"
    assert gaps[1] >= 0.05, "the second at least half of twice the base"
    ids = {request.headers[signing.DELIVERY_HEADER] for request in receiver.requests}
    assert ids == {failed["id"]}, "retries keep the delivery id"

    again = await client.post(
        f"{API}/teams/{team}/webhooks/{hook['id']}/deliveries/{failed['id']}/redeliver",
        headers=alice.headers,
    )
    assert again.status_code == 202, again.text
    assert again.json()["redelivery_of"] == failed["id"]
    assert again.json()["status"] == "pending"
    await worker.run(lambda: len(receiver.requests) >= 4)
    latest = await detail(client, alice, team, hook["id"], again.json()["id"])
    assert (latest["status"], latest["last_status_code"]) == ("succeeded", 200)
    assert receiver.requests[-1].headers[signing.DELIVERY_HEADER] == again.json()["id"]
    sent = json.loads(receiver.requests[-1].body)["event"]
    assert sent == json.loads(receiver.requests[0].body)["event"], "the same event again"


def test_retry_delays_grow_exponentially_with_jitter() -> None:
    for attempts, full in ((1, 10.0), (2, 20.0), (3, 40.0), (10, 300.0)):
        delays = [retry_delay(attempts, 10.0, 300.0) for _ in range(200)]
        assert all(full / 2 <= delay <= full for delay in delays)
        assert len(set(delays)) > 100, "jittered"


async def test_repeated_failures_disable_the_webhook(
    client: httpx.AsyncClient,
    app: Any,
    settings: Settings,
    worker_db: Database,
    make_user: MakeUser,
    make_team: MakeTeam,
    receiver: Receiver,
    worker: Worker,
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    hook = await register(client, alice, team, receiver.url, ["team.updated"])
    path = f"{API}/teams/{team}/webhooks/{hook['id']}"
    await worker.deliverer.aclose()  # one attempt at a time: the count is exact
    worker.deliverer = Deliverer(
        webhook_settings(settings, webhook_concurrency=1), worker_db, app.state.services.db
    )
    receiver.answer(*[500] * 5)
    for name in ("one", "two"):
        renamed = await client.patch(
            f"{API}/teams/{team}", json={"name": name}, headers=alice.headers
        )
        assert renamed.status_code == 200

    await worker.run(lambda: len(receiver.requests) >= 5)
    await worker.run(lambda: True)  # one more pass: nothing left to send while disabled
    state = (await client.get(path, headers=alice.headers)).json()
    assert (state["enabled"], state["disabled_reason"]) == (False, "too_many_failures")
    assert state["consecutive_failures"] == 5
    assert len(receiver.requests) == 5
    log = await deliveries(client, alice, team, hook["id"])
    assert sorted(d["status"] for d in log) == ["failed", "pending"]
    pending = next(d for d in log if d["status"] == "pending")
    refused = await client.post(
        f"{path}/deliveries/{pending['id']}/redeliver", headers=alice.headers
    )
    assert refused.status_code == 409
    assert refused.json()["code"] == "webhook_disabled"

    enabled = await client.patch(path, json={"enabled": True}, headers=alice.headers)
    assert enabled.json()["consecutive_failures"] == 0
    await worker.run(lambda: len(receiver.requests) >= 6)
    resumed = await detail(client, alice, team, hook["id"], pending["id"])
    assert (resumed["status"], resumed["last_status_code"]) == ("succeeded", 200)


async def test_deliveries_are_authorized_for_the_webhook_creator(
    client: httpx.AsyncClient,
    app: Any,
    owner: Owner,
    make_user: MakeUser,
    make_team: MakeTeam,
    receiver: Receiver,
    worker: Worker,
) -> None:
    """A webhook delivers what its creator may see: not a private project they are not in,
    and nothing once they are no longer an admin."""
    alice, admin = make_user("alice"), make_user("admin")
    team = await make_team(alice, members=[(admin, "admin")])
    hook = await register(client, admin, team, receiver.url, ["comment.created"])
    private = await create_project(client, alice, team, "PRV", "private")
    public = await create_project(client, alice, team, "PUB")
    await post_comment(client, alice, team, await create_task(app, alice, team, private), "x")
    await post_comment(client, alice, team, await create_task(app, alice, team, public), "y")
    await worker.run(lambda: len(receiver.requests) >= 1)
    await asyncio.sleep(0.2)
    assert [json.loads(r.body)["event"]["project_id"] for r in receiver.requests] == [str(public)]
    log = await deliveries(client, admin, team, hook["id"])
    skipped = [d for d in log if d["status"] == "skipped"]
    assert [d["last_error"] for d in skipped] == [
        "the event is not visible to the webhook's creator"
    ]

    owner.execute(
        "update team_member set role = 'member' where team_id = %s and user_id = %s",
        (team, admin.id),
    )
    await post_comment(client, alice, team, await create_task(app, alice, team, public), "z")
    await worker.run(
        lambda: (
            owner.execute(
                "select count(*) as n from webhook_delivery where webhook_id = %s"
                " and status = 'skipped'",
                (hook["id"],),
            ).fetchone()
            == {"n": 2}
        )
    )
    assert len(receiver.requests) == 1
    reason = owner.execute(
        "select last_error from webhook_delivery where webhook_id = %s order by id desc limit 1",
        (hook["id"],),
    ).fetchone()
    assert reason == {"last_error": "the webhook's creator is no longer a team admin"}


# --------------------------------------------------------------------------- SSRF


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("https://10.0.0.5/hook", "webhook_url_refused"),
        ("https://192.168.1.1/hook", "webhook_url_refused"),
        ("https://169.254.169.254/latest/meta-data/", "webhook_url_refused"),
        ("https://[fd00:ec2::254]/latest", "webhook_url_refused"),
        ("https://127.0.0.2/hook", "webhook_url_refused"),
        ("https://2130706434/hook", "webhook_url_refused"),  # 127.0.0.2, spelled as a number
        ("https://[::1]/hook", "webhook_url_refused"),
        ("https://[::ffff:10.0.0.1]/hook", "webhook_url_refused"),
        ("https://[64:ff9b::a00:1]/hook", "webhook_url_refused"),  # NAT64 of 10.0.0.1
        ("https://100.64.0.1/hook", "webhook_url_refused"),
        ("https://0.0.0.0/hook", "webhook_url_refused"),
        ("https://224.0.0.1/hook", "webhook_url_refused"),
        ("https://user:secret@hooks.example.com/hook", "webhook_url_invalid"),
        ("ftp://hooks.example.com/hook", "webhook_url_invalid"),
        ("https://no-such-host.invalid/hook", "webhook_url_unresolvable"),
    ],
)
async def test_internal_addresses_are_refused(
    client: httpx.AsyncClient, make_user: MakeUser, make_team: MakeTeam, url: str, code: str
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    response = await client.post(
        f"{API}/teams/{team}/webhooks", json={"url": url, "kinds": ["*"]}, headers=alice.headers
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code


async def test_the_guard_without_allow_list() -> None:
    strict = Guard()
    for url in ("https://127.0.0.1/hook", "https://localhost/hook", "https://[::1]/"):
        with pytest.raises(RefusedUrl) as refused:
            await strict.resolve(url)
        assert refused.value.code == "webhook_url_refused"
    with pytest.raises(RefusedUrl) as http:
        strict.check_url("http://93.184.215.14/hook")
    assert http.value.code == "webhook_url_invalid", "HTTPS only"
    target = await strict.resolve("https://93.184.215.14:8443/hook")
    assert (target.address, target.host) == ("93.184.215.14", "93.184.215.14")
    lenient = Guard(allowed_networks=parse_networks("10.1.0.0/16, 127.0.0.1/32"))
    assert (await lenient.resolve("https://10.1.2.3/")).address == "10.1.2.3"
    with pytest.raises(RefusedUrl):
        await lenient.resolve("https://10.2.0.1/")


async def test_redirects_are_not_followed(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    make_team: MakeTeam,
    receiver: Receiver,
    worker: Worker,
) -> None:
    alice = make_user("alice")
    team = await make_team(alice)
    hook = await register(client, alice, team, receiver.url, ["team.updated"])
    receiver.answer(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
    renamed = await client.patch(f"{API}/teams/{team}", json={"name": "R"}, headers=alice.headers)
    assert renamed.status_code == 200
    await worker.run(lambda: len(receiver.requests) >= 1)
    [delivery] = await deliveries(client, alice, team, hook["id"])
    attempts = (await detail(client, alice, team, hook["id"], delivery["id"]))["attempt_log"]
    assert [(a["status_code"], a["error"]) for a in attempts] == [
        (302, "redirects are not followed")
    ]
    assert delivery["status"] == "pending", "a redirect is a failure, retried later"


async def test_dns_is_resolved_once_and_the_checked_address_is_used(
    client: httpx.AsyncClient,
    app: Any,
    owner: Owner,
    settings: Settings,
    worker_db: Database,
    make_user: MakeUser,
    make_team: MakeTeam,
    receiver: Receiver,
) -> None:
    """A name that first resolves to an allowed address, then to an internal one (DNS
    rebinding): the delivery resolves it once, checks it, and connects to that address;
    and a name resolving inside is never contacted."""
    alice = make_user("alice")
    team = await make_team(alice)
    hook = await register(client, alice, team, receiver.url, ["team.updated"])
    owner.execute(
        "update webhook set url = %s where id = %s",
        (f"http://hooks.rebind.test:{receiver.port}/in", hook["id"]),
    )
    answers = deque([["127.0.0.1"], ["10.0.0.1"]])
    lookups: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        if host != "hooks.rebind.test":  # other tests' leftover deliveries
            return await system_resolver(host, port)
        lookups.append(host)
        return answers.popleft() if answers else ["10.0.0.1"]

    guard = Guard(
        allowed_networks=parse_networks(settings.webhook_allowed_networks),
        allow_http=True,
        resolver=rebinding,
    )
    deliverer = Deliverer(webhook_settings(settings), worker_db, app.state.services.db, guard=guard)
    worker = Worker(ConsumerRunner(worker_db, WebhooksConsumer(), 1000), deliverer)
    try:
        renamed = await client.patch(
            f"{API}/teams/{team}", json={"name": "R"}, headers=alice.headers
        )
        assert renamed.status_code == 200
        await worker.run(lambda: len(receiver.requests) >= 1)
        assert lookups == ["hooks.rebind.test"]
        assert receiver.requests[0].headers["Host"] == f"hooks.rebind.test:{receiver.port}"
        assert receiver.requests[0].path == "/in"

        renamed = await client.patch(
            f"{API}/teams/{team}", json={"name": "S"}, headers=alice.headers
        )
        assert renamed.status_code == 200
        await worker.run(
            lambda: (
                owner.execute(
                    "select count(*) as n from webhook_attempt a join webhook_delivery d"
                    " on d.id = a.delivery_id where d.webhook_id = %s and a.error like 'refused%%'",
                    (hook["id"],),
                ).fetchone()
                == {"n": 1}
            )
        )
        assert len(receiver.requests) == 1, "the internal address was never contacted"
    finally:
        await deliverer.aclose()


async def test_webhook_routes_are_for_admins(
    client: httpx.AsyncClient, make_user: MakeUser, make_team: MakeTeam, owner: Owner
) -> None:
    alice, guest = make_user("alice"), make_user("guest")
    team = await make_team(alice)
    add_member(owner, team, guest, "guest")
    response = await client.get(f"{API}/teams/{team}/webhooks", headers=guest.headers)
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_role"


async def test_delivery_pages_start_at_the_cursor_under_a_generic_plan(
    owner: Owner, db_urls: DatabaseUrls
) -> None:
    """A webhook's deliveries can be many: under the generic plan the API runs, the page
    after a cursor is an index range that starts at the cursor. The former
    ``(%(after)s::uuid is null or d.id < %(after)s)`` could only test every delivery read
    from the newest one (the last assertion shows it)."""
    caller = AppCaller(owner, db_urls.app_role, uuid.uuid4(), uuid.uuid4())
    sql, params = deliveries_query(uuid.uuid4(), uuid.uuid4(), 50)
    plan = explain(caller, sql, params, generic=True)
    assert applied_as(plan, "id <") == "index", plan
    former = (
        "select d.id from webhook_delivery d where d.webhook_id = %(webhook)s"
        " and (%(after)s::uuid is null or d.id < %(after)s) order by d.id desc limit %(n)s"
    )
    plan = explain(caller, former, {**params, "n": 51}, generic=True)
    assert applied_as(plan, "id <") == "filter", plan
