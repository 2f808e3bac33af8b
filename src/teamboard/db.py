"""Database access: the app-role connection pool and the request transaction.

Every request runs on the app role with the caller's context set transaction-locally
(``set_config(..., true)``), so Row Level Security sees it and nothing survives into the next
use of the connection: the pool needs no reset query, and PgBouncer in transaction mode is
safe.

The context travels in the same round trip as the work (DESIGN §9: round trips are what
cost), in one of two modes:

* **Reads** (``write=False``: GET, HEAD, OPTIONS) run no explicit transaction. Each statement
  is wrapped so that it sets the context itself before its body runs (see
  :func:`_with_context`): one statement, one round trip, the same plan cache as the bare
  query. Statements of one read see the same context; as under READ COMMITTED, each takes
  its own snapshot.
* **Writes** open ``BEGIN`` and set the context in a single simple-protocol round trip, run
  their statements, and ``COMMIT`` (or roll back when the route raises).

Repositories write SQL with psycopg-style placeholders (``%s``, ``%(name)s``, ``%%``);
:func:`native_sql` rewrites them once per statement text into PostgreSQL's ``$n``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, LiteralString, TypeAlias
from uuid import UUID

import asyncpg
import orjson
from asyncpg import Pool, Record
from asyncpg.pool import PoolConnectionProxy
from psycopg.conninfo import conninfo_to_dict

from teamboard.config import Settings
from teamboard.errors import TeamboardError

logger = logging.getLogger("teamboard.db")

Params = Sequence[Any] | Mapping[str, Any] | None
LookupName = Literal["app.api_key_prefix", "app.api_key_secret_hash", "app.invitation_token"]
ContextName = Literal["app.user_id", "app.team_id"] | LookupName
Connection: TypeAlias = "PoolConnectionProxy[Record] | asyncpg.Connection[Record]"

#: Errors a route may catch by meaning without importing the driver.
UniqueViolation = asyncpg.UniqueViolationError
ForeignKeyViolation = asyncpg.ForeignKeyViolationError
CheckViolation = asyncpg.CheckViolationError
InsufficientPrivilege = asyncpg.InsufficientPrivilegeError
SerializationFailure = asyncpg.SerializationError
DeadlockDetected = asyncpg.DeadlockDetectedError
#: The database cannot serve the request now: answered 503 with ``Retry-After``.
DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.ConnectionDoesNotExistError,
    ConnectionError,
    OSError,
)

_PLACEHOLDER = re.compile(r"%(?:\((\w+)\))?s|%%")
_UUID_TEXT = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def connect_arguments(url: str) -> dict[str, Any]:
    """asyncpg connection arguments from a libpq URL or ``key=value`` string (the app URL
    the ops module builds is the latter)."""
    info = conninfo_to_dict(url)
    unsupported = set(info) - {"host", "hostaddr", "port", "user", "password", "dbname", "sslmode"}
    if unsupported:
        raise ValueError(f"unsupported connection parameters: {', '.join(sorted(unsupported))}")
    arguments: dict[str, Any] = {
        "host": info.get("hostaddr") or info.get("host"),
        "port": int(str(info["port"])) if info.get("port") else None,
        "user": info.get("user"),
        "password": info.get("password"),
        "database": info.get("dbname"),
    }
    if info.get("sslmode"):
        arguments["ssl"] = info["sslmode"]
    return {key: value for key, value in arguments.items() if value is not None}


class PoolTimeout(Exception):
    """No connection became free within ``POOL_TIMEOUT_SECONDS`` (answered 503)."""


@dataclass(frozen=True)
class NativeSql:
    text: str
    names: tuple[str, ...] | None  # None: positional parameters
    count: int


@functools.lru_cache(maxsize=4096)
def native_sql(sql: str) -> NativeSql:
    """Rewrite psycopg placeholders into ``$n`` (a repeated ``%(name)s`` reuses its number)."""
    names: list[str] = []
    positional = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal positional
        if match.group(0) == "%%":
            return "%"
        name = match.group(1)
        if name is None:
            positional += 1
            return f"${positional}"
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    text = _PLACEHOLDER.sub(replace, sql)
    if positional and names:
        raise ValueError("a statement cannot mix %s and %(name)s placeholders")
    return NativeSql(text, tuple(names) if names else None, positional or len(names))


def _arguments(native: NativeSql, params: Params) -> list[Any]:
    if params is None:
        args: list[Any] = []
    elif native.names is not None:
        assert isinstance(params, Mapping), "named placeholders need a mapping"
        args = [params[name] for name in native.names]
    else:
        assert not isinstance(params, Mapping), "positional placeholders need a sequence"
        args = list(params)
    if len(args) != native.count:
        raise ValueError(f"the statement takes {native.count} parameters, {len(args)} given")
    return args


@functools.lru_cache(maxsize=4096)
def _with_context(sql: str, names: tuple[ContextName, ...], first: int) -> str:
    """``sql`` as one statement that first sets the context ``names`` from ``$first...``.

    The settings are made by a MATERIALIZED CTE; the query runs in a LATERAL subquery that
    references the CTE's row, which forces a nested loop with the CTE as its outer side, so
    the CTE (and its ``set_config`` calls) runs before any node of the query, whose policy
    predicates read the settings lazily when first evaluated. ``OFFSET 0`` keeps the query
    a separate subquery, so none of its quals can be hoisted above the CTE.
    """
    calls = " || ".join(f"set_config('{name}', ${first + i}, true)" for i, name in enumerate(names))
    return (
        f"with tb_context as materialized (select {calls} as ready)"
        f" select tb_q.* from tb_context, lateral"
        f" (select tb_s.* from ({sql}) tb_s where tb_context.ready is not null offset 0) tb_q"
    )


@dataclass
class RequestMetrics:
    """Per-request counters read by the logging middleware and the metrics header."""

    statements: int = 0


class Tx:
    """One unit of work with the caller's context; repositories run all SQL through it.

    ``metrics.statements`` counts data statements (context and transaction control
    excluded), which is what the N+1 tests assert.
    """

    def __init__(self, conn: Connection, metrics: RequestMetrics, *, write: bool) -> None:
        self._conn = conn
        self._write = write
        self._context: dict[ContextName, str] = {}
        self.metrics = metrics
        self.user_id: UUID | None = None
        self.team_id: UUID | None = None

    @property
    def writable(self) -> bool:
        return self._write

    async def set_context(self, *, user_id: UUID | None, team_id: UUID | None) -> None:
        """Point Row Level Security at a user and team (``None`` means none: fail closed)."""
        self.user_id, self.team_id = user_id, team_id
        await self._set(
            {
                "app.user_id": "" if user_id is None else str(user_id),
                "app.team_id": "" if team_id is None else str(team_id),
            }
        )

    async def set_lookup(self, name: LookupName, value: str) -> None:
        """Expose one pre-authentication lookup key (API key prefix and secret hash, ...).

        Policies let exactly the row matching it be read, so a key or an invitation can be
        resolved without a user context and without any table being readable in full.
        """
        await self._set({name: value})

    async def _set(self, values: dict[ContextName, str]) -> None:
        self._context.update(values)
        if self._write:
            calls = ", ".join(
                f"set_config('{name}', ${i + 1}, true)" for i, name in enumerate(values)
            )
            await self._conn.execute(f"select {calls}", *values.values())

    def _statement(self, sql: str, params: Params) -> tuple[str, list[Any]]:
        native = native_sql(sql)
        args = _arguments(native, params)
        if self._write or not self._context:
            return native.text, args
        names = tuple(self._context)
        text = _with_context(native.text, names, native.count + 1)
        return text, args + list(self._context.values())

    async def fetch_one(self, sql: LiteralString, params: Params = None) -> dict[str, Any] | None:
        self.metrics.statements += 1
        text, args = self._statement(sql, params)
        row = await self._conn.fetchrow(text, *args)
        return None if row is None else dict(row)

    async def fetch_all(self, sql: LiteralString, params: Params = None) -> list[dict[str, Any]]:
        self.metrics.statements += 1
        text, args = self._statement(sql, params)
        return [dict(row) for row in await self._conn.fetch(text, *args)]

    async def fetch_value(self, sql: LiteralString, params: Params = None) -> Any:
        self.metrics.statements += 1
        text, args = self._statement(sql, params)
        return await self._conn.fetchval(text, *args)

    async def execute(self, sql: LiteralString, params: Params = None) -> None:
        """Run a statement whose result is not needed (an event append, a last-use stamp).

        Only a write transaction may modify data; in a read, this runs a ``select`` (for
        example of a SECURITY DEFINER function). Use ``RETURNING`` with ``fetch_one`` when
        the caller must know what the statement changed.
        """
        self.metrics.statements += 1
        text, args = self._statement(sql, params)
        if self._write:
            await self._conn.execute(text, *args)
        else:
            await self._conn.fetch(text, *args)


async def _init_connection(conn: Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, schema="pg_catalog", encoder=_encode_json, decoder=orjson.loads
        )


def _encode_json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


async def _reset_connection(conn: Connection) -> None:
    """The pool's reset: only end a transaction left open. The context is transaction-local,
    so asyncpg's default reset (several statements per release) is not needed."""
    if conn.is_in_transaction():
        await conn.execute("rollback")


def _begin_with_context(user_id: UUID | None, team_id: UUID | None) -> str:
    """``BEGIN`` and the context in one simple-protocol round trip. Only UUIDs (checked)
    are interpolated, so there is nothing to quote."""
    values = ["" if value is None else str(value) for value in (user_id, team_id)]
    for value in values:
        if value and not _UUID_TEXT.match(value):
            raise ValueError("context ids must be UUIDs")
    return (
        f"begin; select set_config('app.user_id', '{values[0]}', true),"
        f" set_config('app.team_id', '{values[1]}', true)"
    )


class Database:
    """The app-role pool plus the transaction helper used by requests and jobs."""

    def __init__(self, app_url: str, settings: Settings) -> None:
        self._url = app_url
        self._settings = settings
        self._pool: Pool[Record] | None = None
        # Requests queue here, not in the pool, so that only a request that must wait pays
        # for a timeout, and the wait is bounded by POOL_TIMEOUT_SECONDS.
        self._slots = asyncio.Semaphore(settings.pool_max_size)
        self._acquire_timeout = settings.pool_timeout_seconds

    async def open(self, *, wait: bool = True) -> None:
        """Create the pool; with ``wait=False`` a database that is down does not stop the
        process from starting (requests answer 503 until it is back)."""
        try:
            self._pool = await self._create_pool(self._settings.pool_min_size)
        except DATABASE_UNAVAILABLE:
            if wait:
                raise
            logger.warning("database unavailable at startup; requests answer 503 until it is up")
            self._pool = await self._create_pool(0)

    async def _create_pool(self, min_size: int) -> Pool[Record]:
        return await asyncpg.create_pool(
            **connect_arguments(self._url),
            min_size=min_size,
            max_size=self._settings.pool_max_size,
            init=_init_connection,
            reset=_reset_connection,
            statement_cache_size=1024,
            max_inactive_connection_lifetime=300.0,
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        if self._slots.locked():  # only a request that must wait pays for a timeout
            try:
                async with asyncio.timeout(self._acquire_timeout):
                    await self._slots.acquire()
            except TimeoutError as exc:
                raise PoolTimeout("no database connection became free in time") from exc
        else:
            await self._slots.acquire()
        try:
            yield
        finally:
            self._slots.release()

    @asynccontextmanager
    async def transaction(
        self,
        *,
        user_id: UUID | None = None,
        team_id: UUID | None = None,
        write: bool = True,
        metrics: RequestMetrics | None = None,
    ) -> AsyncIterator[Tx]:
        """A unit of work with the context set; a write commits on success and rolls back
        on error (a :class:`TeamboardError` with ``keep_changes`` commits what it wrote)."""
        if self._pool is None:
            raise RuntimeError("Database.open() was not called")
        async with self._slot(), self._pool.acquire() as conn:
            tx = Tx(conn, metrics or RequestMetrics(), write=write)
            if not write:
                await tx.set_context(user_id=user_id, team_id=team_id)  # no round trip
                yield tx
                return
            tx.user_id, tx.team_id = user_id, team_id
            await conn.execute(_begin_with_context(user_id, team_id))
            try:
                yield tx
            except BaseException as exc:
                await _finish_after_error(conn, exc)
                raise
            await conn.execute("commit")


async def _finish_after_error(conn: Connection, exc: BaseException) -> None:
    if not conn.is_in_transaction():
        return
    keep = isinstance(exc, TeamboardError) and exc.keep_changes
    try:
        await conn.execute("commit" if keep else "rollback")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        # The connection is broken or the transaction failed; the pool discards or resets it.
        logger.warning("could not end a failed transaction", exc_info=True)
