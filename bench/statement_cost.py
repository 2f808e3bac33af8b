"""What PostgreSQL spends on the task read's one statement, taken apart, under concurrency
(``bench/README.md``, tenth session).

    python -m bench.statement_cost                     # 32 clients, 6 s per variant, 2 rounds
    python -m bench.statement_cost --clients 8 --duration 4 --rounds 3

Makes the harness's scratch database and fixtures (``bench.request_cost``), then runs the
statement that ``GET /teams/{team}/tasks/{task}`` sends (built by the app's own code, so it
follows the repository) with ``pgbench -M prepared`` in five forms, alternating, each for
``--duration`` seconds with ``--clients`` connections:

* ``R``: R's single-row read by primary key (the ceiling's statement);
* ``task, owner``: the task's select alone, as the owner (no context, no policies);
* ``task + context, owner``: the whole statement with its context CTE, as the owner;
* ``task + context, RLS, team only``: as the app role, the task's select policy reduced to
  its team condition (the scratch database's policy is changed for this variant only);
* ``task + context, RLS``: as the app role, the statement exactly as the app runs it.

For each form: transactions per second and the machine's CPU per statement (its cores over
the rate: pgbench's own share included, the same in every form), the median over rounds,
and the ratio to R. A difference between two forms is what that part of the statement
costs. Needs ``pgbench`` (Debian ``postgresql-client``) and the harness's requirements.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

import psycopg

from bench import harness, request_cost

_TPS = re.compile(r"^tps = ([\d.]+)", re.MULTILINE)
_TEAM_ONLY = "team_id = (select tb_current_team_id())"


@dataclass(frozen=True)
class Variant:
    name: str
    script: str  # pgbench's script: the statement with :p1, :p2, ... for its parameters
    owner: bool  # run as the owner (the scratch database's superuser URL), else the app role
    team_only_policy: bool = False


class _Recorder:
    """Stands for a ``Tx``: records the statement a repository function sends."""

    def __init__(self) -> None:
        self.sent: tuple[str, Any] | None = None

    async def fetch_one(self, sql: str, params: Any = None) -> None:
        self.sent = (sql, params)


def task_read_statement(team: UUID, task: UUID, user: UUID) -> tuple[str, str, list[str]]:
    """The task read's select alone and with its context, as ``teamboard.db.Tx`` sends a
    read, and the parameters of the latter (the select's come first)."""
    from teamboard import db
    from teamboard.tasks import repository

    recorder = _Recorder()
    asyncio.run(repository.get_task(cast(db.Tx, recorder), team, task))
    assert recorder.sent is not None
    native = db.native_sql(recorder.sent[0])
    params = [str(value) for value in db.bind_arguments(native, recorder.sent[1])]
    context = db._with_context(native.text, ("app.user_id", "app.team_id"), native.count + 1)
    return native.text, context, [*params, str(user), str(team)]


def _pgbench_script(statement: str) -> str:
    """``$n`` placeholders as pgbench variables (``:pn``), set with ``-D``."""
    return re.sub(r"\$(\d+)", r":p\1", statement) + ";\n"


def _variants(variables: Mapping[str, str], user: UUID) -> tuple[list[Variant], list[str]]:
    select, whole, params = task_read_statement(
        UUID(variables["team_id"]), UUID(variables["task_id"]), user
    )
    task_only = _pgbench_script(select)
    whole_script = _pgbench_script(whole)
    variants = [
        Variant("R", "select id, name from bench_row where id = :r;\n", owner=True),
        Variant("task, owner", task_only, owner=True),
        Variant("task + context, owner", whole_script, owner=True),
        Variant("task + context, RLS, team only", whole_script, owner=False, team_only_policy=True),
        Variant("task + context, RLS", whole_script, owner=False),
    ]
    defines = [f"p{i}={value}" for i, value in enumerate(params, start=1)]
    return variants, [*defines, f"r={variables['row_id']}"]


def _libpq_env(conninfo: str) -> dict[str, str]:
    """``PG*`` variables for pgbench from a key=value or URL connection string."""
    parts = psycopg.conninfo.conninfo_to_dict(conninfo)
    names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD"}
    env = {names[key]: str(value) for key, value in parts.items() if key in names}
    env["PGDATABASE"] = str(parts["dbname"])
    return env


class _Policy:
    """The task's select policy in the scratch database, reduced and restored."""

    def __init__(self, owner_url: str) -> None:
        self._url = owner_url
        with psycopg.connect(owner_url, autocommit=True) as conn:
            row = conn.execute(
                "select pg_get_expr(polqual, polrelid) from pg_policy"
                " where polrelid = 'task'::regclass and polname = 'task_select'"
            ).fetchone()
        if row is None:
            raise harness.BenchError("the task table has no task_select policy")
        self._original: str = row[0]

    def set(self, team_only: bool) -> None:
        expression = _TEAM_ONLY if team_only else self._original
        with psycopg.connect(self._url, autocommit=True) as conn:
            conn.execute(f"alter policy task_select on task using ({expression})")


def _tps(variant: Variant, defines: list[str], env: dict[str, str], args: Any) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as script:
        script.write(variant.script)
        script.flush()
        command = [
            "pgbench", "-n", "-M", "prepared", "-c", str(args.clients), "-j", "2",
            "-T", str(args.duration), "-f", script.name,
            *(part for define in defines for part in ("-D", define)),
        ]  # fmt: skip
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=args.duration + 60
        )
    found = _TPS.search(done.stdout)
    if done.returncode != 0 or found is None:
        raise harness.BenchError(f"{variant.name}: pgbench failed:\n{done.stderr[-2000:]}")
    return float(found.group(1))


@dataclass(frozen=True)
class _Scratch:
    app_env: dict[str, str]  # pgbench's environment as the app role
    owner_env: dict[str, str]  # ... and as the owner
    owner_url: str
    variables: dict[str, str]  # the harness fixtures' (team_id, task_id, row_id, ...)


@contextlib.contextmanager
def _scratch() -> Iterator[_Scratch]:
    """The scratch database with the harness's fixtures, for as long as it lives."""
    with request_cost._fixtures() as env:
        owner_url = env["BENCH_DATABASE_URL"]
        base = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        yield _Scratch(
            app_env={**base, **_libpq_env(env["DATABASE_APP_URL"])},
            owner_env={**base, **_libpq_env(owner_url)},
            owner_url=owner_url,
            variables=json.loads(env["TB_COST_VARIABLES"]),
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=request_cost._positive, default=32)
    parser.add_argument("--duration", type=request_cost._positive, default=6, help="seconds")
    parser.add_argument("--rounds", type=request_cost._positive, default=2)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with _scratch() as scratch:
        with psycopg.connect(scratch.owner_url) as conn:
            row = conn.execute(
                "select user_id from team_member where team_id = %s",
                (scratch.variables["team_id"],),
            ).fetchone()
        assert row is not None, "the bench team has its member"
        variants, defines = _variants(scratch.variables, row[0])
        policy = _Policy(scratch.owner_url)
        rates: dict[str, list[float]] = {variant.name: [] for variant in variants}
        try:
            for _ in range(args.rounds):
                for variant in variants:
                    policy.set(variant.team_only_policy)
                    env = scratch.owner_env if variant.owner else scratch.app_env
                    rates[variant.name].append(_tps(variant, defines, env, args))
        finally:
            policy.set(False)
        r_rate = statistics.median(rates["R"])
        print(f"{args.clients} clients, {args.duration} s, {args.rounds} rounds, {cores} cores")
        for variant in variants:
            rate = statistics.median(rates[variant.name])
            print(
                f"{variant.name:32} {rate:>10,.0f} tps {cores / rate * 1e6:7.1f} us/stmt"
                f"  {rate / r_rate:6.1%} of R"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
