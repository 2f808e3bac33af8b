"""What migrations need from their runner: the names of the app role and the worker role."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

from alembic import context


def _checked(role: str) -> str:
    if not role.replace("_", "").isalnum():
        raise ValueError(f"invalid role name: {role!r}")
    return role


def app_role() -> str:
    """The app role to grant to (set by ``teamboard migrate``; env or default otherwise)."""
    role = context.config.attributes.get("app_role") or os.environ.get(
        "DATABASE_APP_ROLE", "teamboard_app"
    )
    return _checked(str(role))


def worker_role() -> str:
    """The worker role (reads the event log of every team; see ``teamboard.worker``)."""
    role = context.config.attributes.get("worker_role") or os.environ.get(
        "DATABASE_WORKER_ROLE", f"{app_role()}_worker"
    )
    return _checked(str(role))


def sibling(filename: str) -> ModuleType:
    """Another migration of ``versions/`` as a module (their file names are not
    identifiers): a downgrade that restores a function runs the upgrade that installed it,
    instead of keeping a second copy of its body."""
    path = Path(__file__).parent / "versions" / filename
    spec = importlib.util.spec_from_file_location(f"teamboard_migration_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
