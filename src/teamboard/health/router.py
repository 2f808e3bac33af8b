"""Liveness (the process answers) and readiness (database reachable, schema at head)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Response

from teamboard.deps import ServicesDep
from teamboard.errors import problem_response
from teamboard.kit.responses import ORJSONResponse

router = APIRouter(prefix="/health", tags=["health"])
logger = logging.getLogger("teamboard.health")
READY_TIMEOUT_SECONDS = 2.0


@router.get("/live")
async def live() -> Response:
    """The process answers. ``RequestMiddleware`` serves this path before routing; the
    route declares it in the OpenAPI document and serves it if the app runs without it."""
    return ORJSONResponse({"status": "ok"})


@router.get("/ready")
async def ready(services: ServicesDep) -> Response:
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            async with services.db.transaction(write=False) as tx:
                version = await tx.fetch_value("select version_num from alembic_version")
    except Exception as exc:  # any failure means "not ready", never a 500
        logger.warning("readiness check failed: %s", type(exc).__name__)
        return problem_response(503, "not_ready", "The database is unreachable")
    expected = services.head_revision
    if version != expected:
        return problem_response(
            503, "migrations_pending", f"Schema at {version}, expected {expected}"
        )
    return ORJSONResponse({"status": "ok", "database": "ok", "schema": version})
