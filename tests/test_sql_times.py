"""Timestamps formatted by PostgreSQL for the stored task list items (``api_text`` of
migration ``2026-12-07_task_summaries``) are the text the API's encoder writes for the same
instants, value by value over a spread of instants, in a session time zone that is not
UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg

from teamboard.kit.responses import dumps
from teamboard.migrations.support import sibling

api_text = sibling("2026-12-07_task_summaries.py").api_text

#: Whole seconds, a fraction with trailing zeros, one microsecond, a year before 1000.
EDGES = (
    "2026-12-07 02:04:05+00",
    "2026-12-07 02:04:05.12+00",
    "2026-12-07 02:04:05.000001+00",
    "0999-01-02 03:04:05.00001+00",
)


def test_postgres_writes_each_instant_as_the_encoder_does(
    owner: psycopg.Connection[dict[str, Any]],
) -> None:
    owner.execute("set timezone = 'America/New_York'")
    try:
        rows = owner.execute(
            f"select x, {api_text('x')} as text from ("
            " select unnest(%s::timestamptz[]) as x"
            " union all select now() - random() * interval '3000 days'"
            " from generate_series(1, 2000)"
            " union all select null) s",
            (list(EDGES),),
        ).fetchall()
    finally:
        owner.execute("reset timezone")
    assert len(rows) == len(EDGES) + 2001
    for row in rows:
        # The app's driver answers in UTC (psycopg here, in the session's time zone).
        instant = row["x"]
        expected = None if instant is None else orjson.loads(dumps(instant.astimezone(UTC)))
        assert row["text"] == expected, instant


def test_the_format_keeps_utc_and_drops_a_zero_fraction() -> None:
    # What the test above compares against, spelled out.
    assert dumps(datetime(2026, 12, 7, 2, 4, 5, tzinfo=UTC)) == b'"2026-12-07T02:04:05Z"'
    assert dumps(datetime(2026, 12, 7, 2, 4, 5, 120000, tzinfo=UTC)) == (
        b'"2026-12-07T02:04:05.120000Z"'
    )
