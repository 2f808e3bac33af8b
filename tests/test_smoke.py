"""The app starts on a migrated database and answers its health checks."""

from __future__ import annotations

import httpx


async def test_live_and_ready(client: httpx.AsyncClient) -> None:
    live = await client.get("/health/live")
    assert live.status_code == 200
    assert live.json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["database"] == "ok"
    assert live.headers["cache-control"] == "no-store"
    assert ready.headers["x-request-id"]
