"""The one helper migrations use to make a table tenant-safe.

``secure_table`` enables and forces Row Level Security, creates exactly one policy per
command (SELECT, INSERT, UPDATE, DELETE), installs the triggers that fill ``team_id`` from
the context and freeze it afterwards, and grants the app role only what the table allows.
``teamboard db audit`` fails on any table that did not go through here.

Policy predicates read the request context through STABLE functions wrapped in a sub-select,
so PostgreSQL evaluates them once per statement (an InitPlan) instead of once per row, and
they fail closed: no context means NULL, and NULL matches nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

CURRENT_USER = "(select tb_current_user_id())"
CURRENT_TEAM = "(select tb_current_team_id())"
CURRENT_ROLE = "(select tb_current_member_role())"

#: The caller is a member of the context team, and the row belongs to that team.
IN_TEAM = f"team_id = {CURRENT_TEAM} and {CURRENT_ROLE} is not null"
#: Any role but guest (guests see only the projects they were added to).
NOT_GUEST = f"team_id = {CURRENT_TEAM} and {CURRENT_ROLE} in ('owner', 'admin', 'member')"
ADMIN = f"team_id = {CURRENT_TEAM} and {CURRENT_ROLE} in ('owner', 'admin')"
OWNER = f"team_id = {CURRENT_TEAM} and {CURRENT_ROLE} = 'owner'"
DENY = "false"


#: The projects the caller may see (team projects, or private ones they belong to): their
#: stored set, read by a sub-select under ``team_member_visibility``'s own policy (the
#: caller's row only; no row, not a member: NULL, which matches nothing). A call of
#: ``tb_visible_project_ids()`` answers the same, and cost a quarter of a task read's time in
#: PostgreSQL (PL/pgSQL, ``SECURITY DEFINER``, its ``search_path``: migration
#: ``2026-12-07_inline_visible_sets``).
VISIBLE_PROJECTS = (
    "(select v.project_ids from team_member_visibility v"
    f" where v.team_id = {CURRENT_TEAM} and v.user_id = {CURRENT_USER})"
)


def project_visible(column: str = "project_id") -> str:
    """Rows of a project the caller may see (see ``VISIBLE_PROJECTS``)."""
    return f"{IN_TEAM} and {column} = any({VISIBLE_PROJECTS})"


def project_visible_by_call(column: str = "project_id") -> str:
    """What ``project_visible`` wrote before ``team_member_visibility`` existed: the
    migrations of that time keep it, so that they replay as they ran, and
    ``2026-12-07_inline_visible_sets`` rewrites it into the current form."""
    return f"{IN_TEAM} and {column} = any((select tb_visible_project_ids())::uuid[])"


def lookup(name: str) -> str:
    """A pre-authentication lookup key (see ``Tx.set_lookup``); NULL when not set."""
    return f"(select tb_lookup('{name}'))"


@dataclass(frozen=True)
class Policies:
    """USING/WITH CHECK predicates per command. ``update`` is used for both clauses."""

    select: str
    insert: str
    update: str
    delete: str


def secure_table(
    table: str,
    policies: Policies,
    *,
    app_role: str,
    tenant: bool = True,
    touch: bool = True,
    grants: Sequence[str] = ("select", "insert", "update", "delete"),
) -> list[str]:
    """SQL statements that put ``table`` under RLS with its policies, triggers and grants.

    ``tenant=False`` is for global tables (users, auth sessions) and the ``team`` root: RLS
    and policies still apply, the ``team_id`` triggers do not. ``touch`` keeps
    ``updated_at`` current on every update (append-only tables have no such column).
    """
    statements = [
        f"alter table {table} enable row level security",
        f"alter table {table} force row level security",
    ]
    for command, predicate in (
        ("select", policies.select),
        ("insert", policies.insert),
        ("update", policies.update),
        ("delete", policies.delete),
    ):
        name = f"{table}_{command}"
        if command == "insert":
            clause = f"with check ({predicate})"
        elif command == "update":
            clause = f"using ({predicate}) with check ({predicate})"
        else:
            clause = f"using ({predicate})"
        statements.append(f"create policy {name} on {table} for {command} to public {clause}")
    if tenant:
        statements += [
            f"create trigger {table}_fill_team_id before insert on {table} "
            "for each row execute function tb_fill_team_id()",
            f"create trigger {table}_freeze_team_id before update on {table} "
            "for each row execute function tb_freeze_team_id()",
        ]
    if touch:
        statements.append(
            f"create trigger {table}_touch before update on {table} "
            "for each row execute function tb_touch_updated_at()"
        )
    statements.append(f"revoke all on {table} from public")
    if grants:  # none: a table only a dedicated role (the worker's) may touch
        statements.append(f"grant {', '.join(grants)} on {table} to {app_role}")
    return statements


def apply(execute: Callable[[str], object], statements: Sequence[str]) -> None:
    """Run statements one by one (Alembic's ``op.execute`` or a cursor's ``execute``)."""
    for statement in statements:
        execute(statement)
