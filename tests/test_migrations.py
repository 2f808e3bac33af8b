"""Every migration goes up, down and up again, on a database holding data."""

from __future__ import annotations

import uuid

import psycopg

from teamboard.ops import database
from tests.dbsetup import fresh_database, test_settings


def _tables(conn: psycopg.Connection[tuple[str]]) -> set[str]:
    rows = conn.execute(
        "select tablename from pg_tables"
        " where schemaname = 'public' and tablename <> 'alembic_version'"
    ).fetchall()
    return {row[0] for row in rows}


def _version(conn: psycopg.Connection[tuple[str]]) -> str | None:
    row = conn.execute("select version_num from alembic_version").fetchone()
    return row[0] if row else None


def test_upgrade_downgrade_upgrade_with_data(server_url: str) -> None:
    settings = test_settings()
    with fresh_database(server_url, prefix="teamboard_migrations") as owner_url:
        urls = database.prepare(settings, owner_url)
        with psycopg.connect(owner_url, autocommit=True) as conn:
            user, team = uuid.uuid4(), uuid.uuid4()
            conn.execute(
                "insert into app_user (id, email, display_name, password_hash)"
                " values (%s, 'm@example.com', 'm', 'x')",
                (user,),
            )
            conn.execute(
                "insert into team (id, name, created_by) values (%s, 't', %s)", (team, user)
            )
            conn.execute(
                "insert into team_member (team_id, user_id, role) values (%s, %s, 'owner')",
                (team, user),
            )
            conn.execute(
                "insert into event (team_id, id, actor_id, kind)"
                " values (%s, %s, %s, 'team.created')",
                (team, uuid.uuid4(), user),
            )
            head_tables = _tables(conn)
            assert {"team", "task", "event", "app_user"} <= head_tables
            assert _version(conn) == database.head_revision()

        database.migrate(urls, "base", downgrade=True)
        with psycopg.connect(owner_url, autocommit=True) as conn:
            assert _tables(conn) == set()
            assert _version(conn) is None
            functions = conn.execute(
                "select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
                " where n.nspname = 'public' and p.proname like 'tb\\_%'"
            ).fetchone()
            assert functions == (0,)

        database.prepare(settings, owner_url)
        with psycopg.connect(owner_url, autocommit=True) as conn:
            assert _tables(conn) == head_tables
            assert _version(conn) == database.head_revision()
