"""The work migration on a database that already holds tasks: it goes down and up again,
and gives existing tasks gapped positions in their number order."""

from __future__ import annotations

import uuid

import psycopg

from teamboard.ops import database
from tests.dbsetup import fresh_database, insert_owned_team, insert_project, test_settings

PREVIOUS = "20261122_foundation"


def test_existing_tasks_get_positions_in_number_order(server_url: str) -> None:
    settings = test_settings()
    with fresh_database(server_url, prefix="teamboard_work_migration") as owner_url:
        urls = database.prepare(settings, owner_url)
        database.migrate(urls, PREVIOUS, downgrade=True)
        user, team, project, todo, doing = (uuid.uuid4() for _ in range(5))
        with psycopg.connect(owner_url, autocommit=True) as conn:
            insert_owned_team(conn, user, team)
            insert_project(conn, team, project, user, "OLD")
            for status, name in ((todo, "Todo"), (doing, "Doing")):
                conn.execute(
                    "insert into status (team_id, id, project_id, name, category, position)"
                    " values (%s, %s, %s, %s, 'unstarted', 1)",
                    (team, status, project, name),
                )
            for number in range(1, 6):
                conn.execute(
                    "insert into task (team_id, id, project_id, number, title, status_id,"
                    " created_by) values (%s, %s, %s, %s, 't', %s, %s)",
                    (team, uuid.uuid4(), project, number, todo if number % 2 else doing, user),
                )

        database.prepare(settings, owner_url)
        with psycopg.connect(owner_url, autocommit=True) as conn:
            rows = conn.execute(
                "select status_id, number, position, version from task order by number"
            ).fetchall()
            positions = {number: position for _, number, position, _ in rows}
            assert [positions[n] for n in (1, 3, 5)] == [65536, 131072, 196608]
            assert [positions[n] for n in (2, 4)] == [65536, 131072]
            assert {version for *_, version in rows} == {1}
            assert conn.execute("select version from project").fetchone() == (1,)

        database.migrate(urls, PREVIOUS, downgrade=True)
        with psycopg.connect(owner_url, autocommit=True) as conn:
            tables = {
                row[0]
                for row in conn.execute(
                    "select tablename from pg_tables where schemaname = 'public'"
                ).fetchall()
            }
            assert not {"label", "task_label", "task_assignee"} & tables
            count = conn.execute("select count(*) from task").fetchone()
            assert count == (5,)  # the foundation's data survives the way down
