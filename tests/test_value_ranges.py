"""Instants and days beyond what Python and PostgreSQL hold are refused (422), never a 500.

The driver converts every instant to UTC: ``9999-12-31T23:00-05:00`` is a valid ISO 8601
instant whose UTC form is in the year 10000, and it used to reach the driver and fail there
(500 ``internal_error``). See ``teamboard.kit.instants``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import Request

from teamboard.app import create_app
from teamboard.config import Settings
from tests.gql import error_codes, gql
from tests.work import API, Board, board

__all__ = ["board"]
pytestmark = pytest.mark.asyncio

PAST_THE_END = "9999-12-31T23:00:00-05:00"  # 10000-01-01T04:00Z
BEFORE_THE_START = "0001-01-01T00:00:00+05:00"  # the year 0 in UTC


def invalid(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "validation_failed"
    assert [error["field"] for error in problem["errors"]] == [field]


@pytest.mark.parametrize(
    "due_at",
    # beyond Python's range in UTC; the two ends, which the driver sends as -infinity, infinity
    [PAST_THE_END, BEFORE_THE_START, "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"],
)
async def test_a_task_due_out_of_range_is_refused(board: Board, owner: Any, due_at: str) -> None:
    response = await board.client.post(
        board.tasks, json={"title": "Far", "due_at": due_at}, headers=board.alice.headers
    )
    invalid(response, "due_at")
    task = await board.create(title="Near")
    invalid(await board.patch(task["id"], {"due_at": due_at}), "due_at")
    count = owner.execute("select count(*) from task where team_id = %s", (board.team,))
    assert count.fetchone() == {"count": 1}


async def test_the_ends_of_the_range_are_accepted(board: Board) -> None:
    """``9999-12-31T23:59:59Z`` is a common "never"."""
    for due_at in ("9999-12-31T23:59:59Z", "9999-12-31T18:59:59-05:00", "0001-01-01T00:00:01Z"):
        task = await board.create(title="Edge", due_at=due_at)
        read = (await board.get(task["id"])).json()["due_at"]
        assert datetime.fromisoformat(read) == datetime.fromisoformat(due_at)
    listed = await board.client.get(
        board.tasks, params={"due_before": "9999-12-31T23:59:59Z"}, headers=board.alice.headers
    )
    assert listed.status_code == 200, listed.text


@pytest.mark.parametrize("name", ["due_before", "created_after", "updated_before"])
async def test_list_filters_out_of_range_are_refused(board: Board, name: str) -> None:
    for path in (board.tasks, f"{API}/teams/{board.team}/tasks"):
        response = await board.client.get(
            path, params={name: PAST_THE_END}, headers=board.alice.headers
        )
        invalid(response, name)


async def test_time_entries_out_of_range_are_refused(board: Board) -> None:
    task = await board.create(title="Timed")
    entries = board.task_path(task["id"], "/time-entries")
    manual = {"started_at": BEFORE_THE_START, "ended_at": "0001-01-02T01:00:00Z"}
    invalid(
        await board.client.post(entries, json=manual, headers=board.alice.headers), "started_at"
    )
    listed = await board.client.get(
        f"{API}/teams/{board.team}/time-entries",
        params={"to": PAST_THE_END},
        headers=board.alice.headers,
    )
    assert listed.status_code == 422, listed.text


async def test_an_api_key_expiring_out_of_range_is_refused(board: Board) -> None:
    response = await board.client.post(
        f"{API}/teams/{board.team}/api-keys",
        json={"name": "forever", "expires_at": "9999-12-31T23:59:59-01:00"},
        headers=board.alice.headers,
    )
    invalid(response, "expires_at")


async def test_analytics_days_out_of_range_are_refused(board: Board) -> None:
    response = await board.client.get(
        f"{API}/teams/{board.team}/analytics/tasks",
        params={"start": "9999-12-31", "end": "9999-12-31"},
        headers=board.alice.headers,
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_range"


async def test_graphql_refuses_an_instant_out_of_range(board: Board) -> None:
    task = await board.create(title="GraphQL")
    update = """mutation($team: UUID!, $id: UUID!, $due: DateTime!) {
      updateTask(teamId: $team, id: $id, input: {dueAt: $due}) { dueAt } }"""
    variables = {"team": str(board.team), "id": task["id"], "due": PAST_THE_END}
    response = await gql(board.client, board.alice, update, variables)
    assert response.status_code == 400, response.text
    assert error_codes(response) == ["invalid_variables"]
    assert (await board.get(task["id"])).json()["due_at"] is None


@pytest.fixture
async def probed(settings: Settings) -> Any:
    """The application with a route that sends its query's value to PostgreSQL as it is:
    what a field without a validator would do."""
    application = create_app(settings)

    @application.get("/probe/{kind}")
    async def probe(kind: str, request: Request) -> dict[str, Any]:
        values: dict[str, Any] = {
            "instant": datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))),
            "number": 10**30,
            "text": "\ud800",
            "division": 0,
            "wrong_type": "seven",
        }
        sql = {
            "instant": "select %s::timestamptz as v",
            "number": "select %s::numeric::integer as v",
            "text": "select %s::text as v",
            "division": "select 1 / %s::integer as v",
            "wrong_type": "select %s::integer as v",
        }[kind]
        database = request.app.state.services.db
        async with database.transaction(user_id=None, team_id=None, write=False) as tx:
            return {"v": str(await tx.fetch_value(sql, (values[kind],)))}

    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


@pytest.mark.parametrize(
    ("kind", "code"),
    [("instant", "value_out_of_range"), ("number", "value_out_of_range"), ("text", "invalid_text")],
)
async def test_a_value_the_database_cannot_hold_is_a_422(
    probed: httpx.AsyncClient, kind: str, code: str
) -> None:
    response = await probed.get(f"/probe/{kind}")
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code


@pytest.mark.parametrize("kind", ["division", "wrong_type"])
async def test_other_data_errors_stay_internal_errors(probed: httpx.AsyncClient, kind: str) -> None:
    """A division by zero, an argument of the wrong type: bugs of ours, not the client's."""
    response = await probed.get(f"/probe/{kind}")
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"


async def test_the_range_is_what_python_holds_in_utc() -> None:
    from teamboard.kit.instants import within_range

    last = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert within_range(last) == last
    with pytest.raises(ValueError, match="once in UTC"):
        within_range(datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))))
    with pytest.raises(ValueError, match="once in UTC"):
        within_range(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))))
    assert within_range(datetime(2026, 1, 1)) == datetime(2026, 1, 1)  # naive: read as UTC
