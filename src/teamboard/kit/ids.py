"""Identifiers: UUIDv7 (time-ordered, so new rows land at the right edge of B-tree indexes)."""

from __future__ import annotations

from uuid import UUID

import uuid_utils
import uuid_utils.compat


def new_id() -> UUID:
    """A new RFC 9562 UUIDv7 as a standard :class:`uuid.UUID`."""
    return uuid_utils.compat.uuid7()


def new_id_hex() -> str:
    """A new UUIDv7 as 32 hex digits, with no :class:`uuid.UUID` built on the way (a request
    id: 0.4 µs instead of 2.3 µs)."""
    return uuid_utils.uuid7().hex
