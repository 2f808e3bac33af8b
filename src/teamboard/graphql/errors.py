"""GraphQL errors with the REST problem codes.

A resolver raises the same :class:`~teamboard.errors.TeamboardError` a REST route would;
its error entry carries ``extensions.code`` (the REST ``code``), ``extensions.status`` (the
HTTP status REST would answer) and the problem's extra members (``current_etag``,
``errors``...). Database errors map as the REST handlers map them (a write refused by
Row Level Security is ``not_found``). Anything else is ``internal_error`` with no detail:
the exception is logged, never sent.
"""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError
from pydantic import ValidationError
from strawberry.utils.str_converters import to_camel_case

from teamboard import db
from teamboard.errors import (
    INVALID_TEXT_DETAIL,
    OUT_OF_RANGE_DETAIL,
    STATEMENT_TIMEOUT_DETAIL,
    TeamboardError,
    Unprocessable,
)

logger = logging.getLogger("teamboard.graphql")


def problem(error: BaseException | None) -> tuple[str, dict[str, Any]] | None:
    """The message and extensions of a known error; None for an unexpected one."""
    if isinstance(error, TeamboardError):
        return error.detail, {"code": error.code, "status": error.status, **error.extra}
    if isinstance(error, db.InsufficientPrivilege):
        return "Resource not found", {"code": "not_found", "status": 404}
    if isinstance(error, db.UniqueViolation):
        message = "A resource with these values already exists"
        return message, {"code": "already_exists", "status": 409}
    if isinstance(error, db.INVALID_TEXT) or (error is not None and db.is_unencodable_text(error)):
        return INVALID_TEXT_DETAIL, {"code": "invalid_text", "status": 422}
    if error is not None and db.is_out_of_range(error):
        return OUT_OF_RANGE_DETAIL, {"code": "value_out_of_range", "status": 422}
    if isinstance(error, db.QueryCanceled):  # statement_timeout, as REST answers it
        return STATEMENT_TIMEOUT_DETAIL, {"code": "statement_timeout", "status": 503}
    if isinstance(error, db.DATABASE_UNAVAILABLE):
        message = "The database is unavailable; retry later"
        return message, {"code": "database_unavailable", "status": 503}
    return None


def format_error(error: GraphQLError) -> dict[str, Any]:
    """One entry of a response's ``errors``."""
    formatted: dict[str, Any] = dict(error.formatted)
    original = error.original_error
    if original is None:  # a request error of the engine itself (variables, operation)
        formatted["extensions"] = {"code": "graphql_error", "status": 400}
        return formatted
    known = problem(original)
    if known is None:
        logger.error("unhandled error in a resolver", exc_info=original)
        known = ("Internal server error", {"code": "internal_error", "status": 500})
    formatted["message"], formatted["extensions"] = known
    return formatted


def invalid_input(exc: ValidationError, argument: str) -> Unprocessable:
    """A 422 ``validation_failed`` listing the fields (values are never echoed), like REST."""
    errors = [
        {
            "field": ".".join(to_camel_case(str(part)) for part in err.get("loc", ())) or argument,
            "location": argument,
            "message": err.get("msg", "invalid"),
            "type": err.get("type", "value_error"),
        }
        for err in exc.errors()
    ]
    return Unprocessable(
        "The request is invalid; see errors", code="validation_failed", extra={"errors": errors}
    )
