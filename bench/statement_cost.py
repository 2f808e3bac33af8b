"""What PostgreSQL spends on the task read's one statement, taken apart, under concurrency
(``bench/README.md``, tenth session).

    python -m bench.statement_cost                     # 32 clients, 6 s per form, 3 rounds
    python -m bench.statement_cost --clients 8 --duration 4 --rounds 5

Makes the harness's scratch database and fixtures (``bench.request_cost``: a teamboard server
makes them through the API, a minute or so), then runs the statement that
``GET /teams/{team}/tasks/{task}`` sends, built by the app's own ``Tx`` from the
repository's SQL, with ``pgbench -M prepared`` in five forms, each for ``--duration``
seconds with ``--clients`` connections, the forms in turn (reversed every other round):

* ``R``: R's single-row read by primary key (the ceiling's statement);
* ``task, owner``: the task's select alone, as the owner (no context, no policies);
* ``task + context, owner``: the whole statement with its context CTE, as the owner;
* ``task + context, RLS, team only``: as the app role, the task's select policy reduced to
  its team condition (the scratch database's policy is changed for this form only);
* ``task + context, RLS``: as the app role, the statement exactly as the app sends it.

Every form runs with the API's ``plan_cache_mode`` and is checked first to answer the task
(one row, its id). For each: the rate (median, and the lowest and highest round), the
machine's CPU per statement (its cores over the median rate, which assumes the cores are
busy: 32 clients keep two busy), and pgbench's own CPU per statement, which differs between
forms (it reads a wider row for the task): the server's part is the difference. A
difference between two forms is what that part of the statement costs. Needs ``pgbench``
(Debian ``postgresql-client``) and the harness's requirements.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

import psycopg

from bench import harness, request_cost

_TRANSACTIONS = re.compile(r"^number of transactions actually processed: (\d+)", re.MULTILINE)
#: The team condition of the task's select policy (migration ``2026-12-06_visible_policies``).
_TEAM_ONLY = "team_id = ( SELECT tb_current_team_id() AS tb_current_team_id)"


@dataclass(frozen=True)
class Form:
    """One form of the statement: pgbench's script (the statement with ``:p1, :p2, ...``
    for its parameters), the role it runs as, and whether the policy is reduced."""

    name: str
    script: str
    owner: bool
    team_only_policy: bool = False


@dataclass(frozen=True)
class TaskRead:
    """The task read's select alone and as the app sends it (with its context), and the
    parameters of the latter (the select's first)."""

    select: str
    whole: str
    params: list[str]


@dataclass(frozen=True)
class Load:
    """pgbench's connections, the seconds of each run, and the rounds of all forms."""

    clients: int
    duration: int
    rounds: int


@dataclass(frozen=True)
class Rates:
    """One form's measured rounds: statements per second, and pgbench's CPU seconds per
    statement."""

    per_second: list[float]
    client_cpu: list[float]


class _Recorder:
    """Stands for a ``Tx``: records the statement a repository function sends."""

    def __init__(self) -> None:
        self.sent: tuple[str, Any] | None = None

    async def fetch_one(self, sql: str, params: Any = None) -> None:
        self.sent = (sql, params)


def task_read(team: UUID, task: UUID, user: UUID) -> TaskRead:
    """The task read's statement as ``teamboard.db.Tx`` sends it for a user's read."""
    from teamboard import db
    from teamboard.tasks import repository

    recorder = _Recorder()
    asyncio.run(repository.get_task(cast(db.Tx, recorder), team, task))
    assert recorder.sent is not None
    sql, params = recorder.sent
    metrics = db.RequestMetrics()
    read = db.Tx(cast(db.Database, None), metrics, write=False, user_id=user, team_id=team)
    whole, args = read._statement(sql, params)  # the only statement a read sends
    select = db.native_sql(sql).text
    return TaskRead(select, whole, [str(value) for value in args])


def _pgbench_script(statement: str) -> str:
    """``$n`` placeholders as pgbench variables (``:pn``), set with ``-D``."""
    return re.sub(r"\$(\d+)", r":p\1", statement) + ";\n"


def forms(read: TaskRead) -> list[Form]:
    """The five forms of the module docstring."""
    select, whole = _pgbench_script(read.select), _pgbench_script(read.whole)
    return [
        Form("R", "select id, name from bench_row where id = :r;\n", owner=True),
        Form("task, owner", select, owner=True),
        Form("task + context, owner", whole, owner=True),
        Form("task + context, RLS, team only", whole, owner=False, team_only_policy=True),
        Form("task + context, RLS", whole, owner=False),
    ]


class _Policy:
    """The task's select policy in the scratch database, reduced and restored."""

    def __init__(self, owner_url: str) -> None:
        self._url = owner_url
        with psycopg.connect(owner_url, **harness.ADMIN_CONNECT) as conn:
            row = conn.execute(
                "select pg_get_expr(polqual, polrelid) from pg_policy"
                " where polrelid = 'task'::regclass and polname = 'task_select'"
            ).fetchone()
        if row is None or _TEAM_ONLY not in row[0]:
            raise harness.BenchError(f"the task_select policy is not the one measured: {row}")
        self._original: str = row[0]

    def reduce(self, team_only: bool) -> None:
        """The policy as the form needs it: its team condition alone, or as migrated."""
        expression = _TEAM_ONLY if team_only else self._original
        with psycopg.connect(self._url, **harness.ADMIN_CONNECT) as conn:
            conn.execute(f"alter policy task_select on task using ({expression})")


@dataclass(frozen=True)
class Scratch:
    """The scratch database: connection strings of the app role and of the owner, and the
    fixtures' variables (team_id, task_id, row_id, ...)."""

    app: str
    owner: str
    variables: dict[str, str]


@contextlib.contextmanager
def scratch() -> Iterator[Scratch]:
    """The scratch database with the harness's fixtures, for as long as it lives."""
    with request_cost.fixtures() as env:
        yield Scratch(
            env["DATABASE_APP_URL"], env["BENCH_DATABASE_URL"], json.loads(env["TB_COST_VARIABLES"])
        )


def check(form: Form, conninfo: str, defines: dict[str, str], task: str, row: str) -> None:
    """Run the form once as its role: it must answer its one row (the task, or R's)."""
    query = re.sub(r":(p\d+|r)\b", r"%(\1)s", form.script.rstrip(";\n"))
    with psycopg.connect(conninfo, **harness.ADMIN_CONNECT) as conn:
        rows = conn.execute(query, defines).fetchall()
    expected = row if form.name == "R" else task
    if [str(found[0]) for found in rows] != [expected]:
        raise harness.BenchError(f"{form.name}: answered {rows!r}, not the row {expected}")


def run_pgbench(
    form: Form, conninfo: str, defines: dict[str, str], load: Load
) -> tuple[float, float]:
    """One timed run: statements per second, and pgbench's CPU seconds per statement."""
    clients, duration = load.clients, load.duration
    threads = max(1, min(os.cpu_count() or 1, clients))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as script:
        script.write(form.script)
        script.flush()
        command = [
            "pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", str(threads),
            "-T", str(duration), "-f", script.name,
            *(part for name, value in defines.items() for part in ("-D", f"{name}={value}")),
            conninfo,
        ]  # fmt: skip
        # The API's plan cache mode (``Settings.database_plan_cache_mode``); no PG* variable
        # of the caller's environment reaches pgbench: the connection string says it all.
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        env["PGOPTIONS"] = "-c plan_cache_mode=force_generic_plan"
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=duration + 60
        )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    found = _TRANSACTIONS.search(done.stdout)
    if done.returncode != 0 or found is None or int(found.group(1)) == 0:
        raise harness.BenchError(f"{form.name}: pgbench failed:\n{done.stderr[-2000:]}")
    statements = int(found.group(1))
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return statements / duration, cpu / statements


def measure(db: Scratch, load: Load) -> dict[str, Rates]:
    """Every form's rounds, the forms in turn, reversed every other round."""
    variables = db.variables
    with psycopg.connect(db.owner, **harness.ADMIN_CONNECT) as conn:
        found = conn.execute(
            "select created_by from task where id = %s", (variables["task_id"],)
        ).fetchone()
    assert found is not None, "the bench task exists"
    read = task_read(UUID(variables["team_id"]), UUID(variables["task_id"]), found[0])
    defines = {f"p{i}": value for i, value in enumerate(read.params, start=1)}
    defines["r"] = variables["row_id"]
    policy = _Policy(db.owner)
    every = forms(read)
    rates = {form.name: Rates([], []) for form in every}
    try:
        for form in every:
            policy.reduce(form.team_only_policy)
            conninfo = db.owner if form.owner else db.app
            check(form, conninfo, defines, task=variables["task_id"], row=variables["row_id"])
        for round_number in range(load.rounds):
            for form in every if round_number % 2 == 0 else every[::-1]:
                policy.reduce(form.team_only_policy)
                conninfo = db.owner if form.owner else db.app
                rate, cpu = run_pgbench(form, conninfo, defines, load)
                rates[form.name].per_second.append(rate)
                rates[form.name].client_cpu.append(cpu)
    finally:
        policy.reduce(False)
    return rates


def report(rates: dict[str, Rates], load: Load) -> None:
    """A line per form: the rate (median, lowest and highest round), the machine's CPU and
    pgbench's per statement, and the rate against R's."""
    cores = os.cpu_count() or 1
    print(f"{load.clients} clients, {load.duration} s per run, {load.rounds} rounds, {cores} cores")
    print(f"{'form':32} {'median tps':>11} {'lowest-highest':>17} {'us/stmt':>8} {'pgbench':>8}")
    r_rate = statistics.median(rates["R"].per_second)
    for name, measured in rates.items():
        rate = statistics.median(measured.per_second)
        spread = f"{min(measured.per_second):,.0f}-{max(measured.per_second):,.0f}"
        client = statistics.median(measured.client_cpu) * 1e6
        print(
            f"{name:32} {rate:>11,.0f} {spread:>17} {cores / rate * 1e6:>8.1f} {client:>8.1f}"
            f"  {rate / r_rate:6.1%} of R"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=request_cost.positive, default=32)
    parser.add_argument("--duration", type=request_cost.positive, default=6, help="seconds")
    parser.add_argument("--rounds", type=request_cost.positive, default=3)
    args = parser.parse_args()
    load = Load(args.clients, args.duration, args.rounds)
    with scratch() as db:
        report(measure(db, load), load)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
