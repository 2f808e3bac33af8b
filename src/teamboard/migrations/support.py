"""What migrations need from their runner: the names of the app role and the worker role."""

from __future__ import annotations

import os

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
