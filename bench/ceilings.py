"""The two ceilings teamboard is measured against, served by uvicorn exactly like teamboard.

``hello`` (H)
    A bare ASGI callable, no framework, answering every HTTP request with a small JSON body.
    Nothing served by Python on this machine can be faster: it is the cost of uvicorn itself.

``read_one`` (R)
    A minimal Starlette app: ``GET /row/{id}`` reads one row of ``bench_row`` by uuid primary
    key through an asyncpg pool and returns it as JSON. No auth, no RLS, no transaction, and no
    pool reset on release. The database comes from ``BENCH_DATABASE_URL``; the pool size (per
    worker) from ``BENCH_POOL_SIZE`` (default 16, teamboard's default ``POOL_MAX_SIZE``).

Run one with ``uvicorn bench.ceilings:hello`` or ``uvicorn bench.ceilings:read_one``; the
harness (``python -m bench.harness``) does that for you.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ROW_TABLE = "bench_row"
ROW_QUERY = f"select id, name from {ROW_TABLE} where id = $1"
DEFAULT_POOL_SIZE = 16

# --------------------------------------------------------------------------------------------
# H: bare ASGI hello world
# --------------------------------------------------------------------------------------------

HELLO_BODY = b'{"status":"ok"}'
HELLO_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(HELLO_BODY)).encode()),
]


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    """The smallest useful ASGI app: the same body as teamboard's ``/health/live``."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": HELLO_HEADERS})
        await send({"type": "http.response.body", "body": HELLO_BODY})
    elif scope["type"] == "lifespan":
        while True:  # bounded by the server: it sends startup, then shutdown, then stops
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


# --------------------------------------------------------------------------------------------
# R: Starlette + one asyncpg single-row read
# --------------------------------------------------------------------------------------------


async def _no_reset(connection: asyncpg.Connection) -> None:
    """Skip asyncpg's default reset query on release: the ceiling sets no session state."""


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    dsn = os.environ.get("BENCH_DATABASE_URL")
    if not dsn:
        raise RuntimeError("BENCH_DATABASE_URL is not set")
    size = int(os.environ.get("BENCH_POOL_SIZE", DEFAULT_POOL_SIZE))
    pool = await asyncpg.create_pool(dsn, min_size=size, max_size=size, reset=_no_reset)
    app.state.pool = pool
    try:
        yield
    finally:
        await pool.close()


async def _get_row(request: Request) -> Response:
    row_id: uuid.UUID = request.path_params["id"]
    pool: asyncpg.Pool = request.app.state.pool
    row = await pool.fetchrow(ROW_QUERY, row_id)
    if row is None:
        return JSONResponse({"detail": "not found"}, status_code=404)
    return JSONResponse({"id": str(row["id"]), "name": row["name"]})


read_one = Starlette(routes=[Route("/row/{id:uuid}", _get_row)], lifespan=_lifespan)
