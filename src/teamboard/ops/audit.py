"""``teamboard db audit``: the schema and role rules of DESIGN.md sections 2 and 7, checked
against the live catalog.

``audit(conn, app_role)`` reads the catalog through an owner (superuser) connection, changes
nothing, and returns one ``Finding`` per violated rule, sorted; an empty list means the
database passes. Audited tables are the ordinary and partitioned tables of schema
``public``, except partitions (reached through their parent, whose policies apply) and
``alembic_version``.

Table rules (``table`` is the table's name):

* ``rls_disabled`` / ``rls_not_forced``: Row Level Security is not enabled / not forced.
* ``missing_policy``: no permissive policy applying to the app role (``PUBLIC`` or a role it
  is a member of) for a command, one finding per command; ``FOR ALL`` covers all four. A
  restrictive policy alone grants nothing, so it does not count.

Tenant tables are the tables with a ``team_id`` column, plus the root table ``team`` whose
tenant key is ``id``:

* ``no_team_id_index``: no valid, non-partial index whose first column is the tenant key.
* ``pk_not_leading_team_id``: no primary key, or one that does not start with the tenant key
  (needed to distribute by ``team_id`` with Citus).
* ``fk_without_team_id``: a foreign key from a tenant table to another tenant table that
  does not map the tenant key to the referenced tenant key (``team_id`` to ``team_id``, or
  to ``team.id``), so a row could point at another team's row.

Every foreign key of an audited table:

* ``unindexed_fk``: no valid, non-partial index whose leading key columns are exactly the
  foreign key's columns (in any order).

The app role (``table`` is the object concerned, or ``None``):

* ``app_role_missing``: the role does not exist (the role rules below are then skipped).
* ``app_role_superuser`` / ``app_role_bypassrls``: it has SUPERUSER / BYPASSRLS.
* ``app_role_temporary``: it may create temporary tables (they would shadow, for a SECURITY
  DEFINER function whose search_path does not name ``pg_temp``, the tables it reads).
* ``app_role_statement_timeout``: it has no ``statement_timeout`` (or 0) set for it, in this
  database or in all of them (``teamboard migrate`` sets one): a runaway statement would hold
  its connection and its locks without end.
* ``app_role_member``: it is a member of a role that is a superuser, has BYPASSRLS, or owns
  objects (it could ``SET ROLE`` to it, or inherits its privileges).
* ``app_role_owns``: it owns a relation, function or schema outside the system schemas
  (owners can disable RLS and are exempt from it unless forced).
* ``security_definer_search_path``: it may EXECUTE a SECURITY DEFINER function, in a
  non-system schema, whose configuration does not fix ``search_path`` (the function would
  resolve names through the caller's path: an escalation path).
* ``partition_grant``: it has SELECT, INSERT, UPDATE, DELETE or TRUNCATE on a partition,
  which bypasses the parent's policies.
* ``app_role_truncate``: it has TRUNCATE on an audited table (TRUNCATE ignores RLS).
* ``view_bypasses_rls``: it may read a view that runs with its owner's rights (no
  ``security_invoker``), or a materialized view (which has no Row Level Security): the
  owner bypasses the policies of every table the view reads, so the role would read every
  team's rows through it.

Derived data (``table`` is the table holding it):

* ``visibility_drift``: a member's stored set of visible projects
  (``team_member_visibility``, which Row Level Security reads) differs from what their
  memberships and the team's projects give, or a member has no set; one finding per team.

The worker role (``teamboard.worker``: the one role that reads the event log of every team),
when given: the same role rules as the app role (each finding's detail names the role), and

* ``worker_privilege``: it has a privilege on a table of the schema beyond
  :data:`WORKER_PRIVILEGES` (any column privilege counts).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

SCHEMA = "public"
EXCLUDED_TABLES = ["alembic_version"]
TENANT_COLUMN = "team_id"
ROOT_TABLE = "team"
ROOT_KEY = "id"
COMMANDS = {"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE"}
ALL_COMMANDS = "*"
PARTITION_PRIVILEGES = ["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"]

#: Everything the worker role may do to tables (the events migration grants exactly this,
#: and ``2026-12-07_inline_visible_sets`` SELECT on the visible-project sets, which
#: ``event``'s select policy names: a privilege every statement on ``event`` is checked
#: for; the worker sees events through its own policy, not through that table).
WORKER_PRIVILEGES: dict[str, frozenset[str]] = {
    "event": frozenset({"SELECT"}),
    "team_member_visibility": frozenset({"SELECT"}),
    "event_consumer": frozenset({"SELECT", "INSERT", "UPDATE"}),
    "webhook": frozenset({"SELECT", "UPDATE"}),
    "webhook_delivery": frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"}),
    "webhook_attempt": frozenset({"SELECT", "INSERT"}),
}
TABLE_PRIVILEGES = ["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"]

Row = dict[str, Any]
Cursor = psycopg.Cursor[Row]


@dataclass(frozen=True)
class Finding:
    """One violated rule: ``check`` is a stable code, ``detail`` says what and where."""

    table: str | None
    check: str
    detail: str


@dataclass(frozen=True)
class Table:
    """An audited table; ``tenant_key`` is the attnum of its tenant key, if it is a tenant."""

    oid: int
    name: str
    rls: bool
    forced: bool
    tenant_key: int | None


@dataclass(frozen=True)
class Index:
    table: int
    primary: bool
    keys: tuple[int, ...]  # key columns (attnums) in index order, INCLUDE columns left out


@dataclass(frozen=True)
class ForeignKey:
    name: str
    table: int
    referenced: int
    referenced_name: str
    columns: tuple[int, ...]
    referenced_columns: tuple[int, ...]
    column_names: tuple[str, ...]


# -- catalog queries ------------------------------------------------------------------------

TABLES_SQL = """
select c.oid, c.relname, c.relrowsecurity, c.relforcerowsecurity,
       case when c.relname = %(root)s then root_key.attnum else tenant.attnum end as tenant_key
from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
left join pg_catalog.pg_attribute tenant
    on tenant.attrelid = c.oid and tenant.attname = %(tenant_column)s and not tenant.attisdropped
left join pg_catalog.pg_attribute root_key
    on root_key.attrelid = c.oid and root_key.attname = %(root_key)s
    and not root_key.attisdropped
where n.nspname = %(schema)s and c.relkind in ('r', 'p') and not c.relispartition
  and c.relname <> all(%(excluded)s)
order by c.relname
"""

# Permissive policies that apply to the app role: to PUBLIC (role 0) or to a role it is in.
POLICIES_SQL = """
select p.polrelid, p.polcmd::text as command
from pg_catalog.pg_policy p
where p.polpermissive
  and exists (
      select from pg_catalog.unnest(p.polroles) as target(oid)
      where target.oid = 0 or exists (
          select from pg_catalog.pg_roles app
          where app.rolname = %(role)s and pg_catalog.pg_has_role(app.oid, target.oid, 'MEMBER')
      )
  )
"""

INDEXES_SQL = """
select i.indrelid, i.indisprimary,
       array(
           select key.attnum
           from pg_catalog.unnest(i.indkey::int2[]) with ordinality as key(attnum, position)
           where key.position <= i.indnkeyatts
           order by key.position
       ) as keys
from pg_catalog.pg_index i
join pg_catalog.pg_class c on c.oid = i.indrelid
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where n.nspname = %(schema)s and i.indisvalid and i.indpred is null
"""

# conparentid = 0 skips the copies PostgreSQL makes of a foreign key for each partition.
FOREIGN_KEYS_SQL = """
select fk.conname, fk.conrelid, fk.confrelid, fk.confrelid::regclass::text as referenced_name,
       fk.conkey, fk.confkey,
       array(
           select a.attname
           from pg_catalog.unnest(fk.conkey) with ordinality as key(attnum, position)
           join pg_catalog.pg_attribute a on a.attrelid = fk.conrelid and a.attnum = key.attnum
           order by key.position
       ) as column_names
from pg_catalog.pg_constraint fk
join pg_catalog.pg_class c on c.oid = fk.conrelid
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where fk.contype = 'f' and fk.conparentid = 0 and n.nspname = %(schema)s
order by fk.conname
"""

ROLE_SQL = """
select r.oid, r.rolsuper, r.rolbypassrls from pg_catalog.pg_roles r where r.rolname = %(role)s
"""

# Every role the app role is a member of (directly or not), with its attributes.
MEMBERSHIPS_SQL = """
select r.oid, r.rolname, r.rolsuper, r.rolbypassrls
from pg_catalog.pg_roles r
where r.oid <> %(role_oid)s::oid and pg_catalog.pg_has_role(%(role_oid)s::oid, r.oid, 'MEMBER')
order by r.rolname
"""

# Objects outside the system schemas, with their owner (for the app role and its roles).
OWNED_SQL = """
with objects as (
    select c.relowner as owner, 'relation' as kind,
           pg_catalog.format('%%I.%%I', n.nspname, c.relname) as name,
           case when n.nspname = %(schema)s then c.relname end as table_name,
           n.nspname
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')  -- indexes follow their table's owner
    union all
    select p.proowner, 'function', p.oid::regprocedure::text, null, n.nspname
    from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
    union all
    select n.nspowner, 'schema', pg_catalog.quote_ident(n.nspname), null, n.nspname
    from pg_catalog.pg_namespace n
)
select r.rolname as owner, o.kind, o.name, o.table_name
from objects o join pg_catalog.pg_roles r on r.oid = o.owner
where o.owner = any(%(owners)s::oid[])
  and o.nspname <> 'information_schema' and not starts_with(o.nspname, 'pg_')
order by o.kind, o.name
"""

SECURITY_DEFINER_SQL = """
select p.oid::regprocedure::text as function
from pg_catalog.pg_proc p
join pg_catalog.pg_namespace n on n.oid = p.pronamespace
where p.prosecdef
  and n.nspname <> 'information_schema' and not starts_with(n.nspname, 'pg_')
  and not exists (
      select from pg_catalog.unnest(p.proconfig) as setting
      where starts_with(setting, 'search_path=')
  )
  and pg_catalog.has_function_privilege(%(role_oid)s::oid, p.oid, 'EXECUTE')
order by 1
"""

PRIVILEGES_SQL = """
select c.relname, c.relispartition,
       array(
           select privilege from pg_catalog.unnest(%(privileges)s::text[]) as privilege
           where pg_catalog.has_table_privilege(%(role_oid)s::oid, c.oid, privilege)
       ) as granted
from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where n.nspname = %(schema)s and c.relkind in ('r', 'p') and c.relname <> all(%(excluded)s)
order by c.relname
"""


def _tables(cur: Cursor) -> list[Table]:
    """Audited tables with their RLS flags and tenant key."""
    rows = cur.execute(
        TABLES_SQL,
        {
            "root": ROOT_TABLE,
            "tenant_column": TENANT_COLUMN,
            "root_key": ROOT_KEY,
            "schema": SCHEMA,
            "excluded": EXCLUDED_TABLES,
        },
    ).fetchall()
    return [
        Table(
            r["oid"], r["relname"], r["relrowsecurity"], r["relforcerowsecurity"], r["tenant_key"]
        )
        for r in rows
    ]


def _policy_commands(cur: Cursor, app_role: str) -> dict[int, set[str]]:
    """Per table oid, the ``polcmd`` codes of permissive policies applying to the app role."""
    commands: dict[int, set[str]] = defaultdict(set)
    for row in cur.execute(POLICIES_SQL, {"role": app_role}):
        commands[row["polrelid"]].add(row["command"])
    return commands


def _indexes(cur: Cursor) -> dict[int, list[Index]]:
    """Per table oid, its valid non-partial indexes (partial ones cannot serve every lookup)."""
    indexes: dict[int, list[Index]] = defaultdict(list)
    for row in cur.execute(INDEXES_SQL, {"schema": SCHEMA}):
        indexes[row["indrelid"]].append(
            Index(row["indrelid"], row["indisprimary"], tuple(row["keys"]))
        )
    return indexes


def _foreign_keys(cur: Cursor) -> list[ForeignKey]:
    """Foreign keys declared on tables of the audited schema (not their partition copies)."""
    return [
        ForeignKey(
            r["conname"],
            r["conrelid"],
            r["confrelid"],
            r["referenced_name"],
            tuple(r["conkey"]),
            tuple(r["confkey"]),
            tuple(r["column_names"]),
        )
        for r in cur.execute(FOREIGN_KEYS_SQL, {"schema": SCHEMA})
    ]


# -- table rules ----------------------------------------------------------------------------


def check_rls(tables: Iterable[Table], policies: dict[int, set[str]]) -> list[Finding]:
    """RLS enabled and forced, and a policy for each of SELECT, INSERT, UPDATE, DELETE."""
    findings = []
    for table in tables:
        if not table.rls:
            findings.append(Finding(table.name, "rls_disabled", "row level security is off"))
        if not table.forced:
            findings.append(
                Finding(table.name, "rls_not_forced", "row level security is not forced")
            )
        present = policies.get(table.oid, set())
        for code, command in COMMANDS.items():
            if code not in present and ALL_COMMANDS not in present:
                findings.append(
                    Finding(table.name, "missing_policy", f"no {command} policy for the app role")
                )
    return findings


def check_tenant_keys(tables: Iterable[Table], indexes: dict[int, list[Index]]) -> list[Finding]:
    """Tenant tables have an index and a primary key that both lead with the tenant key."""
    findings = []
    for table in tables:
        key = table.tenant_key
        if key is None:
            continue
        own = indexes.get(table.oid, [])
        column = ROOT_KEY if table.name == ROOT_TABLE else TENANT_COLUMN
        if not any(index.keys[:1] == (key,) for index in own):
            findings.append(
                Finding(table.name, "no_team_id_index", f"no index leads with {column}")
            )
        primary = next((index for index in own if index.primary), None)
        if primary is None:
            findings.append(Finding(table.name, "pk_not_leading_team_id", "no primary key"))
        elif primary.keys[:1] != (key,):
            findings.append(
                Finding(
                    table.name, "pk_not_leading_team_id", f"primary key does not lead with {column}"
                )
            )
    return findings


def _covered(fk: ForeignKey, indexes: Sequence[Index]) -> bool:
    """An index whose leading key columns are exactly the foreign key's columns."""
    wanted = set(fk.columns)
    return any(set(index.keys[: len(wanted)]) == wanted for index in indexes)


def check_foreign_keys(
    tables: Iterable[Table], foreign_keys: Iterable[ForeignKey], indexes: dict[int, list[Index]]
) -> list[Finding]:
    """Every foreign key is indexed; tenant-to-tenant keys carry the tenant key on both sides."""
    by_oid = {table.oid: table for table in tables}
    findings = []
    for fk in foreign_keys:
        table = by_oid.get(fk.table)
        if table is None:
            continue
        columns = ", ".join(fk.column_names)
        if not _covered(fk, indexes.get(fk.table, [])):
            findings.append(
                Finding(table.name, "unindexed_fk", f"{fk.name} ({columns}) has no index")
            )
        referenced = by_oid.get(fk.referenced)
        if table.tenant_key is None or referenced is None or referenced.tenant_key is None:
            continue
        if (table.tenant_key, referenced.tenant_key) not in zip(
            fk.columns, fk.referenced_columns, strict=True
        ):
            findings.append(
                Finding(
                    table.name,
                    "fk_without_team_id",
                    f"{fk.name} ({columns}) -> {fk.referenced_name} does not carry the team key",
                )
            )
    return findings


# -- app role rules -------------------------------------------------------------------------


# The role's own statement_timeout: the setting for this database wins over the one for all.
STATEMENT_TIMEOUT_SQL = """
select split_part(setting, '=', 2) as value
from pg_catalog.pg_db_role_setting s, pg_catalog.unnest(s.setconfig) as setting
where s.setrole = %(role_oid)s::oid
  and s.setdatabase in (0, (select oid from pg_catalog.pg_database
                            where datname = pg_catalog.current_database()))
  and pg_catalog.starts_with(setting, 'statement_timeout=')
order by s.setdatabase desc
limit 1
"""
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(us|ms|s|min|h|d)?\s*$")


def _statement_timeout_finding(cur: Cursor, role: str, role_oid: int) -> list[Finding]:
    row = cur.execute(STATEMENT_TIMEOUT_SQL, {"role_oid": role_oid}).fetchone()
    value = None if row is None else _DURATION.match(row["value"])
    if value is not None and float(value[1]) > 0:
        return []
    detail = f"{role} has no statement_timeout: a runaway statement would hold its locks"
    return [Finding(None, "app_role_statement_timeout", detail)]


def check_app_role(cur: Cursor, app_role: str) -> list[Finding]:
    """The app role cannot bypass RLS: attributes, memberships, ownership, functions, grants."""
    role = cur.execute(ROLE_SQL, {"role": app_role}).fetchone()
    if role is None:
        return [Finding(None, "app_role_missing", f"role {app_role} does not exist")]
    role_oid = role["oid"]
    findings = []
    if role["rolsuper"]:
        findings.append(Finding(None, "app_role_superuser", f"{app_role} is a superuser"))
    if role["rolbypassrls"]:
        findings.append(Finding(None, "app_role_bypassrls", f"{app_role} has BYPASSRLS"))
    findings += _statement_timeout_finding(cur, app_role, role_oid)
    findings += _check_memberships_and_ownership(cur, app_role, role_oid)
    for row in cur.execute(SECURITY_DEFINER_SQL, {"role_oid": role_oid}):
        findings.append(
            Finding(
                None,
                "security_definer_search_path",
                f"{app_role} may execute SECURITY DEFINER {row['function']}, "
                "which does not set search_path",
            )
        )
    temporary = cur.execute(
        "select has_database_privilege(%(role)s, current_database(), 'TEMPORARY') as temp",
        {"role": app_role},
    ).fetchone()
    if temporary is not None and temporary["temp"]:
        findings.append(
            Finding(
                None,
                "app_role_temporary",
                f"{app_role} may create temporary tables, which come first in the search_path"
                " of SECURITY DEFINER functions that do not name pg_temp",
            )
        )
    findings += _check_privileges(cur, app_role, role_oid)
    findings += _check_views(cur, app_role, role_oid)
    return findings


def _check_memberships_and_ownership(cur: Cursor, app_role: str, role_oid: int) -> list[Finding]:
    """Objects the app role owns, and privileged roles (or owners) it is a member of."""
    memberships = cur.execute(MEMBERSHIPS_SQL, {"role_oid": role_oid}).fetchall()
    owners = [role_oid, *(member["oid"] for member in memberships)]
    findings = []
    owned_count: dict[str, int] = defaultdict(int)
    for row in cur.execute(OWNED_SQL, {"schema": SCHEMA, "owners": owners}):
        if row["owner"] == app_role:
            detail = f"{app_role} owns {row['kind']} {row['name']}"
            findings.append(Finding(row["table_name"], "app_role_owns", detail))
        else:
            owned_count[row["owner"]] += 1
    for member in memberships:
        name, owned = member["rolname"], owned_count[member["rolname"]]
        reasons = [
            reason
            for reason, applies in (
                ("is a superuser", member["rolsuper"]),
                ("has BYPASSRLS", member["rolbypassrls"]),
                (f"owns {owned} object{'s' if owned != 1 else ''}", owned > 0),
            )
            if applies
        ]
        if reasons:
            detail = f"{app_role} is a member of {name}, which {' and '.join(reasons)}"
            findings.append(Finding(None, "app_role_member", detail))
    return findings


# Views and materialized views the role may read, and whether a view runs as its caller.
READABLE_VIEWS_SQL = """
select c.relname, c.relkind = 'm' as materialized,
       coalesce((select pg_catalog.lower(pg_catalog.split_part(option, '=', 2))
                        in ('true', 'on', 'yes', '1')
                 from pg_catalog.unnest(c.reloptions) as option
                 where pg_catalog.split_part(option, '=', 1) = 'security_invoker'), false)
           as invoker
from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where n.nspname = %(schema)s and c.relkind in ('v', 'm')
  and (pg_catalog.has_table_privilege(%(role_oid)s::oid, c.oid, 'SELECT')
       or pg_catalog.has_any_column_privilege(%(role_oid)s::oid, c.oid, 'SELECT'))
order by c.relname
"""


def _check_views(cur: Cursor, app_role: str, role_oid: int) -> list[Finding]:
    """Views the role reads must run as the caller, so that the tables' policies apply."""
    findings = []
    for row in cur.execute(READABLE_VIEWS_SQL, {"schema": SCHEMA, "role_oid": role_oid}):
        if row["materialized"]:
            detail = f"{app_role} may read materialized view {row['relname']} (no RLS)"
        elif not row["invoker"]:
            detail = (
                f"{app_role} may read view {row['relname']}, which runs as its owner"
                " (set security_invoker): the tables' row level security does not apply"
            )
        else:
            continue
        findings.append(Finding(row["relname"], "view_bypasses_rls", detail))
    return findings


def _check_privileges(cur: Cursor, app_role: str, role_oid: int) -> list[Finding]:
    """No privileges on partitions (they bypass the parent's policies), no TRUNCATE at all."""
    findings = []
    params = {
        "privileges": PARTITION_PRIVILEGES,
        "role_oid": role_oid,
        "schema": SCHEMA,
        "excluded": EXCLUDED_TABLES,
    }
    for row in cur.execute(PRIVILEGES_SQL, params):
        granted = row["granted"]
        if row["relispartition"] and granted:
            detail = f"{app_role} has {', '.join(granted)} on partition {row['relname']}"
            findings.append(Finding(row["relname"], "partition_grant", detail))
        elif not row["relispartition"] and "TRUNCATE" in granted:
            detail = f"{app_role} has TRUNCATE, which ignores row level security"
            findings.append(Finding(row["relname"], "app_role_truncate", detail))
    return findings


# Column-level grants count: has_table_privilege alone would miss them.
WORKER_PRIVILEGES_SQL = """
select c.relname,
       array(
           select privilege from pg_catalog.unnest(%(privileges)s::text[]) as privilege
           where pg_catalog.has_table_privilege(%(role_oid)s::oid, c.oid, privilege)
              or (privilege in ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES')
                  and pg_catalog.has_any_column_privilege(%(role_oid)s::oid, c.oid, privilege))
       ) as granted
from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where n.nspname = %(schema)s and c.relkind in ('r', 'p', 'v', 'm', 'f')
order by c.relname
"""


def check_worker_role(cur: Cursor, worker_role: str) -> list[Finding]:
    """The app-role rules for the worker role, and no privilege beyond its allow-list."""
    findings = check_app_role(cur, worker_role)
    role = cur.execute(ROLE_SQL, {"role": worker_role}).fetchone()
    if role is None:
        return findings
    params = {"privileges": TABLE_PRIVILEGES, "role_oid": role["oid"], "schema": SCHEMA}
    for row in cur.execute(WORKER_PRIVILEGES_SQL, params):
        extra = set(row["granted"]) - WORKER_PRIVILEGES.get(row["relname"], frozenset())
        if extra:
            detail = f"{worker_role} has {', '.join(sorted(extra))}, beyond its allow-list"
            findings.append(Finding(row["relname"], "worker_privilege", detail))
    return findings


# -- entry points ---------------------------------------------------------------------------


VISIBILITY_DRIFT_SQL = """
select m.team_id, count(*) as members
from team_member m
left join team_member_visibility v on v.team_id = m.team_id and v.user_id = m.user_id
where v.project_ids is null
   or array(select unnest(v.project_ids) order by 1)
      <> tb_member_visible_projects(m.team_id, m.user_id)
group by m.team_id
order by m.team_id
"""


def check_visibility_sets(cur: Cursor) -> list[Finding]:
    """Every member's stored set of visible projects equals a recomputation (a schema
    before the sets existed has nothing to check)."""
    table = "team_member_visibility"
    exists = cur.execute("select to_regclass(%s) is not null as found", (table,)).fetchone()
    if exists is None or not exists["found"]:
        return []
    return [
        Finding(table, "visibility_drift", f"team {row['team_id']}: {row['members']} member(s)")
        for row in cur.execute(VISIBILITY_DRIFT_SQL)
    ]


def audit(
    conn: psycopg.Connection[Any], app_role: str, worker_role: str | None = None
) -> list[Finding]:
    """Every violated rule (see the module docstring), sorted; ``[]`` means the audit passes.

    ``conn`` is an owner (superuser) connection; the audit only reads the catalog, in the
    connection's current transaction, so it also sees that transaction's uncommitted DDL.
    """
    with conn.cursor(row_factory=dict_row) as cur:
        tables = _tables(cur)
        indexes = _indexes(cur)
        findings = [
            *check_rls(tables, _policy_commands(cur, app_role)),
            *check_tenant_keys(tables, indexes),
            *check_foreign_keys(tables, _foreign_keys(cur), indexes),
            *check_app_role(cur, app_role),
            *(check_worker_role(cur, worker_role) if worker_role else []),
            *check_visibility_sets(cur),
        ]
    return sorted(findings, key=lambda f: (f.table or "", f.check, f.detail))


def format_report(findings: Sequence[Finding]) -> str:
    """A human-readable report: one line per finding, or a single line when clean."""
    if not findings:
        return "db audit: no findings"
    width = max(len(f.check) for f in findings)
    lines = [f"db audit: {len(findings)} finding{'s' if len(findings) != 1 else ''}"]
    lines += [f"  {f.check:<{width}}  {f.table or '-'}: {f.detail}" for f in findings]
    return "\n".join(lines)
