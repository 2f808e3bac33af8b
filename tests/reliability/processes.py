"""``teamboard serve`` and ``teamboard worker`` as real processes, to be killed with SIGKILL.

A fault test needs the process boundary: a SIGKILL leaves no ``finally``, no lifespan
shutdown, no graceful drain; the operating system closes the sockets, and PostgreSQL rolls
back whatever the process had in flight. Both commands run exactly as an operator starts
them (they migrate to head first, which is a no-op on the test database), against the test
run's database, on 127.0.0.1 only, with their output kept in a log file that a failure
quotes. Every process started here is ended by its pid: :class:`Processes` kills whatever a
test leaves running.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from teamboard.config import Settings
from teamboard.ops.database import DatabaseUrls
from tests.live import free_port

COMMAND = os.path.join(os.path.dirname(sys.executable), "teamboard")
_OWN = ("DATABASE_", "REDIS_URL", "WEBHOOK_", "WORKER_", "RATE_LIMIT_", "POOL_")


def process_env(settings: Settings, db_urls: DatabaseUrls, **overrides: str) -> dict[str, str]:
    """The environment of a served process: the test database's three roles, the tests'
    secret, no Redis (in-memory limits: nothing shared with other tests' processes), rate
    limits out of the way, webhooks allowed to reach a receiver on 127.0.0.1."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN)}
    env.update(
        DATABASE_URL=db_urls.owner,
        DATABASE_APP_URL=db_urls.app,
        DATABASE_WORKER_URL=db_urls.worker,
        SECRET_KEY=settings.secret_key.get_secret_value(),
        ENVIRONMENT="test",
        LOG_LEVEL="WARNING",
        DATA_DIR=str(settings.data_dir),
        POOL_MIN_SIZE="1",
        POOL_MAX_SIZE="8",
        RATE_LIMIT_PER_CALLER="1000000",
        RATE_LIMIT_PER_TEAM="1000000",
        RATE_LIMIT_PER_IP="1000000",
        WEBHOOK_ALLOW_HTTP="true",
        WEBHOOK_ALLOWED_NETWORKS="127.0.0.1/32",
    )
    env.update(overrides)
    return env


async def until(predicate: Callable[[], bool], within: float, what: str) -> None:
    """Poll ``predicate`` (state that other tasks, threads or processes change) until true;
    fails with ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:.0f} s: {what}")
        await asyncio.sleep(0.02)


class Process:
    """One ``teamboard <args>`` process; ``start`` again after ``kill`` for a new one (same
    arguments, same environment, same log file)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> None:
        assert not self.running, "already running"
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"--- start {self.starts}: teamboard {' '.join(self.args)}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(  # noqa: S603 - our own command
                [COMMAND, *self.args],
                env=self.env,
                cwd=self.log.parent,  # no stray .env file is read
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def kill(self) -> None:
        """SIGKILL by pid, then reap it."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
        await asyncio.to_thread(self.popen.wait, 30)

    async def stop(self, within: float = 30) -> int:
        """SIGTERM (graceful), SIGKILL if it has not exited ``within`` seconds; the exit code."""
        assert self.popen is not None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.popen.wait, within)
            except subprocess.TimeoutExpired:
                await self.kill()
        return self.popen.wait()

    def tail(self, lines: int = 40) -> str:
        """The end of the process's output (for failure messages)."""
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class Api(Process):
    """``teamboard serve`` on a free 127.0.0.1 port (kept across restarts)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(["serve", "--host", "127.0.0.1", "--port", str(self.port)], env, log)

    async def ready(self, within: float = 60) -> float:
        """Wait until ``/health/ready`` answers 200; returns how long it took."""
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as client:
            while time.monotonic() - started < within:
                if not self.running:
                    raise AssertionError(f"teamboard serve exited:\n{self.tail()}")
                try:
                    if (await client.get("/health/ready")).status_code == 200:
                        return time.monotonic() - started
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(f"teamboard serve not ready within {within} s:\n{self.tail()}")

    async def restart(self) -> float:
        """Start again and wait until ready; returns the time to ready."""
        self.start()
        return await self.ready()


class Processes:
    """Starts processes for one test and kills (by pid) whatever is still running after it."""

    def __init__(self, settings: Settings, db_urls: DatabaseUrls, logs: Path) -> None:
        self._settings, self._db_urls, self._logs = settings, db_urls, logs
        self._started: list[Process] = []

    def env(self, **overrides: str) -> dict[str, str]:
        return process_env(self._settings, self._db_urls, **overrides)

    async def api(self, **overrides: str) -> Api:
        """A started, ready ``teamboard serve``."""
        api = Api(self.env(**overrides), self._logs / f"serve-{len(self._started)}.log")
        self._started.append(api)
        await api.restart()
        return api

    def worker(self, **overrides: str) -> Process:
        """A started ``teamboard worker``."""
        worker = Process(
            ["worker"], self.env(**overrides), self._logs / f"worker-{len(self._started)}.log"
        )
        self._started.append(worker)
        worker.start()
        return worker

    async def kill_all(self) -> None:
        for process in self._started:
            await process.kill()


@pytest.fixture(name="processes")
async def processes_fixture(
    settings: Settings, db_urls: DatabaseUrls, tmp_path: Path
) -> AsyncIterator[Processes]:
    """Import it into a test module (``import processes_fixture``) to use ``processes``."""
    started = Processes(settings, db_urls, tmp_path)
    try:
        yield started
    finally:
        await started.kill_all()
