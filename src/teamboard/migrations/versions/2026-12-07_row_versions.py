"""Versions for labels, statuses, comments and time entries: their ETags.

Projects and tasks carried a ``version`` that their updates raise and that answers as their
``ETag``, and their PATCH honoured ``If-Match``. The other resources a client edits did
not: a stale ``If-Match`` on a label, a status, a comment or a time entry was ignored and
the update went through (a lost update instead of 412). Each of these tables gets the same
column, raised by a trigger on every update, whatever statement makes it (a rename, a
reorder, a soft delete, a stopped timer), so no update path can forget it.

Adding a column with a constant default rewrites nothing (PostgreSQL 11+); the trigger
costs one assignment per updated row.

Revision ID: 20261207_row_versions
Revises: 20261207_task_summaries
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "20261207_row_versions"
down_revision = "20261207_task_summaries"
branch_labels = None
depends_on = None

TABLES = ("label", "status", "comment", "time_entry")


def upgrade() -> None:
    op.execute(
        """
        create function tb_next_version() returns trigger
            language plpgsql set search_path = pg_catalog, public as $$
        begin
            new.version := old.version + 1;
            return new;
        end $$;
        """
    )
    add_versions(TABLES)


def downgrade() -> None:
    drop_versions(TABLES)
    op.execute("drop function tb_next_version()")


def add_versions(tables: tuple[str, ...]) -> None:
    """Give each table the column and the trigger that raises it on every update."""
    for table in tables:
        op.execute(
            f"alter table {table} add column version integer not null default 1;"
            f" create trigger {table}_next_version before update on {table}"
            " for each row execute function tb_next_version();"
        )


def drop_versions(tables: tuple[str, ...]) -> None:
    for table in tables:
        op.execute(
            f"drop trigger {table}_next_version on {table};"
            f" alter table {table} drop column version;"
        )
