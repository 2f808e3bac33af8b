"""``teamboard db audit``: a migrated database passes, and each rule catches its violation.

One fresh, migrated database for the module, provisioned with an app role of its own (roles
are cluster-wide: giving the shared ``teamboard_app`` BYPASSRLS, even briefly, could leak
rows to another test run on the same server). Each test breaks the schema inside the owner
connection's transaction, audits in that same transaction, and the fixture rolls back: DDL,
GRANT and ALTER ROLE are all transactional, so nothing survives a test, and the fixture
checks that the audit is back to its baseline afterwards.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql

from teamboard.ops import database, tenancy
from teamboard.ops.audit import Finding, audit, format_report
from teamboard.ops.tenancy import IN_TEAM, Policies
from tests.dbsetup import fresh_database, server_owner_url, test_settings


@dataclass(frozen=True)
class AuditDb:
    owner_url: str
    app_role: str
    baseline: list[Finding]
    worker_role: str


@dataclass
class Ctx:
    conn: psycopg.Connection[Any]
    role: str
    worker_role: str

    def run(self, statement: str, *idents: str) -> None:
        """Execute DDL, with ``{}`` placeholders filled by quoted identifiers."""
        query = sql.SQL(statement).format(*(sql.Identifier(i) for i in idents))
        self.conn.execute(query)

    def audit(self) -> list[Finding]:
        return audit(self.conn, self.role)

    def checks(self, table: str | None) -> list[str]:
        """The check codes found for one table (``None``: role-wide findings)."""
        return sorted(f.check for f in self.audit() if f.table == table)

    def secure(self, table: str, **options: Any) -> None:
        """Put a test table under the migrations' helper, so only the intended rule breaks."""
        predicate = IN_TEAM if options.get("tenant", True) else "id = (select tb_current_user_id())"
        policies = Policies(*[predicate] * 4)
        statements = tenancy.secure_table(
            table, policies, app_role=self.role, touch=False, **options
        )
        tenancy.apply(self.conn.execute, statements)


@pytest.fixture(scope="module")
def audit_db() -> Iterator[AuditDb]:
    role = f"teamboard_audit_{secrets.token_hex(4)}"
    with server_owner_url() as server:
        try:
            with fresh_database(server, prefix="teamboard_audit") as owner_url:
                urls = database.prepare(test_settings(database_app_role=role), owner_url)
                with psycopg.connect(owner_url) as conn:
                    baseline = audit(conn, urls.app_role, urls.worker_role)
                yield AuditDb(owner_url, urls.app_role, baseline, urls.worker_role)
        finally:
            with psycopg.connect(server, autocommit=True) as conn:
                for name in (role, f"{role}_worker"):
                    conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(name)))


@pytest.fixture
def ctx(audit_db: AuditDb) -> Iterator[Ctx]:
    with psycopg.connect(audit_db.owner_url) as conn:
        yield Ctx(conn, audit_db.app_role, audit_db.worker_role)
        conn.rollback()
        after = audit(conn, audit_db.app_role, audit_db.worker_role)
        assert after == audit_db.baseline, "a test leaked a change"


# 1. the real schema ------------------------------------------------------------------------


def test_migrated_database_audits_clean(audit_db: AuditDb) -> None:
    assert audit_db.baseline == [], format_report(audit_db.baseline)


def test_the_audit_covers_every_table(ctx: Ctx) -> None:
    rows = ctx.conn.execute(
        "select relname from pg_class where relnamespace = 'public'::regnamespace"
        " and relkind in ('r', 'p') and not relispartition and relname <> 'alembic_version'"
    ).fetchall()
    tables = {name for (name,) in rows}
    assert {"team", "team_member", "project", "task", "event", "app_user"} <= tables
    for table in tables:
        ctx.run("alter table {} disable row level security", table)
    assert {f.table for f in ctx.audit() if f.check == "rls_disabled"} == tables


# 2. a table that skipped the helper --------------------------------------------------------


def test_plain_table_fails_rls_policies_and_index(ctx: Ctx) -> None:
    ctx.run("create table {} (team_id uuid not null, id uuid not null, note text)", "audit_plain")
    assert ctx.checks("audit_plain") == [
        "missing_policy",
        "missing_policy",
        "missing_policy",
        "missing_policy",
        "no_team_id_index",
        "pk_not_leading_team_id",
        "rls_disabled",
        "rls_not_forced",
    ]


def test_plain_table_with_tenant_primary_key_still_fails_rls(ctx: Ctx) -> None:
    ctx.run("create table {} (team_id uuid, id uuid, primary key (team_id, id))", "audit_pk")
    assert set(ctx.checks("audit_pk")) == {"rls_disabled", "rls_not_forced", "missing_policy"}


def test_helper_secured_tenant_table_is_clean(ctx: Ctx) -> None:
    ctx.run("create table {} (team_id uuid, id uuid, primary key (team_id, id))", "audit_ok")
    ctx.secure("audit_ok")
    assert ctx.audit() == []


def test_primary_key_must_lead_with_team_id(ctx: Ctx) -> None:
    ctx.run("create table {} (team_id uuid not null, id uuid primary key)", "audit_id_pk")
    ctx.run("create index on {} (team_id)", "audit_id_pk")
    ctx.secure("audit_id_pk")
    assert ctx.checks("audit_id_pk") == ["pk_not_leading_team_id"]


def test_partial_index_does_not_count_as_team_id_index(ctx: Ctx) -> None:
    ctx.run("create table {} (id uuid primary key, team_id uuid, gone bool)", "audit_partial")
    ctx.run("create index on {} (team_id) where not gone", "audit_partial")
    ctx.secure("audit_partial")
    assert ctx.checks("audit_partial") == ["no_team_id_index", "pk_not_leading_team_id"]


def test_global_table_needs_rls_but_no_team_id(ctx: Ctx) -> None:
    ctx.run("create table {} (id uuid primary key)", "audit_global")
    assert set(ctx.checks("audit_global")) == {"rls_disabled", "rls_not_forced", "missing_policy"}
    ctx.secure("audit_global", tenant=False)
    assert ctx.checks("audit_global") == []


# 3. policies per command -------------------------------------------------------------------


@pytest.fixture
def rls_table(ctx: Ctx) -> str:
    table = "audit_rls"
    ctx.run("create table {} (team_id uuid, id uuid, primary key (team_id, id))", table)
    ctx.run("alter table {} enable row level security", table)
    ctx.run("alter table {} force row level security", table)
    return table


def _missing(ctx: Ctx, table: str) -> list[str]:
    return sorted(
        f.detail.split()[1] for f in ctx.audit() if f.table == table and f.check == "missing_policy"
    )


def test_only_a_select_policy_misses_the_other_commands(ctx: Ctx, rls_table: str) -> None:
    ctx.run("create policy p on {} for select using (true)", rls_table)
    assert ctx.checks(rls_table) == ["missing_policy"] * 3
    assert _missing(ctx, rls_table) == ["DELETE", "INSERT", "UPDATE"]


def test_a_for_all_policy_covers_every_command(ctx: Ctx, rls_table: str) -> None:
    ctx.run("create policy p on {} for all using (true)", rls_table)
    assert ctx.checks(rls_table) == []


def test_restrictive_or_foreign_role_policies_do_not_count(ctx: Ctx, rls_table: str) -> None:
    ctx.run("create policy r on {} as restrictive for all using (true)", rls_table)
    ctx.run("create policy o on {} for all to current_user using (true)", rls_table)
    assert _missing(ctx, rls_table) == ["DELETE", "INSERT", "SELECT", "UPDATE"]
    ctx.run("create policy a on {} for all to {} using (true)", rls_table, ctx.role)
    assert _missing(ctx, rls_table) == []


def test_rls_enabled_but_not_forced(ctx: Ctx) -> None:
    ctx.run("alter table {} no force row level security", "task")
    assert ctx.checks("task") == ["rls_not_forced"]


# 4. foreign keys ---------------------------------------------------------------------------


@pytest.fixture
def parent(ctx: Ctx) -> str:
    ctx.run(
        "create table {} (team_id uuid, id uuid unique, primary key (team_id, id))",
        "audit_parent",
    )
    ctx.secure("audit_parent")
    return "audit_parent"


def test_tenant_fk_without_team_id(ctx: Ctx, parent: str) -> None:
    ctx.run(
        "create table {} (team_id uuid, id uuid, parent_id uuid references {} (id),"
        " primary key (team_id, id))",
        "audit_child",
        parent,
    )
    ctx.run("create index on {} (parent_id)", "audit_child")
    ctx.secure("audit_child")
    assert ctx.checks("audit_child") == ["fk_without_team_id"]


def test_fk_to_team_root_must_use_team_id(ctx: Ctx) -> None:
    ctx.run(
        "create table {} (team_id uuid references team (id), id uuid,"
        " other_team uuid references team (id), primary key (team_id, id))",
        "audit_root",
    )
    ctx.run("create index on {} (other_team)", "audit_root")
    ctx.secure("audit_root")
    [finding] = ctx.audit()
    assert (finding.table, finding.check) == ("audit_root", "fk_without_team_id")
    assert "other_team" in finding.detail


def test_fk_with_team_id_and_index_in_any_order_is_clean(ctx: Ctx, parent: str) -> None:
    ctx.run(
        "create table {} (team_id uuid, id uuid, parent_id uuid, primary key (team_id, id),"
        " foreign key (team_id, parent_id) references {} (team_id, id))",
        "audit_child",
        parent,
    )
    ctx.secure("audit_child")
    assert ctx.checks("audit_child") == ["unindexed_fk"]
    ctx.run("create index on {} (parent_id, team_id, id)", "audit_child")
    assert ctx.checks("audit_child") == []


def test_unindexed_fk_on_any_table(ctx: Ctx) -> None:
    ctx.run(
        "create table {} (id uuid primary key, user_id uuid references app_user (id))",
        "audit_global",
    )
    ctx.secure("audit_global", tenant=False)
    [finding] = ctx.audit()
    assert (finding.table, finding.check) == ("audit_global", "unindexed_fk")
    assert "user_id" in finding.detail


def test_dropping_a_real_fk_index_is_caught(ctx: Ctx) -> None:
    ctx.run("drop index {}", "ix_task_team_id_status_id")
    [finding] = ctx.audit()
    assert (finding.table, finding.check) == ("task", "unindexed_fk")
    assert "fk_task_team_id_status_id_status" in finding.detail


# 5. the app role ---------------------------------------------------------------------------


def test_app_role_bypassrls(ctx: Ctx) -> None:
    ctx.run("alter role {} bypassrls", ctx.role)
    assert ctx.checks(None) == ["app_role_bypassrls"]


def test_app_role_temporary_tables(ctx: Ctx) -> None:
    """A temporary table would shadow the tables SECURITY DEFINER functions read."""
    database = ctx.conn.execute("select current_database()").fetchone()
    assert database is not None
    ctx.run("grant temporary on database {} to {}", database[0], ctx.role)
    assert ctx.checks(None) == ["app_role_temporary"]


def test_app_role_superuser(ctx: Ctx) -> None:
    ctx.run("alter role {} superuser", ctx.role)
    assert "app_role_superuser" in ctx.checks(None)


def test_app_role_owning_a_table(ctx: Ctx) -> None:
    ctx.run("alter table {} owner to {}", "project", ctx.role)
    [finding] = [f for f in ctx.audit() if f.check == "app_role_owns"]
    assert finding.table == "project"


def test_app_role_owning_a_function(ctx: Ctx) -> None:
    ctx.run("create function {}() returns int language sql as $$ select 1 $$", "audit_fn")
    ctx.run("alter function {}() owner to {}", "audit_fn", ctx.role)
    assert ctx.checks(None) == ["app_role_owns"]


def test_app_role_member_of_the_owner(ctx: Ctx) -> None:
    owner = ctx.conn.execute("select current_user").fetchone()
    assert owner is not None
    ctx.run("grant {} to {}", owner[0], ctx.role)
    # It also inherits the owner's privileges, so partition and TRUNCATE findings follow.
    [finding] = [f for f in ctx.audit() if f"member of {owner[0]}," in f.detail]
    assert finding.check == "app_role_member"
    assert "superuser" in finding.detail


def test_missing_app_role(ctx: Ctx) -> None:
    findings = audit(ctx.conn, "teamboard_no_such_role")
    assert [f.check for f in findings] == ["app_role_missing"]


# 6. SECURITY DEFINER -----------------------------------------------------------------------


def test_security_definer_without_search_path(ctx: Ctx) -> None:
    ctx.run("create schema {}", "audit_schema")
    ctx.run(
        "create function {}.{}() returns int language sql security definer as $$ select 1 $$",
        "audit_schema",
        "audit_definer",
    )
    ctx.run("revoke all on function {}.{}() from public", "audit_schema", "audit_definer")
    assert ctx.audit() == []  # the app role cannot execute it
    ctx.run("grant execute on function {}.{}() to {}", "audit_schema", "audit_definer", ctx.role)
    [finding] = ctx.audit()
    assert finding.check == "security_definer_search_path"
    assert "audit_definer" in finding.detail
    ctx.run("alter function {}.{}() set search_path = pg_catalog", "audit_schema", "audit_definer")
    assert ctx.audit() == []


def test_security_definer_executable_through_public(ctx: Ctx) -> None:
    # Functions are executable by PUBLIC unless revoked: no explicit grant needed.
    ctx.run(
        "create function {}() returns int language sql security definer as $$ select 1 $$",
        "audit_definer",
    )
    assert ctx.checks(None) == ["security_definer_search_path"]


# 7. partitions -----------------------------------------------------------------------------


def _event_partitions(ctx: Ctx) -> list[str]:
    rows = ctx.conn.execute(
        "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid"
        " where i.inhparent = 'event'::regclass order by c.relname"
    ).fetchall()
    return [name for (name,) in rows]


def test_grant_on_an_event_partition(ctx: Ctx) -> None:
    partitions = _event_partitions(ctx)
    assert "event_default" in partitions
    assert len(partitions) > 1
    monthly = next(p for p in partitions if p != "event_default")
    ctx.run("grant select on {} to {}", monthly, ctx.role)
    ctx.run("grant insert, delete on {} to {}", "event_default", ctx.role)
    findings = [f for f in ctx.audit() if f.check == "partition_grant"]
    assert [(f.table, f.detail.split(" on ")[0]) for f in findings] == sorted(
        [
            ("event_default", f"{ctx.role} has INSERT, DELETE"),
            (monthly, f"{ctx.role} has SELECT"),
        ]
    )


def test_truncate_on_a_tenant_table(ctx: Ctx) -> None:
    ctx.run("grant truncate on {} to {}", "task", ctx.role)
    assert ctx.checks("task") == ["app_role_truncate"]


def test_a_view_the_app_role_reads_must_run_as_its_caller(ctx: Ctx) -> None:
    """A view runs as its owner unless ``security_invoker``: the owner bypasses the tables'
    policies, so the app role would read every team's rows through it."""
    view = "analytics_event_fact"  # one of the real views the app role reads
    assert ctx.checks(view) == []
    ctx.run("alter view {} reset (security_invoker)", view)
    assert ctx.checks(view) == ["view_bypasses_rls"]
    ctx.run("alter view {} set (security_invoker = on)", view)
    assert ctx.checks(view) == []
    ctx.run("create materialized view tb_probe_counts as select team_id from task")
    ctx.run("grant select on tb_probe_counts to {}", ctx.role)
    assert ctx.checks("tb_probe_counts") == ["view_bypasses_rls"]


# report ------------------------------------------------------------------------------------


# 5. the worker role -----------------------------------------------------------------------


def _worker_findings(ctx: Ctx) -> list[tuple[str | None, str]]:
    return [(f.table, f.check) for f in audit(ctx.conn, ctx.role, ctx.worker_role)]


def test_worker_role_privileges_beyond_its_allow_list(ctx: Ctx) -> None:
    ctx.run("grant select on task to {}", ctx.worker_role)
    ctx.run("grant update (payload) on event to {}", ctx.worker_role)
    ctx.run("grant delete on event_consumer to {}", ctx.worker_role)
    assert sorted(_worker_findings(ctx)) == [
        ("event", "worker_privilege"),
        ("event_consumer", "worker_privilege"),
        ("task", "worker_privilege"),
    ]


def test_worker_role_follows_the_app_role_rules(ctx: Ctx) -> None:
    ctx.run("alter role {} bypassrls", ctx.worker_role)
    partition = ctx.conn.execute(
        "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid"
        " where i.inhparent = 'event'::regclass limit 1"
    ).fetchone()
    assert partition is not None
    ctx.run("grant select on {} to {}", partition[0], ctx.worker_role)
    findings = _worker_findings(ctx)
    assert (None, "app_role_bypassrls") in findings
    assert (partition[0], "partition_grant") in findings
    assert not [f for f in audit(ctx.conn, ctx.role) if f.check == "app_role_bypassrls"]


def test_format_report() -> None:
    assert format_report([]) == "db audit: no findings"
    report = format_report(
        [
            Finding("task", "rls_disabled", "row level security is off"),
            Finding(None, "app_role_bypassrls", "app has BYPASSRLS"),
        ]
    )
    assert report.splitlines() == [
        "db audit: 2 findings",
        "  rls_disabled        task: row level security is off",
        "  app_role_bypassrls  -: app has BYPASSRLS",
    ]
