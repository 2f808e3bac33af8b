"""Per-request DataLoaders: one SQL statement per level of a query, never one per row.

Each team the request reaches has its own loaders (a statement runs under one team's
context). Resolvers call ``load`` before awaiting anything, so every load of a level is in
the batch when it is dispatched: the pages of all the parents of a level (the tasks of
every project, the comments of every task...) come from one statement, and lookups by id
(a task's project, status, description) from one statement per kind. The loaders live as
long as the request: nothing is cached across requests or callers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from strawberry.dataloader import DataLoader

from teamboard.db import Tx
from teamboard.graphql import keyset, repository
from teamboard.graphql.lists import ListDef
from teamboard.graphql.pagination import Bounds, ConnectionValue, Page, Row

if TYPE_CHECKING:
    from teamboard.graphql.context import TeamScope

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
        self._team = team
        self.pages: DataLoader[PageKey, ConnectionValue] = DataLoader(self._pages)
        self.projects = self._lookup(repository.projects)
        self.tasks = self._lookup(repository.tasks)
        self.statuses = self._lookup(repository.statuses)
        self.descriptions: DataLoader[UUID, str] = DataLoader(self._descriptions)

    async def _pages(self, keys: list[PageKey]) -> list[ConnectionValue]:
        fetched = await fetch_pages(self._team, keys)
        request = self._team.request
        codec = request.services.cursors
        connections = []
        for definition, want, parent in keys:
            page = Page.from_fetch(list(fetched[(definition, want)][parent[0]]), want)
            where = definition.where(request.user_id, self._team.team_id, parent[0])
            connections.append(ConnectionValue(codec, where, definition.keyset, page))
        return connections

    async def _descriptions(self, ids: list[UUID]) -> list[str]:
        team = self._team
        async with team.request.use(team.team_id) as tx:
            found = await repository.descriptions(tx, team.team_id, ids)
        return [found[i]["description"] if i in found else "" for i in ids]

    def _lookup(self, fetch: Lookup) -> DataLoader[UUID, Row | None]:
        team = self._team

        async def load(ids: list[UUID]) -> list[Row | None]:
            async with team.request.use(team.team_id) as tx:
                found = await fetch(tx, team.team_id, ids)
            return [found.get(i) for i in ids]

        return DataLoader(load)
