"""Each task keeps its list item, the JSON text the API answers for it, on its row.

A page of 50 tasks spent most of its time in Python on its rows: decoding 18 columns per
task (five UUIDs among them), building a dict per task, and encoding each again as JSON,
about 32,000 instructions a task (callgrind, bench/README.md, thirteenth session). The item
only ever goes out as it is, so it is now written once, when the task is written: the
trigger ``task_write_summary`` sets ``task.summary`` before every insert and update of a
task, from the row itself (the key, assignees and labels are columns of the row, kept by
the card triggers of ``2026-12-06_task_cards``, whose refreshes are updates of the row and
so rewrite the summary too). Reads select that one text column and hand it to the encoder
as it is (``teamboard.tasks.repository``).

The text is the one the API wrote before: the same keys in the same order, compact
(``row_to_json``, whose escapes are orjson's), UUIDs as text, timestamps as
:func:`api_text` writes them (UTC, ``Z``, microseconds only when there are some, as
orjson does; ``tests/test_sql_times.py`` checks it against the encoder). A change of the
item's fields is a migration that replaces ``tb_task_summary`` and rewrites the column.

``task_write_summary`` must run after every other ``before`` trigger that sets a column of
the item (``task_set_key``, ``task_touch``): PostgreSQL runs a table's triggers of the same
kind in the order of their names, and its name sorts last.

Existing tasks get theirs in one update with ``task_touch`` disabled (``updated_at`` stays),
as the owner with ``row_security`` off (an owner without BYPASSRLS fails instead of
updating nothing): writes to ``task`` wait for the migration, and every task gets a new row
version; on a large installation, plan it like any rewrite of a big table.

Revision ID: 20261207_task_summaries
Revises: 20261207_compact_task_labels
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "20261207_task_summaries"
down_revision = "20261207_compact_task_labels"
branch_labels = None
depends_on = None

_WHOLE_SECONDS = 'YYYY-MM-DD"T"HH24:MI:SS"Z"'
_FRACTION = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'


def api_text(column: str) -> str:
    """``column`` (a ``timestamptz``; NULL stays NULL) as the text the API's encoder writes
    for the instant, in any session time zone."""
    whole = f"mod(date_part('microseconds', {column})::int, 1000000) = 0"
    pattern = f"case when {whole} then '{_WHOLE_SECONDS}' else '{_FRACTION}' end"
    return f"to_char({column} at time zone 'UTC', {pattern})"


#: The list item's fields, in the API's order (``TaskOut`` without ``description``).
FIELDS = (
    "id", "key", "number", "project_id", "title", "status_id", "priority", "parent_id",
    "due_at", "estimate", "position", "created_by", "created_at", "updated_at",
    "completed_at", "version", "assignee_ids", "labels",
)  # fmt: skip
_TIMES = frozenset({"due_at", "created_at", "updated_at", "completed_at"})
_ITEM = ", ".join(
    f"{api_text(f'new.{name}') if name in _TIMES else f'new.{name}'} as {name}" for name in FIELDS
)

UP = f"""
alter table task add column summary text;

create function tb_task_summary() returns trigger
    language plpgsql set search_path = pg_catalog, public as $$
begin
    new.summary := (select row_to_json(item)::text from (select {_ITEM}) item);
    return new;
end $$;

create trigger task_write_summary before insert or update on task
    for each row execute function tb_task_summary();

alter table task disable trigger task_touch;
set local row_security = off;
update task set summary = null;
reset row_security;
alter table task enable trigger task_touch;

alter table task alter column summary set not null;
"""

DOWN = """
drop trigger task_write_summary on task;
drop function tb_task_summary();
alter table task drop column summary;
"""


def upgrade() -> None:
    op.execute(UP)


def downgrade() -> None:
    op.execute(DOWN)
