"""Requests free what they allocate as they end (reference counting) and leave nothing to
the cyclic garbage collector.

A reference cycle through a request's objects keeps all of them, rows included, until a
collection finds it. On bench.harness's GraphQL dashboard every row of every request waited
for the collector (the team scopes and their DataLoaders referred to each other), about 2 ms
of collections per request, a fifth of its CPU; every REST request left its unit of work in
a cycle (an after-success hook closed over it). bench/README.md has the figures.
"""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from teamboard.graphql.loaders import Loader
from tests.conftest import Actor
from tests.gql import DASHBOARD, build_board, data, executor, gql
from tests.work import make_board

pytestmark = pytest.mark.asyncio
MakeUser = Callable[..., Actor]
MakeTeam = Callable[..., Awaitable[uuid.UUID]]


@contextmanager
def left_in_cycles() -> Iterator[set[str]]:
    """The teamboard types of the objects that the block left in reference cycles."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # collections keep what they find, in gc.garbage
    found: set[str] = set()
    try:
        yield found
    finally:
        gc.collect()
        gc.set_debug(0)
        kinds = {type(o) for o in gc.garbage}
        found |= {f"{k.__module__}.{k.__qualname__}" for k in kinds if "teamboard" in k.__module__}
        gc.garbage.clear()


async def test_rest_requests_leave_no_cycles(
    client: httpx.AsyncClient, make_user: MakeUser, make_team: MakeTeam
) -> None:
    board = await make_board(client, make_user, make_team)
    task = (await board.create(title="no cycles"))["id"]
    idempotent = {**board.alice.headers, "Idempotency-Key": f"cycles-{uuid.uuid4()}"}
    with left_in_cycles() as found:
        for _ in range(3):
            assert (await board.get(task)).status_code == 200
            assert (await board.list())["items"]
            assert (await board.get(str(uuid.uuid4()))).status_code == 404
            written = await board.client.post(board.tasks, json={"title": "t"}, headers=idempotent)
            assert written.status_code == 201, written.text
    assert found == set()


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "engine"])
async def test_the_graphql_dashboard_leaves_no_cycles(
    app: Any,
    client: httpx.AsyncClient,
    make_user: MakeUser,
    make_team: MakeTeam,
    compiled: bool,
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    team = await make_team(alice, members=[(bob, "member")])
    await build_board(app, alice, team, projects_count=3, tasks_count=4, assignees=[bob.id])
    variables = {"team": str(team), "projects": 3, "tasks": 4}
    with executor(app, compiled=compiled), left_in_cycles() as found:
        for _ in range(3):
            response = await gql(client, alice, DASHBOARD, variables)
            assert len(data(response)["team"]["projects"]["nodes"]) == 3
    if compiled:
        assert found == set()
    else:
        # graphql-core's execution context is a cycle of its own, which holds the request's
        # scope; the scope has let go of its loaders, and with them of every row.
        rows = ("teamboard.graphql.loaders.", "teamboard.graphql.pagination.")
        assert {kind for kind in found if kind.startswith(rows)} == set(), found


async def test_a_forgotten_loader_refuses_loads_and_fails_its_waiting_batch() -> None:
    """Once the request is over nothing may wait forever on a loader, nor bring one back."""

    async def double(keys: list[int]) -> list[int]:
        return [key * 2 for key in keys]

    loader: Loader[int, int] = Loader(double, asyncio.ensure_future)
    assert await loader.load(1) == 2
    waiting = loader.load(2)  # its batch is dispatched on a later turn of the loop
    loader.forget()
    with pytest.raises(RuntimeError, match="closed"):
        await waiting
    with pytest.raises(RuntimeError, match="closed"):
        loader.load(3)
