"""The ``teamboard`` command: serve, worker, migrate, seed, db audit, db partitions,
attachments sweep, graphql-schema."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import psycopg
import typer
import uvicorn

from teamboard.config import Settings, get_settings
from teamboard.ops import audit as audit_ops
from teamboard.ops import database

app = typer.Typer(help="teamboard: multi-tenant project and task management on PostgreSQL.")
db_app = typer.Typer(help="Database checks.")
app.add_typer(db_app, name="db")
attachments_app = typer.Typer(help="Attachment storage upkeep.")
app.add_typer(attachments_app, name="attachments")
analytics_app = typer.Typer(help="Analytics rollups.")
app.add_typer(analytics_app, name="analytics")


@contextmanager
def owner_database(settings: Settings) -> Iterator[str]:
    """The owner URL: DATABASE_URL, or the embedded server (started, or joined if running)."""
    if settings.database_url:
        yield settings.database_url
        return
    typer.echo(f"DATABASE_URL is not set: using embedded PostgreSQL in {settings.data_dir}")
    server: Any = database.start_embedded(settings)
    try:
        yield database.embedded_owner_url(server, settings.database_name)
    finally:
        server.cleanup()


def _seed(settings: Settings, app_url: str, tasks_per_project: int) -> None:
    from teamboard.app import build_services
    from teamboard.ops.seed import DEMO_PASSWORD, seed_demo

    services = build_services(settings.model_copy(update={"database_app_url": app_url}))

    async def run() -> None:
        await services.db.open()
        try:
            summary = await seed_demo(services, tasks_per_project=tasks_per_project)
        finally:
            await services.db.close()
        typer.echo(
            f"seeded {summary.users} users, {summary.teams} teams, "
            f"{summary.projects} projects, {summary.tasks} tasks "
            f"(sign in as acme@demo.teamboard.dev / {DEMO_PASSWORD})"
        )

    asyncio.run(run())


def _exit_quietly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _stop_quietly() -> None:
    """SIGTERM or SIGINT during start-up (or, for ``serve``, once uvicorn re-raises it after
    its graceful shutdown) becomes a normal exit, which leaves through the ``with`` blocks:
    the embedded PostgreSQL is released, and the exit status is 0 rather than death by the
    signal. The worker's event loop installs its own handlers once it runs."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_quietly)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address")] = None,
    port: Annotated[int | None, typer.Option(help="Port")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes")] = None,
    demo: Annotated[bool, typer.Option(help="Load the demo data first (idempotent)")] = False,
) -> None:
    """Migrate to head, then serve the API (embedded PostgreSQL when DATABASE_URL is unset)."""
    settings = get_settings()
    _stop_quietly()
    with owner_database(settings) as owner_url:
        urls = database.prepare(settings, owner_url)
        if demo:
            _seed(settings, urls.app, tasks_per_project=20)
        # Workers are separate processes: they read their settings from the environment.
        os.environ["DATABASE_URL"] = urls.owner
        os.environ["DATABASE_APP_URL"] = urls.app
        get_settings.cache_clear()  # a single worker runs in this process: re-read them
        uvicorn.run(
            "teamboard.app:create_server_app",
            factory=True,
            host=host or settings.host,
            port=port or settings.port,
            workers=workers or settings.workers,
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_config=None,
            proxy_headers=True,
            timeout_graceful_shutdown=settings.graceful_shutdown_seconds,
        )


@app.command()
def worker() -> None:
    """Migrate to head, then run the event-log consumers, webhook deliveries and partition
    upkeep until SIGTERM or SIGINT (run one or several, next to `serve`)."""
    from teamboard.logging import configure_logging
    from teamboard.worker.main import run_worker

    settings = get_settings()
    configure_logging(settings.log_level)
    _stop_quietly()  # a stop before the event loop's handlers: see serve
    with owner_database(settings) as owner_url:
        urls = database.prepare(settings, owner_url)
        asyncio.run(run_worker(settings, worker_url=urls.worker, app_url=urls.app))


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision")] = "head",
    down: Annotated[bool, typer.Option("--down", help="Downgrade to REVISION")] = False,
) -> None:
    """Create the app role and apply (or revert) migrations."""
    settings = get_settings()
    with owner_database(settings) as owner_url:
        urls = database.provision_app_role(owner_url, settings)
        database.migrate(urls, revision, downgrade=down)
        if not down:
            database.grant_alembic_version(urls)
    typer.echo(f"migrated {'down' if down else 'up'} to {revision}")


@app.command()
def seed(
    tasks_per_project: Annotated[int, typer.Option(min=0, max=10_000)] = 20,
    events: Annotated[
        int | None,
        typer.Option(min=1, help="Generate a data set of about this many events instead"),
    ] = None,
    teams: Annotated[int, typer.Option(min=1, max=100_000, help="Teams of the data set")] = 50,
    years: Annotated[float, typer.Option(min=0.25, max=20, help="History of the data set")] = 3,
    random_seed: Annotated[int, typer.Option(help="Seed of the data set")] = 7,
    rollups: Annotated[bool, typer.Option(help="Rebuild the rollups after the load")] = True,
) -> None:
    """Load demo teams, users, projects and tasks (idempotent: existing demo users are
    kept); with ``--events``, generate a large realistic data set with COPY instead."""
    settings = get_settings()
    with owner_database(settings) as owner_url:
        urls = database.prepare(settings, owner_url)
        if events is None:
            _seed(settings, urls.app, tasks_per_project)
            return
        from teamboard.ops import generate

        config = generate.GeneratorConfig(events, teams, years, random_seed)
        with _progress("generating events", config.events) as advance:
            summary = generate.generate(urls.owner, config, advance)
        typer.echo(
            f"loaded {summary.events} events, {summary.tasks} tasks, {summary.comments}"
            f" comments, {summary.time_entries} time entries, {summary.users} users in"
            f" {summary.teams} teams"
        )
        typer.echo("vacuum analyze ...")
        generate.analyze(urls.owner)
        if rollups:
            _rebuild(settings, urls.owner, None)


@contextmanager
def _progress(description: str, total: int) -> Iterator[Callable[[int, int], None]]:
    """A progress bar, and the ``(done, total)`` callback that moves it."""
    from rich.progress import Progress

    with Progress() as bar:
        task = bar.add_task(description, total=total)

        def advance(done: int, new_total: int) -> None:
            bar.update(task, completed=done, total=new_total)

        yield advance


def _rebuild(settings: Settings, owner_url: str, team: UUID | None) -> None:
    from teamboard.analytics.rollups import rebuild
    from teamboard.db import Database

    async def run() -> None:
        db = Database(owner_url, settings.model_copy(update={"pool_min_size": 1}))
        await db.open()
        try:
            with _progress("rebuilding rollups (partitions)", 1) as advance:
                result = await rebuild(db, team_id=team, progress=advance)
        finally:
            await db.close()
        typer.echo(f"folded {result.folded} events; watermark {result.watermark}")

    asyncio.run(run())


@analytics_app.command("rebuild")
def analytics_rebuild(
    team: Annotated[UUID | None, typer.Option(help="Only this team")] = None,
) -> None:
    """Fold every event into the rollups again, from scratch (backfills, a changed time zone
    set outside the API). Dashboards keep answering, exactly, meanwhile."""
    settings = get_settings()
    with owner_database(settings) as owner_url:
        urls = database.prepare(settings, owner_url)
        _rebuild(settings, urls.owner, team)


@analytics_app.command("refresh")
def analytics_refresh() -> None:
    """Fold the events committed since the last fold (what the worker does continuously)."""
    from teamboard.analytics.rollups import RollupConsumer
    from teamboard.db import Database

    settings = get_settings()
    with owner_database(settings) as owner_url:
        urls = database.prepare(settings, owner_url)

        async def run() -> None:
            db = Database(urls.app, settings.model_copy(update={"pool_min_size": 1}))
            await db.open()
            try:
                result = await RollupConsumer(db).fold()
            finally:
                await db.close()
            state = "another fold is running" if result.skipped else f"folded {result.folded}"
            typer.echo(f"{state}; watermark {result.watermark}")

        asyncio.run(run())


@db_app.command("audit")
def audit() -> None:
    """Fail (exit 1) when any table escapes the tenancy rules or the app role can bypass RLS."""
    settings = get_settings()
    with owner_database(settings) as owner_url:
        urls = database.prepare(settings, owner_url)
        with psycopg.connect(urls.owner) as conn:
            findings = audit_ops.audit(conn, urls.app_role, urls.worker_role)
    typer.echo(audit_ops.format_report(findings))
    if findings:
        raise typer.Exit(code=1)


@db_app.command("explain")
def explain(
    max_seq_rows: Annotated[
        int, typer.Option(min=0, help="Largest table (rows) a plan may scan sequentially")
    ] = 10_000,
) -> None:
    """Fail (exit 1) when a registered hot query scans a large table sequentially or reads
    event partitions outside its window. Run it on realistic data (``teamboard seed
    --events N``), as the app role, with the busiest team as context, on the plans the API
    runs (generic ones under the default ``DATABASE_PLAN_CACHE_MODE``)."""
    from teamboard.db import Database
    from teamboard.ops import explain as explain_ops

    settings = get_settings()
    with owner_database(settings) as owner_url:
        urls = database.prepare(settings, owner_url)

        async def run() -> bool:
            small = settings.model_copy(update={"pool_min_size": 1, "pool_max_size": 2})
            mode = settings.database_plan_cache_mode
            owner_db = Database(urls.owner, small)
            app_db = Database(urls.app, small, plan_cache_mode=mode)
            await owner_db.open()
            await app_db.open()
            try:
                found = await explain_ops.catalog(owner_db)
                sample = await explain_ops.sample(owner_db)
                if sample is None:
                    typer.echo("db explain: no data to explain on (teamboard seed --events N)")
                    return False
                reports = await explain_ops.explain(
                    app_db,
                    found,
                    sample,
                    explain_ops.registered(),
                    max_seq_rows,
                    generic=mode == "force_generic_plan",
                )
            finally:
                await app_db.close()
                await owner_db.close()
            typer.echo(explain_ops.format_report(reports))
            return all(report.ok for report in reports)

        if not asyncio.run(run()):
            raise typer.Exit(code=1)


@attachments_app.command("sweep")
def sweep_attachments() -> None:
    """Remove the stored bytes of deleted attachments that no request cleaned up (a crash,
    a purged task or project, a deleted team). Safe to run at any time, e.g. from cron.
    Exits 1, leaving the queue as it was, where keys are queued and local storage's
    directory does not exist."""
    from teamboard.attachments.cleanup import StorageNotHere, sweep_as_owner

    settings = get_settings()
    with owner_database(settings) as owner_url:
        urls = database.prepare(settings, owner_url)
        try:
            removed = asyncio.run(sweep_as_owner(urls.owner, settings))
        except StorageNotHere as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=1) from None
    typer.echo(f"removed {removed} stored attachment objects")


@db_app.command("partitions")
def partitions(
    ahead: Annotated[
        int | None, typer.Option(min=2, max=24, help="Months ahead (EVENT_PARTITIONS_AHEAD)")
    ] = None,
    retention_months: Annotated[
        int | None,
        typer.Option(min=0, help="Drop partitions older than this (0 keeps all)"),
    ] = None,
) -> None:
    """Create the event partitions ahead, drop those past retention, purge the webhook
    delivery log, expired idempotency records and expired trash, remove orphaned attachment
    bytes (the worker's periodic upkeep)."""
    from teamboard.db import Database
    from teamboard.worker.upkeep import upkeep

    settings = get_settings()
    with owner_database(settings) as owner_url:
        urls = database.prepare(settings, owner_url)

        async def run() -> str:
            db = Database(urls.worker, settings)
            try:
                return str(await upkeep(db, settings, ahead=ahead, retention=retention_months))
            finally:
                await db.close()

        typer.echo(asyncio.run(run()))


@app.command("graphql-schema")
def graphql_schema(
    output: Annotated[Path, typer.Option(help="Where to write the SDL")] = Path("schema.graphql"),
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 when the file is not current")
    ] = False,
) -> None:
    """Export the GraphQL schema (SDL) to schema.graphql, the reviewed contract of /graphql."""
    from teamboard.graphql.schema import sdl

    current = sdl()
    if check:
        if not output.exists() or output.read_text(encoding="utf-8") != current:
            typer.echo(f"{output} is not current: run `teamboard graphql-schema`", err=True)
            raise typer.Exit(code=1)
        typer.echo(f"{output} is current")
        return
    output.write_text(current, encoding="utf-8")
    typer.echo(f"wrote {output}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
