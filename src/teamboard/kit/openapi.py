"""The published OpenAPI document, made to say what the API really answers.

FastAPI documents only the success response and a JSON ``422`` in its own validation
format, and knows nothing of our bearer authentication (a plain dependency, not a
``fastapi.security`` class). Every error here is an RFC 9457 problem document
(``teamboard.errors``), so :func:`install_openapi` rewrites the generated document once:

- a ``Problem`` schema, and ``application/problem+json`` for every error response;
- the ``bearer`` security scheme on every operation that authenticates its caller
  (found by walking the route's dependencies for :func:`teamboard.deps.authenticate`);
- the error statuses each kind of operation can answer: 400 and 429 on every API route,
  401 when authenticated (and on the credential routes), 403 under a team, 404 when an id
  is named (in the path or the body), 503 everywhere the database is reached, 409 for
  writes (idempotency key in flight, unique conflicts), 412 where ``If-Match`` is accepted.
  A route documents anything more specific itself with ``responses=``;
- ``/graphql``: its transport (GraphQL errors are GraphQL responses, not problem documents,
  and the document's own contract is ``schema.graphql``).

Schemathesis (``tests/reliability/test_schemathesis.py``) holds the API to this document.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

PROBLEM = "application/problem+json"
_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem document; ``code`` is stable, ``errors`` lists fields.",
    "required": ["type", "title", "status", "code", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "code": {"type": "string"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
    "additionalProperties": True,
}
_DESCRIPTIONS = {
    400: "Malformed request (bad cursor, If-Match, or a refused value)",
    401: "Missing, invalid or expired credentials",
    403: "The caller's role or API-key scope does not allow this",
    404: "Not found, or not visible to the caller (the two are indistinguishable)",
    409: "Conflict (an existing resource, or the same Idempotency-Key still in flight)",
    412: "If-Match names a stale version",
    422: "Validation failed (see ``errors``), or an Idempotency-Key reused with another body",
    429: "Rate limited (see Retry-After)",
    503: "The database is unavailable; retry later",
}
SAFE = frozenset({"get", "head", "options"})


def _dependencies(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _dependencies(sub)


def _statuses(path: str, method: str, authenticated: bool, op: dict[str, Any]) -> set[int]:
    params = {p.get("name", "").lower() for p in op.get("parameters", [])}
    path_ids = set(re.findall(r"{(\w+)", path))
    statuses = {422}
    if path.startswith("/api/"):
        statuses |= {400, 429}  # every API route is rate limited (per caller or per address)
    if path != "/health/live":  # liveness answers without the database
        statuses.add(503)
    if authenticated or path.startswith("/api/v1/auth/"):  # tokens, credentials
        statuses.add(401)
    if "team_id" in path_ids:
        statuses.add(403)
    if path_ids or "requestBody" in op:  # a named id, in the path or the body, may not exist
        statuses.add(404)
    if method not in SAFE:
        statuses.add(409)
    if "if-match" in params:
        statuses.add(412)
    return statuses


def describe(app: FastAPI, document: dict[str, Any]) -> dict[str, Any]:
    """Rewrite FastAPI's generated ``document`` in place (see the module docstring)."""
    from teamboard.deps import authenticate  # deps imports the kit: import it late

    components = document.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = _PROBLEM_SCHEMA
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An access token (POST /api/v1/auth/login) or a team API key (tb_…)",
    }
    problem = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        authenticated = authenticate in set(_dependencies(route.dependant))
        path = route.path_format or ""
        for method in route.methods or ():
            op = document["paths"].get(path, {}).get(method.lower())
            if op is None:
                continue
            if authenticated:
                op["security"] = [{"bearer": []}]
            responses = op.setdefault("responses", {})
            for status in _statuses(path, method.lower(), authenticated, op):
                documented = responses.setdefault(str(status), {})
                documented.setdefault("description", _DESCRIPTIONS[status])
                documented["content"] = problem
    if "/graphql" in document["paths"]:
        _describe_graphql(document["paths"]["/graphql"], problem)
    components["schemas"].pop("HTTPValidationError", None)
    components["schemas"].pop("ValidationError", None)
    return document


_GRAPHQL_RESULT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "data": {"type": ["object", "null"]},
        "errors": {"type": "array", "items": {"type": "object"}},
        "extensions": {"type": "object"},
    },
}
_GRAPHQL_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["query"],
    "properties": {
        "query": {"type": "string", "minLength": 1},
        "operationName": {"type": ["string", "null"]},
        "variables": {"type": ["object", "null"]},
    },
}


def _describe_graphql(path: dict[str, Any], problem: dict[str, Any]) -> None:
    """``/graphql``'s transport (see ``teamboard.graphql.endpoint``): a request or a batch
    in, GraphQL results out, refusals as GraphQL errors; only an outage is a problem."""
    one_or_batch = {"oneOf": [_GRAPHQL_RESULT, {"type": "array", "items": _GRAPHQL_RESULT}]}
    results = {"application/json": {"schema": one_or_batch}}
    refusals = {
        400: "Unparsable, invalid or over a limit (depth, cost, aliases, tokens, batch)",
        401: _DESCRIPTIONS[401],
        403: "An API key outside its team or scope",
        404: "An API key of another team",
        409: _DESCRIPTIONS[409],
        413: "The body is too large",
        422: "An Idempotency-Key reused with another body",
        429: _DESCRIPTIONS[429],
    }
    for method, op in path.items():
        op["operationId"] = f"graphql_{method}"
        op["security"] = [{"bearer": []}]
        op["responses"] = {
            "200": {
                "description": "GraphQL results (fields that failed are in errors)",
                "content": results,
            },
            **{str(s): {"description": d, "content": results} for s, d in refusals.items()},
            "503": {"description": _DESCRIPTIONS[503], "content": problem},
        }
        if method == "get":
            op["responses"]["405"] = {"description": "A mutation over GET", "content": results}
            op["parameters"] = [
                {
                    "name": "query",
                    "in": "query",
                    "required": True,
                    "schema": _GRAPHQL_REQUEST["properties"]["query"],
                },
                {"name": "operationName", "in": "query", "schema": {"type": "string"}},
                {
                    "name": "variables",
                    "in": "query",
                    "description": "A JSON object",
                    "schema": {"type": "string", "contentMediaType": "application/json"},
                },
            ]
        else:
            schema = {"oneOf": [_GRAPHQL_REQUEST, {"type": "array", "items": _GRAPHQL_REQUEST}]}
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schema}},
            }


def install_openapi(app: FastAPI) -> None:
    """Serve the described document at ``app.openapi_url`` (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=app.routes,
            )
            app.openapi_schema = describe(app, document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override
