"""Shared fixtures: one migrated database per run, the app on the app role, and actors.

Tests talk to the app through HTTP (httpx on the ASGI app) and inspect the database through
an owner connection. Each test makes its own teams and users, so tests never share rows.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest
from asgi_lifespan import LifespanManager
from psycopg.rows import dict_row

from teamboard.app import create_app
from teamboard.auth.passwords import PasswordHasher
from teamboard.auth.tokens import TokenService
from teamboard.config import Settings
from teamboard.db import Database
from teamboard.notifications.consumer import NotificationsConsumer
from teamboard.ops import database
from teamboard.ops.audit import check_visibility_sets
from teamboard.ops.database import DatabaseUrls
from teamboard.worker.consumers import ConsumerRunner, drain
from tests import profile  # noqa: F401  # loads the Hypothesis profile (short or long)
from tests.dbsetup import fresh_database, server_owner_url, test_settings

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    with server_owner_url() as url:
        yield url


@pytest.fixture(scope="session")
def db_urls(server_url: str) -> Iterator[DatabaseUrls]:
    """The run's database; once every test is done with it, every member's stored set of
    visible projects must still equal a recomputation, after all the writes the API flows
    made as the app role (``teamboard db audit``'s ``visibility_drift``)."""
    with fresh_database(server_url) as owner_url:
        yield database.prepare(test_settings(), owner_url)
        with psycopg.connect(owner_url) as conn, conn.cursor(row_factory=dict_row) as cur:
            drift = check_visibility_sets(cur)
        assert drift == [], f"visible-project sets drifted during the run: {drift}"


@pytest.fixture(scope="session")
def settings(db_urls: DatabaseUrls, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The app's settings; its data directory (attachments) is private to the run."""
    return test_settings(
        database_url=db_urls.owner,
        database_app_url=db_urls.app,
        database_worker_url=db_urls.worker,
        data_dir=tmp_path_factory.mktemp("data"),
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[Any]:
    application = create_app(settings)
    async with LifespanManager(application):
        yield application


@pytest.fixture(scope="session")
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture(scope="session")
async def worker_db(settings: Settings, db_urls: DatabaseUrls) -> AsyncIterator[Database]:
    """A pool on the worker role (reads every team's event log; see teamboard.worker)."""
    db = Database(db_urls.worker, settings)
    await db.open()
    yield db
    await db.close()


@pytest.fixture
def notify(app: Any, worker_db: Database) -> Callable[[], Awaitable[int]]:
    """Run the notifications consumer over every event final now (what the worker does);
    returns how many events it read."""

    async def run() -> int:
        consumer = NotificationsConsumer(app.state.services.db)
        return await drain(ConsumerRunner(worker_db, consumer, batch_size=1000), within=90)

    return run


@pytest.fixture(scope="session")
def owner(db_urls: DatabaseUrls) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """An owner (superuser) connection: sees everything, for setup and assertions."""
    with psycopg.connect(db_urls.owner, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture(scope="session")
def password_hash(settings: Settings) -> str:
    return PasswordHasher(settings)._hasher.hash(PASSWORD)


@dataclass
class Actor:
    """A user with a valid access token."""

    id: uuid.UUID
    email: str
    token: str
    headers: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def make_user(
    owner: psycopg.Connection[dict[str, Any]], settings: Settings, password_hash: str
) -> Callable[..., Actor]:
    """Create a user directly (fast) and mint an access token for them."""
    tokens = TokenService(settings)

    def make(name: str = "user") -> Actor:
        user_id = uuid.uuid4()
        email = f"{name}-{user_id.hex[:10]}@example.com"
        owner.execute(
            "insert into app_user (id, email, display_name, password_hash) values (%s, %s, %s, %s)",
            (user_id, email, name, password_hash),
        )
        token = tokens.issue_access(user_id, uuid.uuid4())
        return Actor(user_id, email, token, {"Authorization": f"Bearer {token}"})

    return make


@pytest.fixture
def make_team(
    client: httpx.AsyncClient, owner: psycopg.Connection[dict[str, Any]]
) -> Callable[..., Awaitable[uuid.UUID]]:
    """Create a team through the API as ``creator`` (its owner) and add (actor, role) pairs."""

    async def make(creator: Actor, members: Sequence[tuple[Actor, str]] = ()) -> uuid.UUID:
        response = await client.post(
            "/api/v1/teams", json={"name": "Team"}, headers=creator.headers
        )
        assert response.status_code == 201, response.text
        team_id = uuid.UUID(response.json()["id"])
        for actor, role in members:
            add_member(owner, team_id, actor, role)
        return team_id

    return make


def add_member(
    owner: psycopg.Connection[dict[str, Any]], team_id: uuid.UUID, actor: Actor, role: str
) -> None:
    owner.execute(
        "insert into team_member (team_id, user_id, role) values (%s, %s, %s)",
        (team_id, actor.id, role),
    )
