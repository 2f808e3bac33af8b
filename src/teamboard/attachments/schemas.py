"""Bodies of the attachment routes (uploads are raw bodies, not JSON)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel


class AttachmentOut(BaseModel):
    id: UUID
    task_id: UUID
    project_id: UUID
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    uploaded_by: UUID
    created_at: datetime


class AttachmentList(BaseModel):
    items: list[AttachmentOut]
    next_cursor: str | None
