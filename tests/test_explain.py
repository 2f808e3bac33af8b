"""``teamboard db explain``: every registered hot query passes on generated data; a
deliberately unindexed query and a query reading every partition fail; dashboards read only
the partitions of their window (partition pruning)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from teamboard.analytics import service
from teamboard.analytics.period import DashboardQuery, Filters, Span
from teamboard.config import Settings
from teamboard.db import Database
from teamboard.deps import TeamContext
from teamboard.kit.hot_queries import HotQuery, Sample
from teamboard.kit.pagination import CursorCodec
from teamboard.ops import explain
from teamboard.ops.database import DatabaseUrls
from tests.analytics import GeneratedTeam, load, refresh

pytestmark = pytest.mark.asyncio
#: Large enough for small lookup tables, small enough that every table the hot queries
#: read in bulk (events, tasks, comments, rollups) is above it on this data set.
MAX_SEQ_ROWS = 1500


@dataclass
class Explainer:
    owner: Database
    app: Database
    sample: Sample

    generic: bool

    async def run(self, *queries: HotQuery) -> list[explain.Report]:
        catalog = await explain.catalog(self.owner)
        return await explain.explain(
            self.app, catalog, self.sample, queries, MAX_SEQ_ROWS, generic=self.generic
        )


OTHER_USERS = 20_000


@pytest.fixture(scope="module")
def busy_team(
    owner: psycopg.Connection[dict[str, Any]], db_urls: DatabaseUrls, settings: Settings
) -> GeneratedTeam:
    teams = load(owner, db_urls.owner, settings, events=40_000, teams=3, seed=23)
    refresh(owner)
    # Users of other teams, as any real deployment has (and as the rest of the suite creates,
    # more or fewer depending on what ran before): with a few hundred, a hash join over all of
    # app_user is the cheapest plan; with this many, the per-row lookups a deployment gets.
    owner.execute(
        "insert into app_user (id, email, display_name, password_hash)"
        " select gen_random_uuid(), 'explain-' || n || '-' || gen_random_uuid() || '@example.com',"
        " 'Someone', 'x' from generate_series(1, %s) n",
        (OTHER_USERS,),
    )
    # As autovacuum would after a load: statistics, and the visibility map that lets the
    # rollups' covering indexes answer without visiting the table.
    owner.execute("vacuum analyze")
    return teams[0]


@pytest.fixture(scope="module", params=["generic", "custom"])
async def explainer(
    request: pytest.FixtureRequest,
    db_urls: DatabaseUrls,
    settings: Settings,
    busy_team: GeneratedTeam,
) -> AsyncIterator[Explainer]:
    """Both plans of every statement: the generic one the API runs (its default
    ``DATABASE_PLAN_CACHE_MODE``), and the one made for the values (under ``auto``)."""
    small = settings.model_copy(update={"pool_min_size": 1, "pool_max_size": 2})
    owner_db, app_db = Database(db_urls.owner, small), Database(db_urls.app, small)
    await owner_db.open()
    await app_db.open()
    try:
        sample = await explain.sample(owner_db)
        assert sample is not None
        assert sample.team_id == busy_team.id
        yield Explainer(owner_db, app_db, sample, generic=request.param == "generic")
    finally:
        await app_db.close()
        await owner_db.close()


async def test_every_registered_hot_query_passes(explainer: Explainer) -> None:
    queries = explain.registered()
    assert len(queries) >= 30
    reports = await explainer.run(*queries)
    assert all(report.ok for report in reports), explain.format_report(reports)
    assert all(report.statements >= 1 for report in reports)
    # The rollup dashboards read no event partition except through tail probes.
    dashboards = [r for r in reports if r.query.startswith("analytics ") and "drill" not in r.query]
    assert dashboards
    assert all(not r.partitions for r in dashboards if "project" not in r.query)


async def _unindexed(ctx: TeamContext, sample: Sample, cursors: CursorCodec) -> object:
    return await ctx.tx.fetch_all("select id from explain_probe where note = %s", ("nothing",))


async def _every_partition(ctx: TeamContext, sample: Sample, cursors: CursorCodec) -> object:
    return await ctx.tx.fetch_value("select count(*) from event where kind = 'custom.signup'")


async def test_an_unindexed_query_fails(
    explainer: Explainer, owner: psycopg.Connection[dict[str, Any]], db_urls: DatabaseUrls
) -> None:
    """A table without any index on what the query filters by: only a sequential scan can
    answer it, and the audit says so (the table lives for this test only)."""
    owner.execute(
        "create table explain_probe as select g as id, 'note ' || g as note"
        " from generate_series(1, 5000) g"
    )
    try:
        owner.execute(f"grant select on explain_probe to {db_urls.app_role}")
        owner.execute("analyze explain_probe")
        (report,) = await explainer.run(HotQuery("deliberately unindexed", _unindexed))
    finally:
        owner.execute("drop table explain_probe")
    assert report.findings == ["seq_scan: explain_probe (5000 rows)"]
    assert "FAIL deliberately unindexed" in explain.format_report([report])


async def _missing_table(ctx: TeamContext, sample: Sample, cursors: CursorCodec) -> object:
    return await ctx.tx.fetch_all("select id from explain_no_such_table")


async def test_a_failing_statement_is_a_finding_and_frees_its_connection(
    explainer: Explainer,
) -> None:
    """The failure is reported, and the next queries run on the same (pooled) connections:
    nothing of the failed one, such as a prepared statement's name, is left behind."""
    queries = explain.registered()[:3]
    broken, *others = await explainer.run(HotQuery("broken", _missing_table), *queries * 2)
    (finding,) = broken.findings
    assert finding.startswith("error: UndefinedTableError"), finding
    assert all(report.ok for report in others), explain.format_report(others)


async def test_a_query_reading_every_partition_fails(explainer: Explainer) -> None:
    (report,) = await explainer.run(
        HotQuery("every partition", _every_partition, window=timedelta(days=7))
    )
    assert not report.ok
    assert any(f.startswith("partitions: reads ") for f in report.findings), report.findings
    assert len(report.partitions) > len(report.allowed)


async def _one_subject(ctx: TeamContext, sample: Sample, cursors: CursorCodec) -> object:
    return await ctx.tx.fetch_value(
        "select count(*) from event where team_id = %s and subject_id = %s",
        (sample.team_id, sample.task_id),
    )


async def test_a_probe_by_subject_may_reach_every_partition(explainer: Explainer) -> None:
    """An index scan by subject costs a few index pages per partition, whatever it holds
    (the cumulative flow's look-up of a purged task's event); a scan by kind does not."""
    probe, scan = await explainer.run(
        HotQuery("one subject", _one_subject, window=timedelta(days=7)),
        HotQuery("every partition", _every_partition, window=timedelta(days=7)),
    )
    assert probe.ok, probe.findings
    assert probe.partitions == set()
    assert not scan.ok


async def _raw_events(ctx: TeamContext, sample: Sample, cursors: CursorCodec) -> object:
    return await service.events(ctx, DashboardQuery(Span(days=30)), raw=True)


async def _drilldown(ctx: TeamContext, sample: Sample, cursors: CursorCodec) -> object:
    query = DashboardQuery(Span(days=60), "day", Filters(kinds=("custom.page_view",)))
    return await service.drilldown(ctx, query, 50, None)


async def test_plans_read_only_the_partitions_of_their_window(explainer: Explainer) -> None:
    raw, drill = await explainer.run(
        HotQuery("raw events 30d", _raw_events, timedelta(days=30)),
        HotQuery("drill-down 60d", _drilldown, timedelta(days=60)),
    )
    for report, months in ((raw, 2), (drill, 3)):
        assert report.ok, report.findings
        assert report.partitions, "the plan should read the window's partitions"
        assert report.partitions <= report.allowed
        assert len(report.partitions) <= months  # of 29 monthly partitions, and the default
    assert "event_default" not in raw.partitions | drill.partitions
