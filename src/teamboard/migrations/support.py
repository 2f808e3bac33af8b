"""What migrations need from their runner: the app role's name."""

from __future__ import annotations

import os

from alembic import context


def app_role() -> str:
    """The app role to grant to (set by ``teamboard migrate``; env or default otherwise)."""
    role = context.config.attributes.get("app_role") or os.environ.get(
        "DATABASE_APP_ROLE", "teamboard_app"
    )
    if not str(role).replace("_", "").isalnum():
        raise ValueError(f"invalid app role name: {role!r}")
    return str(role)
