"""The request body limit, enforced before anything buffers a body.

Every request body is limited to ``REQUEST_MAX_BYTES`` (1 MiB by default), whatever reads
it (FastAPI's JSON parsing, GraphQL, a route reading ``request.body()``). The limit is
applied to the stream the application reads, so it holds wherever the body is read:

* a declared ``Content-Length`` above the limit is refused at the first read, before a
  byte of the body is taken from the client (FastAPI reads a route's body before its
  dependencies: before authentication and any database work);
* a body without a declared length (chunked), or longer than it declared, is counted as
  it arrives, and the read that crosses the limit is refused; the rest is never read.

A refusal raises :class:`PayloadTooLarge`, rendered by the error handlers as ``413
payload_too_large`` with ``Connection: close``; the unit of work then rolls back, so
nothing is written. A route can declare its own limit with :func:`body_limit`: a larger
number of bytes (a batch of custom analytics events), or ``None`` for a route that enforces
its own limit as it streams (attachment uploads, ``ATTACHMENT_MAX_BYTES``). The route is
known at the first read, since routing happens before anything reads the body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

E = TypeVar("E", bound=Callable[..., Any])
_ATTRIBUTE = "body_limit"
_UNDECLARED = object()
#: Tells the client to stop sending: the server will not read the rest of the body.
_CLOSE = {"Connection": "close"}


def body_limit(max_bytes: int | None) -> Callable[[E], E]:
    """Give an endpoint its own body limit: bytes, or None when it enforces one itself
    while streaming (place it below the route decorator, like ``costs``)."""

    def mark(endpoint: E) -> E:
        setattr(endpoint, _ATTRIBUTE, max_bytes)
        return endpoint

    return mark


class PayloadTooLarge(HTTPException):
    """The body went past the limit while it was being read.

    An ``HTTPException`` so that FastAPI's own body parsing re-raises it as it is (it turns
    any other exception into a 400); ``errors.py`` renders it as ``payload_too_large``.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body exceeds {limit} bytes", headers=_CLOSE)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class BodyLimitMiddleware:
    """Pure ASGI: wraps ``receive`` with the limit of the endpoint the request reaches."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _limit_of(self, scope: Scope) -> int | None:
        declared = getattr(scope.get("endpoint"), _ATTRIBUTE, _UNDECLARED)
        if declared is _UNDECLARED:
            return self.max_bytes
        assert declared is None or isinstance(declared, int)
        return declared

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        limit: int | None = self.max_bytes
        resolved = False  # the endpoint's own limit is looked up at the first read
        received = 0

        async def limited_receive() -> Message:
            nonlocal limit, resolved, received
            if not resolved:
                limit, resolved = self._limit_of(scope), True
            if limit is None:  # the route limits its own body
                return await receive()
            if received > limit or (declared is not None and declared > limit):
                raise PayloadTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)
