"""Test databases: one fresh, migrated database per test run, dropped at the end.

With ``DATABASE_URL`` set (CI: the machine's PostgreSQL, as an owner/superuser URL) the test
database is created on that server; without it an embedded PostgreSQL is started in a
temporary directory, exactly like the product's embedded default.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from teamboard.config import Settings
from teamboard.kit.responses import dumps
from teamboard.tasks.schemas import TaskOut


@contextmanager
def server_owner_url() -> Iterator[str]:
    """An owner URL for a server to create test databases on (given, or embedded)."""
    given = os.environ.get("DATABASE_URL")
    if given:
        yield given
        return
    import pgserver

    with tempfile.TemporaryDirectory(prefix="teamboard-test-") as tmp:
        server: Any = pgserver.get_server(os.path.join(tmp, "pg"), cleanup_mode="delete")
        try:
            yield str(server.get_uri())
        finally:
            server.cleanup()


@contextmanager
def fresh_database(server_url: str, prefix: str = "teamboard_test") -> Iterator[str]:
    """Create an empty database on the server, yield its owner URL, drop it afterwards."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(server_url, dbname=name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


def test_settings(**overrides: Any) -> Settings:
    """Settings for tests: the cheapest argon2 that is still OWASP's minimum."""
    values: dict[str, Any] = {
        "environment": "test",
        "secret_key": "test-secret-key-that-is-long-enough-for-tests",
        "expose_sql_count": True,
        "redis_url": os.environ.get("REDIS_URL") or None,
        "pool_min_size": 2,
        "pool_max_size": 8,
        # Tests share users' and addresses' budgets across a whole run; test_ratelimit.py
        # builds its own app with small limits.
        "rate_limit_per_caller": 1_000_000,
        "rate_limit_per_team": 1_000_000,
        "rate_limit_per_ip": 1_000_000,
        # The webhook tests' receiver listens on 127.0.0.1 over plain HTTP; everything else
        # private stays refused (test_webhooks.py checks it).
        "webhook_allow_http": True,
        "webhook_allowed_networks": "127.0.0.1/32",
    }
    values.update(overrides)
    return Settings(**values)


test_settings.__test__ = False  # type: ignore[attr-defined]  # a factory, not a test


def insert_owned_team(conn: psycopg.Connection[Any], user: uuid.UUID, team: uuid.UUID) -> None:
    """The user ``m@example.com`` and a team they own, written as the database's owner (for
    migration tests, which run below the API)."""
    conn.execute(
        "insert into app_user (id, email, display_name, password_hash)"
        " values (%s, 'm@example.com', 'm', 'x')",
        (user,),
    )
    conn.execute("insert into team (id, name, created_by) values (%s, 't', %s)", (team, user))
    conn.execute(
        "insert into team_member (team_id, user_id, role) values (%s, %s, 'owner')",
        (team, user),
    )


def insert_project(
    conn: psycopg.Connection[Any], team: uuid.UUID, project: uuid.UUID, user: uuid.UUID, key: str
) -> None:
    """A project ``key`` of ``team`` created by ``user`` (as :func:`insert_owned_team`)."""
    conn.execute(
        "insert into project (team_id, id, key, name, created_by) values (%s, %s, %s, %s, %s)",
        (team, project, key, key.lower(), user),
    )


#: A task list item's fields in the API's order: ``TaskOut`` without the description.
_ITEM_FIELDS = tuple(name for name in TaskOut.model_fields if name != "description")


def stale_items(conn: psycopg.Connection[Any], team: uuid.UUID) -> list[dict[str, Any]]:
    """The tasks of ``team`` whose stored list item (``task.summary``) is not, byte for
    byte, what the API's encoder writes for the row's columns (what it wrote for every task
    before the items were stored). The labels go in as stored: the card tests check that
    they are compact."""
    columns = ", ".join("labels::text as labels" if f == "labels" else f for f in _ITEM_FIELDS)
    rows = conn.cursor(row_factory=dict_row).execute(
        f"select summary, {columns} from task where team_id = %s",  # type: ignore[arg-type]
        (team,),
    )
    stale = []
    for row in rows.fetchall():
        item = {name: row[name] for name in _ITEM_FIELDS}
        for name, value in item.items():
            if isinstance(value, datetime):  # the driver answers in the session's time zone
                item[name] = value.astimezone(UTC)
        item["labels"] = orjson.Fragment(row["labels"])
        if row["summary"] != dumps(item).decode():
            stale.append(row)
    return stale
