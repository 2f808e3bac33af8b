"""Per-request DataLoaders: one SQL statement per level of a query, never one per row.

Each team the request reaches has its own loaders (a statement runs under one team's
context). Resolvers call ``load`` before awaiting anything, so every load of a level is in
the batch when it is dispatched: the pages of all the parents of a level (the tasks of
every project, the comments of every task...) come from one statement, and lookups by id
(a task's project, status, description) from one statement per kind. The loaders live as
long as the request: nothing is cached across requests or callers.

:class:`Loader` is the DataLoader pattern with one future per batch rather than one per
key: Strawberry's ``DataLoader`` gives every key a future and a done-callback, which on a
dashboard level of a few hundred keys cost more CPU than the level's SQL statement. As
there, a batch is dispatched two turns of the event loop after its first key (by then the
resolvers of a level have all asked), each key is fetched once per request, and a failed
batch fails every key of it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Generator, Hashable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from uuid import UUID

from teamboard.db import Tx
from teamboard.graphql import keyset, repository
from teamboard.graphql.lists import ListDef
from teamboard.graphql.pagination import Bounds, ConnectionValue, Page, Row

if TYPE_CHECKING:
    from teamboard.graphql.context import TeamScope

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Batch(Generic[K, V]):
    __slots__ = ("future", "keys", "values")

    def __init__(self) -> None:
        self.keys: dict[K, None] = {}  # an ordered set
        self.values: dict[K, V] = {}
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class Pending(Generic[K, V]):
    """The value of one key, once its batch is in (awaitable, any number of times)."""

    __slots__ = ("_batch", "_key")

    def __init__(self, batch: _Batch[K, V], key: K) -> None:
        self._batch, self._key = batch, key

    def __await__(self) -> Generator[Any, None, V]:
        yield from self._batch.future.__await__()
        return self._batch.values[self._key]


Start = Callable[[Coroutine[Any, Any, None]], object]

_CLOSED = "the request's loaders are closed"


class Loader(Generic[K, V]):
    """Collects keys and fetches them with one call of ``fetch`` (see the module docstring);
    ``fetch`` answers one value per key, in order. ``start`` runs a batch as a task of the
    request (``RequestScope.start``)."""

    def __init__(self, fetch: Callable[[list[K]], Awaitable[list[V]]], start: Start) -> None:
        # Both refer back to the request, whose scope owns this loader: None once forgotten.
        self._source: tuple[Callable[[list[K]], Awaitable[list[V]]], Start] | None = (fetch, start)
        self._batches: dict[K, _Batch[K, V]] = {}
        self._open: _Batch[K, V] | None = None

    def load(self, key: K) -> Pending[K, V]:
        if self._source is None:
            raise RuntimeError(_CLOSED)
        batch = self._batches.get(key)
        if batch is None:
            batch = self._open
            if batch is None:
                batch = self._open = _Batch()
                asyncio.get_running_loop().call_soon(self._source[1], self._dispatch(batch))
            batch.keys[key] = None
            self._batches[key] = batch
        return Pending(batch, key)

    def forget(self) -> None:
        """Let go of every value fetched, and of ``fetch`` and ``start``: the request is
        over, and any later :meth:`load` (or a batch still waiting) raises RuntimeError."""
        self._batches = {}
        self._open = None
        self._source = None

    async def _dispatch(self, batch: _Batch[K, V]) -> None:
        self._open = None
        keys = list(batch.keys)
        try:
            if self._source is None:
                raise RuntimeError(_CLOSED)
            values = await self._source[0](keys)
        except BaseException as exc:
            batch.future.set_exception(exc)
            batch.future.exception()  # retrieved: a key nobody awaits logs nothing
            if not isinstance(exc, Exception):
                raise
            return
        batch.values = dict(zip(keys, values, strict=True))
        batch.future.set_result(None)


#: A page of one parent's list: the list, the decoded page request, the parent's key.
PageKey = tuple[ListDef, Bounds, tuple[Any, ...]]
Lookup = Callable[[Tx, UUID, Sequence[UUID]], Awaitable[dict[Any, Row]]]


async def fetch_pages(
    team: TeamScope, keys: Sequence[PageKey]
) -> dict[tuple[ListDef, Bounds], dict[Hashable, list[Row]]]:
    """The pages of ``keys``: one statement per distinct list and page request."""
    groups: dict[tuple[ListDef, Bounds], dict[tuple[Any, ...], None]] = {}
    for definition, want, parent in keys:
        groups.setdefault((definition, want), {})[parent] = None
    fetched = {}
    request = team.request
    for (definition, want), parents in groups.items():
        params = {**definition.params, "team": team.team_id, "user": request.user_id}
        async with request.use(team.team_id) as tx:
            pages = await keyset.fetch_pages(tx, definition.query, params, want, list(parents))
        if definition.convert is not None:
            for rows in pages.values():
                for row in rows:
                    definition.convert(row)
        fetched[(definition, want)] = pages
    return fetched


class TeamLoaders:
    """The DataLoaders of one team's rows for one request."""

    def __init__(self, team: TeamScope) -> None:
        # Weak: the team's scope owns its loaders, and a strong reference back would make
        # a cycle of every request's scopes (see ``RequestScope.close``).
        self._team_ref = weakref.ref(team)
        start = team.request.start
        self.pages: Loader[PageKey, ConnectionValue] = Loader(self._pages, start)
        self.projects = self._lookup(repository.projects)
        self.tasks = self._lookup(repository.tasks)
        self.statuses = self._lookup(repository.statuses)
        self.descriptions: Loader[UUID, str] = Loader(self._descriptions, start)

    @property
    def _team(self) -> TeamScope:
        team = self._team_ref()
        assert team is not None, "the team's scope owns its loaders"
        return team

    def forget(self) -> None:
        """Let go of every row fetched (see ``RequestScope.close``)."""
        for loader in (self.pages, self.projects, self.tasks, self.statuses, self.descriptions):
            loader.forget()

    async def _pages(self, keys: list[PageKey]) -> list[ConnectionValue]:
        team = self._team
        fetched = await fetch_pages(team, keys)
        request = team.request
        codec = request.services.cursors
        connections = []
        team_id = team.team_id
        for definition, want, parent in keys:
            page = Page.from_fetch(list(fetched[(definition, want)][parent[0]]), want)
            where = partial(definition.where, request.user_id, team_id, parent[0])
            connections.append(ConnectionValue(codec, where, definition.keyset, page))
        return connections

    async def _descriptions(self, ids: list[UUID]) -> list[str]:
        team = self._team
        async with team.request.use(team.team_id) as tx:
            found = await repository.descriptions(tx, team.team_id, ids)
        return [found[i]["description"] if i in found else "" for i in ids]

    def _lookup(self, fetch: Lookup) -> Loader[UUID, Row | None]:
        team = self._team

        async def load(ids: list[UUID]) -> list[Row | None]:
            async with team.request.use(team.team_id) as tx:
                found = await fetch(tx, team.team_id, ids)
            return [found.get(i) for i in ids]

        return Loader(load, team.request.start)
