"""Policies read the caller's visible projects inline, not through a PL/pgSQL call.

Every policy over projects and what belongs to them (56: tasks, comments, labels,
assignees, events, analytics, ...) checked ``(select tb_visible_project_ids())``. The
function reads one row of ``team_member_visibility``, but as a PL/pgSQL function with
``SECURITY DEFINER`` and its own ``search_path``: each call saves and restores settings,
recomputes the search path, and runs its query through SPI with an executor of its own.
Under HTTP load that call was 24 % of the PostgreSQL time of a task read (``perf`` on the
app role's backends, bench/README.md, eleventh session), and the task read's statement
alone runs about a quarter faster without it (pgbench, the app role, the same fixtures).

The policies now hold the same read as a sub-select (``tenancy.VISIBLE_PROJECTS``), which
PostgreSQL plans into the statement as an init plan: evaluated once per statement, as the
call was. It reads the table under its own policy, which shows a caller their own row
only, the row the function read; a caller who is not a member has no row, and NULL matches
nothing where the function's ``{}`` matched nothing (every use is ``= any(...)`` or
``array_position(...) is not null`` in a policy; ``tb_analytics_sees_all()``, which negates
the set, keeps calling the function, which stays). The worker role reads ``event``, whose
select policy (for everyone) now names ``team_member_visibility``: PostgreSQL checks the
table privilege of every relation a statement names, so the worker is granted SELECT on
it. It reads no row through it: its own policy ``event_worker`` (``true``) is what lets
it see events, and it may not even call the context functions that table's policy uses.

Revision ID: 20261207_inline_visible_sets
Revises: 20261206_visible_project_sets
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Callable

from alembic import op

from teamboard.migrations.support import worker_role
from teamboard.ops.tenancy import VISIBLE_PROJECTS

revision = "20261207_inline_visible_sets"
down_revision = "20261206_visible_project_sets"
branch_labels = None
depends_on = None

#: The call as PostgreSQL prints a policy that holds it.
CALL = "( SELECT tb_visible_project_ids() AS tb_visible_project_ids)"
_CALL_SOURCE = "(select tb_visible_project_ids())"
#: How PostgreSQL prints the start of ``VISIBLE_PROJECTS``.
INLINE_START = "( SELECT v.project_ids"

_POLICIES = """
select c.relname, p.polname,
       pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
from pg_policy p
join pg_class c on c.oid = p.polrelid
where c.relnamespace = current_schema()::regnamespace
order by c.relname, p.polname
"""


def _rewrite(replace: Callable[[str], str]) -> None:
    """Alter every policy whose expressions ``replace`` changes; none is an error (a schema
    printed otherwise than expected would leave every policy as it was, silently)."""
    altered = 0
    for table, name, using, check in op.get_bind().exec_driver_sql(_POLICIES).fetchall():
        clauses = []
        if using is not None and replace(using) != using:
            clauses.append(f"using ({replace(using)})")
        if check is not None and replace(check) != check:
            clauses.append(f"with check ({replace(check)})")
        if clauses:
            op.execute(f"alter policy {name} on {table} {' '.join(clauses)}")
            altered += 1
    if not altered:
        raise RuntimeError("no policy holds the visible-project check in the expected form")


def _inline(expression: str) -> str:
    return expression.replace(CALL, VISIBLE_PROJECTS)


def _call(expression: str) -> str:
    """Each printed sub-select of ``VISIBLE_PROJECTS`` (up to its closing parenthesis) back
    into the call."""
    while (start := expression.find(INLINE_START)) >= 0:
        depth, end = 0, start
        for end in range(start, len(expression)):
            depth += {"(": 1, ")": -1}.get(expression[end], 0)
            if depth == 0:
                break
        expression = f"{expression[:start]}{_CALL_SOURCE}{expression[end + 1 :]}"
    return expression


def upgrade() -> None:
    op.execute(f"grant select on team_member_visibility to {worker_role()}")
    _rewrite(_inline)


def downgrade() -> None:
    _rewrite(_call)
    op.execute(f"revoke select on team_member_visibility from {worker_role()}")
