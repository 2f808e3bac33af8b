"""Hot read routes answer exactly like FastAPI's own dispatch of the same endpoints."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI, Response

from teamboard.app import create_app
from teamboard.config import Settings
from teamboard.deps import ServicesDep, TeamCtx
from teamboard.kit.hot_reads import ApiRouter, HotReadRoute, install_hot_reads
from tests.test_auth import create_key

pytestmark = pytest.mark.asyncio
API = "/api/v1"


@pytest.fixture(scope="module")
async def plain_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The same app with the hot path off: FastAPI dispatches every route."""
    application = create_app(settings.model_copy(update={"hot_reads": False}))
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


def _comparable(response: httpx.Response) -> tuple[int, str | None, Any]:
    return response.status_code, response.headers.get("content-type"), response.json()


async def test_hot_route_is_first_and_selective(app: FastAPI) -> None:
    hot = app.router.routes[0]
    assert isinstance(hot, HotReadRoute)
    team = uuid.uuid4()

    def match(method: str, path: str) -> Any:
        return hot.matches({"type": "http", "method": method, "path": path})[0].name

    assert match("GET", f"{API}/teams/{team}") == "FULL"
    assert match("GET", f"{API}/teams/{team}/projects/{uuid.uuid4()}") == "FULL"
    assert match("PATCH", f"{API}/teams/{team}") == "NONE"
    assert match("GET", f"{API}/teams/not-a-uuid") == "NONE"
    assert match("GET", f"{API}/teams/{team}/members") == "NONE"
    assert match("GET", f"{API}/teams") == "NONE"
    assert match("GET", f"{API}/teams/{team}/tasks") == "FULL"
    assert match("GET", f"{API}/teams/{team}/tasks/by-key/ENG-1") == "NONE"


async def test_same_answers_with_and_without_the_hot_path(
    client: httpx.AsyncClient,
    plain_client: httpx.AsyncClient,
    make_user: Any,
    make_team: Any,
) -> None:
    owner, outsider, guest = make_user("hot-owner"), make_user("hot-out"), make_user("hot-guest")
    team = await make_team(owner, members=[(guest, "guest")])
    project = await client.post(
        f"{API}/teams/{team}/projects",
        json={"key": "HOT", "name": "Hot", "visibility": "private"},
        headers=owner.headers,
    )
    assert project.status_code == 201, project.text
    key = await create_key(client, owner, team, ["read"])
    key_headers = {"Authorization": f"Bearer {key['token']}"}
    project_path = f"{API}/teams/{team}/projects/{project.json()['id']}"
    task = await client.post(
        f"{project_path}/tasks", json={"title": "Hot task"}, headers=owner.headers
    )
    assert task.status_code == 201, task.text
    task_path = f"{API}/teams/{team}/tasks/{task.json()['id']}"
    cases: list[tuple[str, dict[str, str]]] = [
        (f"{API}/teams/{team}", owner.headers),
        (f"{API}/teams/{team}", outsider.headers),
        (f"{API}/teams/{team}", key_headers),
        (f"{API}/teams/{team}", {}),
        (f"{API}/teams/{team}", {"Authorization": "Bearer not-a-jwt"}),
        (f"{API}/teams/{uuid.uuid4()}", owner.headers),
        (f"{API}/teams/{str(team).upper()}", owner.headers),
        (f"{API}/teams/{team}x", owner.headers),
        (project_path, owner.headers),
        (project_path, guest.headers),  # a private project the guest is not on
        (project_path, outsider.headers),
        (task_path, owner.headers),
        (task_path, guest.headers),
        (f"{project_path}/tasks", owner.headers),
        (f"{project_path}/tasks?limit=1&sort=-created_at&priority=0&priority=1", owner.headers),
        (f"{project_path}/tasks?limit=0", owner.headers),
        (f"{project_path}/tasks?limit=1&limit=500", owner.headers),
        (f"{project_path}/tasks?status_category=nope&cursor=forged", owner.headers),
        (f"{project_path}/tasks?unknown=1", owner.headers),
        (f"{project_path}/tasks?%6Cimit=1&q=Nope&q=Hot+t%61sk&priority=", owner.headers),
        (f"{project_path}/tasks?%6Cimit=1&q=Nope&q=Hot+t%61sk&unknown", owner.headers),
        (f"{project_path}/tasks?priority=0&&priority=0&sort=number", owner.headers),
        (f"{project_path}/tasks?limit=0", {}),
        (f"{API}/teams/{team}/tasks?q=Hot", owner.headers),
        (f"{API}/teams/{team}/tasks?cursor=forged", owner.headers),
        (f"{API}/teams/{team}/tasks", outsider.headers),
    ]
    statuses = []
    for path, headers in cases:
        hot, plain = (
            await client.get(path, headers=headers),
            await plain_client.get(path, headers=headers),
        )
        assert _comparable(hot) == _comparable(plain), path
        assert hot.headers.get("x-sql-statements") == plain.headers.get("x-sql-statements")
        statuses.append(hot.status_code)
    assert statuses[:11] == [200, 404, 200, 401, 401, 404, 200, 422, 200, 404, 404]
    assert statuses[11:19] == [200, 404, 200, 200, 422, 422, 422, 200]
    assert statuses[19:] == [422, 200, 200, 401, 200, 400, 404]
    decoded = await client.get(cases[20][0], headers=owner.headers)  # key, "+", last value
    assert [item["title"] for item in decoded.json()["items"]] == ["Hot task"]


async def test_hot_get_refuses_endpoints_that_need_fastapi() -> None:
    router = ApiRouter(prefix="/teams/{team_id}/things")

    @router.hot_get("/{thing_id}")
    async def with_query(thing_id: uuid.UUID, ctx: TeamCtx, verbose: bool = False) -> Response:
        raise AssertionError("never called")

    with pytest.raises(TypeError, match="cannot be a hot read"):
        install_hot_reads(FastAPI(), API, [router], TeamCtx, ServicesDep)


async def test_hot_get_needs_the_team_context() -> None:
    router = ApiRouter(prefix="/teams/{team_id}/things")

    @router.hot_get("/{thing_id}")
    async def without_context(thing_id: uuid.UUID, team_id: uuid.UUID) -> Response:
        raise AssertionError("never called")

    with pytest.raises(TypeError, match="exactly one team context"):
        install_hot_reads(FastAPI(), API, [router], TeamCtx, ServicesDep)
