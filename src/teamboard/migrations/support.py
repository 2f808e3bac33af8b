"""What migrations need from their runner (the names of the app role and the worker role),
and from each other (another migration's module, its SQL rewritten)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
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


def rewritten(text: str, changes: Iterable[tuple[str, str]], what: str) -> str:
    """``text`` (SQL of an earlier migration) with each ``(old, new)`` applied in turn, each
    ``old`` found exactly once: once the earlier text changes, the migration that derives
    from it fails instead of installing it unchanged. ``what`` names it in the error."""
    for old, new in changes:
        if text.count(old) != 1:
            raise RuntimeError(f"{what}: expected one {old!r}; rewrite this migration")
        text = text.replace(old, new)
    return text


#: The change that lets a derived ``create function`` or ``create view`` replace the old.
OR_REPLACE_FUNCTION = ("create function", "create or replace function")
OR_REPLACE_VIEW = ("create view", "create or replace view")
