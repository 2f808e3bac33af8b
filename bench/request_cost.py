"""Python instructions per request, counted by callgrind: a cost that a noisy machine does not
move (``bench/README.md``, ninth session).

    python -m bench.request_cost                       # every target below
    python -m bench.request_cost --only task --requests 2000
    python -m bench.request_cost --only page1,page2    # what a cursor adds to a page

Creates the harness's scratch database, lets one teamboard server make the fixtures (user,
team, task) and stops it, then runs each target twice under ``valgrind --tool=callgrind`` in
this module's ``--drive`` mode: the app called in process through ASGI (uvloop, the same
scratch database, the server's secret key), 300 requests, then 300 + ``--requests``. The
difference of the two totals over ``--requests`` is one request's instructions, start-up
excluded. PostgreSQL's own work is not counted (a separate process). The rate limits' merge
into Redis runs by the clock, so its count in a run follows the run's duration, which
valgrind's slowdown and whatever else the machine does stretch: the drivers put it off
beyond the run (an hour), and two runs of the same code agree within about 0.5 % even beside other
load. Needs ``valgrind`` (Debian package) and the harness's requirements; takes a few
minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import harness

BASE_REQUESTS = 300
TARGETS = {
    "task": "GET /api/v1/teams/{team_id}/tasks/{task_id}",
    "team": "GET /api/v1/teams/{team_id}",
    "list": "GET {project}/tasks?limit=50",
    "page1": "GET {project}/tasks?limit=5",
    "page2": "GET {project}/tasks?limit=5&cursor={cursor}",
    "r": "GET /row/{row_id}",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(TARGETS), help=", ".join(TARGETS))
    parser.add_argument("--requests", type=positive, default=1000, help="counted requests")
    parser.add_argument("--drive", help=argparse.SUPPRESS)  # the child: target name
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        import uvloop

        uvloop.run(_drive(args.drive, args.count))
        return 0
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    targets = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        raise SystemExit(f"unknown targets: {', '.join(sorted(unknown))}")
    with fixtures() as env:
        for name in targets:
            base = _instructions(name, BASE_REQUESTS, env)
            more = _instructions(name, BASE_REQUESTS + args.requests, env)
            print(f"{name:5} {TARGETS[name]:45} {(more - base) / args.requests:>10,.0f} insn")
    return 0


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


@contextlib.contextmanager
def fixtures() -> Iterator[dict[str, str]]:
    """The scratch database with the harness's fixtures; the environment of the drivers."""
    options, _ = harness.parse_args(["--wrk", "unused"])  # no load is generated here
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tb-cost-")))
        ctx = harness.Context(options=options, workdir=workdir)
        ctx.app_role = f"{harness.SCRATCH_PREFIX}{secrets.token_hex(4)}_app"
        stack.callback(harness.drop_role, options.database_url, ctx.app_role)
        stack.callback(harness.drop_role, options.database_url, f"{ctx.app_role}_worker")
        ctx.scratch_url = stack.enter_context(harness.scratch_database(options.database_url))
        env = harness._teamboard_env(ctx)
        port = harness.free_port()
        command = harness._teamboard_command(ctx, port)
        server = harness.ServerProcess("teamboard", command, env, workdir, workdir / "tb.log")
        try:
            server.wait_ready(port, "/health/live", options.startup_timeout)
            variables = harness._teamboard_fixtures(ctx, port)
            variables["cursor"] = _second_page_cursor(port, variables)
        finally:
            server.stop()
        variables["row_id"] = harness.pick_row(ctx.scratch_url)
        env.update(
            {
                "DATABASE_APP_URL": _app_url(env),
                "BENCH_DATABASE_URL": ctx.scratch_url,
                "BENCH_POOL_SIZE": "4",
                "TB_COST_VARIABLES": json.dumps(variables),
                "PYTHONHASHSEED": "0",
                "PYTHONPATH": os.pathsep.join(
                    [str(harness.PROJECT_DIR), *filter(None, [env.get("PYTHONPATH")])]
                ),
                "TB_COST_WORKDIR": str(workdir),
            }
        )
        yield env


def _second_page_cursor(port: int, variables: dict[str, str]) -> str:
    """The cursor of page 2 of ``page1`` (the same list, the same page size)."""
    path = TARGETS["page1"].split(" ", 1)[1].format(**variables)
    auth = {"authorization": f"Bearer {variables['token']}"}
    status, body = harness.http_request(port, "GET", path, headers=auth)
    if status != 200 or not json.loads(body)["next_cursor"]:
        raise harness.BenchError(f"page 1 of the list answered {status}: {body[:200]!r}")
    return str(json.loads(body)["next_cursor"])


def _app_url(env: dict[str, str]) -> str:
    """The app role's URL, as ``teamboard serve`` derives it (the role exists by now)."""
    from teamboard.config import Settings
    from teamboard.ops.database import provision_app_role

    settings = Settings(  # this run's settings only: no .env, no app URL of another database
        _env_file=None,
        secret_key=env["SECRET_KEY"],
        database_app_role=env["DATABASE_APP_ROLE"],
        database_app_url=None,
        database_worker_url=None,
    )
    return provision_app_role(env["DATABASE_URL"], settings).app


def _instructions(name: str, count: int, env: dict[str, str]) -> int:
    """What the driver executes for ``count`` requests (and its start-up), by callgrind."""
    with tempfile.TemporaryDirectory(prefix="tb-cost-cg-") as out:
        command = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/callgrind.out",
            sys.executable, "-m", "bench.request_cost", "--drive", name, "--count", str(count),
        ]  # fmt: skip
        workdir = env["TB_COST_WORKDIR"]
        done = subprocess.run(
            command, env=env, cwd=workdir, capture_output=True, text=True, timeout=1800
        )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise harness.BenchError(f"{name}: the driver failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


async def _drive(name: str, count: int) -> None:
    """Call the target's app ``count`` times in process (after 50 unmeasured calls)."""
    from asgi_lifespan import LifespanManager

    variables = json.loads(os.environ["TB_COST_VARIABLES"])
    method, target = TARGETS[name].split(" ", 1)
    path, _, query = target.format(**variables).partition("?")
    headers = [(b"host", b"127.0.0.1")]
    if name == "r":
        from bench.ceilings import read_one as app
    else:
        from teamboard.app import create_server_app
        from teamboard.config import get_settings

        # No merge into Redis during a run (the module docstring): an interval beyond the
        # run, which the setting's own bound (10 s, for a server) would refuse.
        # What ``teamboard serve`` runs: the application behind its admission gate.
        app = create_server_app(
            get_settings().model_copy(update={"rate_limit_sync_seconds": 3600.0})
        )
        headers.append((b"authorization", f"Bearer {variables['token']}".encode()))
    statuses: set[int] = set()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.add(message["status"])

    async with LifespanManager(app, startup_timeout=None, shutdown_timeout=None):  # valgrind
        for _ in range(50 + count):
            scope = {
                "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
                "root_path": "", "query_string": query.encode(), "headers": list(headers),
                "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000),
                "state": {},
            }  # fmt: skip
            await app(scope, receive, send)
    if statuses != {200}:
        raise SystemExit(f"{name}: answered {sorted(statuses)}")


if __name__ == "__main__":
    sys.exit(main())
