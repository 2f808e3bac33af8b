"""``/graphql``: GraphQL over HTTP, one unit of work per request.

A request (``POST`` with a JSON body, or ``GET`` with ``query``/``variables``/
``operationName`` for queries) goes through, in order:

1. **Authentication**, as in REST (a bearer JWT, or a team API key ``tb_…``): 401 otherwise.
2. **Preparation** of every operation (a JSON array is a batch of at most
   ``GRAPHQL_MAX_BATCH``): parsing with the token limit, validation, depth, aliases,
   variables and cost (see ``document`` and ``limits``). Nothing has touched the database
   or a resolver yet; a refused request answers 400 with GraphQL errors whose
   ``extensions.code`` says why (``query_too_deep``, ``query_too_costly``...).
3. **The transaction**: a write for an operation with mutations (a ``GET`` may not
   mutate: 405), a read otherwise; an API key is resolved in it (it may act in its own team
   only, and not write when read-only).
4. **Rate limits**: the request spends ``ceil(cost / GRAPHQL_COST_PER_RATE_UNIT)`` units
   (at least 1; a refused request spends 1) from the caller's REST budget (429 with
   ``Retry-After`` when exhausted), and each team it reaches is checked against, and on
   success charged to, the team's budget (see ``context.TeamScope.admit``).
5. **Idempotency-Key** (header) on a mutating request: as in REST (``teamboard.idempotency``),
   the whole response is kept with the writes and replayed byte for byte.
6. **Execution**, then the response: 200 with ``data`` and, when fields failed, ``errors``
   (REST problem codes in ``extensions.code``). The unit-of-work middleware commits the
   writes of the fields that succeeded as the response starts. A field that failed because
   the database is unreachable fails the request: 503 problem+json ``database_unavailable``,
   as in REST.

GraphiQL is served on ``GET /graphql`` (a browser asking for HTML) in development only.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, Response
from strawberry.http.ides import get_graphql_ide_html

from teamboard import idempotency
from teamboard.auth.api_keys import resolve_api_key
from teamboard.config import Settings
from teamboard.db import Tx
from teamboard.deps import Caller, authenticate, get_services, open_tx, spend
from teamboard.errors import Forbidden, NotFound, TeamboardError, database_unavailable
from teamboard.graphql.context import RequestScope
from teamboard.graphql.document import Prepared, RequestError, request_error
from teamboard.graphql.engine import Engine
from teamboard.unit_of_work import unit_of_work

router = APIRouter(tags=["graphql"])
JSON = "application/json"
_WRITE_SCOPES = frozenset({"write", "admin"})


def engine_of(request: Request) -> Engine:
    """The application's engine (schema, document cache, limits), built by the lifespan."""
    engine = request.app.state.graphql_engine
    assert isinstance(engine, Engine)
    return engine


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def _refused(exc: TeamboardError, headers: dict[str, str]) -> Response:
    extensions = {"code": exc.code, "status": exc.status, **exc.extra}
    body = {"errors": [{"message": exc.detail, "extensions": extensions}]}
    return _json(body, exc.status, {**exc.headers, **headers})


def _database_lost(results: list[dict[str, Any]]) -> bool:
    """Whether a field failed because the database could not be reached."""
    return any(
        error.get("extensions", {}).get("code") == "database_unavailable"
        for result in results
        for error in result.get("errors") or ()
    )


def _debug_headers(settings: Settings, scope: RequestScope | None) -> dict[str, str]:
    """With ``EXPOSE_SQL_COUNT`` (tests, debugging): how many fields were resolved (0 for
    a refused request), and by which executor."""
    if not settings.expose_sql_count:
        return {}
    if scope is None:
        return {"x-graphql-resolved-fields": "0"}
    return {
        "x-graphql-resolved-fields": str(scope.counters.resolved_fields),
        "x-graphql-executor": scope.executor,
    }


def _operation(item: Any) -> tuple[str, str | None, dict[str, Any] | None]:
    """``query``, ``operationName`` and ``variables`` of one operation of the request."""
    if not isinstance(item, dict):
        raise request_error("invalid_request", "An operation must be a JSON object")
    query, name, variables = item.get("query"), item.get("operationName"), item.get("variables")
    if not isinstance(query, str) or not query:
        raise request_error("invalid_request", "query must be a non-empty string")
    if name is not None and not isinstance(name, str):
        raise request_error("invalid_request", "operationName must be a string")
    if variables is not None and not isinstance(variables, dict):
        raise request_error("invalid_request", "variables must be a JSON object")
    return query, name, variables


async def _payload(request: Request) -> tuple[list[Any], bool]:
    """The operations of the request, and whether it was a batch (a JSON array)."""
    if request.method == "GET":
        params = request.query_params
        try:
            variables = orjson.loads(params["variables"]) if "variables" in params else None
        except orjson.JSONDecodeError:
            raise request_error("invalid_request", "variables must be JSON") from None
        item = {
            "query": params.get("query"),
            "operationName": params.get("operationName"),
            "variables": variables,
        }
        return [item], False
    body = await request.body()  # bounded by REQUEST_MAX_BYTES (kit/body_limit.py): 413
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise request_error("invalid_request", "The body must be JSON") from None
    return (payload, True) if isinstance(payload, list) else ([payload], False)


async def _prepare(request: Request, engine: Engine) -> tuple[list[Prepared], bool]:
    items, batched = await _payload(request)
    limit = engine.settings.graphql_max_batch
    if not items or len(items) > limit:
        raise request_error(
            "batch_too_large",
            f"A batch holds 1 to {limit} operations; this one has {len(items)}",
            limit=limit,
        )
    return [engine.documents.prepare(*_operation(item)) for item in items], batched


async def _scope(
    request: Request, tx: Tx, caller: Caller, units: int, *, write: bool
) -> RequestScope:
    """Identify the caller (resolving an API key in ``tx``) and spend ``units``."""
    services = get_services(request)
    if caller.api_key is None:
        assert caller.user_id is not None
        identity = f"user:{caller.user_id}"
        await spend(request, identity, None, units)
        return RequestScope(request, services, tx, caller.user_id, identity, units)
    grant = await resolve_api_key(tx, caller.api_key, None)
    if write and not grant.scopes & _WRITE_SCOPES:
        raise Forbidden("This API key is read-only", code="insufficient_scope")
    identity = f"key:{grant.key_id}"
    await spend(request, identity, grant.team_id, units)
    scope = RequestScope(
        request, services, tx, grant.user_id, identity, units, grant.scopes, grant.team_id
    )
    scope.context_set(grant.team_id)
    return scope


def _wants_ide(request: Request) -> bool:
    return (
        request.method == "GET"
        and "query" not in request.query_params
        and "text/html" in request.headers.get("accept", "")
    )


# One route per method, each with its own OpenAPI operation id (one route for both gave
# both the same id, which OpenAPI forbids).
@router.get("/graphql", summary="GraphQL query (see schema.graphql)", response_class=Response)
@router.post("/graphql", summary="GraphQL (see schema.graphql)", response_class=Response)
async def graphql(request: Request) -> Response:
    engine = engine_of(request)
    settings = engine.settings
    if _wants_ide(request):
        if settings.environment != "development":
            raise NotFound()
        return HTMLResponse(get_graphql_ide_html())
    refusal: RequestError | None = None
    prepared: list[Prepared] = []
    batched = False
    scope: RequestScope | None = None
    try:
        caller = await authenticate(request)
        try:
            prepared, batched = await _prepare(request, engine)
        except RequestError as exc:
            refusal = exc
        write = any(operation.mutation for operation in prepared)
        if write and request.method == "GET":
            raise TeamboardError(
                "Mutations need POST",
                status=405,
                code="method_not_allowed",
                headers={"Allow": "POST"},
            )
        cost = sum(operation.cost for operation in prepared)
        units = 1 if refusal else max(1, math.ceil(cost / settings.graphql_cost_per_rate_unit))
        tx = open_tx(request, user_id=caller.user_id, write=write)
        scope = await _scope(request, tx, caller, units, write=write)
        if refusal is not None:
            return _json({"errors": refusal.errors}, 400, _debug_headers(settings, scope))
        if write:
            await idempotency.claim(request, tx, caller=scope.identity, team_id=None)
    except TeamboardError as exc:
        return _refused(exc, _debug_headers(settings, scope))
    results = []
    try:
        for operation in prepared:
            result = await engine.run(operation, scope)
            if scope.replayed:
                result["extensions"] = {"idempotentReplays": scope.replayed}
                scope.replayed = []
            results.append(result)
    finally:
        scope.close()
    if write and not scope.changed:
        # Every mutation failed (each rolled back to its savepoint) or was a replay: like a
        # failed REST request, nothing is kept under the header's key, so a retry runs again
        # instead of being answered the failure for a day.
        unit_of_work(request).before_commit = None
    if _database_lost(results):
        # The unit of work cannot commit anyway: answer like REST, so that clients and load
        # balancers see the outage (and retry) rather than a 200 with null fields.
        return database_unavailable(request.url.path)
    return _json(results if batched else results[0], headers=_debug_headers(settings, scope))
