"""Smoke test of the embedded default: `teamboard serve --demo` with no DATABASE_URL.

Starts the server as a subprocess on 127.0.0.1, waits (bounded) until it is ready, signs in
as the demo user, reads its teams, starts `teamboard worker` on the same embedded database,
receives an event on the team's realtime feed, stops both with SIGTERM and checks clean
exits, then runs ``teamboard db audit`` on the same embedded database, generates an
analytics data set there and runs ``teamboard db explain`` on it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


PORT = _free_port()
BASE = f"http://127.0.0.1:{PORT}"


def feed(team_id: str, headers: dict[str, str]) -> None:
    """Open the team's event stream, rename the team, and read the event (bounded)."""
    path = f"{BASE}/api/v1/teams/{team_id}/events/stream"
    with httpx.stream("GET", path, headers=headers, timeout=30) as stream:
        if stream.status_code != 200:
            raise AssertionError(f"stream answered {stream.status_code}")
        lines = stream.iter_lines()
        for line in lines:
            if line.startswith("event: ready"):
                break
        renamed = httpx.patch(
            f"{BASE}/api/v1/teams/{team_id}", json={"name": "Smoke"}, headers=headers
        )
        if renamed.status_code != 200:
            raise AssertionError(renamed.text)
        deadline = time.monotonic() + 30
        for line in lines:
            if line.startswith("data: ") and '"team.updated"' in line:
                return
            if time.monotonic() > deadline:
                break
    raise AssertionError("the renaming never reached the realtime feed")


def started(worker: subprocess.Popen[bytes], log: str, within: float = 60.0) -> bool:
    """Whether the worker logged that it started within ``within`` seconds (polled)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and worker.poll() is None:
        with open(log, "rb") as lines:
            if b'"worker started"' in lines.read():
                return True
        time.sleep(0.2)
    return False


def main() -> int:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    with tempfile.TemporaryDirectory(prefix="teamboard-smoke-") as data_dir:
        env["DATA_DIR"] = data_dir
        server = subprocess.Popen(["teamboard", "serve", "--demo", "--port", str(PORT)], env=env)
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                if server.poll() is not None:
                    print("server exited early", file=sys.stderr)
                    return 1
                try:
                    if httpx.get(f"{BASE}/health/ready", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            else:
                print("server not ready in time", file=sys.stderr)
                return 1
            login = httpx.post(
                f"{BASE}/api/v1/auth/login",
                json={"email": "acme@demo.teamboard.dev", "password": "teamboard-demo-password"},
            )
            if login.status_code != 200:
                raise AssertionError(login.text)
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            teams = httpx.get(f"{BASE}/api/v1/teams", headers=headers)
            if teams.status_code != 200 or len(teams.json()["items"]) != 1:
                raise AssertionError(teams.text)
            team_id = teams.json()["items"][0]["id"]
            projects = httpx.get(f"{BASE}/api/v1/teams/{team_id}/projects", headers=headers)
            if projects.status_code != 200 or not projects.json()["items"]:
                raise AssertionError(projects.text)
            print("embedded smoke: ready, demo login, teams and projects OK")
            worker_log = os.path.join(data_dir, "worker.log")
            with open(worker_log, "wb") as log:
                worker = subprocess.Popen(["teamboard", "worker"], env=env, stdout=log, stderr=log)
            try:
                feed(team_id, headers)
                # Stopped only once it runs: a signal while it still imports kills it (its
                # handlers do not exist yet), which is not what this checks.
                if not started(worker, worker_log):
                    print("worker did not start", file=sys.stderr)
                    return 1
                time.sleep(2)
                if worker.poll() is not None:
                    print("worker exited early", file=sys.stderr)
                    return 1
            finally:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker_code = worker.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker_code = worker.wait()
            if worker_code != 0:
                print(f"worker exited with {worker_code} after SIGTERM", file=sys.stderr)
                print(Path(worker_log).read_text(errors="replace")[-4000:], file=sys.stderr)
                return 1
            print("embedded smoke: realtime feed and worker OK")
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                code = server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                code = server.wait()
        if code != 0:
            print(f"server exited with {code} after SIGTERM", file=sys.stderr)
            return 1
        print("embedded smoke: clean shutdown")
        audit = subprocess.run(["teamboard", "db", "audit"], env=env, timeout=300, check=False)
        if audit.returncode != 0:
            print("teamboard db audit failed", file=sys.stderr)
            return 1
        # The hot queries' plans on generated data (a small set: the table-size threshold
        # is scaled down with it, so the event, task and rollup tables are all above it).
        commands = (
            ["teamboard", "seed", "--events", "40000", "--teams", "3", "--random-seed", "23"],
            ["teamboard", "db", "explain", "--max-seq-rows", "1500"],
        )
        for command in commands:
            done = subprocess.run(command, env=env, timeout=900, check=False)
            if done.returncode != 0:
                print(f"{' '.join(command)} failed", file=sys.stderr)
                return 1
        print("embedded smoke: db audit and db explain OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
