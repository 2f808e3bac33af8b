"""Timestamps that PostgreSQL writes as the API's JSON text, for rows that only go out.

The driver turns each ``timestamptz`` into a :class:`datetime.datetime` by building a
``timedelta`` from keyword arguments, about 4,200 instructions a value (callgrind); a page of
50 tasks has about 150 of them, a fifth of the page's whole cost in Python. Formatted by
PostgreSQL instead (``to_char``, about a quarter of a microsecond each), a value arrives as
the text :func:`teamboard.kit.responses.dumps` would have written: UTC, ``Z``, and the
microseconds only when there are some, as orjson does. ``tests/test_sql_times.py`` checks
the two agree, in any session time zone.

For rows that go straight into a response: a row whose values the code reads as datetimes
must keep the plain column.
"""

from __future__ import annotations

_WHOLE_SECONDS = 'YYYY-MM-DD"T"HH24:MI:SS"Z"'
_FRACTION = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'


def as_api_text(column: str, alias: str) -> str:
    """A select-list item: ``column`` (a ``timestamptz``, NULL stays NULL) as the API's text,
    named ``alias``."""
    whole = f"mod(date_part('microseconds', {column})::int, 1000000) = 0"
    pattern = f"case when {whole} then '{_WHOLE_SECONDS}' else '{_FRACTION}' end"
    return f"to_char({column} at time zone 'UTC', {pattern}) as {alias}"
