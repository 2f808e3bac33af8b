"""Domain errors and their one rendering: RFC 9457 ``application/problem+json``.

Services raise :class:`TeamboardError` subclasses; :func:`install_error_handlers` turns them,
framework errors (404/405/422) and unexpected exceptions into problem documents with a
stable ``code``. No stack trace, SQL or foreign existence ever reaches a response.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

PROBLEM_MEDIA_TYPE = "application/problem+json"
logger = logging.getLogger("teamboard.errors")
#: The detail of ``422 invalid_text`` (REST and GraphQL).
INVALID_TEXT_DETAIL = "The request holds text that cannot be stored (NUL characters)"
OUT_OF_RANGE_DETAIL = "The request holds a value out of the range that can be stored"
#: The detail of ``503 statement_timeout`` (REST and GraphQL).
STATEMENT_TIMEOUT_DETAIL = "The request took too long in the database and was cancelled; retry"


class TeamboardError(Exception):
    """An error with an HTTP status and a stable machine-readable ``code``.

    ``keep_changes`` asks the request transaction to commit what was written before the
    error was raised (for example the revocation of a refresh-token family on reuse).
    """

    status: int = 400
    code: str = "bad_request"
    keep_changes: bool = False

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.status = status or self.status
        self.code = code or self.code
        self.detail = detail or HTTPStatus(self.status).phrase
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        super().__init__(self.detail)


class BadRequest(TeamboardError):
    status, code = 400, "bad_request"


class Unauthorized(TeamboardError):
    status, code = 401, "unauthorized"

    def __init__(self, detail: str = "Authentication required", **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="teamboard"'})
        super().__init__(detail, **kwargs)


class Forbidden(TeamboardError):
    status, code = 403, "forbidden"


class NotFound(TeamboardError):
    """Missing, or belonging to a team the caller cannot see: the two are indistinguishable."""

    status, code = 404, "not_found"

    def __init__(self, detail: str = "Resource not found", **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)


class Conflict(TeamboardError):
    status, code = 409, "conflict"


class Unprocessable(TeamboardError):
    status, code = 422, "unprocessable"


RATE_LIMITED_DETAIL = "Too many requests"


class RateLimited(TeamboardError):
    status, code = 429, "rate_limited"

    def __init__(self, retry_after: int, detail: str = RATE_LIMITED_DETAIL, **kw: Any) -> None:
        headers = {"Retry-After": str(max(1, retry_after)), **kw.pop("headers", {})}
        super().__init__(detail, headers=headers, **kw)


class ServiceUnavailable(TeamboardError):
    status, code = 503, "service_unavailable"


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response:
    """Render one RFC 9457 problem document."""
    body: dict[str, Any] = {
        "type": f"https://teamboard.dev/problems/{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "code": code,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if extra:
        body.update(extra)
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


def database_unavailable(instance: str) -> Response:
    """``503 database_unavailable`` with ``Retry-After``: REST's and GraphQL's answer when
    the database cannot be reached."""
    return problem_response(
        503,
        "database_unavailable",
        "The database is unavailable; retry later",
        instance=instance,
        headers={"Retry-After": "1"},
    )


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Field errors without echoing input values (they may be secrets such as passwords).

    ``location`` is where the field came from (body, path, query, header) and ``field`` its
    name within that location, the same way for every location (``team_id``, not
    ``path.team_id``).
    """
    errors = []
    for err in exc.errors():
        location, *path = err.get("loc", ("body",)) or ("body",)
        errors.append(
            {
                "field": ".".join(str(part) for part in path) or str(location),
                "location": str(location),
                "message": err.get("msg", "invalid"),
                "type": err.get("type", "value_error"),
            }
        )
    return errors


_STATUS_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every error into problem+json."""
    # These import this module (they raise and render its errors; the access log through
    # teamboard.db), so import them here.
    from teamboard import db
    from teamboard.idempotency import IdempotentReplay
    from teamboard.logging import CLIENT_CLOSED_REQUEST
    from teamboard.unit_of_work import keep_changes

    async def on_domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TeamboardError)
        if exc.keep_changes:
            keep_changes(request)
        return problem_response(
            exc.status,
            exc.code,
            exc.detail,
            instance=request.url.path,
            headers=exc.headers,
            extra=exc.extra,
        )

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return problem_response(
            422,
            "validation_failed",
            "The request is invalid; see errors",
            instance=request.url.path,
            extra={"errors": _validation_errors(exc)},
        )

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}")
        detail = exc.detail if exc.status_code != 404 else "Resource not found"
        return problem_response(
            exc.status_code, code, str(detail), instance=request.url.path, headers=exc.headers
        )

    async def on_rls_violation(request: Request, exc: Exception) -> Response:
        # A write that Row Level Security refused: answer as if the target did not exist.
        logger.warning("row level security refused a write", extra={"path": request.url.path})
        return problem_response(404, "not_found", "Resource not found", instance=request.url.path)

    async def on_unique_violation(request: Request, exc: Exception) -> Response:
        return problem_response(
            409,
            "already_exists",
            "A resource with these values already exists",
            instance=request.url.path,
        )

    async def on_database_unavailable(request: Request, exc: Exception) -> Response:
        logger.error("database unavailable: %s", type(exc).__name__)
        return database_unavailable(request.url.path)

    async def on_statement_cancelled(request: Request, exc: Exception) -> Response:
        # statement_timeout (or an operator) cancelled a statement: the request could not be
        # served in time, which is the server's condition, not a bug (no 500, no SQL).
        logger.warning("statement cancelled", extra={"path": request.url.path})
        return problem_response(
            503,
            "statement_timeout",
            STATEMENT_TIMEOUT_DETAIL,
            instance=request.url.path,
            headers={"Retry-After": "1"},
        )

    async def on_invalid_text(request: Request, exc: Exception) -> Response:
        logger.warning("text the database cannot store", extra={"path": request.url.path})
        return problem_response(422, "invalid_text", INVALID_TEXT_DETAIL, instance=request.url.path)

    async def on_data_error(request: Request, exc: Exception) -> Response:
        if db.is_unencodable_text(exc):
            return await on_invalid_text(request, exc)
        if not db.is_out_of_range(exc):
            return await on_unexpected(request, exc)
        logger.warning("a value the database cannot hold", extra={"path": request.url.path})
        return problem_response(
            422, "value_out_of_range", OUT_OF_RANGE_DETAIL, instance=request.url.path
        )

    async def on_client_gone(request: Request, exc: Exception) -> Response:
        # The client closed its connection while its body was being read (under overload,
        # clients give up): nothing ran, and no answer can reach it. Not an error of ours:
        # the status only reaches the access log, as for a request the gate dropped.
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error", exc_info=exc)
        return problem_response(
            500, "internal_error", "Internal server error", instance=request.url.path
        )

    async def on_replay(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, IdempotentReplay)
        return exc.response()

    app.add_exception_handler(TeamboardError, on_domain_error)
    app.add_exception_handler(IdempotentReplay, on_replay)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(db.InsufficientPrivilege, on_rls_violation)
    app.add_exception_handler(db.UniqueViolation, on_unique_violation)
    app.add_exception_handler(db.QueryCanceled, on_statement_cancelled)
    for invalid in db.INVALID_TEXT:
        app.add_exception_handler(invalid, on_invalid_text)
    app.add_exception_handler(db.DataError, on_data_error)  # text errors: their own, above
    for unavailable in db.DATABASE_UNAVAILABLE:
        app.add_exception_handler(unavailable, on_database_unavailable)
    app.add_exception_handler(ClientDisconnect, on_client_gone)
    app.add_exception_handler(Exception, on_unexpected)
