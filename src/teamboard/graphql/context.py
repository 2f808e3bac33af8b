"""The unit of work of a GraphQL request, and the teams it reaches.

One request is one unit of work, as in REST: one :class:`~teamboard.db.Tx` registered with
the request's unit of work, a read for queries (no transaction: each statement carries its
context) and a write for mutations (one transaction, committed by the unit-of-work
middleware when the response starts). Every SQL statement of the request runs through
:meth:`RequestScope.use`, which serializes them (resolvers run concurrently; a connection
runs one statement at a time) and points Row Level Security at the team the statement is
for. A query spanning several teams therefore runs each team's statements with that team's
context, one team at a time: RLS decides for every statement, exactly as in REST. For a
read, switching teams is free (the context travels with each statement); for a write it is
one ``set_config`` round trip, made before the mutation's savepoint so that a rolled-back
mutation cannot take it along.

An API key acts in its own team only (REST answers 404 for any other; here the other team
is simply not found).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from starlette.requests import Request
from strawberry import Info

from teamboard.db import Tx
from teamboard.deps import Services, TeamContext, spend
from teamboard.errors import NotFound, TeamboardError
from teamboard.graphql.loaders import TeamLoaders

_NO_CONTEXT = object()


@dataclass
class Counters:
    """What the executor counted (sent as ``X-GraphQL-Fields`` when SQL counts are)."""

    resolved_fields: int = 0


class TeamScope:
    """One team reached by the request: the team context the services take, and the
    DataLoaders of its rows."""

    def __init__(self, request: RequestScope, ctx: TeamContext) -> None:
        self.request = request
        self.ctx = ctx
        self.admitted = False
        self._refusal: TeamboardError | None = None
        self.loaders: TeamLoaders = TeamLoaders(self)

    @property
    def team_id(self) -> UUID:
        return self.ctx.team_id

    async def admit(self) -> None:
        """Check (and, on success, charge) the team's rate-limit budget, once the caller is
        known to be a member (nobody spends a team's budget by naming it).

        A refusal is kept: every later access to the team in this request is refused the
        same way (a second field naming the team, or the engine answering again after the
        compiled path), and nothing of the team is read once its budget is spent."""
        if self.admitted:
            return
        if self._refusal is not None:
            raise self._refusal
        try:
            await spend(self.request.http, None, self.team_id, self.request.charge)
        except TeamboardError as refusal:
            self._refusal = refusal
            raise
        self.admitted = True

    async def member(self) -> bool:
        """Whether the caller is a member (then the team is admitted); one statement, the
        first time only."""
        async with self.request.use(self.team_id):
            role = await self.ctx.role()
        if role is None:
            return False
        await self.admit()
        return True


@dataclass
class RequestScope:
    """See the module docstring. ``charge`` is what the request spends from each budget;
    ``key_team`` is the team of an API key (the only one it may reach)."""

    http: Request
    services: Services
    tx: Tx
    user_id: UUID
    identity: str
    charge: int
    scopes: frozenset[str] | None = None
    key_team: UUID | None = None
    counters: Counters = field(default_factory=Counters)
    replayed: list[str] = field(default_factory=list)
    changed: bool = False  # a mutation did its work (not a replay, not a failure)
    executor: str = ""
    closed: bool = False
    _teams: dict[UUID, TeamScope] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _context: object = _NO_CONTEXT

    def team(self, team_id: UUID) -> TeamScope:
        """The scope of a team (no SQL); an API key's other teams are not found."""
        scope = self._teams.get(team_id)
        if scope is None:
            if self.closed:
                raise RuntimeError("the request's unit of work is over")
            if self.key_team is not None and team_id != self.key_team:
                raise NotFound()
            ctx = TeamContext(self.tx, team_id, self.user_id, self.scopes)
            scope = self._teams[team_id] = TeamScope(self, ctx)
            scope.admitted = team_id == self.key_team  # spent before execution
        return scope

    @asynccontextmanager
    async def use(self, team_id: UUID | None) -> AsyncIterator[Tx]:
        """The transaction, for this caller's statements in ``team_id`` (None: no team),
        and nobody else's until the block ends. Never wait for a DataLoader inside."""
        if self.closed:  # work left behind by a failed field: the transaction has ended
            raise RuntimeError("the request's unit of work is over")
        async with self._lock:
            if self._context != team_id:
                await self.tx.set_context(user_id=self.user_id, team_id=team_id)
                self._context = team_id
            yield self.tx

    def start(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``work`` as a task of this request (a DataLoader batch, a resolver)."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def settle(self) -> None:
        """Wait for the request's tasks that nobody waits for any more (a batch of a field
        that failed elsewhere), so that no statement runs once the transaction has ended."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def close(self) -> None:
        """End the request's work: no statement runs any more, and every row it loaded is
        let go at once.

        The scopes and their loaders refer to each other (a team's loaders fetch for their
        team, in this request); left as they are, all the rows of a request would wait for
        the cyclic garbage collector instead of being freed when the request ends (measured
        on the dashboard of bench.harness: about 2 ms of collections per request).
        """
        self.closed = True
        for team in self._teams.values():
            team.loaders.forget()
        self._teams.clear()

    def context_set(self, team_id: UUID | None) -> None:
        """Record a context the transaction already has (set by API-key resolution)."""
        self._context = team_id


#: What resolvers receive as ``info`` (the compiled path passes the same ``context``).
Ctx = Info[RequestScope, None]
