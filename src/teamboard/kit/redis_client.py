"""The process's Redis client, built with bounded waits.

redis-py's defaults wait 5 s per socket operation and retry a failed command ten times with
backoff, so a Redis that is gone (refused, or up but unreachable) would hold a request for
seconds to a minute. Here every connection attempt and every answer waits at most
``REDIS_TIMEOUT_SECONDS``, and a command that lost its connection is retried once, at once,
on a fresh one (a connection that died with a Redis restart is replaced without an error);
a command that timed out is not retried (it has waited long enough). Callers then decide:
rate limits go on counting per process (``teamboard.kit.ratelimit.SyncedCounters``), login
fails closed (``teamboard.auth.throttle``), realtime wake-ups fall back to polling.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis import exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from teamboard.config import Settings


def redis_client(settings: Settings) -> aioredis.Redis | None:
    """A client for ``REDIS_URL``, or None when Redis is not configured."""
    if not settings.redis_url:
        return None
    timeout = settings.redis_timeout_seconds
    return aioredis.from_url(
        settings.redis_url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), retries=1, supported_errors=(exceptions.ConnectionError,)),
    )
