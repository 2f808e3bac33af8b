"""Sending webhook deliveries (run by ``teamboard worker``).

A delivery is one event for one webhook (``webhook_delivery``, queued by the ``webhooks``
consumer, or by hand: a redelivery). The :class:`Deliverer`:

1. **claims** due deliveries of enabled webhooks, across teams, with ``FOR UPDATE SKIP
   LOCKED`` and a lease (``locked_until``), in a short transaction on the worker role: any
   number of workers share the queue, and a delivery whose worker died is taken again when
   its lease ends (at least once: receivers dedupe with the delivery or event id);
2. **authorizes** it as the webhook's creator: the event is read on the app role with the
   creator's context, so Row Level Security decides, exactly as for the realtime feed; the
   creator must still be an admin of the team. Otherwise the delivery is ``skipped``;
3. **sends** it signed (``teamboard.webhooks.signing``) with httpx, to the address the SSRF
   guard resolved and checked (``Host`` and TLS SNI carry the name: no second DNS lookup),
   without following redirects, without environment proxies, with a timeout;
4. **records** the attempt (status code or error, duration), and either completes the
   delivery or schedules the next attempt with exponential backoff and jitter; after
   ``WEBHOOK_MAX_ATTEMPTS`` it fails. ``WEBHOOK_FAILURE_THRESHOLD`` failed attempts in a row
   (any deliveries) disable the webhook; an admin re-enables it. Attempts already in flight
   when it is disabled are recorded, but leave its failure count as it was.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import httpx
import orjson

from teamboard import __version__
from teamboard.config import Settings
from teamboard.db import DATABASE_UNAVAILABLE, Database
from teamboard.events import log
from teamboard.kit.crypto import SecretBox
from teamboard.kit.ids import new_id
from teamboard.webhooks import signing
from teamboard.webhooks.ssrf import Guard, RefusedUrl, Target, parse_networks

logger = logging.getLogger("teamboard.webhooks.delivery")

ADMIN_ROLES = frozenset({"owner", "admin"})
_CLAIM_SQL = """
with due as (
    select d.team_id, d.id from webhook_delivery d
    join webhook w on w.team_id = d.team_id and w.id = d.webhook_id and w.enabled
    where d.status = 'pending' and d.next_attempt_at <= now()
      and (d.locked_until is null or d.locked_until < now())
    order by d.next_attempt_at
    limit %(limit)s
    for update of d skip locked
)
update webhook_delivery d
set locked_until = now() + make_interval(secs => %(lease)s), updated_at = now()
from due, webhook w
where d.team_id = due.team_id and d.id = due.id and w.team_id = d.team_id and w.id = d.webhook_id
returning d.team_id, d.id, d.webhook_id, d.event_id, d.event_occurred_at, d.attempts,
    w.url, w.secret_ciphertext, w.created_by
"""


@dataclass(frozen=True)
class Claimed:
    team_id: UUID
    id: UUID
    webhook_id: UUID
    event_id: UUID
    event_occurred_at: datetime
    attempts: int
    url: str
    secret_ciphertext: bytes
    created_by: UUID


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def _first(*events: asyncio.Event, seconds: float) -> None:
    """Until one of the events is set, or ``seconds`` have passed."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def secret_binding(team_id: UUID, webhook_id: UUID) -> str:
    """The associated data that ties a sealed secret to its webhook row."""
    return f"webhook:{team_id}:{webhook_id}"


def retry_delay(attempts: int, base: float, cap: float) -> float:
    """Seconds before attempt ``attempts + 1``: exponential, capped, with "equal jitter"
    (between half and all of it) so that failed deliveries do not retry in step."""
    delay = min(cap, base * 2.0 ** max(attempts - 1, 0))
    return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - jitter, not a secret


def guard_for(settings: Settings) -> Guard:
    return Guard(
        allowed_networks=parse_networks(settings.webhook_allowed_networks),
        allow_http=settings.webhook_allow_http,
    )


class Deliverer:
    def __init__(
        self,
        settings: Settings,
        worker_db: Database,
        app_db: Database,
        *,
        guard: Guard | None = None,
    ) -> None:
        self._settings = settings
        self._worker_db = worker_db
        self._app_db = app_db
        self._guard = guard or guard_for(settings)
        self._box = SecretBox(settings.derived_key("webhook-secret"))
        self._client = httpx.AsyncClient(
            timeout=settings.webhook_timeout_seconds,
            follow_redirects=False,
            trust_env=False,
            # A connection is opened for one checked address and one TLS name: never reuse
            # it for another host that happens to share the address.
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"User-Agent": f"teamboard-webhooks/{__version__}"},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _claim(self, limit: int) -> list[Claimed]:
        lease = self._settings.webhook_timeout_seconds * 2 + 30
        async with self._worker_db.transaction() as tx:
            rows = await tx.fetch_all(_CLAIM_SQL, {"limit": limit, "lease": lease})
        return [Claimed(**row) for row in rows]

    async def run_once(self) -> int:
        """Claim a batch of due deliveries and deliver them concurrently; returns how many."""
        claimed = await self._claim(self._settings.webhook_concurrency)
        await asyncio.gather(*(self._deliver(delivery) for delivery in claimed))
        return len(claimed)

    async def run(self, wake: asyncio.Event, stop: asyncio.Event, idle: float) -> None:
        """Deliver until ``stop``, keeping ``WEBHOOK_CONCURRENCY`` deliveries in flight: a
        slot that frees up is refilled at once (one slow receiver holds one slot, not a
        batch). Waits for a wake-up (or ``idle`` seconds) when nothing is due; lets the
        deliveries in flight finish on the way out."""
        in_flight: set[asyncio.Task[None]] = set()
        slot_freed = asyncio.Event()

        def done(task: asyncio.Task[None]) -> None:
            in_flight.discard(task)
            slot_freed.set()

        try:
            while not stop.is_set():
                wake.clear()
                slot_freed.clear()
                free = self._settings.webhook_concurrency - len(in_flight)
                claimed: list[Claimed] = []
                if free:
                    try:
                        claimed = await self._claim(free)
                    except DATABASE_UNAVAILABLE:
                        logger.warning("webhooks: database unavailable; claiming later")
                for delivery in claimed:
                    task = asyncio.create_task(self._deliver(delivery))
                    in_flight.add(task)
                    task.add_done_callback(done)
                if claimed and len(claimed) == free:
                    await _first(slot_freed, stop, seconds=idle)  # full: until a slot frees
                elif not claimed:
                    await _first(wake, stop, seconds=idle)  # nothing due: until woken
        finally:
            await asyncio.gather(*in_flight, return_exceptions=True)

    async def _deliver(self, delivery: Claimed) -> None:
        try:
            async with self._app_db.transaction(
                user_id=delivery.created_by, team_id=delivery.team_id, write=False
            ) as tx:
                role, event = await log.read_event(
                    tx, delivery.team_id, delivery.event_occurred_at, delivery.event_id
                )
            if role not in ADMIN_ROLES:
                await self._skip(delivery, "the webhook's creator is no longer a team admin")
                return
            if event is None:
                await self._skip(delivery, "the event is not visible to the webhook's creator")
                return
            outcome = await self._send(delivery, event)
            await self._record(delivery, outcome)
        except DATABASE_UNAVAILABLE:
            logger.warning("webhooks: database unavailable; delivery %s waits", delivery.id)
        except Exception:
            logger.exception("webhooks: delivery %s failed unexpectedly", delivery.id)

    async def _send(self, delivery: Claimed, event: log.LoggedEvent) -> Outcome:
        started = time.perf_counter()

        def outcome(status: int | None, error: str | None) -> Outcome:
            return Outcome(status, error, round((time.perf_counter() - started) * 1000))

        try:
            target = await self._guard.resolve(delivery.url)
        except RefusedUrl as exc:
            return outcome(None, f"refused: {exc}")
        secret = self._box.open(
            delivery.secret_ciphertext, secret_binding(delivery.team_id, delivery.webhook_id)
        )
        document = {"delivery_id": delivery.id, "webhook_id": delivery.webhook_id}
        body = orjson.dumps({**document, "event": event.document()}, default=str)
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            signing.TIMESTAMP_HEADER: str(timestamp),
            signing.SIGNATURE_HEADER: signing.signature(secret, timestamp, body),
            signing.DELIVERY_HEADER: str(delivery.id),
            signing.EVENT_HEADER: event.kind,
            signing.WEBHOOK_HEADER: str(delivery.webhook_id),
        }
        try:
            status = await self._post(target, headers, body)
        except httpx.TimeoutException:
            return outcome(None, "timeout")
        except httpx.HTTPError as exc:
            return outcome(None, f"connection failed: {type(exc).__name__}")
        if 300 <= status < 400:
            return outcome(status, "redirects are not followed")
        return outcome(status, None if 200 <= status < 300 else f"HTTP {status}")

    async def _post(self, target: Target, headers: dict[str, str], body: bytes) -> int:
        """POST to the checked address; the name goes in Host and in the TLS handshake."""
        url = target.url.copy_with(host=target.address)
        port = target.url.port
        headers = {**headers, "Host": target.host if port is None else f"{target.host}:{port}"}
        extensions: dict[str, Any] = {}
        if target.url.scheme == "https":
            extensions["sni_hostname"] = target.host
        request = self._client.build_request(
            "POST", url, headers=headers, content=body, extensions=extensions
        )
        response = await self._client.send(request, stream=True)
        try:
            return response.status_code
        finally:
            await response.aclose()  # the body is not needed: never read an unbounded one

    async def _skip(self, delivery: Claimed, reason: str) -> None:
        async with self._worker_db.transaction() as tx:
            await tx.execute(
                "update webhook_delivery set status = 'skipped', last_error = %s,"
                " next_attempt_at = null, locked_until = null, completed_at = now(),"
                " updated_at = now() where team_id = %s and id = %s",
                (reason, delivery.team_id, delivery.id),
            )

    async def _record(self, delivery: Claimed, outcome: Outcome) -> None:
        settings = self._settings
        attempts = delivery.attempts + 1
        final = outcome.ok or attempts >= settings.webhook_max_attempts
        delay = (
            0.0
            if final
            else retry_delay(
                attempts, settings.webhook_retry_base_seconds, settings.webhook_retry_max_seconds
            )
        )
        async with self._worker_db.transaction() as tx:
            await tx.execute(
                "insert into webhook_attempt"
                " (team_id, id, delivery_id, status_code, error, duration_ms)"
                " values (%s, %s, %s, %s, %s, %s)",
                (
                    delivery.team_id,
                    new_id(),
                    delivery.id,
                    outcome.status_code,
                    outcome.error,
                    outcome.duration_ms,
                ),
            )
            await tx.execute(
                "update webhook_delivery set attempts = %(attempts)s,"
                " status = case when %(ok)s then 'succeeded'"
                "  when %(final)s then 'failed' else 'pending' end,"
                " next_attempt_at = case when %(final)s then null"
                "  else now() + make_interval(secs => %(delay)s) end,"
                " completed_at = case when %(final)s then now() end,"
                " locked_until = null, last_status_code = %(status)s, last_error = %(error)s,"
                " updated_at = now()"
                " where team_id = %(team)s and id = %(id)s",
                {
                    "attempts": attempts,
                    "ok": outcome.ok,
                    "final": final,
                    "delay": delay,
                    "status": outcome.status_code,
                    "error": outcome.error,
                    "team": delivery.team_id,
                    "id": delivery.id,
                },
            )
            await tx.execute(
                "update webhook set"
                " consecutive_failures = case when not enabled then consecutive_failures"
                "  when %(ok)s then 0 else consecutive_failures + 1 end,"
                " enabled = enabled and (%(ok)s or consecutive_failures + 1 < %(threshold)s),"
                " disabled_reason = case when enabled and not %(ok)s"
                "  and consecutive_failures + 1 >= %(threshold)s then 'too_many_failures'"
                "  else disabled_reason end,"
                " updated_at = now()"
                " where team_id = %(team)s and id = %(webhook)s"
                # Only when the count or the state changes: a success on a healthy webhook
                # (or a failure on a disabled one) leaves the row, and its version, alone.
                " and (case when %(ok)s then consecutive_failures <> 0 else enabled end)",
                {
                    "ok": outcome.ok,
                    "threshold": settings.webhook_failure_threshold,
                    "team": delivery.team_id,
                    "webhook": delivery.webhook_id,
                },
            )
