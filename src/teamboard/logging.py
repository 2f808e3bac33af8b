"""JSON structured logs and the per-request middleware (request id, timing, SQL count)."""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from teamboard.db import RequestMetrics
from teamboard.kit.ids import new_id_hex

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
access_log = logging.getLogger("teamboard.access")
LIVENESS_PATH = "/health/live"
_LIVE_BODY = b'{"status":"ok"}'
#: Logged for a request that ended without a response and without an error: its client
#: went away first (nginx's code; the admission gate drops such requests).
CLIENT_CLOSED_REQUEST = 499
#: The scope's state key where the admission gate leaves a waiting request's arrival time
#: (``time.perf_counter()``), so that the logged duration counts the wait.
ARRIVED = "arrived"
_LIVE_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_LIVE_BODY)).encode()),
    (b"cache-control", b"no-store"),
]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class RequestMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware overhead): assigns a request id, counts SQL
    statements, logs one JSON line per request and echoes ``X-Request-ID``."""

    def __init__(self, app: ASGIApp, *, expose_sql_count: bool) -> None:
        self.app = app
        self.expose_sql_count = expose_sql_count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == LIVENESS_PATH and scope["method"] in ("GET", "HEAD"):
            # Liveness answers from the edge: it proves the process and its event loop
            # respond, and must not depend on routing, dependencies or the database.
            await send({"type": "http.response.start", "status": 200, "headers": _LIVE_HEADERS})
            await send({"type": "http.response.body", "body": _LIVE_BODY})
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else new_id_hex()
        metrics = RequestMetrics()
        state = scope.setdefault("state", {})
        state["metrics"] = metrics
        started = state.get(ARRIVED) or time.perf_counter()
        status = 0  # until the response starts

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                if self.expose_sql_count:
                    headers.append((b"x-sql-statements", str(metrics.statements).encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            status = status or 500
            raise
        finally:
            if access_log.isEnabledFor(logging.INFO):
                route = scope.get("route")
                access_log.info(
                    "request",
                    extra={
                        "request_id": request_id,
                        "method": scope["method"],
                        "path": getattr(route, "path", scope["path"]),
                        "status": status or CLIENT_CLOSED_REQUEST,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                        "sql_statements": metrics.statements,
                    },
                )
