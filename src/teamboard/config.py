"""Settings: the one place that reads environment variables.

Every setting can be given as an environment variable of the same name in upper case (for
example ``DATABASE_URL``) or in a ``.env`` file in the working directory.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_KEY = "teamboard-development-secret-key-change-me"  # noqa: S105 - refused in production
MIN_PRODUCTION_SECRET_LENGTH = 32
#: Attachment types accepted by default. Types a browser could render as active content
#: (HTML, SVG, XML) are left out, even though downloads are served as attachments.
DEFAULT_ATTACHMENT_TYPES = (
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "application/zip",
    "text/plain",
    "text/csv",
    "text/markdown",
    "application/json",
)


class Settings(BaseSettings):
    """Runtime configuration; see ``.env.example`` for a commented list."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    secret_key: SecretStr = SecretStr(DEV_SECRET_KEY)

    database_url: str | None = Field(
        default=None, description="Owner URL (runs migrations). Unset: embedded PostgreSQL."
    )
    database_app_url: str | None = Field(
        default=None, description="App-role URL; derived from DATABASE_URL when unset."
    )
    database_app_role: str = "teamboard_app"
    database_worker_url: str | None = Field(
        default=None,
        description="Worker-role URL (reads the event log of every team, see"
        " teamboard.worker); derived from DATABASE_URL when unset.",
    )
    database_worker_role: str | None = Field(
        default=None, description="The worker role's name; unset: DATABASE_APP_ROLE + '_worker'."
    )
    database_name: str = "teamboard"
    pool_min_size: int = Field(default=4, ge=1)
    pool_max_size: int = Field(default=16, ge=1)
    pool_timeout_seconds: float = Field(default=5.0, gt=0)
    statement_timeout_ms: int = Field(default=15_000, ge=0)
    database_connect_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Longest wait to open a database connection (TCP, TLS, authentication):"
        " a server that accepts but never answers is a 503, not a hung request.",
    )
    database_answer_timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Longest wait of the API for the server's answer to one statement (a lost"
        " server, a network black hole); the connection is then dropped and the request gets"
        " a 503. Unset: STATEMENT_TIMEOUT_MS plus 5 s, so the server's own cancellation comes"
        " first; no limit when STATEMENT_TIMEOUT_MS is 0.",
    )

    database_plan_cache_mode: Literal["force_generic_plan", "auto"] = Field(
        default="force_generic_plan",
        description="PostgreSQL's plan_cache_mode on the API's connections. The API's"
        " statements are prepared; with force_generic_plan each is planned once per"
        " connection, and `teamboard db explain` and the plan tests check those generic"
        " plans. With auto, PostgreSQL plans a statement again at every execution whenever"
        " the values make a custom plan look cheaper: a deep page of a large project then"
        " spends more time planning than running (bench/README.md).",
    )

    redis_url: str | None = None
    redis_timeout_seconds: float = Field(
        default=0.5,
        gt=0,
        description="Longest wait to connect to Redis or for one answer (a command is retried"
        " once, on a fresh connection): rate limits then go on counting per process and"
        " login fails closed, instead of requests hanging on a Redis that is gone.",
    )
    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir("teamboard")))

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(default=1, ge=1)
    graceful_shutdown_seconds: int = Field(default=20, ge=0)
    log_level: str = "INFO"
    max_concurrent_requests: int | None = Field(
        default=None,
        ge=1,
        description="Requests of one process inside the app at once; the others wait at the"
        " edge, in order (teamboard.kit.admission). Health probes, realtime streams and"
        " attachment transfers never wait. Unset: POOL_MAX_SIZE, so that a request let in"
        " rarely waits for a connection inside the app (those that never wait share the pool).",
    )
    admission_wait_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How long a request may wait at the edge before a 503 overloaded.",
    )
    expose_sql_count: bool = Field(
        default=False, description="Send X-SQL-Statements on every response (tests, debugging)."
    )
    hot_reads: bool = Field(
        default=True,
        description="Serve team-scoped GET-by-id routes on the hot path (teamboard.kit.hot_reads);"
        " off only to compare with FastAPI's own dispatch.",
    )
    opentelemetry: bool = Field(
        default=False,
        description="FastAPI's OpenTelemetry spans, metrics and logs (off: its per-request"
        " provider checks cost ~5% of a read; teamboard's JSON access log stays on).",
    )

    # The worker (teamboard worker) and the event-log consumers.
    worker_batch_size: int = Field(default=500, ge=1, le=10_000)
    worker_idle_seconds: float = Field(
        default=5.0, gt=0, description="Longest wait for a wake-up before polling anyway."
    )
    worker_upkeep_seconds: float = Field(
        default=3600.0, gt=0, description="Interval of partition upkeep and log retention."
    )
    trash_retention_days: int = Field(
        default=30,
        ge=0,
        le=36_500,
        description="A soft-deleted task can be restored for this many days; an hour later"
        " the worker's upkeep deletes it for good (and a deleted project once its tasks"
        " have gone), with comments, time entries and attachments (bytes included). Give"
        " servers and workers the same value. 0 keeps them.",
    )
    analytics_fold_seconds: float = Field(
        default=2.0,
        gt=0,
        le=3600,
        description="Interval of the analytics fold (events into the rollups). Dashboards are"
        " exact whatever it is: they add the events not folded yet, which a longer interval"
        " makes more numerous.",
    )
    event_partitions_ahead: int = Field(default=3, ge=2, le=24)
    event_retention_months: int = Field(
        default=24, ge=0, description="Drop event partitions older than this; 0 keeps all."
    )

    # Realtime feed (Server-Sent Events).
    realtime_wakeup: Literal["auto", "postgres", "redis"] = Field(
        default="auto",
        description="Wake-up signal of the realtime feed: PostgreSQL LISTEN, or Redis pub/sub"
        " (fed by `teamboard worker`); auto: Redis when REDIS_URL is set.",
    )
    realtime_heartbeat_seconds: float = Field(default=15.0, gt=0)
    realtime_batch_size: int = Field(default=200, ge=1, le=1000)
    realtime_send_timeout_seconds: float = Field(
        default=10.0, gt=0, description="A client that does not take a batch in time is closed."
    )
    realtime_max_subscribers: int = Field(default=10_000, ge=1)

    # Webhooks.
    webhook_max_attempts: int = Field(default=8, ge=1, le=30)
    webhook_retry_base_seconds: float = Field(default=30.0, gt=0)
    webhook_retry_max_seconds: float = Field(default=3600.0, gt=0)
    webhook_failure_threshold: int = Field(
        default=20, ge=1, description="Consecutive failed attempts that disable a webhook."
    )
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_concurrency: int = Field(default=8, ge=1, le=256)
    webhook_log_retention_days: int = Field(default=30, ge=1)
    webhook_allowed_networks: str = Field(
        default="",
        description="Comma-separated CIDRs that webhooks may reach although private or"
        " loopback (on-premises receivers, tests). Empty: public addresses only.",
    )
    webhook_allow_http: bool = Field(
        default=False, description="Accept http:// endpoints (tests, on-premises); else HTTPS only."
    )

    jwt_issuer: str = "teamboard"
    jwt_audience: str = "teamboard-api"
    access_token_ttl_seconds: int = Field(default=900, ge=30)
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=60)
    invitation_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)

    argon2_time_cost: int = Field(default=2, ge=2)
    argon2_memory_kib: int = Field(default=19_456, ge=19_456)
    argon2_parallelism: int = Field(default=1, ge=1)

    login_max_failures_per_account_ip: int = 5
    login_max_failures_per_ip: int = 50
    login_max_failures_per_account: int = 100
    login_window_seconds: int = 900

    # API rate limits, in cost units per window (a read of one resource costs 1, a list 5,
    # a write 2; see teamboard.kit.ratelimit.route_cost).
    rate_limit_window_seconds: int = Field(default=60, ge=1)
    rate_limit_per_caller: int = Field(default=3000, ge=1)
    rate_limit_per_team: int = Field(default=20000, ge=1)
    rate_limit_per_ip: int = Field(
        default=600, ge=1, description="Routes without a caller (registration, login, refresh)."
    )
    rate_limit_sync_seconds: float = Field(
        default=0.1,
        gt=0,
        le=10,
        description="With Redis: how often a process merges its rate-limit counts into Redis"
        " (and so how late it sees the other processes' spending; see SyncedCounters).",
    )

    # GraphQL (teamboard.graphql): limits checked before any resolver runs. Introspection
    # and field suggestions are off in production, GraphiQL is served in development only.
    graphql_max_depth: int = Field(default=6, ge=1, description="Nesting of fields.")
    graphql_max_cost: int = Field(
        default=20_000, ge=1, description="Static cost (see teamboard.graphql.limits)."
    )
    graphql_max_aliases: int = Field(default=15, ge=0)
    graphql_max_tokens: int = Field(default=1000, ge=1)
    graphql_max_batch: int = Field(default=5, ge=1, description="Operations per request.")
    graphql_cost_per_rate_unit: int = Field(
        default=100,
        ge=1,
        description="Query cost per rate-limit unit: a 50-item page of 10 fields spends ~5,"
        " like a REST list.",
    )
    graphql_compiled: bool = Field(
        default=True,
        description="Run the query shapes teamboard.graphql.compiled knows without the"
        " GraphQL engine (same SQL, same answer).",
    )

    request_max_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest request body (bytes), refused with 413 before it is buffered"
        " (teamboard.kit.body_limit); attachment uploads have their own ATTACHMENT_MAX_BYTES.",
    )
    attachment_max_bytes: int = Field(
        default=25 * 1024 * 1024, ge=1, description="Largest attachment accepted (bytes)."
    )
    attachment_allowed_types: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ATTACHMENT_TYPES),
        description="Media types an attachment may declare (JSON list in the environment).",
    )
    attachment_storage: Literal["local", "s3"] = "local"
    attachment_dir: Path | None = Field(
        default=None, description="Local attachment storage; DATA_DIR/attachments when unset."
    )
    s3_bucket: str | None = None
    s3_prefix: str = Field(default="", pattern=r"^([A-Za-z0-9_-][A-Za-z0-9._-]*/)*$")
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    time_entry_max_seconds: int = Field(
        default=24 * 3600,
        ge=60,
        le=999_999_999,  # what the database's own stop reads (migration timer_cap)
        description="Longest time entry (a manual one, or a timer).",
    )

    @field_validator("attachment_allowed_types")
    @classmethod
    def _normalize_media_types(cls, types: list[str]) -> list[str]:
        return [media_type.strip().lower() for media_type in types]

    @model_validator(mode="after")
    def _refuse_weak_production_secret(self) -> Settings:
        secret = self.secret_key.get_secret_value()
        if self.environment == "production" and (
            secret == DEV_SECRET_KEY or len(secret) < MIN_PRODUCTION_SECRET_LENGTH
        ):
            raise ValueError(
                "SECRET_KEY must be set to a random value of at least "
                f"{MIN_PRODUCTION_SECRET_LENGTH} characters in production"
            )
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("POOL_MIN_SIZE must not exceed POOL_MAX_SIZE")
        if self.attachment_storage == "s3" and not self.s3_bucket:
            raise ValueError("ATTACHMENT_STORAGE=s3 needs S3_BUCKET")
        return self

    @property
    def database_answer_timeout(self) -> float | None:
        """DATABASE_ANSWER_TIMEOUT_SECONDS, or its default (see the field)."""
        if self.database_answer_timeout_seconds is not None:
            return self.database_answer_timeout_seconds
        return self.statement_timeout_ms / 1000 + 5 if self.statement_timeout_ms else None

    @property
    def admission_limit(self) -> int:
        """MAX_CONCURRENT_REQUESTS, or its default (see the field)."""
        return self.max_concurrent_requests or self.pool_max_size

    @property
    def worker_role(self) -> str:
        return self.database_worker_role or f"{self.database_app_role}_worker"

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def attachment_root(self) -> Path:
        """Where local attachment storage keeps its objects (and uploads are staged)."""
        return self.attachment_dir or self.data_dir / "attachments"

    def derived_key(self, purpose: str) -> bytes:
        """A key for one purpose (JWT signing, cursors, ...) derived from SECRET_KEY.

        Separate keys mean a token made for one purpose can never verify for another.
        """
        return hmac.new(
            self.secret_key.get_secret_value().encode(), purpose.encode(), hashlib.sha256
        ).digest()


@lru_cache
def get_settings() -> Settings:
    """The process settings, read once; tests build their own ``Settings`` instead."""
    return Settings()
