"""Bounded load benchmark: teamboard against two ceilings measured in the same run.

    python -m bench.harness --workers 2 --duration 10 --connections 64
    python -m bench.harness --only hello,read_one        # the ceilings alone

For every selected server the harness starts one process group on a free 127.0.0.1 port
(uvicorn for the ceilings, ``teamboard serve`` for teamboard), waits until it answers, then for
each of that server's scenarios: checks one request, warms up, runs ``wrk --latency`` once, and
parses req/s and latency percentiles (p95 comes from a Lua ``done`` hook, since wrk's own
report stops at 50/75/90/99). The server is stopped by its own pid/process group (SIGTERM,
then SIGKILL after a timeout). A scratch database ``teamboard_bench_<random>`` (and, for
teamboard, a scratch app role) is created on ``DATABASE_URL``'s server and dropped at the end,
also on error or interrupt. Every wait is bounded in time and in count.

Results: a table on stdout and ``bench/results/<timestamp>.json``. Exit status: 0 when every
selected scenario ran and every evaluated target passed, 1 when a scenario or the harness
failed, 3 when a target was missed.

To add a scenario, append a ``Scenario`` to ``SCENARIOS`` (and a ``Target`` to ``TARGETS`` to
compare it against a ceiling); a new kind of server is a ``ServerSpec`` in ``SERVERS``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
HOST = "127.0.0.1"  # the only address the harness binds or connects to for HTTP
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SCRATCH_PREFIX = "teamboard_bench_"
ROW_COUNT = 1_000

HTTP_TIMEOUT_SECONDS = 30.0
READY_POLL_SECONDS = 0.2
STOP_TIMEOUT_SECONDS = 15.0
KILL_TIMEOUT_SECONDS = 5.0
WRK_GRACE_SECONDS = 30.0
LOG_TAIL_LINES = 40
CPU_SAMPLE_SECONDS = 1.0
BUSY_WARNING = 0.10

EXIT_OK, EXIT_ERROR, EXIT_TARGET_MISSED = 0, 1, 3


class BenchError(RuntimeError):
    """A failure that stops one scenario (or the run) with a readable message."""


# --------------------------------------------------------------------------------------------
# Run configuration and context
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    workers: int
    duration: int
    connections: int
    threads: int
    warmup: float
    rounds: int
    wrk_timeout: int
    startup_timeout: float
    pool_size: int | None
    database_url: str
    wrk: str
    teamboard: str | None
    results_dir: Path
    write_json: bool
    verbose: bool
    big_tasks: int = 0


@dataclass
class Context:
    """What servers and fixtures share during one run (filled in as the run goes)."""

    options: Options
    workdir: Path
    scratch_url: str | None = None
    app_role: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    # One key for every start of the server: a cursor or token made in one round still
    # verifies in the next.
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    # The big project's variables, made by the first round and paged by every round.
    big_project: dict[str, str] | None = None


# --------------------------------------------------------------------------------------------
# Servers and scenarios (extend here)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSpec:
    """How to start one kind of server and what it needs before load."""

    name: str
    description: str
    command: Callable[[Context, int], list[str]]
    env: Callable[[Context], dict[str, str]]
    cwd: Callable[[Context], Path]
    ready_path: str  # a template over Context.variables; 200 means "serving"
    needs_database: bool = False
    # Runs once the server answers; returns variables for the scenarios' templates.
    fixtures: Callable[[Context, int], dict[str, str]] | None = None


@dataclass(frozen=True)
class Scenario:
    """One wrk run: a request (templated over Context.variables) against one server."""

    name: str
    server: str
    path: str
    description: str
    method: str = "GET"
    body: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    connections: int | None = None  # None: --connections
    expect_status: int = 200
    needs_big_project: bool = False  # runs only with --tasks N (a project of N tasks)
    # The check request must report at most this many SQL statements (X-SQL-Statements).
    max_statements: int | None = None


@dataclass(frozen=True)
class Target:
    """``scenario`` must reach ``min_ratio`` of ``ceiling``'s req/s in the same run or, with
    ``max_latency_ratio``, answer with a ``latency`` percentile (p50 unless said) at most that
    many times ``ceiling``'s."""

    scenario: str
    ceiling: str
    min_ratio: float = 0.60
    max_latency_ratio: float | None = None
    latency: str = "p50"


def _uvicorn_command(app: str) -> Callable[[Context, int], list[str]]:
    def command(ctx: Context, port: int) -> list[str]:
        return [
            sys.executable, "-m", "uvicorn", app,
            "--host", HOST, "--port", str(port),
            "--workers", str(ctx.options.workers),
            "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip

    return command


def _teamboard_command(ctx: Context, port: int) -> list[str]:
    if ctx.options.teamboard is None:
        raise BenchError("the `teamboard` command was not found: pip install -e '.[test]'")
    return [
        ctx.options.teamboard, "serve",
        "--host", HOST, "--port", str(port),
        "--workers", str(ctx.options.workers),
    ]  # fmt: skip


def _base_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _hello_env(ctx: Context) -> dict[str, str]:
    return _base_env()


def _read_one_env(ctx: Context) -> dict[str, str]:
    assert ctx.scratch_url is not None
    env = _base_env()
    env["BENCH_DATABASE_URL"] = ctx.scratch_url
    env["BENCH_POOL_SIZE"] = str(ctx.options.pool_size or 16)
    return env


# Settings that would point teamboard elsewhere than the scratch database.
_TEAMBOARD_ENV_DROP = ("DATABASE_APP_URL", "DATABASE_NAME", "HOST", "PORT", "WORKERS")


def _teamboard_env(ctx: Context) -> dict[str, str]:
    assert ctx.scratch_url is not None
    assert ctx.app_role is not None
    env = _base_env()
    for name in _TEAMBOARD_ENV_DROP:
        env.pop(name, None)
    env.update(
        {
            "DATABASE_URL": ctx.scratch_url,
            "DATABASE_APP_ROLE": ctx.app_role,  # a scratch role: never touch a shared one
            "SECRET_KEY": ctx.secret_key,
            "LOG_LEVEL": "WARNING",
            "EXPOSE_SQL_COUNT": "true",  # debug headers: the check requests read them
            # Outlives any bounded run: the big project's token serves every round.
            "ACCESS_TOKEN_TTL_SECONDS": "86400",
            "GRACEFUL_SHUTDOWN_SECONDS": "3",
            # One user drives every scenario: budgets high enough that the figures measure
            # the request path (which still spends from the in-memory budgets), not 429s.
            "RATE_LIMIT_PER_CALLER": "1000000000",
            "RATE_LIMIT_PER_TEAM": "1000000000",
            "RATE_LIMIT_PER_IP": "1000000000",
        }
    )
    if ctx.options.pool_size is not None:
        env["POOL_MAX_SIZE"] = str(ctx.options.pool_size)
        env["POOL_MIN_SIZE"] = str(min(4, ctx.options.pool_size))
    return env


def _project_cwd(ctx: Context) -> Path:
    return PROJECT_DIR  # so that uvicorn imports bench.ceilings


def _scratch_cwd(ctx: Context) -> Path:
    return ctx.workdir  # no stray .env file is read by teamboard's settings


def _teamboard_fixtures(ctx: Context, port: int) -> dict[str, str]:
    """Register a user, sign in, create a team: the JWT and team id for the scenarios."""
    email = f"bench-{secrets.token_hex(6)}@bench.teamboard.dev"
    password = secrets.token_urlsafe(24)
    status, _ = http_request(
        port,
        "POST",
        "/api/v1/auth/register",
        {"email": email, "password": password, "display_name": "Bench User"},
    )
    _expect("register", status, 202)
    status, body = http_request(
        port, "POST", "/api/v1/auth/login", {"email": email, "password": password}
    )
    _expect("login", status, 200)
    token = str(json.loads(body)["access_token"])
    status, body = http_request(
        port,
        "POST",
        "/api/v1/teams",
        {"name": "Bench team"},
        headers={"Authorization": f"Bearer {token}"},
    )
    _expect("create team", status, 201)
    team_id = str(json.loads(body)["id"])
    auth = {"Authorization": f"Bearer {token}"}
    status, body = http_request(
        port, "POST", f"/api/v1/teams/{team_id}/projects", {"key": "BEN", "name": "Bench"}, auth
    )
    _expect("create project", status, 201)
    project = f"/api/v1/teams/{team_id}/projects/{json.loads(body)['id']}"
    status, body = http_request(
        port, "POST", f"{project}/labels", {"name": "bench", "color": "#336699"}, auth
    )
    _expect("create label", status, 201)
    task = {
        "title": "Bench task",
        "description": "A task read by the benchmark, with an assignee and a label.",
        "assignee_ids": [str(json.loads(_me(port, auth))["id"])],
        "label_ids": [str(json.loads(body)["id"])],
    }
    status, body = http_request(port, "POST", f"{project}/tasks", task, auth)
    _expect("create task", status, 201)
    task_id = str(json.loads(body)["id"])
    for i in range(LIST_TASKS - 1):  # a full page of 50 with assignees and labels
        status, _ = http_request(port, "POST", f"{project}/tasks", {**task, "title": f"#{i}"}, auth)
        _expect("create task", status, 201)
    dashboard = _dashboard_team(port, auth, task["assignee_ids"])
    variables = {
        "token": token,
        "team_id": team_id,
        "task_id": task_id,
        "project": project,
        "dashboard_body": json.dumps({"query": DASHBOARD, "variables": {"team": dashboard}}),
        **_wide_team(ctx, port, auth, task),
    }
    if ctx.options.big_tasks:
        if ctx.big_project is None:  # loaded once: every round pages the same tasks
            ctx.big_project = {"big_token": token, **_big_project(ctx, port, auth, team_id)}
        variables |= ctx.big_project
    _analyze(ctx)
    return variables


DEEP_ROW = 500_000  # page 10,000 of 50
WALK_PAGE = 200


def _big_project(ctx: Context, port: int, auth: dict[str, str], team_id: str) -> dict[str, str]:
    """A project of ``--tasks`` tasks (bulk-inserted as the owner, as a data load would be)
    and the cursor of the page starting at row 500,000 (page 10,000 of 50), found by walking
    the list through the API."""
    assert ctx.scratch_url is not None
    count = ctx.options.big_tasks
    status, body = http_request(
        port, "POST", f"/api/v1/teams/{team_id}/projects", {"key": "BIG", "name": "Big"}, auth
    )
    _expect("create big project", status, 201)
    project_id = str(json.loads(body)["id"])
    started = time.monotonic()
    with psycopg.connect(ctx.scratch_url, autocommit=True) as conn:
        conn.execute(
            "insert into task (team_id, id, project_id, number, title, status_id, priority,"
            " created_by, created_at, updated_at, position)"
            " select p.team_id, gen_random_uuid(), p.id, g, 'bulk task ' || g,"
            " (select s.id from status s where s.project_id = p.id order by s.position limit 1),"
            " g %% 5, p.created_by, now() - g * interval '1 second',"
            " now() - g * interval '1 second', g::bigint * 65536"
            " from project p, generate_series(1, %s) g where p.id = %s",
            (count, project_id),
        )
        conn.execute(
            "update project set next_task_number = %s where id = %s", (count + 1, project_id)
        )
        # As autovacuum would have on a live system, and before the measured runs: its pass
        # over a million new rows otherwise lands in the first scenarios (page 10,000 then
        # ran at half the rate of a later round).
        conn.execute("vacuum (analyze) task")
        # And as a load would end: its dirty pages written out now, not by the checkpointer
        # in the middle of the measured runs (a first round's deep page was up to 1.5x the
        # p95 of page 1; a later round's, 1.0x).
        conn.execute("checkpoint")
    print(f"  loaded {count:,} tasks into project BIG in {time.monotonic() - started:.0f}s")
    path = f"/api/v1/teams/{team_id}/projects/{project_id}"
    target = min(DEEP_ROW, count // 2)
    cursor, seen = None, 0
    while seen < target:
        limit = min(WALK_PAGE, target - seen)
        query = f"?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        status, body = http_request(port, "GET", f"{path}/tasks{query}", headers=auth)
        _expect("walk the big project", status, 200)
        page = json.loads(body)
        seen += len(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            raise BenchError(f"the big project ended after {seen} tasks")
    print(f"  deep cursor at row {seen:,} after {time.monotonic() - started:.0f}s")
    return {"big_project": path, "deep_cursor": str(cursor)}


LIST_TASKS = 60
DASHBOARD_PROJECTS, DASHBOARD_TASKS, DASHBOARD_COMMENTS = 15, 10, 2
#: The nested dashboard of the GraphQL issue: 15 projects x 10 tasks, each with its
#: assignees, labels and comments (team -> projects -> tasks -> children: four levels).
DASHBOARD = """query Dashboard($team: UUID!) { team(id: $team) { name
  projects(first: 15) { nodes { key name
    tasks(first: 10) { nodes { key title priority dueAt
      assignees { id displayName } labels { name color }
      comments(first: 3) { nodes { body createdAt author { displayName } } } } } } } } }"""


def _dashboard_team(port: int, auth: dict[str, str], assignees: list[str]) -> str:
    """A team of 15 projects of 10 tasks, each task with an assignee, a label and two
    comments; returns its id."""
    status, body = http_request(port, "POST", "/api/v1/teams", {"name": "Dashboard"}, auth)
    _expect("create team", status, 201)
    team = str(json.loads(body)["id"])
    for p in range(DASHBOARD_PROJECTS):
        status, body = http_request(
            port, "POST", f"/api/v1/teams/{team}/projects", {"key": f"D{p}", "name": f"D{p}"}, auth
        )
        _expect("create project", status, 201)
        project = f"/api/v1/teams/{team}/projects/{json.loads(body)['id']}"
        status, body = http_request(
            port, "POST", f"{project}/labels", {"name": "bug", "color": "#aa0000"}, auth
        )
        _expect("create label", status, 201)
        task = {"assignee_ids": assignees, "label_ids": [json.loads(body)["id"]]}
        for t in range(DASHBOARD_TASKS):
            status, body = http_request(
                port, "POST", f"{project}/tasks", {**task, "title": f"D{p} task {t}"}, auth
            )
            _expect("create task", status, 201)
            comments = f"/api/v1/teams/{team}/tasks/{json.loads(body)['id']}/comments"
            for c in range(DASHBOARD_COMMENTS):
                status, _ = http_request(port, "POST", comments, {"body": f"comment {c}"}, auth)
                _expect("create comment", status, 201)
    return team


WIDE_PROJECTS = 300


def _wide_team(
    ctx: Context, port: int, auth: dict[str, str], task: dict[str, Any]
) -> dict[str, str]:
    """A team of ``WIDE_PROJECTS`` projects (one made through the API, with the same task as
    the bench team's; the others inserted as the owner): its task read shows whether Row
    Level Security costs more in a larger team."""
    assert ctx.scratch_url is not None
    status, body = http_request(port, "POST", "/api/v1/teams", {"name": "Wide"}, auth)
    _expect("create team", status, 201)
    team = str(json.loads(body)["id"])
    status, body = http_request(
        port, "POST", f"/api/v1/teams/{team}/projects", {"key": "WIDE", "name": "Wide"}, auth
    )
    _expect("create project", status, 201)
    project = json.loads(body)["id"]
    status, body = http_request(
        port,
        "POST",
        f"/api/v1/teams/{team}/projects/{project}/tasks",
        {"title": task["title"], "description": task["description"]},
        auth,
    )
    _expect("create task", status, 201)
    with psycopg.connect(ctx.scratch_url, **ADMIN_CONNECT) as conn:
        conn.execute(
            "insert into project (team_id, id, key, name, created_by)"
            " select p.team_id, gen_random_uuid(), 'W' || g, 'Wide ' || g, p.created_by"
            " from project p, generate_series(2, %s) g where p.id = %s",
            (WIDE_PROJECTS, project),
        )
    return {"wide_team_id": team, "wide_task_id": str(json.loads(body)["id"])}


def _analyze(ctx: Context) -> None:
    """Planner statistics for the tables the fixtures filled (as a live database has)."""
    assert ctx.scratch_url is not None
    with psycopg.connect(ctx.scratch_url, **ADMIN_CONNECT) as conn:
        conn.execute("analyze")


def _me(port: int, headers: dict[str, str]) -> bytes:
    status, body = http_request(port, "GET", "/api/v1/me", headers=headers)
    _expect("me", status, 200)
    return body


SERVERS: dict[str, ServerSpec] = {
    spec.name: spec
    for spec in (
        ServerSpec(
            name="hello",
            description="bare ASGI hello world (bench.ceilings:hello) under uvicorn",
            command=_uvicorn_command("bench.ceilings:hello"),
            env=_hello_env,
            cwd=_project_cwd,
            ready_path="/",
        ),
        ServerSpec(
            name="read_one",
            description="Starlette + one asyncpg single-row read (bench.ceilings:read_one)",
            command=_uvicorn_command("bench.ceilings:read_one"),
            env=_read_one_env,
            cwd=_project_cwd,
            ready_path="/row/{row_id}",
            needs_database=True,
        ),
        ServerSpec(
            name="teamboard",
            description="teamboard serve (migrates the scratch database first)",
            command=_teamboard_command,
            env=_teamboard_env,
            cwd=_scratch_cwd,
            ready_path="/health/live",
            needs_database=True,
            fixtures=_teamboard_fixtures,
        ),
        ServerSpec(
            name="teamboard-engine",
            description="teamboard serve with GRAPHQL_COMPILED=false (every query on Strawberry)",
            command=_teamboard_command,
            env=lambda ctx: {**_teamboard_env(ctx), "GRAPHQL_COMPILED": "false"},
            cwd=_scratch_cwd,
            ready_path="/health/live",
            needs_database=True,
            fixtures=_teamboard_fixtures,
        ),
    )
}

SCENARIOS: list[Scenario] = [
    Scenario("hello", "hello", "/", "H: ceiling for an endpoint with no work"),
    Scenario("read_one", "read_one", "/row/{row_id}", "R: ceiling for a one-row read"),
    Scenario(
        "teamboard-team",
        "teamboard",
        "/api/v1/teams/{team_id}",
        "GET one team with a JWT: auth, membership, RLS context, one row",
        headers={"Authorization": "Bearer {token}"},
    ),
    Scenario(
        "teamboard-task",
        "teamboard",
        "/api/v1/teams/{team_id}/tasks/{task_id}",
        "GET one task with a JWT: one statement with its assignees and labels",
        headers={"Authorization": "Bearer {token}"},
    ),
    Scenario(
        "teamboard-task-wide",
        "teamboard",
        "/api/v1/teams/{wide_team_id}/tasks/{wide_task_id}",
        f"the same task read in a team of {WIDE_PROJECTS} projects",
        headers={"Authorization": "Bearer {token}"},
    ),
    Scenario(
        "teamboard-task-list",
        "teamboard",
        "{project}/tasks?limit=50",
        "a page of 50 tasks of a project, each with an assignee and a label",
        headers={"Authorization": "Bearer {token}"},
    ),
    Scenario(
        "teamboard-task-c1024",
        "teamboard",
        "/api/v1/teams/{team_id}/tasks/{task_id}",
        "GET one task with 1,024 connections: the pool bounds the database side",
        headers={"Authorization": "Bearer {token}"},
        connections=1024,
    ),
    Scenario(
        "teamboard-task-create",
        "teamboard",
        "{project}/tasks",
        "POST a task: number allocation, insert, event, one transaction",
        method="POST",
        body='{"title": "Created by the benchmark", "priority": 2}',
        headers={"Authorization": "Bearer {token}"},
        expect_status=201,
    ),
    Scenario(
        "teamboard-page1",
        "teamboard",
        "{big_project}/tasks?limit=50",
        "the first page of 50 of a project of --tasks tasks",
        headers={"Authorization": "Bearer {big_token}"},
        needs_big_project=True,
    ),
    Scenario(
        "teamboard-page-deep",
        "teamboard",
        "{big_project}/tasks?limit=50&cursor={deep_cursor}",
        "page 10,000 of 50 (row 500,000) of the same project",
        headers={"Authorization": "Bearer {big_token}"},
        needs_big_project=True,
    ),
    Scenario("teamboard-live", "teamboard", "/health/live", "liveness: the framework's floor"),
    *(
        Scenario(
            f"graphql-{kind}{suffix}",
            server,
            "/graphql",
            f"the 15 x 10 dashboard in one GraphQL query, {how}"
            + (", one request at a time" if suffix else ""),
            method="POST",
            body="{dashboard_body}",
            headers={"Authorization": "Bearer {token}"},
            connections=1 if suffix else None,
            max_statements=4,
        )
        for kind, server, how in (
            ("dashboard", "teamboard", "compiled path"),
            ("engine", "teamboard-engine", "Strawberry's engine"),
        )
        for suffix in ("", "-c1")
    ),
    Scenario(
        "teamboard-task-list-c1",
        "teamboard",
        "{project}/tasks?limit=50",
        "the page of 50 tasks, one request at a time",
        headers={"Authorization": "Bearer {token}"},
        connections=1,
    ),
]

TARGETS: list[Target] = [
    Target("teamboard-team", "read_one"),
    Target("teamboard-task", "read_one"),
    Target("teamboard-task-list", "teamboard-task", 0.50),
    # Not an issue's figure: a guard that a team's size does not slow its requests down.
    Target("teamboard-task-wide", "teamboard-task", 0.90),
    Target("teamboard-task-c1024", "teamboard-task", 0.90),
    Target("teamboard-page-deep", "teamboard-page1", max_latency_ratio=1.20, latency="p95"),
    Target("teamboard-live", "hello"),
    Target("graphql-dashboard", "teamboard-task-list", max_latency_ratio=4.0),
    Target("graphql-dashboard-c1", "teamboard-task-list-c1", max_latency_ratio=4.0),
    Target("graphql-engine", "teamboard-task-list", max_latency_ratio=4.0),
]


# --------------------------------------------------------------------------------------------
# HTTP (loopback only)
# --------------------------------------------------------------------------------------------


def http_request(
    port: int,
    method: str,
    path: str,
    payload: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = HTTP_TIMEOUT_SECONDS,
) -> tuple[int, bytes]:
    """One request to 127.0.0.1:port; a JSON payload is encoded when it is not a str."""
    status, _, body = http_exchange(port, method, path, payload, headers, timeout)
    return status, body


def http_exchange(
    port: int,
    method: str,
    path: str,
    payload: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = HTTP_TIMEOUT_SECONDS,
) -> tuple[int, dict[str, str], bytes]:
    """``http_request`` with the response headers (names in lower case)."""
    all_headers = dict(headers or {})
    body: bytes | None = None
    if payload is not None:
        body = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        all_headers.setdefault("Content-Type", "application/json")
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        received = {name.lower(): value for name, value in response.getheaders()}
        return response.status, received, response.read()
    finally:
        conn.close()


def _expect(step: str, status: int, expected: int) -> None:
    if status != expected:
        raise BenchError(f"{step}: HTTP {status}, expected {expected}")


_PLACEHOLDER = re.compile(r"\{([A-Za-z_]\w*)\}")


def fill(template: str, variables: Mapping[str, str]) -> str:
    """Replace ``{name}`` placeholders; other braces (a JSON body's) are left alone."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            raise BenchError(f"no value for {{{name}}} in {template!r}")
        return variables[name]

    return _PLACEHOLDER.sub(value, template)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------------
# Server processes
# --------------------------------------------------------------------------------------------


class ServerProcess:
    """A server started in its own session; stopped only through its own pid / group."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path):
        self.name = name
        self.argv = argv
        self.log_path = log
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the workers go with it
        )
        self.pgid = self.process.pid  # leader of the new session and group

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if not self._log.closed:
            self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, port: int, path: str, timeout: float) -> float:
        """Poll ``path`` until 200; returns the seconds it took. Bounded in time and count."""
        started = time.monotonic()
        deadline = started + timeout
        for _ in range(math.ceil(timeout / READY_POLL_SECONDS) + 1):
            if self.process.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.process.returncode}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                status, _ = http_request(port, "GET", path, timeout=2.0)
                if status == 200:
                    return time.monotonic() - started
            if time.monotonic() >= deadline:
                break
            time.sleep(READY_POLL_SECONDS)
        raise BenchError(f"{self.name} did not answer 200 on {path} within {timeout:.0f}s")

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # pragma: no cover - the group is ours; be safe anyway
            return False
        return True

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)

    def stop(self) -> None:
        """SIGTERM the server, wait; SIGKILL its process group after a timeout."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    print(f"  {self.name}: no exit after SIGTERM, sending SIGKILL", file=sys.stderr)
                    self._signal_group(signal.SIGKILL)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.process.wait(timeout=KILL_TIMEOUT_SECONDS)
            # Workers the supervisor left behind are still in our group: end them too.
            if self._group_alive():
                self._signal_group(signal.SIGTERM)
                for _ in range(int(KILL_TIMEOUT_SECONDS / 0.1)):
                    if not self._group_alive():
                        break
                    time.sleep(0.1)
                else:
                    self._signal_group(signal.SIGKILL)
                    for _ in range(int(KILL_TIMEOUT_SECONDS / 0.1)):
                        if not self._group_alive():
                            break
                        time.sleep(0.1)
                    else:
                        print(f"  {self.name}: group {self.pgid} survives SIGKILL", file=sys.stderr)
        finally:
            self._log.close()


# --------------------------------------------------------------------------------------------
# Scratch database
# --------------------------------------------------------------------------------------------


# Every statement the harness runs itself is bounded too.
ADMIN_CONNECT: dict[str, Any] = {
    "autocommit": True,
    "connect_timeout": 10,
    "options": "-c statement_timeout=60000",
}


def with_database(url: str, database: str) -> str:
    """``url`` (a postgresql:// URL) with its database name replaced."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise BenchError("DATABASE_URL must be a postgresql:// URL")
    return urlunsplit(parts._replace(path=f"/{database}"))


@contextlib.contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    """Create ``teamboard_bench_<random>`` with ``bench_row``; drop it on the way out."""
    name = f"{SCRATCH_PREFIX}{secrets.token_hex(4)}"
    ident = sql.Identifier(name)
    with psycopg.connect(admin_url, **ADMIN_CONNECT) as admin:
        admin.execute(sql.SQL("create database {}").format(ident))
    try:
        url = with_database(admin_url, name)
        with psycopg.connect(url, **ADMIN_CONNECT) as conn:
            conn.execute("create table bench_row (id uuid primary key, name text not null)")
            conn.execute(
                "insert into bench_row (id, name) "
                "select gen_random_uuid(), 'row ' || i from generate_series(1, %s) as i",
                (ROW_COUNT,),
            )
            conn.execute("analyze bench_row")
        yield url
    finally:
        with psycopg.connect(admin_url, **ADMIN_CONNECT) as admin:
            admin.execute(sql.SQL("drop database if exists {} with (force)").format(ident))
        print(f"dropped scratch database {name}")


def pick_row(url: str) -> str:
    with psycopg.connect(url, **ADMIN_CONNECT) as conn:
        row = conn.execute("select id from bench_row order by id offset %s limit 1", (500,))
        found = row.fetchone()
    if found is None:
        raise BenchError("bench_row is empty")
    return str(found[0])


def role_exists(admin_url: str, role: str) -> bool:
    with psycopg.connect(admin_url, **ADMIN_CONNECT) as conn:
        found = conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone()
    return found is not None


def drop_role(admin_url: str, role: str) -> None:
    """Drop the scratch app role (its grants lived in the scratch database, now dropped)."""
    assert role.startswith(SCRATCH_PREFIX)
    with psycopg.connect(admin_url, **ADMIN_CONNECT) as conn:
        conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(role)))
    print(f"dropped scratch role {role}")


def server_version(admin_url: str) -> str:
    with psycopg.connect(admin_url, **ADMIN_CONNECT) as conn:
        row = conn.execute("show server_version").fetchone()
    return str(row[0]) if row else "?"


# --------------------------------------------------------------------------------------------
# wrk
# --------------------------------------------------------------------------------------------

# Printed by wrk's ``done`` hook: exact microsecond percentiles, including p95.
LUA_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
    .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
    .. '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,'
    .. '"p50":%d,"p75":%d,"p90":%d,"p95":%d,"p99":%d,"p99.9":%d}}\\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(95), latency:percentile(99), latency:percentile(99.9)))
end
"""


def lua_string(text: str) -> str:
    """A Lua string literal for ``text`` (every byte outside a safe set is escaped)."""
    safe = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-.,:/")
    return '"' + "".join(chr(b) if b in safe else f"\\{b:03d}" for b in text.encode()) + '"'


def wrk_script(scenario: Scenario, variables: Mapping[str, str]) -> str:
    lines = []
    if scenario.method != "GET":
        lines.append(f"wrk.method = {lua_string(scenario.method)}")
    if scenario.body is not None:
        lines.append(f"wrk.body = {lua_string(fill(scenario.body, variables))}")
        lines.append('wrk.headers["Content-Type"] = "application/json"')
    return "\n".join(lines) + LUA_DONE


@dataclass
class WrkResult:
    rps: float
    requests: int
    duration_s: float
    latency_us: dict[str, float]
    errors: dict[str, int]
    non_2xx_3xx: int
    wrk_rps: float | None
    output: str


_RPS_RE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_NON2XX_RE = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")


def run_wrk(
    options: Options, url: str, connections: int, seconds: float, script: Path, headers: list[str]
) -> WrkResult:
    duration = max(1, math.ceil(seconds))
    argv = [
        options.wrk,
        f"-t{min(options.threads, connections)}",
        f"-c{connections}",
        f"-d{duration}s",
        f"--timeout={options.wrk_timeout}s",
        "--latency",
        "-s", str(script),
    ]  # fmt: skip
    for header in headers:
        argv += ["-H", header]
    argv.append(url)
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=duration + WRK_GRACE_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish within {duration + WRK_GRACE_SECONDS:.0f}s") from exc
    if done.returncode != 0:
        raise BenchError(f"wrk exited with {done.returncode}: {done.stderr.strip()[:500]}")
    return parse_wrk(done.stdout)


def parse_wrk(output: str) -> WrkResult:
    marker = next((ln for ln in output.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if marker is None:
        raise BenchError(f"no BENCH_JSON line in wrk output:\n{output}")
    data = json.loads(marker.removeprefix("BENCH_JSON "))
    duration_s = data["duration_us"] / 1e6
    rps_match = _RPS_RE.search(output)
    non2xx = _NON2XX_RE.search(output)
    return WrkResult(
        rps=data["requests"] / duration_s if duration_s > 0 else 0.0,
        requests=data["requests"],
        duration_s=duration_s,
        latency_us={k: float(v) for k, v in data["latency_us"].items()},
        errors={k: int(v) for k, v in data["errors"].items()},
        non_2xx_3xx=int(non2xx.group(1)) if non2xx else 0,
        wrk_rps=float(rps_match.group(1)) if rps_match else None,
        output=output,
    )


# --------------------------------------------------------------------------------------------
# Running scenarios
# --------------------------------------------------------------------------------------------


@dataclass
class ScenarioResult:
    scenario: str
    server: str
    description: str
    method: str
    path: str  # the template: ids and tokens are not recorded
    connections: int
    threads: int
    workers: int
    round_no: int = 1
    duration_s: float = 0.0
    requests: int = 0
    rps: float = 0.0
    latency_us: dict[str, float] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    non_2xx_3xx: int = 0
    cpu_busy_before: float | None = None  # CPU busy fraction with the server idle, pre-load
    max_db_connections: int | None = None  # app-role backends seen during the measured run
    error: str | None = None
    rps_rounds: list[float] = field(default_factory=list)  # a summary's every round, in order
    wrk_output: str = ""
    # What the check request reported in teamboard's debug headers (SQL statements, GraphQL
    # fields resolved and executor).
    checked: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and self.requests > 0

    @property
    def clean(self) -> bool:
        """Measured, and every response was a success (no socket errors, no 4xx/5xx)."""
        return self.ok and self.non_2xx_3xx == 0 and not any(self.errors.values())


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all CPUs from /proc/stat; None where there is none."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return values[3] + values[4], sum(values)


def cpu_busy(seconds: float = CPU_SAMPLE_SECONDS) -> float | None:
    """Fraction of all CPUs busy over ``seconds``: other work that will skew the figures."""
    before = _cpu_times()
    time.sleep(seconds)
    after = _cpu_times()
    if before is None or after is None or after[1] <= before[1]:
        return None
    idle, total = after[0] - before[0], after[1] - before[1]
    return round(1 - idle / total, 3)


class ConnectionSampler:
    """Counts the app role's backends every 0.2 s while a scenario runs (teamboard only:
    the ceilings use another role), to check the pool bound under load."""

    INTERVAL = 0.2

    def __init__(self, ctx: Context, *, enabled: bool) -> None:
        self._url, self._role = (ctx.scratch_url, ctx.app_role) if enabled else (None, None)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.maximum: int | None = None

    def __enter__(self) -> ConnectionSampler:
        if self._url and self._role:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _sample(self) -> None:
        assert self._url is not None
        try:
            with psycopg.connect(self._url, autocommit=True) as conn:
                while not self._stop.wait(self.INTERVAL):
                    row = conn.execute(
                        "select count(*) from pg_stat_activity where usename = %s",
                        (self._role,),
                    ).fetchone()
                    count = int(row[0]) if row else 0
                    self.maximum = max(self.maximum or 0, count)
        except psycopg.Error as exc:
            print(f"  warning: connection sampling stopped: {exc}", file=sys.stderr)


def _format_headers(scenario: Scenario, variables: Mapping[str, str]) -> dict[str, str]:
    return {k: fill(v, variables) for k, v in scenario.headers.items()}


#: teamboard's debug headers (EXPOSE_SQL_COUNT), recorded from each check request.
DEBUG_HEADERS = ("x-sql-statements", "x-graphql-resolved-fields", "x-graphql-executor")


def run_scenario(
    ctx: Context, scenario: Scenario, port: int, result: ScenarioResult
) -> ScenarioResult:
    options = ctx.options
    variables = ctx.variables
    path = fill(scenario.path, variables)
    headers = _format_headers(scenario, variables)
    body = None if scenario.body is None else fill(scenario.body, variables)
    status, received, _ = http_exchange(port, scenario.method, path, body, headers=headers)
    _expect(f"{scenario.name} check request", status, scenario.expect_status)
    result.checked = {k: v for k, v in received.items() if k in DEBUG_HEADERS}
    if scenario.max_statements is not None:
        counted = int(received.get("x-sql-statements", "-1"))
        if not 0 <= counted <= scenario.max_statements:
            raise BenchError(
                f"{scenario.name}: {counted} SQL statements, at most {scenario.max_statements}"
            )
    result.cpu_busy_before = busy = cpu_busy()
    if busy is not None and busy > BUSY_WARNING:
        print(
            f"  warning: CPUs {busy:.0%} busy before any load: other work on this machine "
            "lowers the figures (ratios measured in the same run suffer less)",
            file=sys.stderr,
        )

    script = ctx.workdir / f"{scenario.name}.lua"
    script.write_text(wrk_script(scenario, variables))
    url = f"http://{HOST}:{port}{path}"
    header_args = [f"{k}: {v}" for k, v in headers.items()]
    if options.warmup > 0:
        run_wrk(options, url, result.connections, options.warmup, script, header_args)
    with ConnectionSampler(ctx, enabled=scenario.server == "teamboard") as sampler:
        measured = run_wrk(options, url, result.connections, options.duration, script, header_args)
    result.max_db_connections = sampler.maximum

    result.duration_s = measured.duration_s
    result.requests = measured.requests
    result.rps = measured.rps
    result.latency_us = measured.latency_us
    result.errors = measured.errors
    result.non_2xx_3xx = measured.non_2xx_3xx
    result.wrk_output = measured.output
    if options.verbose:
        print(measured.output)
    return result


def run_server(
    ctx: Context, spec: ServerSpec, scenarios: Sequence[Scenario], round_no: int = 1
) -> list[ScenarioResult]:
    """Start ``spec``, run its scenarios, stop it. Failures are recorded, not raised."""
    options = ctx.options
    results = [
        ScenarioResult(
            scenario=s.name,
            server=spec.name,
            description=s.description,
            method=s.method,
            path=s.path,
            connections=s.connections or options.connections,
            threads=min(options.threads, s.connections or options.connections),
            workers=options.workers,
            round_no=round_no,
        )
        for s in scenarios
    ]
    rounds = f" (round {round_no}/{options.rounds})" if options.rounds > 1 else ""
    print(f"\n[{spec.name}]{rounds} {spec.description}")
    server: ServerProcess | None = None
    try:
        port = free_port()
        argv = spec.command(ctx, port)
        server = ServerProcess(
            spec.name, argv, spec.env(ctx), spec.cwd(ctx), ctx.workdir / f"{spec.name}.log"
        )
        shown = " ".join([Path(argv[0]).name, *argv[1:]])
        print(f"  started pid {server.process.pid} on {HOST}:{port}: {shown}")
        waited = server.wait_ready(
            port, fill(spec.ready_path, ctx.variables), options.startup_timeout
        )
        print(f"  answering after {waited:.1f}s")
        if spec.fixtures is not None:
            ctx.variables.update(spec.fixtures(ctx, port))
        for scenario, result in zip(scenarios, results, strict=True):
            print(
                f"  {scenario.name}: {scenario.method} {scenario.path} "
                f"-c{result.connections} warm-up {options.warmup:g}s, run {options.duration}s"
            )
            try:
                run_scenario(ctx, scenario, port, result)
            except (BenchError, OSError, http.client.HTTPException) as exc:
                result.error = str(exc)
                print(f"  {scenario.name}: FAILED: {exc}", file=sys.stderr)
            else:
                print(f"  {scenario.name}: {result.rps:,.0f} req/s")
    except (BenchError, OSError, http.client.HTTPException, KeyError, ValueError) as exc:
        for result in results:
            if result.error is None and not result.ok:
                result.error = f"{spec.name}: {exc}"
        print(f"  {spec.name}: FAILED: {exc}", file=sys.stderr)
        if server is not None:
            print(
                f"  --- last lines of {spec.name}'s log ---\n{server.log_tail()}", file=sys.stderr
            )
    finally:
        if server is not None:
            server.stop()
            print(f"  stopped pid {server.process.pid}")
            log = server.log_tail().splitlines()
            if log:
                print(f"  {spec.name} log, last line of {len(log)} shown: {log[-1][:200]}")
    return results


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def summarize(runs: Sequence[ScenarioResult]) -> ScenarioResult:
    """One scenario over its rounds: the round of median req/s (the lower one for an even
    count), with errors summed over every round. Any failed round makes the summary failed."""
    failed = [r for r in runs if not r.ok]
    if failed:
        return dataclasses.replace(failed[0], rps_rounds=[r.rps for r in runs])
    median = sorted(runs, key=lambda r: r.rps)[(len(runs) - 1) // 2]
    errors: dict[str, int] = {}
    for r in runs:
        for kind, count in r.errors.items():
            errors[kind] = errors.get(kind, 0) + count
    return dataclasses.replace(
        median,
        errors=errors,
        non_2xx_3xx=sum(r.non_2xx_3xx for r in runs),
        rps_rounds=[r.rps for r in runs],
    )


@dataclass
class TargetResult:
    scenario: str
    ceiling: str
    min_ratio: float
    ratio: float | None  # req/s over the ceiling's, or (latency targets) latency over it
    verdict: str  # PASS, FAIL, or N/A (a side did not run cleanly)
    max_latency_ratio: float | None = None
    latency: str = "p50"
    round_ratios: list[float] = field(default_factory=list)  # latency targets: each round's


def round_latency_ratios(target: Target, runs: Sequence[ScenarioResult]) -> list[float]:
    """``target``'s latency ratio within each round where both sides ran cleanly, in round
    order. A latency figure moves with the state of the machine more than a rate does, so
    the two sides are compared as they ran in the same round, minutes apart at most: a
    quiet round of one side is not set against a busy round of the other."""
    key = target.latency
    by_round = {(r.scenario, r.round_no): r for r in runs}
    ratios = []
    for round_no in sorted({r.round_no for r in runs if r.scenario == target.scenario}):
        measured = by_round[(target.scenario, round_no)]
        ceiling = by_round.get((target.ceiling, round_no))
        if ceiling is None or not (measured.clean and ceiling.clean):
            continue
        value, base = measured.latency_us.get(key), ceiling.latency_us.get(key)
        if value is not None and base:
            ratios.append(value / base)
    return ratios


def evaluate(
    targets: Sequence[Target],
    results: Mapping[str, ScenarioResult],
    runs: Sequence[ScenarioResult],
) -> list[TargetResult]:
    """Each target against its ceiling. A rate target compares the two sides' median
    rounds; a latency target takes the higher median of its per-round ratios
    (:func:`round_latency_ratios`; ``runs`` holds every round), the side of the median
    that the bound could fail."""
    evaluated = []
    for target in targets:
        measured, ceiling = results.get(target.scenario), results.get(target.ceiling)
        if measured is None or ceiling is None:
            continue  # not selected in this run
        result = TargetResult(
            target.scenario,
            target.ceiling,
            target.min_ratio,
            None,
            "N/A",
            target.max_latency_ratio,
            target.latency,
        )
        evaluated.append(result)
        if not (measured.clean and ceiling.clean) or ceiling.rps <= 0:
            continue
        if target.max_latency_ratio is None:
            result.ratio = measured.rps / ceiling.rps
            result.verdict = "PASS" if result.ratio >= target.min_ratio else "FAIL"
        else:
            result.round_ratios = round_latency_ratios(target, runs)
            if not result.round_ratios:
                continue
            result.ratio = statistics.median_high(result.round_ratios)
            result.verdict = "PASS" if result.ratio <= target.max_latency_ratio else "FAIL"
    return evaluated


def engine_cost(results: Mapping[str, ScenarioResult]) -> str | None:
    """The GraphQL engine's cost per resolved field: the same dashboard answered through
    Strawberry and through the compiled path, one request at a time (no queueing), with the
    same SQL; the difference of their median latencies over the fields resolved."""
    engine, fast = results.get("graphql-engine-c1"), results.get("graphql-dashboard-c1")
    if engine is None or fast is None or not (engine.clean and fast.clean):
        return None
    fields = int(engine.checked.get("x-graphql-resolved-fields", "0"))
    if fields <= 0:
        return None
    extra = engine.latency_us["p50"] - fast.latency_us["p50"]
    return (
        f"GraphQL engine cost: {fields} fields resolved; p50 {_ms(engine.latency_us['p50'])}"
        f" through Strawberry, {_ms(fast.latency_us['p50'])} compiled (same SQL):"
        f" {extra / fields:.2f} us per resolved field"
    )


def _ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:.2f}ms"


def format_table(results: Sequence[ScenarioResult], targets: Sequence[TargetResult]) -> str:
    head = (
        f"{'scenario':<24} {'conns':>5} {'req/s':>10} {'p50':>9} {'p95':>9} {'p99':>9} "
        f"{'errors':>7} {'bg cpu':>7} {'sql':>4} {'db conns':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        if not r.ok:
            lines.append(f"{r.scenario:<24} {r.connections:>5} {'FAILED':>10}  {r.error}")
            continue
        errors = sum(r.errors.values()) - r.errors.get("status", 0) + r.non_2xx_3xx
        lat = r.latency_us
        busy = "-" if r.cpu_busy_before is None else f"{r.cpu_busy_before:.0%}"
        sql = r.checked.get("x-sql-statements", "-")
        conns = "-" if r.max_db_connections is None else str(r.max_db_connections)
        lines.append(
            f"{r.scenario:<24} {r.connections:>5} {r.rps:>10,.0f} {_ms(lat.get('p50')):>9} "
            f"{_ms(lat.get('p95')):>9} {_ms(lat.get('p99')):>9} {errors:>7} {busy:>7} {sql:>4}"
            f" {conns:>8}"
        )
    if any(len(r.rps_rounds) > 1 for r in results):
        lines += ["", "req/s per round (the median round is shown above)"]
        for r in results:
            lines.append(f"  {r.scenario:<24} " + " ".join(f"{v:,.0f}" for v in r.rps_rounds))
    if targets:
        lines += ["", f"{'target':<48} {'ratio':>7} {'bound':>7}  result", "-" * 72]
        for t in targets:
            if t.max_latency_ratio is None:
                name, bound = f"{t.scenario} / {t.ceiling} req/s", f">={t.min_ratio:.0%}"
                ratio = "-" if t.ratio is None else f"{t.ratio:.1%}"
            else:
                name = f"{t.scenario} / {t.ceiling} {t.latency}"
                bound = f"<={t.max_latency_ratio:g}x"
                ratio = "-" if t.ratio is None else f"{t.ratio:.2f}x"
            rounds = ""
            if len(t.round_ratios) > 1:
                rounds = " (rounds: " + ", ".join(f"{v:.2f}x" for v in t.round_ratios) + ")"
            lines.append(f"{name:<48} {ratio:>7} {bound:>7}  {t.verdict}{rounds}")
    return "\n".join(lines)


def _git(*args: str) -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        done = subprocess.run(
            [git, *args], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _wrk_version(wrk: str) -> str:
    try:
        done = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    first = (done.stdout or done.stderr).splitlines()
    return first[0].strip() if first else "?"


def write_results(
    options: Options,
    started: datetime,
    results: Sequence[ScenarioResult],
    rounds: Sequence[ScenarioResult],
    targets: Sequence[TargetResult],
    pg_version: str | None,
) -> Path:
    options.results_dir.mkdir(parents=True, exist_ok=True)
    path = options.results_dir / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    status = _git("status", "--porcelain")
    document = {
        "started_at": started.isoformat(),
        "options": {
            k: str(v) if isinstance(v, Path) else v
            for k, v in asdict(options).items()
            if k not in ("database_url",)
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "wrk": _wrk_version(options.wrk),
            "postgres": pg_version,
        },
        "git": {"commit": _git("rev-parse", "HEAD"), "dirty": bool(status) if status else False},
        "scenarios": [
            {**asdict(r), "clean": r.clean, "wrk_output": None} for r in results
        ],  # each the median round (wrk's text is under "rounds")
        "rounds": [{**asdict(r), "clean": r.clean} for r in rounds],
        "targets": [asdict(t) for t in targets],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def select(only: str | None, big_tasks: int = 0) -> list[Scenario]:
    """Scenarios named in ``--only`` (scenario or server names), in declaration order; those
    needing a big project only with ``--tasks``."""
    available = [s for s in SCENARIOS if big_tasks or not s.needs_big_project]
    if not only:
        return available
    wanted = {name.strip() for name in only.split(",") if name.strip()}
    known = {s.name for s in SCENARIOS} | set(SERVERS)
    unknown = wanted - known
    if unknown:
        raise BenchError(f"unknown scenario(s) {sorted(unknown)}; known: {sorted(known)}")
    return [s for s in available if s.name in wanted or s.server in wanted]


def parse_args(argv: Sequence[str] | None = None) -> tuple[Options, str | None]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.harness", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per scenario")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds (0: none)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="runs of every scenario; the median is reported"
    )
    parser.add_argument("--wrk-timeout", type=int, default=5, help="wrk per-request timeout")
    parser.add_argument("--startup-timeout", type=float, default=120.0, help="server start limit")
    parser.add_argument(
        "--pool-size",
        type=int,
        default=None,
        help="database pool per worker for R (default 16) and teamboard (default: its own)",
    )
    parser.add_argument(
        "--only", default=None, help="comma-separated scenario or server names (default: all)"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
        help="server on which the scratch database is created (default: $DATABASE_URL)",
    )
    parser.add_argument("--wrk", default=shutil.which("wrk"), help="path of wrk")
    parser.add_argument("--teamboard", default=None, help="path of the teamboard command")
    parser.add_argument(
        "--tasks",
        type=int,
        default=0,
        help="load a project of N tasks for the deep-page scenarios (e.g. 1000000; 0: skip them)",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--no-json", action="store_true", help="do not write the JSON results")
    parser.add_argument("-v", "--verbose", action="store_true", help="print wrk's output")
    ns = parser.parse_args(argv)
    if ns.wrk is None:
        parser.error("wrk not found: apt-get install wrk (or pass --wrk)")
    limits = {
        "--workers": (ns.workers, 1, 64),
        "--duration": (ns.duration, 1, 3600),
        "--connections": (ns.connections, 1, 10_000),
        "--threads": (ns.threads, 1, 64),
        "--warmup": (ns.warmup, 0, 600),
        "--rounds": (ns.rounds, 1, 20),
        "--wrk-timeout": (ns.wrk_timeout, 1, 600),
        "--startup-timeout": (ns.startup_timeout, 1, 3600),
        "--tasks": (ns.tasks, 0, 50_000_000),
    }
    if ns.pool_size is not None:
        limits["--pool-size"] = (ns.pool_size, 1, 1000)
    for flag, (value, low, high) in limits.items():
        if not low <= value <= high:
            parser.error(f"{flag} must be between {low} and {high}")
    teamboard = ns.teamboard
    if teamboard is None:
        beside = Path(sys.executable).parent / "teamboard"
        teamboard = str(beside) if beside.exists() else shutil.which("teamboard")
    return Options(
        workers=ns.workers,
        duration=ns.duration,
        connections=ns.connections,
        threads=ns.threads,
        warmup=ns.warmup,
        rounds=ns.rounds,
        wrk_timeout=ns.wrk_timeout,
        startup_timeout=ns.startup_timeout,
        pool_size=ns.pool_size,
        database_url=ns.database_url,
        wrk=ns.wrk,
        teamboard=teamboard,
        results_dir=ns.results_dir,
        write_json=not ns.no_json,
        verbose=ns.verbose,
        big_tasks=ns.tasks,
    ), ns.only


def _terminate(signum: int, frame: FrameType | None) -> None:
    """First SIGTERM/SIGINT: unwind through every cleanup. Later ones: let cleanup finish."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _cleaning_up)
    raise SystemExit(128 + signum)  # unwinds through every finally: servers, database, role


def _cleaning_up(signum: int, frame: FrameType | None) -> None:
    print("bench: stopping servers and dropping the scratch database...", file=sys.stderr)


def run(options: Options, scenarios: Sequence[Scenario]) -> int:
    started = datetime.now(UTC)
    by_server: dict[str, list[Scenario]] = {}
    for scenario in scenarios:
        by_server.setdefault(scenario.server, []).append(scenario)
    needs_db = any(SERVERS[name].needs_database for name in by_server)
    runs: list[ScenarioResult] = []
    pg_version: str | None = None
    print(
        f"bench: {', '.join(s.name for s in scenarios)}; workers={options.workers} "
        f"connections={options.connections} duration={options.duration}s "
        f"warm-up={options.warmup:g}s rounds={options.rounds} wrk threads={options.threads}"
    )
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="teamboard-bench-")))
        ctx = Context(options=options, workdir=workdir)
        if "teamboard" in by_server:
            role = f"{SCRATCH_PREFIX}{secrets.token_hex(4)}_app"
            if role_exists(options.database_url, role):
                raise BenchError(f"role {role} already exists")
            ctx.app_role = role
            # Registered before the database, so dropped after it: the roles' grants live in
            # the scratch database and would otherwise keep them from being dropped. The
            # worker role's name derives from the app role's (Settings.worker_role).
            stack.callback(drop_role, options.database_url, role)
            stack.callback(drop_role, options.database_url, f"{role}_worker")
        if needs_db:
            pg_version = server_version(options.database_url)
            ctx.scratch_url = stack.enter_context(scratch_database(options.database_url))
            ctx.variables["row_id"] = pick_row(ctx.scratch_url)
            print(f"scratch database {urlsplit(ctx.scratch_url).path.lstrip('/')} ready")
        for round_no in range(1, options.rounds + 1):  # servers alternate within each round
            for name, server_scenarios in by_server.items():
                runs += run_server(ctx, SERVERS[name], server_scenarios, round_no)

    results = [summarize([r for r in runs if r.scenario == s.name]) for s in scenarios]
    by_name = {r.scenario: r for r in results}
    targets = evaluate(TARGETS, by_name, runs)
    print("\n" + format_table(results, targets))
    cost = engine_cost(by_name)
    if cost is not None:
        print("\n" + cost)
    if options.write_json:
        path = write_results(options, started, results, runs, targets, pg_version)
        print(f"\nresults written to {path}")
    if not all(r.ok for r in results):
        return EXIT_ERROR
    if any(t.verdict == "FAIL" for t in targets):
        return EXIT_TARGET_MISSED
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    options, only = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    try:
        return run(options, select(only, options.big_tasks))
    except (BenchError, psycopg.Error) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
