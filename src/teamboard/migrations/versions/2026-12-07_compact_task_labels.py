"""A task card's labels are stored as compact JSON, the text a response writes.

The card column ``task.labels`` (``2026-12-06_task_cards``) was built with ``json_agg`` and
``json_build_object``, whose text has spaces (``[{"id" : "…", "name" : "…"}]``). Task reads
and lists decoded it into Python lists and dicts, only for orjson to write them again:
about 5,800 instructions a task with one label, 12 % of a page of 50 tasks (callgrind,
bench/README.md, twelfth session). Stored as the compact text orjson writes
(``row_to_json`` and ``array_to_json``: no spaces, the same escapes), it goes into the
response as it is (``teamboard.tasks.repository``).

``tb_task_card`` is the card migration's own function with the compact expression; the
labels of existing tasks are rewritten without touching ``updated_at``. The downgrade puts
back the function and the spaced text.

The rewrite is one statement over every task that has labels, with writes to ``task``
waiting for it (disabling ``task_touch`` locks the table until the migration commits) and a
new version of each such row (one card computed per labelled task): on a large
installation, plan it like any rewrite of a big table.

Revision ID: 20261207_compact_task_labels
Revises: 20261207_inline_visible_sets
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

from teamboard.migrations.support import sibling

revision = "20261207_compact_task_labels"
down_revision = "20261207_inline_visible_sets"
branch_labels = None
depends_on = None

#: Task ``t``'s labels, in the card's order, as compact JSON.
COMPACT_LABELS_OF_T = (
    "coalesce((select array_to_json(array_agg(row_to_json(x) order by lower(x.name), x.id))"
    " from (select l.id, l.name, l.color from task_label tl join label l"
    " on l.team_id = tl.team_id and l.project_id = tl.project_id and l.id = tl.label_id"
    " where tl.team_id = t.team_id and tl.project_id = t.project_id and tl.task_id = t.id) x),"
    " '[]'::json)"
)


def _spaced_labels_and_functions() -> tuple[str, str]:
    """The card migration's labels expression and its functions' SQL, loaded when this
    migration runs (not whenever Alembic reads the scripts)."""
    cards = sibling("2026-12-06_task_cards.py")
    return str(cards.LABELS_OF_T), str(cards.FUNCTIONS)


def _card_function(labels: str) -> str:
    """``tb_task_card`` as the card migration created it, with ``labels`` as its labels
    expression (one body, not a second copy of it here)."""
    spaced, functions = _spaced_labels_and_functions()
    start = functions.index("create function tb_task_card(")
    end = functions.index("$$;", start) + len("$$;")
    body = functions[start:end]
    if spaced not in body:
        raise RuntimeError("tb_task_card no longer holds the card migration's labels")
    return body.replace("create function", "create or replace function", 1).replace(spaced, labels)


def _rewrite(labels: str) -> str:
    """The labels of every task that has some, as ``labels`` writes them: as the owner,
    which bypasses Row Level Security (an owner that did not would update no row at all,
    silently: with row_security off, that is an error instead)."""
    return f"""
alter table task disable trigger task_touch;
set local row_security = off;
update task t set labels = {labels} where t.labels::text <> '[]';
reset row_security;
alter table task enable trigger task_touch;
"""


def upgrade() -> None:
    op.execute(_card_function(COMPACT_LABELS_OF_T))
    op.execute(_rewrite(COMPACT_LABELS_OF_T))


def downgrade() -> None:
    spaced, _ = _spaced_labels_and_functions()
    op.execute(_card_function(spaced))
    op.execute(_rewrite(spaced))
