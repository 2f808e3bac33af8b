"""Provisioning: the embedded server, the app role, and migrations.

``DATABASE_URL`` is the *owner* URL: it runs migrations and owns every object. The API and
worker connect as the *app* role (``NOSUPERUSER NOBYPASSRLS``, owns nothing), taken from
``DATABASE_APP_URL`` or created here and derived from the owner URL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from sqlalchemy import create_engine, pool

from teamboard.config import Settings

logger = logging.getLogger("teamboard.ops.database")
#: Advisory lock key held by a migration (an arbitrary constant: "teamboard" in ASCII).
MIGRATION_LOCK = 0x7465616D626F6172


@dataclass(frozen=True)
class DatabaseUrls:
    owner: str
    app: str
    app_role: str
    worker: str
    worker_role: str


def start_embedded(settings: Settings) -> Any:
    """Start (or join) the embedded PostgreSQL in the data directory; returns its handle.

    The server stops when the last process holding a handle exits, so a second ``serve``
    on the same data directory reuses the running server.
    """
    import pgserver  # imported lazily: only the embedded default needs it

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return pgserver.get_server(settings.data_dir / "pgdata", cleanup_mode="stop")


def embedded_owner_url(server: Any, database: str) -> str:
    """Create the database in the embedded server when missing and return its owner URL."""
    admin_url = server.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (database,))
        if exists.fetchone() is None:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(database)))
    return str(server.get_uri(database))


def app_role_password(settings: Settings, role: str | None = None) -> str:
    """A role's password, derived from SECRET_KEY so every process agrees on it (the app
    role's keeps its original derivation)."""
    purpose = "teamboard-app-role-password" + ("" if role is None else f":{role}")
    return settings.derived_key(purpose).hex()


def _role_from_url(url: str, setting: str) -> str:
    role = conninfo_to_dict(url).get("user")
    if not role:
        raise ValueError(f"{setting} must name a user")
    return str(role)


def provision_app_role(owner_url: str, settings: Settings) -> DatabaseUrls:
    """Ensure the app role and the worker role exist with safe attributes; return the URLs.

    The worker role (see ``teamboard.worker``) is the one path that reads the event log of
    every team; it gets no table privileges here, only those its migrations grant, and
    ``teamboard db audit`` checks both roles. A role whose URL is given
    (``DATABASE_APP_URL``, ``DATABASE_WORKER_URL``) is taken as it is (it must exist);
    otherwise it is created or updated with a password derived from SECRET_KEY.
    """
    given = {
        "app": (settings.database_app_url, "DATABASE_APP_URL", settings.database_app_role),
        "worker": (settings.database_worker_url, "DATABASE_WORKER_URL", settings.worker_role),
    }
    urls: dict[str, tuple[str, str]] = {}
    with psycopg.connect(owner_url, autocommit=True) as conn:
        database = conn.execute("select current_database()").fetchone()
        assert database is not None
        for kind, (url, setting, role) in given.items():
            if url:
                urls[kind] = (url, _role_from_url(url, setting))
                continue
            password = app_role_password(settings, None if kind == "app" else role)
            _ensure_role(conn, role, password, database[0], settings)
            urls[kind] = (make_conninfo(owner_url, user=role, password=password), role)
    return DatabaseUrls(owner_url, *urls["app"], *urls["worker"])


def _ensure_role(
    conn: psycopg.Connection[Any], role: str, password: str, database: str, settings: Settings
) -> None:
    """A login role that owns nothing and can bypass nothing, with a statement timeout and
    no JIT compilation."""
    found = conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone()
    ident = sql.Identifier(role)
    if found is None:
        conn.execute(sql.SQL("create role {} login").format(ident))
    conn.execute(
        sql.SQL(
            "alter role {} login nosuperuser nobypassrls nocreatedb nocreaterole "
            "noreplication password {}"
        ).format(ident, sql.Literal(password))
    )
    conn.execute(
        sql.SQL("alter role {} set statement_timeout = {}").format(
            ident, sql.Literal(f"{settings.statement_timeout_ms}ms")
        )
    )
    # No JIT compilation: every query of the app is index-driven and runs in milliseconds,
    # but a plan whose estimated cost passes jit_above_cost (a dashboard statement holding
    # a branch it does not execute, estimated on a large table) was compiled for seconds
    # (7.8 s for the cycle-time dashboard at 10M events).
    conn.execute(sql.SQL("alter role {} set jit = off").format(ident))
    connect = sql.SQL("grant connect on database {} to {}")
    conn.execute(connect.format(sql.Identifier(database), ident))
    # No temporary tables: pg_temp comes first in every search_path that does not name it,
    # so a temporary table could stand in for a table a SECURITY DEFINER function reads
    # (a watermark, a team, the event log). PUBLIC has TEMPORARY on a new database.
    no_temp = sql.SQL("revoke temporary on database {} from {}")
    for grantee in (sql.SQL("public"), ident):
        conn.execute(no_temp.format(sql.Identifier(database), grantee))
    conn.execute(sql.SQL("grant usage on schema public to {}").format(ident))


def _alembic_config(urls: DatabaseUrls | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("teamboard") / "migrations"))
    if urls is not None:
        config.attributes["app_role"] = urls.app_role
        config.attributes["worker_role"] = urls.worker_role
    return config


def head_revision() -> str:
    """The newest migration shipped with this version of teamboard."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def migrate(urls: DatabaseUrls, revision: str = "head", *, downgrade: bool = False) -> None:
    """Upgrade (or downgrade) the schema on the owner connection."""
    engine = create_engine(
        "postgresql+psycopg://",
        creator=lambda: psycopg.connect(urls.owner),
        poolclass=pool.NullPool,
    )
    config = _alembic_config(urls)
    with engine.begin() as connection:
        # Processes starting together (serve, worker) migrate one after the other; the
        # later ones then find the schema at head.
        connection.exec_driver_sql("select pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        config.attributes["connection"] = connection
        if downgrade:
            command.downgrade(config, revision)
        else:
            command.upgrade(config, revision)
    engine.dispose()
    logger.info("migrated", extra={"revision": revision, "downgrade": downgrade})


def grant_alembic_version(urls: DatabaseUrls) -> None:
    """Let the app role read the schema version, which ``/health/ready`` compares to head."""
    with psycopg.connect(urls.owner, autocommit=True) as conn:
        conn.execute(
            sql.SQL("grant select on alembic_version to {}").format(sql.Identifier(urls.app_role))
        )


def prepare(settings: Settings, owner_url: str) -> DatabaseUrls:
    """Everything ``serve`` needs before accepting traffic: the app role and a head schema."""
    urls = provision_app_role(owner_url, settings)
    migrate(urls)
    grant_alembic_version(urls)
    return urls
