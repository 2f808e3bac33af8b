"""Identifiers: UUIDv7 (time-ordered, so new rows land at the right edge of B-tree indexes)."""

from __future__ import annotations

from uuid import UUID

import uuid_utils
import uuid_utils.compat
from asyncpg.pgproto import pgproto


def new_id() -> UUID:
    """A new RFC 9562 UUIDv7 as a standard :class:`uuid.UUID`."""
    return uuid_utils.compat.uuid7()


def new_id_hex() -> str:
    """A new UUIDv7 as 32 hex digits, with no :class:`uuid.UUID` built on the way (a request
    id: 0.4 µs instead of 2.3 µs)."""
    return uuid_utils.uuid7().hex


#: Parse the text of a UUID (32 hex digits, dashes anywhere; no braces or ``urn:uuid:``
#: prefix, which :class:`uuid.UUID` would also take) into the driver's UUID: a
#: :class:`uuid.UUID` subclass implemented in C, the type every ``uuid`` column comes back
#: as. For values a request uses several times (in the transaction's context, its
#: rate-limit keys): parsing and printing it cost a tenth of the standard class's
#: (0.14 and 0.07 µs against 1.2 and 0.7). Raises ValueError for anything else.
parse_uuid: type[UUID] = pgproto.UUID
