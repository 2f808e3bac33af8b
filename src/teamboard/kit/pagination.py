"""Keyset pagination with opaque, signed cursors.

A cursor carries the sort key of the last row returned and is bound (by HMAC) to the team,
the list it came from and its filters: a cursor that was tampered with, or that comes from
another team, list or filter set, is refused with 400 instead of silently returning
another page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar
from uuid import UUID

import orjson
from fastapi import Query

from teamboard.errors import BadRequest

R = TypeVar("R")

_MAC_BYTES = 16
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200

#: The ``limit`` query parameter of every list: default 50, capped at 200.
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


def limit_clause(rows: int, *, at_most: int | None = MAX_LIMIT + 1) -> str:
    """``limit <rows>``, written into the statement rather than passed as a parameter.

    With ``limit $n`` a generic plan does not know how many rows a page takes and costs it
    as a tenth of the rows the scan could reach. In a team with a large project that is
    far above a custom plan's cost, so PostgreSQL planned the statement again on every
    execution: 0.4 ms per page of tasks with a million-task project in the team, more than
    running it (bench/README.md). With the number in the text the generic plan has its
    real cost and is kept. ``rows`` is a page size plus one (at most ``MAX_LIMIT + 1``),
    so a list has few distinct texts and there is nothing to quote; ``at_most=None`` is for
    a read that is not a page but also takes few distinct sizes (the rebalance windows of
    ``tasks.positions``, the batch size setting of ``events.log``'s readers).
    """
    if type(rows) is not int or rows < 1 or (at_most is not None and rows > at_most):
        most = "any number of" if at_most is None else f"1 to {at_most}"
        raise ValueError(f"a read takes {most} rows, not {rows!r}")
    return f"limit {rows}"


def id_page_sql(
    select: str,
    conditions: Sequence[str],
    column: str,
    after: UUID | None,
    limit: int,
    params: Mapping[str, Any],
    *,
    descending: bool = False,
) -> tuple[str, dict[str, Any]]:
    """A page of ``select`` (a statement up to its ``where``) ordered by the unique
    ``column`` (``descending``: newest UUIDv7 first): ``limit + 1`` rows after the cursor
    ``after``, and the parameters.

    The cursor is a condition of the text on the pages that have one, rather than
    ``(%(after)s is null or column > %(after)s)``: under the generic plan PostgreSQL settles
    on for a prepared statement, that form cannot start the index at the cursor, so every
    page read and sorted the list from its first row (``tests/test_teams.py``). The page
    size is in the text too (see :func:`limit_clause`).
    """
    where = list(conditions)
    values = dict(params)
    if after is not None:
        where.append(f"{column} {'<' if descending else '>'} %(after)s")
        values["after"] = after
    clause = f" where {' and '.join(where)}" if where else ""
    order = f"{column} desc" if descending else column
    return f"{select}{clause} order by {order} {limit_clause(limit + 1)}", values


@dataclass(frozen=True)
class PageRequest:
    limit: int
    after: list[Any] | None


_BLOCK = hashlib.sha256().block_size
_INNER_PAD = bytes(byte ^ 0x36 for byte in range(256))
_OUTER_PAD = bytes(byte ^ 0x5C for byte in range(256))


class CursorCodec:
    """Signs and verifies cursors with a key derived from SECRET_KEY: HMAC-SHA256
    (RFC 2104), truncated to 16 bytes."""

    def __init__(self, key: bytes) -> None:
        # HMAC's two keyed hash states, computed once: each MAC then copies them, where
        # ``hmac.digest`` looks the digest up in OpenSSL's provider store and hashes both
        # pads again on every call (cold in a request, that was most of the cost a page
        # after the first pays over page 1: bench/README.md, fifteenth session). The same
        # bytes as ``hmac.digest(key, message, "sha256")`` (tests/test_pagination.py).
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_INNER_PAD))
        self._outer = hashlib.sha256(key.translate(_OUTER_PAD))

    def _binding(self, scope: str, filters: Mapping[str, Any]) -> bytes:
        return orjson.dumps([scope, filters], option=orjson.OPT_SORT_KEYS, default=str)

    def encode(self, scope: str, filters: Mapping[str, Any], key: Sequence[Any]) -> str:
        payload = orjson.dumps(list(key), default=str)
        token = self._mac(scope, filters, payload) + payload
        return base64.urlsafe_b64encode(token).decode().rstrip("=")

    def _mac(self, scope: str, filters: Mapping[str, Any], payload: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(self._binding(scope, filters))
        inner.update(payload)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:_MAC_BYTES]

    def decode(self, scope: str, filters: Mapping[str, Any], cursor: str) -> list[Any]:
        try:
            # ``base64.urlsafe_b64decode`` without its four Python calls; a non-ASCII
            # cursor fails to encode (a ValueError, as there).
            padded = (cursor + "=" * (-len(cursor) % 4)).encode("ascii")
            raw = binascii.a2b_base64(padded.translate(_FROM_URLSAFE))
            # The MAC has a fixed length and comes first: no separator that binary bytes
            # could imitate.
            mac, payload = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
            if not payload or not hmac.compare_digest(mac, self._mac(scope, filters, payload)):
                raise ValueError("bad signature")
            key = orjson.loads(payload)
        except ValueError as exc:
            raise BadRequest("The cursor is invalid for this list", code="invalid_cursor") from exc
        if not isinstance(key, list):
            raise BadRequest("The cursor is invalid for this list", code="invalid_cursor")
        return key

    def page(
        self, scope: str, filters: Mapping[str, Any], limit: int, cursor: str | None
    ) -> PageRequest:
        return PageRequest(limit, self.decode(scope, filters, cursor) if cursor else None)

    def next_cursor(
        self,
        scope: str,
        filters: Mapping[str, Any],
        rows: list[R],
        limit: int,
        key: Callable[[R], Sequence[Any]],
    ) -> str | None:
        """Rows must have been fetched with ``limit + 1``; trims the extra row in place. The
        cursor holds ``key`` of the page's last row."""
        if len(rows) <= limit:
            return None
        del rows[limit:]
        return self.encode(scope, filters, key(rows[-1]))

    def envelope(
        self,
        scope: str,
        filters: Mapping[str, Any],
        rows: list[dict[str, Any]],
        limit: int,
        key_columns: Sequence[str],
    ) -> dict[str, Any]:
        """The list answer ``{"items": [...], "next_cursor": ...}`` (rows as ``next_cursor``)."""
        cursor = self.next_cursor(
            scope, filters, rows, limit, lambda last: [last[column] for column in key_columns]
        )
        return {"items": rows, "next_cursor": cursor}

    async def id_page(
        self,
        scope: str,
        limit: int,
        cursor: str | None,
        fetch: Callable[[int, UUID | None], Awaitable[list[dict[str, Any]]]],
        *,
        key: str = "id",
        filters: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One page of a list ordered by a single UUID column: decode the cursor, fetch
        ``limit + 1`` rows after it, answer the envelope."""
        filters = filters or {}
        rows = await fetch(limit, uuid_after(self.page(scope, filters, limit, cursor)))
        return self.envelope(scope, filters, rows, limit, [key])


def uuid_after(page: PageRequest) -> UUID | None:
    """The single-UUID keyset position of a page (lists ordered by id)."""
    if page.after is None:
        return None
    try:
        (value,) = page.after
        return UUID(str(value))
    except (TypeError, ValueError) as exc:
        raise BadRequest("The cursor is invalid for this list", code="invalid_cursor") from exc
