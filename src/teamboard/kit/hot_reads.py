"""Hot read routes: team-scoped GETs dispatched without FastAPI's per-request machinery.

Measured on this app (bench/README.md), FastAPI's routing and dependency solving cost more
CPU per request than the database read of a tenant row. A GET endpoint whose parameters are
only UUID path parameters and the team context (``ctx: TeamCtx``) needs none of that: it is
declared with :meth:`ApiRouter.hot_get` (exactly like ``router.get``), and
:class:`HotReadRoute`, placed first in the application's router, recognises its path and
calls the same dependency functions (``authenticate``, ``team_tx``) and the same endpoint.
A hot endpoint may also take the services and query models (``Annotated[Model, Query()]``,
validated as FastAPI does, with the same 422).

The FastAPI route stays registered: it documents the endpoint in OpenAPI, and it answers
whatever the hot route does not take (a malformed id, another method), so every response is
the one FastAPI would give. Errors raised on the hot path go through the same exception
handlers, because the hot route runs inside the router.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, get_args, get_origin
from urllib.parse import parse_qsl
from uuid import UUID

from fastapi import APIRouter, FastAPI, params
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import Receive, Scope, Send

from teamboard.kit.ids import parse_uuid

Endpoint = Callable[..., Awaitable[Response]]
_PARAM = re.compile(r"{(\w+)}")


class ApiRouter(APIRouter):
    """An ``APIRouter`` whose GET routes may be marked hot (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hot_reads: list[tuple[str, Endpoint]] = []

    def hot_get(self, path: str, **kwargs: Any) -> Callable[[Endpoint], Endpoint]:
        """``router.get(path, **kwargs)`` that also serves the route on the hot path."""

        def register(endpoint: Endpoint) -> Endpoint:
            self.get(path, **kwargs)(endpoint)
            self.hot_reads.append((self.prefix + path, endpoint))
            return endpoint

        return register


class _HotEndpoint:
    """One hot route: its path pattern, the endpoint, and where each argument comes from."""

    def __init__(self, path: str, endpoint: Endpoint, kinds: dict[str, Any]) -> None:
        self.path = path
        self.endpoint = endpoint
        self.names = _PARAM.findall(path)
        self.pattern = re.compile("^" + _PARAM.sub(r"([^/]+)", path) + "$")
        self.passed = [name for name in self.names if name != "team_id"]
        self.context = _only(kinds, _CONTEXT)
        self.services = [name for name, kind in kinds.items() if kind is _SERVICES]
        self.queries = {
            name: _QueryReader(kind) for name, kind in kinds.items() if isinstance(kind, type)
        }
        unknown = set(inspect.signature(endpoint).parameters) - set(kinds) - set(self.passed)
        if unknown or "team_id" not in self.names or self.context is None:
            raise TypeError(f"{endpoint.__qualname__} cannot be a hot read")


_CONTEXT, _SERVICES = object(), object()


def _only(kinds: dict[str, Any], kind: object) -> str | None:
    names = [name for name, value in kinds.items() if value is kind]
    if len(names) > 1:
        raise TypeError("a hot read takes one team context")
    return names[0] if names else None


class _QueryReader:
    """Validates a query string into ``model`` as FastAPI does for ``Annotated[Model,
    Query()]`` (list fields take every value, others the last; other names are ignored),
    with the same errors. Which fields are lists is worked out once, not per request."""

    def __init__(self, model: type[BaseModel]) -> None:
        self.model = model
        keys = {info.alias or name: info for name, info in model.model_fields.items()}
        self.lists = frozenset(key for key, info in keys.items() if _is_sequence(info.annotation))
        self.scalars = frozenset(keys) - self.lists

    def __call__(self, query_string: bytes) -> BaseModel:
        data: dict[str, Any] = {}
        if query_string:  # decoded as Starlette's ``request.query_params`` does
            for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
                if key in self.scalars:
                    data[key] = value
                elif key in self.lists:
                    data.setdefault(key, []).append(value)
        try:
            return self.model.model_validate(data)
        except ValidationError as exc:
            errors = [{**error, "loc": ("query", *error["loc"])} for error in exc.errors()]
            raise RequestValidationError(errors) from None


def _is_sequence(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:
        return _is_sequence(get_args(annotation)[0])
    if get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_is_sequence(arg) for arg in get_args(annotation))
    return get_origin(annotation) in (list, tuple, set, frozenset)


class HotReadRoute(BaseRoute):
    """Matches the hot GET routes first; everything else falls through to FastAPI."""

    def __init__(
        self,
        endpoints: Sequence[_HotEndpoint],
        context: Callable[..., Any],
        services: Callable[..., Any],
    ) -> None:
        self._endpoints = endpoints
        self._context = context
        self._services = services
        self._authenticate = _dependency_of(context, "caller")

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != "GET":
            return Match.NONE, {}
        path: str = scope["path"]
        for hot in self._endpoints:
            found = hot.pattern.match(path)
            if found is None:
                continue
            try:
                params = {
                    name: parse_uuid(value)
                    for name, value in zip(hot.names, found.groups(), strict=True)
                }
            except ValueError:
                return Match.NONE, {}  # FastAPI answers malformed ids (422)
            return Match.FULL, {"path_params": params, "hot_endpoint": hot, "route": hot}
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot: _HotEndpoint = scope["hot_endpoint"]
        params: dict[str, UUID] = scope["path_params"]
        request = Request(scope, receive)
        # In FastAPI's order: dependencies (authentication, the team context) first, then
        # the endpoint's own query parameters.
        caller = await self._authenticate(request)
        assert hot.context is not None
        arguments: dict[str, Any] = {
            hot.context: await self._context(request, params["team_id"], caller)
        }
        for name, read in hot.queries.items():
            arguments[name] = read(scope["query_string"])
        for name in hot.passed:
            arguments[name] = params[name]
        for name in hot.services:
            arguments[name] = await self._services(request)
        response = await hot.endpoint(**arguments)
        await response(scope, receive, send)


def install_hot_reads(
    app: FastAPI,
    prefix: str,
    routers: Sequence[APIRouter],
    context_type: Any,
    services_type: Any,
) -> None:
    """Put a :class:`HotReadRoute` first in ``app``'s router for the routers' hot GETs.

    ``context_type`` and ``services_type`` are the ``Annotated[..., Depends(...)]`` aliases
    of the team context and of the services. A hot endpoint takes exactly one team context,
    UUID path parameters, optionally the services and query models
    (``Annotated[Model, Query()]``); anything else is refused at startup.
    """
    endpoints: list[_HotEndpoint] = []
    for router in routers:
        for path, endpoint in getattr(router, "hot_reads", []):
            hints = typing.get_type_hints(endpoint, include_extras=True)
            hints.pop("return", None)
            kinds: dict[str, Any] = {}
            for name, hint in hints.items():
                if hint == context_type:
                    kinds[name] = _CONTEXT
                elif hint == services_type:
                    kinds[name] = _SERVICES
                elif _query_model_of(hint) is not None:
                    kinds[name] = _query_model_of(hint)
            if _only(kinds, _CONTEXT) is None:
                raise TypeError(f"{endpoint.__qualname__} must take exactly one team context")
            endpoints.append(_HotEndpoint(prefix + path, endpoint, kinds))
    if endpoints:
        route = HotReadRoute(endpoints, _dependency_of(context_type), _dependency_of(services_type))
        app.router.routes.insert(0, route)


def _query_model_of(hint: Any) -> type[BaseModel] | None:
    if get_origin(hint) is not Annotated:
        return None
    model, *metadata = get_args(hint)
    if (
        isinstance(model, type)
        and issubclass(model, BaseModel)
        and any(isinstance(m, params.Query) for m in metadata)
    ):
        return model
    return None


def _dependency_of(alias_or_function: Any, parameter: str | None = None) -> Any:
    """The dependency function behind ``Annotated[T, Depends(f)]``, or behind the named
    parameter of a dependency function."""
    if parameter is not None:
        hint = typing.get_type_hints(alias_or_function, include_extras=True)[parameter]
        return _dependency_of(hint)
    if get_origin(alias_or_function) is not Annotated:
        raise TypeError(f"{alias_or_function!r} is not an Annotated dependency")
    return get_args(alias_or_function)[1].dependency
