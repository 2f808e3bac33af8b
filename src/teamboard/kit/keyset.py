"""Typed keyset positions for lists ordered by more than one column.

A cursor's key is signed, so only a key this server produced decodes; the parsers still
check its shape, and anything unexpected is the same 400 as a bad signature.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from teamboard.errors import BadRequest
from teamboard.kit.pagination import PageRequest


def parse_uuid(value: Any) -> UUID:
    return UUID(str(value))


def parse_datetime(value: Any) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("naive datetime")
    return parsed


def parse_float(value: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError("not a number")
    return float(value)


def typed_after(page: PageRequest, *parsers: Callable[[Any], Any]) -> tuple[Any, ...] | None:
    """The page's position as one value per sort column, or None on the first page."""
    if page.after is None:
        return None
    try:
        if len(page.after) != len(parsers):
            raise ValueError("wrong key length")
        return tuple(parse(value) for parse, value in zip(parsers, page.after, strict=True))
    except (TypeError, ValueError) as exc:
        raise BadRequest("The cursor is invalid for this list", code="invalid_cursor") from exc
