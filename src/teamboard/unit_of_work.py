"""The request's unit of work: dependencies open it, this middleware ends it.

The transaction dependencies (``deps.py``) create a :class:`~teamboard.db.Tx` and register
it here; :class:`UnitOfWorkMiddleware` commits or rolls it back **when the response starts**,
before the client sees anything:

* a response below 400 commits; a failed commit becomes an error response, never a
  success the database did not keep;
* a response of 400 or more rolls back, unless the error asked to keep its changes
  (``TeamboardError.keep_changes``, for example the revocation of a reused token family);
* an exception rolls back; a cancelled request (client gone) rolls back and releases.

Doing this in a pure ASGI middleware instead of FastAPI yield-dependencies keeps the
dependency graph free of exit stacks (measurably cheaper per request), and lets an
idempotent POST store its exact response bytes in the same transaction (see
``teamboard.idempotency``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from teamboard import db
from teamboard.db import Tx
from teamboard.errors import problem_response

if TYPE_CHECKING:
    from teamboard.kit.ratelimit import ResponseUsages

logger = logging.getLogger("teamboard.unit_of_work")
STATE_KEY = "unit_of_work"

#: Called with the buffered response (status, headers, body) before the commit.
BeforeCommit = Callable[[int, list[tuple[bytes, bytes]], bytes], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]


@dataclass
class UnitOfWork:
    """The transactions a request opened, what to do before committing them, and the
    rate-limit budgets its response reports (the team charges due on success with them)."""

    transactions: list[Tx] = field(default_factory=list)
    keep_changes: bool = False
    before_commit: BeforeCommit | None = None
    rate_limits: ResponseUsages | None = None

    def add(self, tx: Tx) -> Tx:
        self.transactions.append(tx)
        return tx

    async def finish(self, *, commit: bool) -> None:
        """End every transaction; the first commit failure is raised after all are ended."""
        failure: BaseException | None = None
        for tx in self.transactions:
            try:
                await tx.finish(commit=commit and failure is None)
            except Exception as exc:
                failure = failure or exc
        self.transactions.clear()
        if failure is not None:
            raise failure

    def response_fields(self, status: int) -> Headers:
        """The fields the response adds once its transactions have ended (the rate limits'),
        making the charges due on a success (below 400). Bookkeeping: a failure here is
        logged, and the response goes out without the fields rather than as an error."""
        if self.rate_limits is None:
            return []
        try:
            return self.rate_limits.finish(succeeded=status < 400)
        except Exception:
            logger.warning("the rate-limit fields could not be made", exc_info=True)
            return []


def unit_of_work(request: Request) -> UnitOfWork:
    """The current request's unit of work (created by the middleware)."""
    unit = request.scope.get("state", {}).get(STATE_KEY)
    if not isinstance(unit, UnitOfWork):
        raise RuntimeError("UnitOfWorkMiddleware is not installed")
    return unit


def keep_changes(request: Request) -> None:
    """Commit the request's writes even though it answers with an error."""
    unit = request.scope.get("state", {}).get(STATE_KEY)
    if isinstance(unit, UnitOfWork):
        unit.keep_changes = True


def _with_headers(start: Message, extra: Headers) -> Message:
    if not extra:
        return start
    return {**start, "headers": [*start.get("headers", []), *extra]}


class UnitOfWorkMiddleware:
    """Pure ASGI: ends the request's transactions as its response starts."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        unit = UnitOfWork()
        scope.setdefault("state", {})[STATE_KEY] = unit
        buffered: list[Message] = []

        dropped = False  # set when a failed commit replaced the response

        async def finish_then_send(message: Message) -> None:
            nonlocal dropped
            kind = message["type"]
            if dropped:
                return
            if unit.before_commit is not None and kind.startswith("http.response."):
                # An idempotent request: hold the response until it is stored and committed.
                buffered.append(message)
                if kind == "http.response.body" and not message.get("more_body"):
                    await self._store_and_send(unit, buffered, send)
                return
            if kind == "http.response.start":
                if await self._end(unit, message["status"], send):
                    dropped = True
                    return
                message = _with_headers(message, unit.response_fields(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, finish_then_send)
        finally:  # an exception, a cancellation, or a response that never started
            await self._roll_back(unit)  # a no-op when the response already ended it

    @staticmethod
    async def _roll_back(unit: UnitOfWork) -> None:
        try:
            await unit.finish(commit=False)
        except Exception:
            logger.warning("could not roll back a request's transaction", exc_info=True)

    async def _end(self, unit: UnitOfWork, status: int, send: Send) -> bool:
        """Commit or roll back for ``status``; on a failed commit send an error instead and
        return True (the original response must then be dropped)."""
        commit = status < 400 or unit.keep_changes
        try:
            await unit.finish(commit=commit)
        except Exception as exc:
            return await self._send_commit_failure(exc, send)
        return False

    async def _store_and_send(self, unit: UnitOfWork, messages: list[Message], send: Send) -> None:
        start, body = messages[0], b"".join(m.get("body", b"") for m in messages[1:])
        status: int = start["status"]
        if status < 400 and unit.before_commit is not None:
            try:
                await unit.before_commit(status, list(start.get("headers", [])), body)
            except Exception as exc:
                await self._roll_back(unit)
                await self._send_commit_failure(exc, send)
                return
        if await self._end(unit, status, send):
            return
        await send(_with_headers(start, unit.response_fields(status)))
        for message in messages[1:]:
            await send(message)

    @staticmethod
    async def _send_commit_failure(exc: Exception, send: Send) -> bool:
        logger.error("commit failed: %s", type(exc).__name__, exc_info=exc)
        if isinstance(exc, db.SerializationFailure | db.DeadlockDetected):
            response = problem_response(
                409, "conflict_retry", "A concurrent change conflicted; retry the request"
            )
        elif isinstance(exc, db.DATABASE_UNAVAILABLE):
            response = problem_response(
                503,
                "database_unavailable",
                "The database is unavailable; retry later",
                headers={"Retry-After": "1"},
            )
        else:
            response = problem_response(500, "internal_error", "Internal server error")
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": response.raw_headers,
            }
        )
        await send({"type": "http.response.body", "body": response.body})
        return True
