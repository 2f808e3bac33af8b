"""One Server-Sent Events stream of a team's events, for one subscriber.

Protocol (``text/event-stream``):

* first ``retry: <ms>`` and a ``ready`` event whose ``id:`` is the starting offset, so a
  client that disconnects before any event still resumes from there (a new stream starts
  with the events that commit after it opened; resuming from ``ready`` may also replay a
  few that committed just before, while older transactions were still running);
* each event: ``id: <offset>`` and ``data: <JSON>`` (the default ``message`` type; the
  JSON carries ``kind``, ids, ``payload``, ``occurred_at`` and the ``offset``);
* ``: heartbeat`` comments when idle (``REALTIME_HEARTBEAT_SECONDS``), for proxies;
* ``event: end`` with ``{"reason": ...}`` before the server closes the stream:
  ``token_expired``, ``credentials_revoked``, ``membership_ended`` or ``server_shutdown``.

A client resumes with ``Last-Event-ID`` (EventSource does it by itself): the stream
replays exactly the events after that offset, then goes live. Offsets are commit-safe
(``teamboard.events.log``), so nothing committed late is skipped and nothing is sent twice.

Authorization is per batch: every read runs on the app role with the subscriber's context,
so Row Level Security on ``event`` decides what they receive (private projects, guests,
deleted things' events alike), and the same statement returns their role in the team: a
member removed mid-stream gets nothing more (the removal itself wakes the stream, which
then ends). A JWT stream ends when the token expires; an API-key stream re-checks the key
(revoked, expired) at every read. No database connection is held between reads.

Slow clients: each read takes at most ``REALTIME_BATCH_SIZE`` events, written in one send
that must complete within ``REALTIME_SEND_TIMEOUT_SECONDS``; the server's buffer per client
is therefore one batch plus the transport's high-water mark. A client that does not keep
up is disconnected; its last complete event is its resume position.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from uuid import UUID

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from teamboard.auth.api_keys import ApiKeyCredential, resolve_api_key
from teamboard.config import Settings
from teamboard.db import DATABASE_UNAVAILABLE, Database
from teamboard.errors import TeamboardError
from teamboard.events import log
from teamboard.events.log import LoggedEvent, Offset
from teamboard.realtime.hub import RealtimeHub, Subscription

logger = logging.getLogger("teamboard.realtime")

HEADERS = {
    "Cache-Control": "no-store",
    "Content-Type": "text/event-stream; charset=utf-8",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
}
RETRY_MS = 2000
HEARTBEAT = b": heartbeat\n\n"


@dataclass(frozen=True)
class Subscriber:
    """Who reads: the user (an API key's creator for keys), when their credentials expire,
    and the key to re-check at every read."""

    user_id: UUID
    team_id: UUID
    expires_at: float | None
    api_key: ApiKeyCredential | None = None


class StreamEnded(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def event_frame(event: LoggedEvent) -> bytes:
    return b"id: %s\ndata: %s\n\n" % (
        str(event.offset).encode(),
        orjson.dumps(event.document(), default=str),
    )


def control_frame(kind: str, data: object, offset: Offset | None = None) -> bytes:
    line = b"" if offset is None else b"id: %s\n" % str(offset).encode()
    return line + b"event: %s\ndata: %s\n\n" % (kind.encode(), orjson.dumps(data))


class EventStream(Response):
    """The streaming response; everything happens in :meth:`__call__`."""

    def __init__(
        self,
        *,
        hub: RealtimeHub,
        db: Database,
        settings: Settings,
        subscriber: Subscriber,
        start: Offset,
        since: log.Snapshot | None = None,
    ) -> None:
        # Not Response.__init__: it would add "content-length: 0" to a body that never ends.
        self.status_code = 200
        self.background = None
        self.raw_headers = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
        self._hub, self._db, self._settings = hub, db, settings
        self._subscriber = subscriber
        self._position = start
        self._since = since  # a new stream: leave out what had committed when it opened
        self._last_write = time.monotonic()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        subscription = self._hub.subscribe(self._subscriber.team_id)
        produce = asyncio.create_task(self._produce(subscription, send))
        watch = asyncio.create_task(_until_disconnected(receive))
        try:
            await asyncio.wait((produce, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (produce, watch):
                task.cancel()
            await asyncio.gather(produce, watch, return_exceptions=True)
            self._hub.unsubscribe(subscription)
        failure = None if produce.cancelled() else produce.exception()
        if failure is not None:
            raise failure

    async def _produce(self, subscription: Subscription, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        preamble = b"retry: %d\n\n" % RETRY_MS
        preamble += control_frame("ready", {"offset": str(self._position)}, self._position)
        try:
            try:
                await self._write(send, preamble)
                await self._loop(subscription, send)
            except StreamEnded as ended:
                await self._write(send, control_frame("end", {"reason": ended.reason}), last=True)
        except TimeoutError:
            logger.info(
                "realtime: slow client disconnected",
                extra={"team_id": str(self._subscriber.team_id), "offset": str(self._position)},
            )

    async def _loop(self, subscription: Subscription, send: Send) -> None:
        heartbeat = self._settings.realtime_heartbeat_seconds
        pause = 0.01
        while True:
            if subscription.closing:
                raise StreamEnded("server_shutdown")
            remaining = self._remaining()
            try:
                page: log.Page | None = await self._read()
            except DATABASE_UNAVAILABLE:
                logger.warning("realtime: database unavailable; the stream waits")
                page = None
            if page is not None:
                if page.events:
                    await self._write(send, b"".join(event_frame(e) for e in page.events))
                self._position = page.position
                if page.full:
                    continue
            quiet = heartbeat - (time.monotonic() - self._last_write)
            if quiet <= 0:  # nothing sent for a while (idle, or waiting): keep proxies open
                await self._write(send, HEARTBEAT)
                quiet = heartbeat
            seconds = min(quiet, remaining)
            if page is None:  # the database is back soon, or the stream ends
                await subscription.wait(min(pause, seconds))
                pause = min(pause * 2, 5.0)
            elif page.pending_tx is not None:  # readable once older transactions ended
                pause = 0.01
                await self._until_final(subscription, page.pending_tx, seconds)
            else:  # a signal, or the heartbeat's read (which re-checks membership)
                pause = 0.01
                await subscription.wait(seconds)

    async def _until_final(self, subscription: Subscription, tx_id: int, seconds: float) -> None:
        """Until the xmin passes ``tx_id`` (the hub's watch), or a signal (membership may
        have ended meanwhile), or ``seconds``."""
        waits = {
            asyncio.ensure_future(self._hub.finality.wait_past(tx_id, seconds)),
            asyncio.ensure_future(subscription.wait(seconds)),
        }
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    def _remaining(self) -> float:
        """Seconds until the credentials expire (ends the stream when none are left)."""
        if self._subscriber.expires_at is None:
            return float("inf")
        remaining = self._subscriber.expires_at - time.time()
        if remaining <= 0:
            raise StreamEnded("token_expired")
        return remaining

    async def _read(self) -> log.Page:
        """One authorized read: the subscriber's events after the position."""
        subscriber = self._subscriber
        async with self._db.transaction(
            user_id=subscriber.user_id, team_id=subscriber.team_id, write=False
        ) as tx:
            if subscriber.api_key is not None:
                try:
                    await resolve_api_key(tx, subscriber.api_key, subscriber.team_id)
                except TeamboardError as exc:
                    raise StreamEnded("credentials_revoked") from exc
            role, page = await log.read_team(
                tx,
                subscriber.team_id,
                self._position,
                self._settings.realtime_batch_size,
                self._since,
            )
        if role is None:
            raise StreamEnded("membership_ended")
        if self._since is not None and page.position >= self._since.horizon:
            self._since = None
        return page

    async def _write(self, send: Send, body: bytes, *, last: bool = False) -> None:
        """Send within the timeout (``TimeoutError`` otherwise: a client not keeping up)."""
        message = {"type": "http.response.body", "body": body, "more_body": not last}
        async with asyncio.timeout(self._settings.realtime_send_timeout_seconds):
            await send(message)
        self._last_write = time.monotonic()


async def _until_disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
