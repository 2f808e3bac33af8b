"""Hot read routes: team-scoped GETs dispatched without FastAPI's per-request machinery.

Measured on this app (bench/README.md), FastAPI's routing and dependency solving cost more
CPU per request than the database read of a tenant row. A GET endpoint whose parameters are
only UUID path parameters and the team context (``ctx: TeamCtx``) needs none of that: it is
declared with :meth:`ApiRouter.hot_get` (exactly like ``router.get``), and
:class:`HotReadRoute`, placed first in the application's router, recognises its path and
calls the same dependency functions (``authenticate``, ``team_tx``) and the same endpoint.

The FastAPI route stays registered: it documents the endpoint in OpenAPI, and it answers
whatever the hot route does not take (a malformed id, another method), so every response is
the one FastAPI would give. Errors raised on the hot path go through the same exception
handlers, because the hot route runs inside the router.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, get_args, get_origin
from uuid import UUID

from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import Receive, Scope, Send

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
    """One hot route: its path pattern, the endpoint, and how to call it."""

    def __init__(self, path: str, endpoint: Endpoint, context_parameter: str) -> None:
        self.path = path
        self.endpoint = endpoint
        self.names = _PARAM.findall(path)
        self.pattern = re.compile("^" + _PARAM.sub(r"([^/]+)", path) + "$")
        self.context_parameter = context_parameter
        self.passed = [name for name in self.names if name != "team_id"]
        unknown = set(inspect.signature(endpoint).parameters) - {context_parameter, *self.passed}
        if unknown or "team_id" not in self.names:
            raise TypeError(f"{endpoint.__qualname__} cannot be a hot read")


class HotReadRoute(BaseRoute):
    """Matches the hot GET routes first; everything else falls through to FastAPI."""

    def __init__(self, endpoints: Sequence[_HotEndpoint], context: Callable[..., Any]) -> None:
        self._endpoints = endpoints
        self._context = context
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
                    name: UUID(value) for name, value in zip(hot.names, found.groups(), strict=True)
                }
            except ValueError:
                return Match.NONE, {}  # FastAPI answers malformed ids (422)
            return Match.FULL, {"path_params": params, "hot_endpoint": hot, "route": hot}
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot: _HotEndpoint = scope["hot_endpoint"]
        params: dict[str, UUID] = scope["path_params"]
        request = Request(scope, receive)
        caller = await self._authenticate(request)
        ctx = await self._context(request, params["team_id"], caller)
        arguments: dict[str, Any] = {name: params[name] for name in hot.passed}
        arguments[hot.context_parameter] = ctx
        response = await hot.endpoint(**arguments)
        await response(scope, receive, send)


def install_hot_reads(
    app: FastAPI, prefix: str, routers: Sequence[APIRouter], context_type: Any
) -> None:
    """Put a :class:`HotReadRoute` first in ``app``'s router for the routers' hot GETs.

    ``context_type`` is the ``Annotated[..., Depends(...)]`` alias of the team context; an
    endpoint taking anything else than it and path ids is refused at startup.
    """
    endpoints: list[_HotEndpoint] = []
    for router in routers:
        for path, endpoint in getattr(router, "hot_reads", []):
            hints = typing.get_type_hints(endpoint, include_extras=True)
            context = [name for name, hint in hints.items() if hint == context_type]
            if len(context) != 1:
                raise TypeError(f"{endpoint.__qualname__} must take exactly one team context")
            endpoints.append(_HotEndpoint(prefix + path, endpoint, context[0]))
    if endpoints:
        app.router.routes.insert(0, HotReadRoute(endpoints, _dependency_of(context_type)))


def _dependency_of(alias_or_function: Any, parameter: str | None = None) -> Any:
    """The dependency function behind ``Annotated[T, Depends(f)]``, or behind the named
    parameter of a dependency function."""
    if parameter is not None:
        hint = typing.get_type_hints(alias_or_function, include_extras=True)[parameter]
        return _dependency_of(hint)
    if get_origin(alias_or_function) is not Annotated:
        raise TypeError(f"{alias_or_function!r} is not an Annotated dependency")
    return get_args(alias_or_function)[1].dependency
