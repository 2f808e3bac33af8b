"""Waiting, in a test, until requests are known to wait for a row lock that a second
session holds (to make them race a change committed meanwhile)."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest


async def until_waiting(owner: psycopg.Connection[Any], table: str, count: int) -> None:
    """Return once ``count`` statements naming ``table`` wait for a lock (bounded: 10 s)."""
    for _ in range(200):
        waiting = owner.execute(
            "select count(*) as n from pg_stat_activity"
            " where wait_event_type = 'Lock' and query like %s",
            (f"%{table}%",),
        ).fetchone()
        if waiting == {"n": count}:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"{count} statements on {table} never waited for the lock")
