"""Plans as the app role: what PostgreSQL does with a statement under Row Level Security, as
the app's driver runs it (prepared, so that generic plans come into play)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from teamboard.db import native_sql

Owner = psycopg.Connection[dict[str, Any]]


@dataclass(frozen=True)
class AppCaller:
    """Who runs a statement: the app role, with a caller's context (RLS applies)."""

    owner: Owner
    app_role: str
    user: uuid.UUID
    team: uuid.UUID

    def enter(self) -> None:
        """In the owner connection's open transaction: become the caller."""
        role = psycopg.sql.Identifier(self.app_role)
        self.owner.execute(psycopg.sql.SQL("set local role {}").format(role))
        self.owner.execute(
            "select set_config('app.user_id', %s, true), set_config('app.team_id', %s, true)",
            (str(self.user), str(self.team)),
        )


def explain(caller: AppCaller, sql: str, params: dict[str, Any], *, generic: bool = False) -> str:
    """The plan of ``sql`` as the app role with the caller's context (RLS applies).

    ``generic``: the plan PostgreSQL may settle on for a prepared statement (as the app's
    driver uses) once it stops planning per parameter values.
    """
    owner = caller.owner
    with owner.transaction(force_rollback=True):
        caller.enter()
        if not generic:
            rows = owner.execute("explain " + sql, params).fetchall()
        else:
            native = native_sql(sql)
            assert native.names is not None
            owner.execute("set local plan_cache_mode = force_generic_plan")
            owner.execute(f"prepare tb_list as {native.text}")
            values = psycopg.sql.SQL(", ").join(
                psycopg.sql.Literal(params[name]) for name in native.names
            )
            rows = owner.execute(
                psycopg.sql.SQL("explain execute tb_list({})").format(values)
            ).fetchall()
            owner.execute("deallocate tb_list")
    return "\n".join(next(iter(row.values())) for row in rows)


def plans_chosen(
    caller: AppCaller, sql: str, params: dict[str, Any], runs: int = 7
) -> dict[str, int]:
    """How PostgreSQL planned ``runs`` executions of ``sql`` prepared as the app role
    (``generic_plans``, ``custom_plans``), as the driver's prepared statements are."""
    owner = caller.owner
    native = native_sql(sql)
    assert native.names is not None
    values = psycopg.sql.SQL(", ").join(psycopg.sql.Literal(params[name]) for name in native.names)
    with owner.transaction(force_rollback=True):
        caller.enter()
        owner.execute(f"prepare tb_chosen as {native.text}")
        for _ in range(runs):
            owner.execute(psycopg.sql.SQL("execute tb_chosen({})").format(values)).fetchall()
        row = owner.execute(
            "select generic_plans, custom_plans from pg_prepared_statements"
            " where name = 'tb_chosen'"
        ).fetchone()
        owner.execute("deallocate tb_chosen")
    assert row is not None
    return dict(row)


def applied_as(plan: str, condition: str) -> str:
    """How ``plan`` (``explain`` text) applies its first condition containing ``condition``:
    ``index`` (an index condition: only the matching rows are read) or ``filter`` (rows
    read, then tested)."""
    for line in plan.splitlines():
        if condition in line:
            return "filter" if "Filter:" in line else "index"
    raise AssertionError(f"no {condition!r} in the plan:\n{plan}")
