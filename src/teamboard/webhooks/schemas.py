"""Bodies of the webhook routes. The signing secret appears once, in the creation answer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, Field, StringConstraints

from teamboard.auth.schemas import Strict
from teamboard.kit.text import NO_NUL

#: An event kind (``task.created``), all kinds of a family (``task.*``), or everything (``*``).
KindPattern = Annotated[
    str,
    StringConstraints(max_length=100, pattern=r"^(\*|[a-z][a-z0-9_]*(\.[a-z0-9_]+)*(\.\*)?)$"),
]
Kinds = Annotated[list[KindPattern], Field(min_length=1, max_length=50)]
Url = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=10, max_length=2048), NO_NUL
]
Description = Annotated[str, StringConstraints(max_length=500), NO_NUL]
DeliveryStatus = Literal["pending", "succeeded", "failed", "skipped"]


class WebhookIn(Strict):
    url: Url
    kinds: Kinds
    description: Description = ""


class WebhookPatch(Strict):
    url: Url | None = None
    kinds: Kinds | None = None
    description: Description | None = None
    enabled: bool | None = None  # true re-enables (and forgets past failures)


class WebhookOut(BaseModel):
    id: UUID
    url: str
    kinds: list[str]
    description: str
    enabled: bool
    disabled_reason: str | None  # "too_many_failures", "disabled_by_admin"
    consecutive_failures: int
    created_by: UUID
    created_at: datetime
    updated_at: datetime
    version: int  # raised by every change, deliveries' failure counts included: the ETag


class WebhookCreated(WebhookOut):
    secret: str  # whsec_...: signs deliveries; shown only here


class WebhookList(BaseModel):
    items: list[WebhookOut]
    next_cursor: str | None


class DeliveryOut(BaseModel):
    id: UUID
    webhook_id: UUID
    event_id: UUID
    event_kind: str
    event_occurred_at: datetime
    redelivery_of: UUID | None
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    completed_at: datetime | None
    created_at: datetime


class AttemptOut(BaseModel):
    id: UUID
    status_code: int | None
    error: str | None
    duration_ms: int
    created_at: datetime


class DeliveryDetail(DeliveryOut):
    attempt_log: list[AttemptOut]  # oldest first


class DeliveryList(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None
