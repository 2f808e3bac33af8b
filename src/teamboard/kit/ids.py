"""Identifiers: UUIDv7 (time-ordered, so new rows land at the right edge of B-tree indexes)."""

from __future__ import annotations

from uuid import UUID

import uuid_utils.compat


def new_id() -> UUID:
    """A new RFC 9562 UUIDv7 as a standard :class:`uuid.UUID`."""
    return uuid_utils.compat.uuid7()
