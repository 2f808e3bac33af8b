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

Statements are prepared (asyncpg's statement cache). The API's connections run with
``plan_cache_mode = force_generic_plan`` (``DATABASE_PLAN_CACHE_MODE``): each statement is
planned once per connection, without its values. Under ``auto``, PostgreSQL plans a
statement again at every execution whenever the values make a custom plan look cheaper
than the generic one, which for a deep page of a large project cost more than running it.
So statements are written for their generic plan (conditions and page sizes in the text
only when they apply, see ``kit.pagination``), and ``teamboard db explain`` and the plan
tests check those plans.

Repositories write SQL with psycopg-style placeholders (``%s``, ``%(name)s``, ``%%``);
:func:`native_sql` rewrites them once per statement text into PostgreSQL's ``$n``.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, LiteralString
from uuid import UUID

import asyncpg
import orjson
from psycopg.conninfo import conninfo_to_dict

from teamboard.config import Settings
from teamboard.dbpool import Connection, ConnectionPool, PoolClosed, PoolTimeout
from teamboard.errors import TeamboardError

logger = logging.getLogger("teamboard.db")

Params = Sequence[Any] | Mapping[str, Any] | None
LookupName = Literal["app.api_key_prefix", "app.api_key_secret_hash", "app.invitation_token"]
ContextName = Literal["app.user_id", "app.team_id"] | LookupName

#: Errors a route may catch by meaning without importing the driver.
UniqueViolation = asyncpg.UniqueViolationError
ForeignKeyViolation = asyncpg.ForeignKeyViolationError
CheckViolation = asyncpg.CheckViolationError
InsufficientPrivilege = asyncpg.InsufficientPrivilegeError
SerializationFailure = asyncpg.SerializationError
DeadlockDetected = asyncpg.DeadlockDetectedError
#: Text PostgreSQL cannot store (a NUL character, in a field no validator covers yet):
#: answered 422 ``invalid_text``, never 500. Text fields refuse NUL at validation first
#: (``teamboard.kit.text.NO_NUL``); this is the net under them.
INVALID_TEXT: tuple[type[Exception], ...] = (
    asyncpg.CharacterNotInRepertoireError,
    asyncpg.UntranslatableCharacterError,
)
#: Raised by the driver for an argument it cannot encode (the encoder's own error is its
#: ``__cause__``), and by PostgreSQL for a data exception (SQLSTATE class 22); see
#: :func:`is_out_of_range` and :func:`is_unencodable_text`.
DataError = asyncpg.DataError
_OUT_OF_RANGE = (asyncpg.DatetimeFieldOverflowError, asyncpg.NumericValueOutOfRangeError)


def is_out_of_range(exc: BaseException) -> bool:
    """A value that the driver or PostgreSQL cannot hold (an instant past the year 9999 once
    in UTC, a number beyond its column's type), in a field no validator bounds yet: answered
    422 ``value_out_of_range``, never 500. Validation refuses the known ones first
    (``teamboard.kit.instants``); this is the net under them. Any other argument the
    driver cannot encode (a wrong type, a malformed id) is a bug of ours: 500."""
    if type(exc) is asyncpg.DataError:
        return isinstance(exc.__cause__, OverflowError)
    return isinstance(exc, _OUT_OF_RANGE)


def is_unencodable_text(exc: BaseException) -> bool:
    """Text the driver cannot encode as UTF-8 (a lone surrogate): ``invalid_text``, like
    text PostgreSQL refuses (:data:`INVALID_TEXT`)."""
    return type(exc) is asyncpg.DataError and isinstance(exc.__cause__, UnicodeEncodeError)


#: A statement cancelled by the server: the app role's ``statement_timeout`` (set by
#: ``teamboard migrate``) or an operator's ``pg_cancel_backend``. Answered 503.
QueryCanceled = asyncpg.QueryCanceledError
#: The database cannot serve the request now: answered 503 with ``Retry-After``.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.ConnectionDoesNotExistError,
    ConnectionError,
    OSError,
    PoolTimeout,
    PoolClosed,
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


def bind_arguments(native: NativeSql, params: Params) -> list[Any]:
    """The values of ``params`` in the order of ``native``'s placeholders."""
    if params is None or (native.count == 0 and not params):
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

    The connection is taken from the pool at the first statement (a request refused before
    any SQL never waits for one) and given back by :meth:`finish`, which a write must call
    to commit. ``metrics.statements`` counts data statements (context and transaction
    control excluded), which is what the N+1 tests assert.
    """

    def __init__(
        self,
        db: Database,
        metrics: RequestMetrics,
        *,
        write: bool,
        user_id: UUID | None,
        team_id: UUID | None,
    ) -> None:
        self._db = db
        self._conn: Connection | None = None
        self._reusable = True
        self._write = write
        self._context: dict[ContextName, str] = {}
        self._pending: dict[ContextName, str] = {}  # lookups to set once a write begins
        self.metrics = metrics
        self.user_id, self.team_id = user_id, team_id
        self._context["app.user_id"] = "" if user_id is None else str(user_id)
        self._context["app.team_id"] = "" if team_id is None else str(team_id)

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
        if not self._write:
            return  # reads carry the whole context in every statement
        if self._conn is None:  # the ids go with BEGIN; lookups right after it
            self._pending.update({k: v for k, v in values.items() if k not in _IDS})
            return
        await self._apply(self._conn, values)

    @staticmethod
    async def _apply(conn: Connection, values: dict[ContextName, str]) -> None:
        calls = ", ".join(f"set_config('{name}', ${i + 1}, true)" for i, name in enumerate(values))
        await conn.execute(f"select {calls}", *values.values())

    async def _connection(self) -> Connection:
        if self._conn is not None:
            return self._conn
        conn = await self._db.acquire()
        self._conn = conn
        if self._write:
            try:
                await conn.execute(
                    _begin_with_context(self.user_id, self.team_id, self._db.timer_cap)
                )
                if self._pending:
                    await self._apply(conn, self._pending)
                    self._pending = {}
            except asyncpg.PostgresError:
                raise
            except BaseException:
                self._reusable = False
                raise
        return conn

    def _statement(self, sql: str, params: Params) -> tuple[str, list[Any]]:
        native = native_sql(sql)
        args = bind_arguments(native, params)
        if self._write:
            return native.text, args
        names = tuple(self._context)
        text = _with_context(native.text, names, native.count + 1)
        return text, args + list(self._context.values())

    async def fetch_one(self, sql: LiteralString, params: Params = None) -> dict[str, Any] | None:
        row = await self._run("fetchrow", sql, params)
        return None if row is None else dict(row)

    async def fetch_all(self, sql: LiteralString, params: Params = None) -> list[dict[str, Any]]:
        rows = await self._run("fetch", sql, params)
        if not rows:
            return []
        # The names once per result: ~30 % cheaper than ``dict(row)`` per row, which looks
        # every name up again (a duplicate name keeps its last value either way). Not
        # ``strict``: every row of a result has its names, and the check cost a sixth more.
        names = tuple(rows[0].keys())
        return [dict(zip(names, row, strict=False)) for row in rows]

    async def fetch_column(self, sql: LiteralString, params: Params = None) -> list[Any]:
        """The first column of every row (no dict per row)."""
        return [row[0] for row in await self._run("fetch", sql, params)]

    async def fetch_value(self, sql: LiteralString, params: Params = None) -> Any:
        return await self._run("fetchval", sql, params)

    async def execute(self, sql: LiteralString, params: Params = None) -> None:
        """Run a statement whose result is not needed (an event append, a last-use stamp).

        Only a write transaction may modify data; in a read, this runs a ``select`` (for
        example of a SECURITY DEFINER function). Use ``RETURNING`` with ``fetch_one`` when
        the caller must know what the statement changed.
        """
        await self._run("execute" if self._write else "fetch", sql, params)

    async def _run(
        self, method: Literal["fetchrow", "fetch", "fetchval", "execute"], sql: str, params: Params
    ) -> Any:
        if not self._reusable:
            # A statement of this unit was interrupted (an answer timeout, a lost server):
            # its connection is unusable, so fail at once (503) instead of waiting again or
            # raising asyncpg's InterfaceError (a 500) for each later statement.
            raise asyncpg.ConnectionDoesNotExistError("the connection was lost in this unit")
        self.metrics.statements += 1
        text, args = self._statement(sql, params)
        conn = await self._connection()
        try:
            return await getattr(conn, method)(text, *args)
        except asyncpg.PostgresError:
            raise  # the server refused the statement; the connection itself is fine
        except BaseException:
            self._reusable = False  # interrupted mid-protocol: never hand it out again
            raise

    async def finish(self, *, commit: bool) -> None:
        """Commit (or roll back) a write and give the connection back; idempotent.

        A failed commit raises after the connection is released.
        """
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if self._reusable and self._write and conn.is_in_transaction():
                await conn.execute("commit" if commit else "rollback")
        except asyncpg.PostgresError:
            raise
        except BaseException:
            self._reusable = False
            raise
        finally:
            self._db.release(conn, reusable=self._reusable)


_IDS = frozenset({"app.user_id", "app.team_id"})


async def _init_connection(conn: Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, schema="pg_catalog", encoder=_encode_json, decoder=orjson.loads
        )


def _encode_json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _begin_with_context(user_id: UUID | None, team_id: UUID | None, timer_cap: int) -> str:
    """``BEGIN`` and the context in one simple-protocol round trip. Only UUIDs (checked)
    and an integer are interpolated, so there is nothing to quote.

    ``timer_cap`` (``TIME_ENTRY_MAX_SECONDS``) is for the database's own writes: a timer
    that a trigger stops when its user loses sight of its project ends at most that long
    after its start, as one stopped through the API (migration ``2026-12-07_timer_cap``).
    """
    values = ["" if value is None else str(value) for value in (user_id, team_id)]
    for value in values:
        if value and not _UUID_TEXT.match(value):
            raise ValueError("context ids must be UUIDs")
    return (
        f"begin; select set_config('app.user_id', '{values[0]}', true),"
        f" set_config('app.team_id', '{values[1]}', true),"
        f" set_config('app.time_entry_max_seconds', '{int(timer_cap)}', true)"
    )


class Database:
    """The app-role connection pool plus the units of work used by requests and jobs."""

    def __init__(
        self,
        app_url: str,
        settings: Settings,
        *,
        answer_timeout: float | None = None,
        plan_cache_mode: str | None = None,
    ) -> None:
        """``answer_timeout``: longest wait for the answer to any statement (the API sets
        ``Settings.database_answer_timeout``; jobs that may run long statements do not).
        Opening a connection always waits at most ``DATABASE_CONNECT_TIMEOUT_SECONDS``.

        ``plan_cache_mode``: PostgreSQL's setting for the connections (the API sets
        ``DATABASE_PLAN_CACHE_MODE``; None keeps the server's, which the worker's rollup
        functions are written for)."""
        self._arguments = connect_arguments(app_url)
        if plan_cache_mode is not None:
            self._arguments["server_settings"] = {"plan_cache_mode": plan_cache_mode}
        self._settings = settings
        self.timer_cap = settings.time_entry_max_seconds
        self._answer_timeout = answer_timeout
        self._pool = ConnectionPool(
            self._connect,
            max_size=settings.pool_max_size,
            acquire_timeout=settings.pool_timeout_seconds,
        )

    async def _connect(self) -> Connection:
        # Both timeouts bound a server that is up but unreachable (a black hole): without
        # them a request would wait 60 s to connect and forever for an answer. A timed-out
        # connection is dropped (Tx marks it not reusable) and the request answers 503.
        conn: Connection = await asyncpg.connect(
            **self._arguments,
            statement_cache_size=1024,
            timeout=self._settings.database_connect_timeout_seconds,
            command_timeout=self._answer_timeout,
        )
        await _init_connection(conn)
        return conn

    async def open(self, *, wait: bool = True) -> None:
        """Open ``POOL_MIN_SIZE`` connections; with ``wait=False`` a database that is down
        does not stop the process from starting (requests answer 503 until it is back)."""
        try:
            await self._pool.warm(self._settings.pool_min_size)
        except DATABASE_UNAVAILABLE:
            if wait:
                raise
            logger.warning("database unavailable at startup; requests answer 503 until it is up")

    async def close(self) -> None:
        await self._pool.close()

    async def acquire(self) -> Connection:
        """A connection; waits at most ``POOL_TIMEOUT_SECONDS`` (then :class:`PoolTimeout`)."""
        return await self._pool.acquire()

    def release(self, conn: Connection, *, reusable: bool = True) -> None:
        self._pool.release(conn, reusable=reusable)

    def unit(
        self,
        *,
        user_id: UUID | None = None,
        team_id: UUID | None = None,
        write: bool = True,
        metrics: RequestMetrics | None = None,
    ) -> Tx:
        """A unit of work with the context; its owner must call :meth:`Tx.finish`."""
        return Tx(self, metrics or RequestMetrics(), write=write, user_id=user_id, team_id=team_id)

    @asynccontextmanager
    async def transaction(
        self,
        *,
        user_id: UUID | None = None,
        team_id: UUID | None = None,
        write: bool = True,
        metrics: RequestMetrics | None = None,
    ) -> AsyncIterator[Tx]:
        """A unit of work for code outside a request (jobs, the seed, health checks): commits
        on success, rolls back on error (a :class:`TeamboardError` with ``keep_changes``
        commits what it wrote)."""
        tx = self.unit(user_id=user_id, team_id=team_id, write=write, metrics=metrics)
        try:
            yield tx
        except BaseException as exc:
            await tx.finish(commit=keeps_changes(exc))
            raise
        await tx.finish(commit=True)


def keeps_changes(exc: BaseException) -> bool:
    """Whether a failed unit of work still commits (see ``TeamboardError.keep_changes``)."""
    return isinstance(exc, TeamboardError) and exc.keep_changes
