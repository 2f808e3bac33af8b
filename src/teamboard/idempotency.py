"""Idempotent POSTs: the ``Idempotency-Key`` request header.

A client that may retry a POST sends a unique key with it. For 24 hours the key then names
that request, scoped to the caller (a user, or one of their API keys) and the route's team:

* the first request runs; if it succeeds, its exact response (status, headers, body bytes)
  is stored **in the same transaction** as its writes, so a stored response and its effects
  exist together or not at all;
* a retry with the same key and the same request replays the stored response byte for byte,
  with ``Idempotent-Replayed: true``, and writes nothing;
* the same key with a different request (method, path, query or body) is a 422;
* a retry while the first is still running is a 409 with ``Retry-After`` (a transaction-level
  advisory lock on the key, so concurrent identical requests create exactly one resource);
* a request that fails (4xx/5xx) stores nothing: it changed nothing, and may be retried.

The fingerprint covers the method, path, query and body, whatever the content type.
Credential exchanges (``/auth/*``, routes without a user) ignore the header, because a
replay would keep tokens in the database; the routes that create a secret (API keys,
invitations, webhooks) keep their response encrypted (:func:`returns_secret`). Attachment
uploads (``TeamGrant`` routes) stream their body between two short transactions of their
own, so they apply the key in the second one, where the upload is recorded
(:func:`upload_record`): the fingerprint is then the file's (its SHA-256, size and type,
not the multipart boundary a retry changes), a retry of a finished upload streams its
bytes again and gets the stored answer, and a retry arriving while the first is being
recorded is the usual 409.

GraphQL keys one mutation field with :func:`reserve` and :func:`store` (fingerprinted by the
field and its arguments; see ``teamboard.graphql.mutations``), and honours the header for a
whole mutating request through :func:`claim`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar
from uuid import UUID

from starlette.requests import Request
from starlette.responses import Response

from teamboard.config import Settings
from teamboard.db import Tx
from teamboard.errors import BadRequest, Conflict, Unprocessable
from teamboard.kit.crypto import SecretBox, is_sealed
from teamboard.kit.ids import new_id
from teamboard.unit_of_work import unit_of_work

HEADER = "idempotency-key"
REPLAYED_HEADER = (b"idempotent-replayed", b"true")
RETENTION = timedelta(hours=24)
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII, as the draft's examples
_LOCK_SEED = 0x1DE4
_MARK = "returns_secret"
_SEALING_PURPOSE = "idempotency-secret-response"
E = TypeVar("E", bound=Callable[..., Any])


class IdempotentReplay(Exception):
    """Raised by :func:`claim` to answer with a stored response."""

    def __init__(self, status: int, headers: list[list[str]], body: bytes) -> None:
        super().__init__("idempotent replay")
        self.status, self.headers, self.body = status, headers, body

    def response(self) -> Response:
        response = Response(self.body, status_code=self.status)
        response.raw_headers = [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in self.headers
        ] + [REPLAYED_HEADER]
        return response


async def claim(request: Request, tx: Tx, *, caller: str, team_id: UUID | None) -> None:
    """Run before a POST's work: replay, refuse, or arrange for its response to be kept.

    Does nothing unless the request is a POST with an ``Idempotency-Key``. ``caller`` names
    who sends it (``user:<id>`` or ``key:<id>``); the transaction's user owns the record.
    The body of a route marked :func:`returns_secret` is kept encrypted.
    """
    if request.method != "POST":
        return
    key = request.headers.get(HEADER)
    if key is None:
        return
    check_key(key)
    fingerprint = await _fingerprint(request)
    record = Record(caller, team_id, key, fingerprint)
    box = _box(request) if getattr(request.scope.get("endpoint"), _MARK, False) else None
    stored = await reserve(tx, record)
    if stored is not None:
        body = stored.body
        if box is not None and is_sealed(body):
            body = _opened(box, body, record)
        raise IdempotentReplay(stored.status, stored.headers, body)

    async def keep(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        if box is not None:
            body = box.seal_bytes(body, record.binding)
        await store(tx, record, Stored(status, _storable(headers), body))

    unit_of_work(request).before_commit = keep


def returns_secret(endpoint: E) -> E:
    """Mark a POST route whose response holds a secret shown once (a new API key, an
    invitation's token, a webhook's signing secret): a kept response of it is stored
    encrypted with a key derived from ``SECRET_KEY`` (``kit.crypto``), so the database
    alone (a dump, a replica, a backup) never holds the secret in clear. Place it below
    the route decorator, like ``costs``."""
    setattr(endpoint, _MARK, True)
    return endpoint


def _opened(box: SecretBox, sealed: bytes, record: Record) -> bytes:
    """The kept answer; 409 when it no longer opens (``SECRET_KEY`` changed since)."""
    try:
        return box.open_bytes(sealed, record.binding)
    except ValueError:
        raise Conflict(
            "The request with this Idempotency-Key was applied, but its answer can no longer"
            " be replayed (the server's key changed); use a new key",
            code="idempotency_replay_unavailable",
        ) from None


def _box(request: Request) -> SecretBox:
    settings: Settings = request.app.state.services.settings
    return SecretBox(settings.derived_key(_SEALING_PURPOSE))


@dataclass(frozen=True)
class Record:
    """What names one idempotent request: who sent it, in which team, with which key, and
    the fingerprint of the request itself."""

    caller: str
    team_id: UUID | None
    key: str
    fingerprint: bytes

    @property
    def binding(self) -> str:
        """What a sealed body is bound to: it decrypts for this record only."""
        return f"{self.caller}|{self.team_id}|{self.key}"


@dataclass(frozen=True)
class Stored:
    """A kept response."""

    status: int
    headers: list[list[str]]
    body: bytes

    @classmethod
    def of(cls, response: Response) -> Stored:
        """What the response sends, as the unit of work would keep it."""
        return cls(response.status_code, _storable(response.raw_headers), bytes(response.body))


def request_key(request: Request) -> str | None:
    """The POST's ``Idempotency-Key`` (checked: 400 when malformed), or None."""
    key = request.headers.get(HEADER) if request.method == "POST" else None
    if key is not None:
        check_key(key)
    return key


def upload_record(
    request: Request, caller: str, team_id: UUID, key: str, content_type: str, sha256: str
) -> Record:
    """The record of an upload: the route and its query (the file name), and the file
    itself rather than the multipart or raw body that carried it."""
    digest = hashlib.sha256()
    for part in (request.method, request.url.path, _sorted_query(request), content_type, sha256):
        digest.update(part.encode() + b"\0")
    return Record(caller, team_id, key, digest.digest())


def check_key(key: str) -> None:
    """400 unless ``key`` is 1 to 255 visible ASCII characters."""
    if not _KEY.match(key):
        raise BadRequest(
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
            code="invalid_idempotency_key",
        )


async def reserve(tx: Tx, record: Record) -> Stored | None:
    """Take the key for the rest of the transaction and return its kept response, if any.

    409 while another transaction holds the key (still in flight); 422 when the key was
    used with a different request. A write transaction must then do the work and
    :func:`store` its response, or do nothing.
    """
    scope = {"caller": record.caller, "team": record.team_id, "key": record.key}
    locked = await tx.fetch_value(
        "select pg_try_advisory_xact_lock(hashtextextended(%(user)s::uuid::text || '|'"
        " || %(caller)s || '|' || coalesce(%(team)s::uuid::text, '') || '|' || %(key)s,"
        " %(seed)s))",
        {**scope, "user": tx.user_id, "seed": _LOCK_SEED},
    )
    if not locked:
        raise Conflict(
            "A request with this Idempotency-Key is still in progress",
            code="idempotency_in_flight",
            headers={"Retry-After": "1"},
        )
    stored = await tx.fetch_one(
        "select fingerprint, status, headers, body from idempotency_record"
        " where caller = %(caller)s and team_scope is not distinct from %(team)s::uuid"
        " and key = %(key)s and expires_at > now()",
        scope,
    )
    if stored is None:
        return None
    if bytes(stored["fingerprint"]) != record.fingerprint:
        raise Unprocessable(
            "This Idempotency-Key was used with a different request",
            code="idempotency_key_reused",
        )
    return Stored(stored["status"], stored["headers"], bytes(stored["body"]))


async def reserve_or_replay(tx: Tx, record: Record) -> None:
    """:func:`reserve`, raising :class:`IdempotentReplay` when the key kept a response."""
    stored = await reserve(tx, record)
    if stored is not None:
        raise IdempotentReplay(stored.status, stored.headers, stored.body)


async def store(tx: Tx, record: Record, response: Stored) -> None:
    """Keep ``response`` for the key, in the transaction of the work it answers."""
    await tx.execute(
        "insert into idempotency_record (user_id, id, caller, team_scope, key, fingerprint,"
        " status, headers, body, expires_at)"
        " values (%(user)s, %(id)s, %(caller)s, %(team)s, %(key)s, %(fingerprint)s,"
        " %(status)s, %(headers)s, %(body)s, now() + %(retention)s)"
        " on conflict (user_id, caller, team_scope, key) do update set"
        " id = excluded.id, fingerprint = excluded.fingerprint, status = excluded.status,"
        " headers = excluded.headers, body = excluded.body, created_at = now(),"
        " expires_at = excluded.expires_at"
        " where idempotency_record.expires_at <= now()",
        {
            "caller": record.caller,
            "team": record.team_id,
            "key": record.key,
            "user": tx.user_id,
            "id": new_id(),
            "fingerprint": record.fingerprint,
            "status": response.status,
            "headers": response.headers,
            "body": response.body,
            "retention": RETENTION,
        },
    )


async def _fingerprint(request: Request) -> bytes:
    """The request's method, path, query and body, whatever its content type: routes parse
    bodies that do not say they are JSON (``/graphql``, a batch of events), so two
    different bodies of one length must not match. The body is read within the route's
    limit (``kit.body_limit``) and kept for the route; uploads never come here."""
    digest = hashlib.sha256()
    for part in (request.method, request.url.path, _sorted_query(request)):
        digest.update(part.encode() + b"\0")
    digest.update(await request.body())
    return digest.digest()


def _sorted_query(request: Request) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted(request.query_params.multi_items()))


def _storable(headers: list[tuple[bytes, bytes]]) -> list[list[Any]]:
    return [[name.decode("latin-1"), value.decode("latin-1")] for name, value in headers]
