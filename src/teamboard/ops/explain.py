"""``teamboard db explain``: the registered hot queries, explained as the app role.

Every query of the registry (``teamboard.kit.hot_queries``) runs through its feature's own
code, as the owner of the team holding the most events, in a transaction that is rolled
back; each statement it issues is first run through ``EXPLAIN (FORMAT JSON)`` with its
actual parameters (so plans and partition pruning are those of the request path). A query
fails the audit when a plan:

* ``seq_scan``: sequentially scans a table (or partition) with more than ``max_seq_rows``
  rows (``pg_class.reltuples``: run it on data that was analyzed);
* ``partitions``: reads an event partition outside the window the query declares (its
  span ending now, one day of slack on each side for time zones), other than by a *tail
  probe* (a scan bounded by ``tx_id >=`` the rollup watermark: the few events not folded
  yet, wherever they are dated) or a *subject probe* (a scan by ``subject_id =``: a few
  index pages per partition, whatever the partition holds, or a small partition read
  whole, which ``seq_scan`` bounds; such as the cumulative flow's look-up of a purged
  task's event); a query without a window may read none, an ``unbounded`` one any.
  Empty partitions (no pages at the last ANALYZE: those created ahead) cost nothing to read
  and are not counted;
* ``error``: fails to run.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString

import asyncpg

from teamboard.analytics.rollups import PARTITIONS_SQL
from teamboard.db import Database, Params, RequestMetrics, Tx, bind_arguments, native_sql
from teamboard.deps import TeamContext
from teamboard.kit.hot_queries import HotQuery, Sample
from teamboard.kit.pagination import CursorCodec

#: Modules that register hot queries (each defines ``QUERIES``).
PROVIDERS = (
    "teamboard.analytics.hot_queries",
    "teamboard.projects.hot_queries",
    "teamboard.tasks.hot_queries",
    "teamboard.teams.hot_queries",
    "teamboard.comments.hot_queries",
    "teamboard.notifications.hot_queries",
    "teamboard.search.hot_queries",
    "teamboard.activity.hot_queries",
    "teamboard.time_tracking.hot_queries",
    "teamboard.attachments.hot_queries",
    "teamboard.realtime.hot_queries",
    "teamboard.webhooks.hot_queries",
)
DEFAULT_MAX_SEQ_ROWS = 10_000
#: A scan condition that makes a read of a partition a probe: the transaction id bounded from
#: below (the rollup tail) or one subject (see the module docstring).
PROBE_CONDITION = re.compile(r"\btx_id >= |\bsubject_id = ")
CONDITIONS = ("Index Cond", "Recheck Cond", "Filter")
SLACK = timedelta(days=1)

# The team with the most events (from the rollups when folded), its owner, its busiest
# team-visible project, the task of that project with the most comments, a title word.
SAMPLE_SQL = """
with busiest as (
    select team_id from (
        select team_id, sum(value) as n from analytics_daily where metric = 'events'
        group by team_id
        union all
        select team_id, count(*) from event
        where not exists (select 1 from analytics_daily) group by team_id
    ) x order by n desc limit 1
), project as (
    select t.team_id, t.project_id, count(*) as n from task t
    join project p on p.team_id = t.team_id and p.id = t.project_id and p.visibility = 'team'
    where t.team_id = (select team_id from busiest)
    group by 1, 2 order by n desc limit 1
), busy_task as (
    select t.id, t.title from task t join project p on p.project_id = t.project_id
    left join comment c on c.task_id = t.id
    group by t.id, t.title order by count(c.id) desc, t.id limit 1
)
select p.team_id, p.project_id, bt.id as task_id, lower(split_part(bt.title, ' ', 1)) as word,
       (select m.user_id from team_member m where m.team_id = p.team_id and m.role = 'owner'
        order by m.user_id limit 1) as user_id
from project p, busy_task bt
"""

SIZES_SQL = """
select c.relname as name, c.reltuples, c.relpages from pg_catalog.pg_class c
where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p', 'm')
"""


def registered() -> list[HotQuery]:
    queries: list[HotQuery] = []
    for module in PROVIDERS:
        queries += importlib.import_module(module).QUERIES
    return queries


class ExplainingTx(Tx):
    """A write transaction (rolled back by the caller) that explains each statement before
    running it; the plans collect in ``plans``.

    ``generic``: explain the plan PostgreSQL makes without the parameters' values, the one
    the API runs (``DATABASE_PLAN_CACHE_MODE=force_generic_plan``); otherwise the plan made
    for the actual values."""

    def __init__(self, db: Database, *, user_id: Any, team_id: Any, generic: bool) -> None:
        super().__init__(db, RequestMetrics(), write=True, user_id=user_id, team_id=team_id)
        self.plans: list[tuple[str, dict[str, Any]]] = []
        self._generic = generic

    async def _explain(self, sql: LiteralString, params: Params) -> None:
        if self._generic:
            plan = await self._explain_generic(sql, params)
        else:
            plan = await super().fetch_value("explain (format json) " + sql, params)
        self.plans.append((sql, plan[0]["Plan"]))

    async def _explain_generic(self, sql: str, params: Params) -> Any:
        """``EXPLAIN EXECUTE`` of the statement prepared under ``force_generic_plan``.

        PostgreSQL 15 has no ``EXPLAIN (GENERIC_PLAN)``, and ``EXPLAIN EXECUTE`` takes no
        bound parameters, so the values are written as literals of the prepared statement's
        parameter types (``quote_nullable`` renders them, so nothing is quoted by hand).
        They decide only which partitions the executor prunes at startup, as in the API.
        """
        native = native_sql(sql)
        args = bind_arguments(native, params)
        conn = await self._connection()
        await conn.execute("set local plan_cache_mode = force_generic_plan")
        # PREPARE is not transactional: a failure must neither leave the transaction aborted
        # (the name could not be freed) nor leave the name taken on the pooled connection.
        await conn.execute("savepoint tb_explaining")
        prepared = False
        try:
            await conn.execute(f"prepare tb_explained as {native.text}")
            prepared = True
            types: list[str] = await conn.fetchval(
                "select parameter_types::text[] from pg_catalog.pg_prepared_statements"
                " where name = 'tb_explained'"
            )
            values = ""  # EXECUTE takes no parentheses without parameters
            if args:
                quoted = ", ".join(f"quote_nullable(${i + 1}::{t})" for i, t in enumerate(types))
                literals = await conn.fetchrow(f"select {quoted}", *args)
                assert literals is not None
                values = ", ".join(f"{lit}::{t}" for lit, t in zip(literals, types, strict=True))
                values = f"({values})"
            plan = await conn.fetchval(f"explain (format json) execute tb_explained{values}")
            await conn.execute("release savepoint tb_explaining")
            return plan
        except asyncpg.PostgresError:
            await conn.execute("rollback to savepoint tb_explaining")
            raise
        except BaseException:
            self._reusable = False  # interrupted mid-protocol: the pool drops the connection
            raise
        finally:
            if prepared and self._reusable:
                await conn.execute("deallocate tb_explained")

    async def fetch_one(self, sql: LiteralString, params: Params = None) -> dict[str, Any] | None:
        await self._explain(sql, params)
        return await super().fetch_one(sql, params)

    async def fetch_all(self, sql: LiteralString, params: Params = None) -> list[dict[str, Any]]:
        await self._explain(sql, params)
        return await super().fetch_all(sql, params)

    async def fetch_column(self, sql: LiteralString, params: Params = None) -> list[Any]:
        await self._explain(sql, params)
        return await super().fetch_column(sql, params)

    async def fetch_value(self, sql: LiteralString, params: Params = None) -> Any:
        await self._explain(sql, params)
        return await super().fetch_value(sql, params)

    async def execute(self, sql: LiteralString, params: Params = None) -> None:
        await self._explain(sql, params)
        await super().execute(sql, params)


@dataclass(frozen=True)
class Partition:
    name: str
    lo: datetime | None  # None: the default partition
    hi: datetime | None


@dataclass(frozen=True)
class Catalog:
    """What the checks need to know about the database."""

    sizes: dict[str, float]
    empty: frozenset[str]
    partitions: list[Partition]

    def allowed(self, query: HotQuery, now: datetime) -> set[str]:
        """The event partitions the query may read beyond tail probes."""
        if query.unbounded:
            return {p.name for p in self.partitions}
        if query.window is None:
            return set()
        lo, hi = now - query.window - SLACK, now + SLACK
        ranged = [(p.name, p.lo, p.hi) for p in self.partitions if p.lo and p.hi]
        allowed = {name for name, start, end in ranged if start < hi and end > lo}
        covered = any(start <= lo for _, start, _ in ranged) and any(
            end >= hi for _, _, end in ranged
        )
        if not covered:
            allowed |= {p.name for p in self.partitions if p.lo is None}
        return allowed


@dataclass
class Report:
    query: str
    statements: int = 0
    partitions: set[str] = field(default_factory=set)
    allowed: set[str] = field(default_factory=set)
    findings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


async def catalog(owner: Database) -> Catalog:
    async with owner.transaction(write=False) as tx:
        relations = await tx.fetch_all(SIZES_SQL)
        partitions = [
            Partition(r["name"], r["lo"], r["hi"]) for r in await tx.fetch_all(PARTITIONS_SQL)
        ]
    sizes = {r["name"]: r["reltuples"] for r in relations}
    empty = frozenset(r["name"] for r in relations if r["relpages"] == 0 and r["reltuples"] == 0)
    return Catalog(sizes, empty, partitions)


async def sample(owner: Database) -> Sample | None:
    """Ids to run the queries with; None when there is no data to explain on."""
    async with owner.transaction(write=False) as tx:
        row = await tx.fetch_one(SAMPLE_SQL)
    if row is None or row["user_id"] is None:
        return None
    return Sample(
        row["team_id"],
        row["user_id"],
        row["project_id"],
        row["task_id"],
        row["word"] or "task",
        datetime.now(UTC),
    )


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _probe(node: dict[str, Any]) -> bool:
    """Whether a scan only returns events at or above a transaction id (the rollup tail), or
    the events of one subject (by its index, or by filter on a partition small enough for a
    sequential scan, which ``seq_scan`` bounds)."""
    return any(PROBE_CONDITION.search(n.get(key, "")) for n in _nodes(node) for key in CONDITIONS)


def check_plans(
    plans: Sequence[dict[str, Any]], catalog_: Catalog, allowed: set[str], max_seq_rows: int
) -> tuple[set[str], list[str]]:
    """The event partitions the plans read (beyond tail probes) and the rules they break."""
    findings: list[str] = []
    read: set[str] = set()
    events = {p.name for p in catalog_.partitions}
    for plan in plans:
        for node in _nodes(plan):
            relation = node.get("Relation Name")
            if relation is None or node["Node Type"] in ("Bitmap Index Scan",):
                continue
            rows = catalog_.sizes.get(relation, 0)
            finding = f"seq_scan: {relation} ({rows:.0f} rows)"
            if node["Node Type"] == "Seq Scan" and rows > max_seq_rows and finding not in findings:
                findings.append(finding)
            if relation in events and relation not in catalog_.empty and not _probe(node):
                read.add(relation)
    outside = sorted(read - allowed)
    if outside:
        findings.append(f"partitions: reads {', '.join(outside)} outside its window")
    return read, findings


async def explain(
    app: Database,
    catalog_: Catalog,
    sample_: Sample,
    queries: Sequence[HotQuery],
    max_seq_rows: int = DEFAULT_MAX_SEQ_ROWS,
    *,
    generic: bool,
) -> list[Report]:
    """``generic``: check the generic plans (see :class:`ExplainingTx`)."""
    cursors = CursorCodec(b"teamboard-db-explain")
    reports = []
    for query in queries:
        report = Report(query.name, allowed=catalog_.allowed(query, sample_.now))
        tx = ExplainingTx(app, user_id=sample_.user_id, team_id=sample_.team_id, generic=generic)
        try:
            ctx = TeamContext(tx, sample_.team_id, sample_.user_id, None)
            await query.run(ctx, sample_, cursors)
        except Exception as exc:  # a failing query is a finding, not a crash of the audit
            report.findings.append(f"error: {type(exc).__name__}: {exc}")
        finally:
            await tx.finish(commit=False)
        report.statements = len(tx.plans)
        read, findings = check_plans(
            [plan for _, plan in tx.plans], catalog_, report.allowed, max_seq_rows
        )
        report.partitions = read
        report.findings += findings
        reports.append(report)
    return reports


def format_report(reports: Sequence[Report]) -> str:
    failed = [r for r in reports if not r.ok]
    lines = [f"db explain: {len(reports)} hot queries, {len(failed)} failing"]
    for r in reports:
        status = "ok  " if r.ok else "FAIL"
        scope = f"{len(r.partitions)}/{len(r.allowed)} partitions" if r.allowed else "no partitions"
        lines.append(f"  {status} {r.query} ({r.statements} statements, {scope})")
        lines += [f"       {finding}" for finding in r.findings]
    return "\n".join(lines)
