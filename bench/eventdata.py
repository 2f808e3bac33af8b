"""Shared by the event-log benchmarks: a scratch teamboard database and seeded teams.

``scratch_teamboard`` creates a scratch database (``bench.harness.scratch_database``) and
scratch app and worker roles on ``DATABASE_URL``'s server, migrates it, and drops all of it
on the way out (also on error or Ctrl-C). ``seed`` fills teams, members, a project, tasks
and one comment per task with set-based SQL on the owner connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psycopg

from bench.harness import (
    ADMIN_CONNECT,
    SCRATCH_PREFIX,
    ServerProcess,
    drop_role,
    free_port,
    scratch_database,
)
from teamboard.config import Settings
from teamboard.ops import database
from teamboard.ops.database import DatabaseUrls

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True)
class Scratch:
    settings: Settings  # with the app and worker URLs of the scratch database
    urls: DatabaseUrls
    app_role: str
    secret_key: str


@contextlib.contextmanager
def scratch_teamboard(admin_url: str, **overrides: object) -> Iterator[Scratch]:
    role = f"{SCRATCH_PREFIX}{secrets.token_hex(4)}_app"
    secret = secrets.token_urlsafe(48)
    with contextlib.ExitStack() as stack:
        stack.callback(drop_role, admin_url, role)
        stack.callback(drop_role, admin_url, f"{role}_worker")
        owner_url = stack.enter_context(scratch_database(admin_url))
        base = Settings(
            database_url=owner_url,
            database_app_role=role,
            secret_key=secret,
            log_level="WARNING",
            _env_file=None,  # type: ignore[call-arg]
        )
        urls = database.prepare(base, owner_url)
        settings = base.model_copy(
            update={
                "database_app_url": urls.app,
                "database_worker_url": urls.worker,
                **overrides,
            }
        )
        yield Scratch(settings, urls, role, secret)


@contextlib.contextmanager
def serving(env: dict[str, str], workers: int, *, worker: bool = False) -> Iterator[int]:
    """``teamboard serve --workers N`` (and ``teamboard worker`` if asked) on a free
    127.0.0.1 port, ready; yields the port. Their logs' tails are printed if the block
    fails; both are stopped by their own pids on the way out."""
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        argv = ["teamboard", "serve", "--port", str(port), "--workers", str(workers)]
        servers = [ServerProcess("teamboard", argv, env, Path(tmp), Path(tmp) / "server.log")]
        if worker:
            log = Path(tmp) / "worker.log"
            servers.append(ServerProcess("worker", ["teamboard", "worker"], env, Path(tmp), log))
        try:
            servers[0].wait_ready(port, "/health/ready", 120)
            yield port
        except Exception:
            for server in servers:
                print(server.log_tail(), file=sys.stderr)
            raise
        finally:
            for server in reversed(servers):
                server.stop()


@dataclass(frozen=True)
class Team:
    id: uuid.UUID
    members: list[uuid.UUID]
    project: uuid.UUID
    tasks: list[uuid.UUID]
    comments: list[uuid.UUID]  # one per task, by the first member


def seed(owner_url: str, teams: int, members: int, tasks: int = 0) -> list[Team]:
    """``teams`` teams of ``members`` members each (the first is the owner), one team-wide
    project with ``tasks`` tasks, each with one comment."""
    seeded = []
    with psycopg.connect(owner_url, **ADMIN_CONNECT) as conn:
        for t in range(teams):
            team = uuid.uuid4()
            users = [uuid.uuid4() for _ in range(members)]
            conn.execute(
                "insert into app_user (id, email, display_name, password_hash)"
                " select u, 'u' || replace(u::text, '-', '') || '@bench.teamboard.dev',"
                " 'Bench ' || n, 'x' from unnest(%s::uuid[]) with ordinality as x(u, n)",
                (users,),
            )
            conn.execute(
                "insert into team (id, name, created_by) values (%s, %s, %s)",
                (team, f"Bench {t}", users[0]),
            )
            conn.execute(
                "insert into team_member (team_id, user_id, role)"
                " select %s, u, case when n = 1 then 'owner' else 'member' end"
                " from unnest(%s::uuid[]) with ordinality as x(u, n)",
                (team, users),
            )
            project, status = uuid.uuid4(), uuid.uuid4()
            conn.execute(
                "insert into project (team_id, id, key, name, created_by, next_task_number)"
                " values (%s, %s, 'BEN', 'Bench', %s, %s)",
                (team, project, users[0], tasks + 1),
            )
            conn.execute(
                "insert into status (team_id, id, project_id, name, category, position)"
                " values (%s, %s, %s, 'Todo', 'unstarted', 1)",
                (team, status, project),
            )
            task_ids = [uuid.uuid4() for _ in range(tasks)]
            comment_ids = [uuid.uuid4() for _ in range(tasks)]
            conn.execute(
                "insert into task (team_id, id, project_id, number, title, status_id, created_by)"
                " select %s, t, %s, n, 'Task ' || n, %s, %s"
                " from unnest(%s::uuid[]) with ordinality as x(t, n)",
                (team, project, status, users[0], task_ids),
            )
            conn.execute(
                "insert into comment (team_id, id, task_id, project_id, author_id, body)"
                " select %s, c, t, %s, %s, 'bench' from unnest(%s::uuid[], %s::uuid[]) x(c, t)",
                (team, project, users[0], comment_ids, task_ids),
            )
            seeded.append(Team(team, users, project, task_ids, comment_ids))
    return seeded


async def longest_other_write(admin_url: str, stop: asyncio.Event) -> float:
    """The age of the oldest write transaction seen in *other* databases of the server until
    ``stop`` (sampled every 0.2 s). Transaction ids are server-wide: such a transaction holds
    back the snapshot xmin of every reader of the log (``teamboard.events.log``), so figures
    measured next to one include waiting for it."""
    conn = await asyncpg.connect(admin_url)
    longest = 0.0
    try:
        while not stop.is_set():
            age = await conn.fetchval(
                "select coalesce(max(extract(epoch from now() - xact_start)), 0)::float8"
                " from pg_stat_activity where backend_xid is not null"
                " and datname is distinct from current_database()"
            )
            longest = max(longest, float(age))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
    finally:
        await conn.close()
    return longest
