"""Every migration goes up, down and up again, on a database holding data."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from teamboard.ops import database
from tests.dbsetup import (
    fresh_database,
    insert_owned_team,
    insert_project,
    stale_items,
    test_settings,
)


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
            insert_owned_team(conn, user, team)
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


def _insert_task(
    conn: psycopg.Connection[Any],
    user: uuid.UUID,
    team: uuid.UUID,
    project: uuid.UUID,
    task: uuid.UUID,
) -> None:
    """A team owned by ``user`` with project ``LAB``, a status and task ``LAB-1`` due on a
    whole second."""
    insert_owned_team(conn, user, team)
    insert_project(conn, team, project, user, "LAB")
    status = uuid.uuid4()
    conn.execute(
        "insert into status (team_id, id, project_id, name, category, position)"
        " values (%s, %s, %s, 'Todo', 'unstarted', 1)",
        (team, status, project),
    )
    conn.execute(
        "insert into task (team_id, id, project_id, number, title, status_id, created_by,"
        " position, due_at) values (%s, %s, %s, 1, 't \"1\"', %s, %s, 1, '2026-12-07 10:00Z')",
        (team, task, project, status, user),
    )


def test_compact_labels_rewrite_stored_cards_both_ways(server_url: str) -> None:
    """``2026-12-07_compact_task_labels`` rewrites the labels of existing tasks (compact
    up, spaced down) without touching ``updated_at``, and its card function writes them."""
    settings = test_settings()
    user, team, project, task, label = (uuid.uuid4() for _ in range(5))
    spaced = f'[{{"id" : "{label}", "name" : "Bug \\"1\\"", "color" : "#ff0000"}}]'
    compact = f'[{{"id":"{label}","name":"Bug \\"1\\"","color":"#ff0000"}}]'
    stored = "select labels::text, updated_at from task where id = %s"
    with fresh_database(server_url, prefix="teamboard_labels_migration") as owner_url:
        urls = database.prepare(settings, owner_url)
        with psycopg.connect(owner_url, autocommit=True) as conn:
            _insert_task(conn, user, team, project, task)
            conn.execute(
                "insert into label (team_id, id, project_id, name, color)"
                " values (%s, %s, %s, 'Bug \"1\"', '#ff0000')",
                (team, label, project),
            )
            conn.execute(
                "insert into task_label (team_id, project_id, task_id, label_id)"
                " values (%s, %s, %s, %s)",
                (team, project, task, label),
            )
            text, updated_at = conn.execute(stored, (task,)).fetchone() or (None, None)
            assert text == compact  # written by the card function

        database.migrate(urls, "20261207_inline_visible_sets", downgrade=True)
        with psycopg.connect(owner_url, autocommit=True) as conn:
            assert conn.execute(stored, (task,)).fetchone() == (spaced, updated_at)
            conn.execute("update label set color = '#00ff00' where id = %s", (label,))
            assert conn.execute(stored, (task,)).fetchone() == (
                spaced.replace("#ff0000", "#00ff00"),
                updated_at,
            )

        database.prepare(settings, owner_url)
        with psycopg.connect(owner_url, autocommit=True) as conn:
            assert conn.execute(stored, (task,)).fetchone() == (
                compact.replace("#ff0000", "#00ff00"),
                updated_at,
            )


def test_task_summaries_are_written_for_existing_tasks(server_url: str) -> None:
    """``2026-12-07_task_summaries`` gives every existing task its list item without touching
    ``updated_at``, later writes keep it, and the downgrade drops it."""
    settings = test_settings()
    user, team, project, task = (uuid.uuid4() for _ in range(4))
    summary = "select summary is not null, updated_at from task where id = %s"
    with fresh_database(server_url, prefix="teamboard_summary_migration") as owner_url:
        urls = database.prepare(settings, owner_url)
        database.migrate(urls, "20261207_compact_task_labels", downgrade=True)
        with psycopg.connect(owner_url, autocommit=True) as conn:
            _insert_task(conn, user, team, project, task)
            updated = conn.execute("select updated_at from task where id = %s", (task,)).fetchone()

        database.prepare(settings, owner_url)
        with psycopg.connect(owner_url, autocommit=True) as conn:
            assert updated is not None
            assert conn.execute(summary, (task,)).fetchone() == (True, updated[0])
            assert stale_items(conn, team) == []
            conn.execute("update task set title = 'renamed', priority = 2 where id = %s", (task,))
            assert stale_items(conn, team) == []

        database.migrate(urls, "20261207_compact_task_labels", downgrade=True)
        with psycopg.connect(owner_url, autocommit=True) as conn:
            column = conn.execute(
                "select 1 from information_schema.columns"
                " where table_name = 'task' and column_name = 'summary'"
            ).fetchone()
            assert column is None
