"""The ASGI application factories: ``create_app`` builds the application (tests call it),
``create_server_app`` puts the admission gate in front of it, as ``teamboard serve`` runs it
(``uvicorn --factory teamboard.app:create_server_app``)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp

from teamboard import __version__
from teamboard.activity.router import router as activity_router
from teamboard.analytics.router import router as analytics_router
from teamboard.attachments.router import router as attachments_router
from teamboard.auth.api_keys_router import router as api_keys_router
from teamboard.auth.passwords import PasswordHasher
from teamboard.auth.router import router as auth_router
from teamboard.auth.throttle import LoginThrottle
from teamboard.auth.tokens import TokenService
from teamboard.comments.router import router as comments_router
from teamboard.config import Settings, get_settings
from teamboard.db import Database
from teamboard.deps import Services, ServicesDep, TeamCtx
from teamboard.errors import install_error_handlers
from teamboard.graphql.endpoint import router as graphql_router
from teamboard.graphql.engine import Engine
from teamboard.health.router import router as health_router
from teamboard.kit.admission import AdmissionMiddleware
from teamboard.kit.body_limit import BodyLimitMiddleware
from teamboard.kit.hot_reads import install_hot_reads
from teamboard.kit.openapi import install_openapi
from teamboard.kit.pagination import CursorCodec
from teamboard.kit.ratelimit import (
    CounterStore,
    LocalCounters,
    MemoryCounterStore,
    RateLimiter,
    RedisCounterStore,
    SyncedCounters,
)
from teamboard.kit.redis_client import redis_client
from teamboard.kit.responses import ORJSONResponse
from teamboard.kit.throttled import ThrottledCallersMiddleware, refusal_for
from teamboard.logging import RequestMiddleware, configure_logging
from teamboard.notifications.router import followers_router
from teamboard.notifications.router import router as notifications_router
from teamboard.ops.database import head_revision
from teamboard.projects.labels_router import router as labels_router
from teamboard.projects.router import router as projects_router
from teamboard.projects.statuses_router import router as statuses_router
from teamboard.realtime.hub import RealtimeHub
from teamboard.realtime.router import router as realtime_router
from teamboard.search.router import router as search_router
from teamboard.tasks.router import router as tasks_router
from teamboard.teams.router import router as teams_router
from teamboard.time_tracking.router import router as time_tracking_router
from teamboard.unit_of_work import UnitOfWorkMiddleware
from teamboard.webhooks.router import router as webhooks_router

API_PREFIX = "/api/v1"


def build_services(settings: Settings) -> Services:
    """Construct the per-process services (the database pool is opened by the lifespan)."""
    if not settings.database_app_url:
        raise RuntimeError("DATABASE_APP_URL is not set: start teamboard with `teamboard serve`")
    redis = redis_client(settings)
    # Login throttling asks Redis at every attempt and fails closed without it; API rate
    # limits count in memory and merge into Redis in the background (see SyncedCounters).
    throttle_store: CounterStore
    limits_store: LocalCounters
    if redis:
        throttle_store = RedisCounterStore(redis)
        limits_store = SyncedCounters(throttle_store, settings.rate_limit_sync_seconds)
    else:
        throttle_store = limits_store = MemoryCounterStore()
    return Services(
        settings=settings,
        db=Database(
            settings.database_app_url,
            settings,
            answer_timeout=settings.database_answer_timeout,
            plan_cache_mode=settings.database_plan_cache_mode,
        ),
        tokens=TokenService(settings),
        hasher=PasswordHasher(settings),
        throttle=LoginThrottle(throttle_store, settings),
        rate_limiter=RateLimiter(limits_store, settings.rate_limit_window_seconds),
        cursors=CursorCodec(settings.derived_key("cursor")),
        head_revision=head_revision(),
        redis=redis,
    )


#: See ``create_app``'s lifespan.
YOUNG_COLLECTION_THRESHOLD = 10_000


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = build_services(settings)
        await services.db.open(wait=False)
        app.state.services = services
        app.state.realtime = RealtimeHub.for_settings(settings, services.db, services.redis)
        app.state.realtime.end_streams_on_signals()
        app.state.graphql_engine = Engine.build(settings)
        # What exists now lives as long as the process: the collector stops scanning it, so
        # a request that allocates much (a GraphQL dashboard) does not pay for full scans
        # of every module, model and schema (measured: a third of such a request).
        gc.freeze()
        # Young collections every 10,000 net allocations instead of 700: a request allocates
        # thousands of containers, most freed by reference counting, and the default ran a
        # collection or two per request. Measured with bench.harness (one worker, task read,
        # CPU per request): 310 us at 700, 275 us at 5,000 and 20,000; at 1,024 connections
        # 454, 405 and 354 us (fewer full collections). Full collections still run, so
        # reference cycles are still freed.
        gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, 10, 10)
        try:
            yield
        finally:
            await app.state.realtime.close()
            await services.rate_limiter.aclose()  # before Redis: it sends pending counts
            await services.db.close()
            if services.redis is not None:
                await services.redis.aclose()

    app = FastAPI(
        title="teamboard",
        version=__version__,
        summary="Multi-tenant project and task management on PostgreSQL with RLS",
        default_response_class=ORJSONResponse,
        lifespan=lifespan,
        docs_url=None if settings.is_production else "/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        telemetry={
            "tracing": settings.opentelemetry,
            "metrics": settings.opentelemetry,
            "logs": settings.opentelemetry,
            "operation_spans": settings.opentelemetry,
        },
    )
    install_error_handlers(app)
    install_openapi(app)
    app.include_router(graphql_router)  # first: one path, matched before the REST routes
    routers = (
        tasks_router,  # first: FastAPI matches routes in order, tasks are the hottest
        auth_router,
        teams_router,
        projects_router,
        api_keys_router,
        comments_router,
        followers_router,
        notifications_router,
        activity_router,
        search_router,
        attachments_router,
        time_tracking_router,
        statuses_router,
        labels_router,
        realtime_router,
        webhooks_router,
        analytics_router,
    )
    for router in routers:
        app.include_router(router, prefix=API_PREFIX)
    if settings.hot_reads:
        install_hot_reads(app, API_PREFIX, routers, TeamCtx, ServicesDep)
    app.include_router(health_router)
    app.add_middleware(UnitOfWorkMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.request_max_bytes)
    app.add_middleware(ThrottledCallersMiddleware)  # a throttled credential stops here
    app.add_middleware(RequestMiddleware, expose_sql_count=settings.expose_sql_count)
    return app


def create_server_app(settings: Settings | None = None) -> AdmissionMiddleware:
    """The application behind the admission gate (``teamboard.kit.admission``): what
    ``teamboard serve`` runs. The gate's refusals are logged by the same request middleware,
    and a credential being refused 429 goes in without waiting (it is refused at once)."""
    settings = settings or get_settings()
    app = create_app(settings)

    def logged(answer: ASGIApp) -> ASGIApp:
        return RequestMiddleware(answer, expose_sql_count=settings.expose_sql_count)

    return AdmissionMiddleware(
        app,
        limit=settings.admission_limit,
        wait_seconds=settings.admission_wait_seconds,
        edge=logged,
        goes_first=lambda scope: refusal_for(app.state, scope) is not None,
    )
