"""Refuse a throttled caller again at the edge, before routing, authentication or SQL.

A client that ignores ``Retry-After`` keeps sending requests that can only be refused.
Refusing each of them through the framework (routing, dependencies, token verification, a
budget read) costs CPU that the team's neighbours need: the noisy-neighbour benchmark
(``bench/noisy_neighbour.py``) measures exactly that. So once a request has been answered
429 for an exhausted budget, :class:`ThrottledCallers` remembers *that credential* (a digest
of its ``Authorization`` header, never the token) and the budget's scope until the window
resets, and :class:`ThrottledCallersMiddleware` answers the same credential's next requests
429 from that record alone.

What this reveals: nothing new. Only a credential that was authenticated and, for a team
budget, proven a member of the team (``teamboard.deps.spend``) is recorded, and only
requests carrying the very same header bytes are refused. Per process, bounded in size;
a token that expires or a key revoked meanwhile is answered 429 rather than 401 until the
window it was throttled in ends.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from teamboard.errors import RATE_LIMITED_DETAIL, RateLimited, problem_response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: The team a path addresses, if any: ``/api/v1/teams/{team_id}/...``.
_TEAM_PATH = re.compile(r"^/api/v1/teams/([0-9a-fA-F-]{36})(?:/|$)")
_MAX_RECORDS = 10_000


@dataclass(frozen=True)
class Refusal:
    """One throttled scope: until when (monotonic), and the budget's name and size."""

    until: float
    budget: str
    limit: int
    window: int


def team_of_path(path: str) -> str | None:
    """The team id a path addresses (lower case), or None."""
    match = _TEAM_PATH.match(path)
    return match.group(1).lower() if match else None


def credential_digest(authorization: bytes) -> bytes:
    """What identifies a credential here: a digest, so tokens are not kept in memory."""
    return hashlib.blake2b(authorization, digest_size=16).digest()


class ThrottledCallers:
    """Credentials refused 429, per budget scope (a team, or ``None`` for the caller's own
    budget, which applies everywhere), until their window resets."""

    def __init__(self, max_records: int = _MAX_RECORDS) -> None:
        self._records: dict[tuple[bytes, str | None], Refusal] = {}
        self._max = max_records

    def record(self, authorization: str, team_id: str | None, refusal: Refusal) -> None:
        if len(self._records) >= self._max:
            self._evict(time.monotonic())
        key = (credential_digest(authorization.encode("latin-1")), team_id)
        self._records.pop(key, None)  # re-insert at the end: the dict stays in expiry order
        self._records[key] = refusal

    def _evict(self, now: float) -> None:
        for key in [key for key, refusal in self._records.items() if refusal.until <= now]:
            del self._records[key]
        while len(self._records) >= self._max:  # all still current: drop the oldest
            del self._records[next(iter(self._records))]

    def __bool__(self) -> bool:
        """Whether any credential is held (most of the time none: nothing to look up)."""
        return bool(self._records)

    def find(self, authorization: bytes, team_id: str | None) -> Refusal | None:
        """The refusal that still applies to this credential on this team, if any."""
        digest, now = credential_digest(authorization), time.monotonic()
        for key in ((digest, None), (digest, team_id)) if team_id else ((digest, None),):
            refusal = self._records.get(key)
            if refusal is not None:
                if refusal.until > now:
                    return refusal
                del self._records[key]
        return None


def refusal_for(state: Any, scope: Scope) -> Refusal | None:
    """The refusal that applies to this request's credential, if any; ``state`` is the
    application's (its services are set by the lifespan: before that, none applies)."""
    services = getattr(state, "services", None)
    throttled: ThrottledCallers | None = getattr(services, "throttled", None)
    if not throttled:
        return None
    authorization = next((v for k, v in scope["headers"] if k == b"authorization"), None)
    if authorization is None:
        return None
    return throttled.find(authorization, team_of_path(scope["path"]))


class ThrottledCallersMiddleware:
    """Answer 429 problem+json to a credential :class:`ThrottledCallers` holds, before the
    app sees the request (see the module docstring)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = refusal_for(scope["app"].state, scope)
            if refusal:
                await self._refuse(refusal, scope, receive, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(refusal: Refusal, scope: Scope, receive: Receive, send: Send) -> None:
        retry_after = max(1, math.ceil(refusal.until - time.monotonic()))
        headers = {
            "Retry-After": str(retry_after),
            "RateLimit-Policy": f'"{refusal.budget}";q={refusal.limit};w={refusal.window}',
            "RateLimit": f'"{refusal.budget}";r=0;t={retry_after}',
        }
        response = problem_response(
            429, RateLimited.code, RATE_LIMITED_DETAIL, instance=scope["path"], headers=headers
        )
        await response(scope, receive, send)
