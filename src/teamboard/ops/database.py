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


@dataclass(frozen=True)
class DatabaseUrls:
    owner: str
    app: str
    app_role: str


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


def app_role_password(settings: Settings) -> str:
    """The app role's password, derived from SECRET_KEY so every process agrees on it."""
    return settings.derived_key("teamboard-app-role-password").hex()


def provision_app_role(owner_url: str, settings: Settings) -> DatabaseUrls:
    """Ensure the app role exists with safe attributes; return both URLs.

    With ``DATABASE_APP_URL`` set the role is taken as given (it must already exist).
    """
    if settings.database_app_url:
        role = conninfo_to_dict(settings.database_app_url).get("user")
        if not role:
            raise ValueError("DATABASE_APP_URL must name a user")
        return DatabaseUrls(owner_url, settings.database_app_url, str(role))
    role = settings.database_app_role
    password = app_role_password(settings)
    with psycopg.connect(owner_url, autocommit=True) as conn:
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
        database = conn.execute("select current_database()").fetchone()
        assert database is not None
        conn.execute(
            sql.SQL("grant connect on database {} to {}").format(sql.Identifier(database[0]), ident)
        )
        conn.execute(sql.SQL("grant usage on schema public to {}").format(ident))
    app_url = make_conninfo(owner_url, user=role, password=password)
    return DatabaseUrls(owner_url, app_url, role)


def _alembic_config(urls: DatabaseUrls | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("teamboard") / "migrations"))
    if urls is not None:
        config.attributes["app_role"] = urls.app_role
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
