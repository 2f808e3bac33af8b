"""Typed keyset positions for lists ordered by several columns.

``CursorCodec`` signs a cursor's key as a JSON list; :func:`typed_key` turns that list back
into the Python values the SQL parameters need (a cursor from this server is always well
formed, so anything else is refused as an invalid cursor).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from teamboard.errors import BadRequest
from teamboard.kit.ids import parse_uuid


def _invalid() -> BadRequest:
    return BadRequest("The cursor is invalid for this list", code="invalid_cursor")


def as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("not an integer")
    return value


def as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("not a number")
    return float(value)


def as_uuid(value: Any) -> UUID:
    """The driver's C UUID (:data:`teamboard.kit.ids.parse_uuid`): parsed and sent to
    PostgreSQL at a fraction of the standard class's cost."""
    return parse_uuid(str(value))


def as_datetime(value: Any) -> datetime:
    parsed = datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ValueError("naive datetime")
    return parsed


def optional(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A converter that lets ``null`` through (nullable sort keys such as ``due_at``)."""
    return lambda value: None if value is None else convert(value)


def typed_key(key: Sequence[Any] | None, converters: Sequence[Callable[[Any], Any]]) -> Any:
    """The decoded key as a tuple of typed values, or None for the first page."""
    if key is None:
        return None
    if len(key) != len(converters):
        raise _invalid()
    typed = []
    try:  # a loop rather than a generator: one call less on every page after the first
        for convert, value in zip(converters, key, strict=True):
            typed.append(convert(value))
    except (TypeError, ValueError) as exc:
        raise _invalid() from exc
    return tuple(typed)
