"""A private PostgreSQL cluster that a test may stop and start (never the machine's server).

It uses the binaries shipped by the ``pgserver`` package (the embedded default, so it works
on a fresh machine) and lives in a temporary directory, listening on 127.0.0.1 on a free
port. As root, PostgreSQL refuses to run: the cluster then runs as the ``pgserver`` system
user, exactly like the embedded default does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pgserver._commands import POSTGRES_BIN_PATH

from tests.live import free_port

COMMAND_TIMEOUT = 60  # seconds; initdb and a crash-recovery start take a few


class PrivateCluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._user: str | None = None
        if os.geteuid() == 0:
            from pgserver.utils import ensure_folder_permissions, ensure_user_exists

            self._user = "pgserver"
            ensure_user_exists(self._user)
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent, 0o555)
            root.chmod(0o755)
            shutil.chown(root, self._user)

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(  # noqa: S603 - pgserver's own binaries, arguments made here
            [str(POSTGRES_BIN_PATH / tool), "-D", str(self.data), *args],
            check=True,
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            user=self._user,
        )

    def init(self) -> None:
        self._run("initdb", "--auth=trust", "--encoding=utf8", "-U", "postgres", "--no-sync")

    def start(self) -> float:
        """Start and wait until it accepts connections; returns the seconds it took."""
        started = time.monotonic()
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
        self._run(
            "pg_ctl",
            "-w",
            "-t",
            str(COMMAND_TIMEOUT),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "start",
        )
        return time.monotonic() - started

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m mode``; ``immediate`` kills every backend without a checkpoint
        (the next start runs crash recovery)."""
        self._run("pg_ctl", "-w", "-m", mode, "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    """An initialised, started cluster; stopped and removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="teamboard-pg-") as tmp:
        cluster = PrivateCluster(Path(tmp))
        cluster.init()
        cluster.start()
        try:
            yield cluster
        finally:
            if cluster.running():
                cluster.stop("immediate")
