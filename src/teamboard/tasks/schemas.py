"""Bodies of the task routes.

Priority follows the usual tracker scale: 0 none, 1 urgent, 2 high, 3 medium, 4 low.
``estimate`` is a plain number of points (0 to 1,000,000). The description is Markdown text,
stored and returned verbatim (rendering and sanitizing are the client's), at most 50,000
characters.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Self
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from teamboard.auth.schemas import Strict
from teamboard.kit.instants import Instant
from teamboard.kit.schemas import null_only_for
from teamboard.kit.text import NO_NUL

MAX_ASSIGNEES = 20
MAX_LABELS = 50


def _unique(values: list[UUID]) -> list[UUID]:
    if len(set(values)) != len(values):
        raise ValueError("ids must not repeat")
    return values


Title = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), NO_NUL
]
Description = Annotated[str, StringConstraints(max_length=50_000), NO_NUL]
Priority = Annotated[int, Field(ge=0, le=4)]
Estimate = Annotated[int, Field(ge=0, le=1_000_000)]
AssigneeIds = Annotated[list[UUID], Field(max_length=MAX_ASSIGNEES), AfterValidator(_unique)]
LabelIds = Annotated[list[UUID], Field(max_length=MAX_LABELS), AfterValidator(_unique)]


class TaskIn(Strict):
    """A new task; without ``status_id`` it starts in the first ``unstarted`` status of the
    workflow (or the first status when there is none)."""

    title: Title
    description: Description = ""
    status_id: UUID | None = None
    priority: Priority = 0
    assignee_ids: AssigneeIds = Field(default_factory=list)
    label_ids: LabelIds = Field(default_factory=list)
    parent_id: UUID | None = None
    due_at: Instant | None = None
    estimate: Estimate | None = None


#: Fields that may be sent as ``null`` in a PATCH (to clear them).
NULLABLE = frozenset({"parent_id", "due_at", "estimate"})


class TaskPatch(Strict):
    """Only the fields sent change; ``assignee_ids`` and ``label_ids`` replace the whole
    set; ``parent_id``, ``due_at`` and ``estimate`` can be cleared with ``null``. A status
    change puts the task at the end of its new status (the move route places it exactly)."""

    model_config = ConfigDict(json_schema_extra=null_only_for(NULLABLE))

    title: Title | None = None
    description: Description | None = None
    status_id: UUID | None = None
    priority: Priority | None = None
    assignee_ids: AssigneeIds | None = None
    label_ids: LabelIds | None = None
    parent_id: UUID | None = None
    due_at: Instant | None = None
    estimate: Estimate | None = None

    @model_validator(mode="after")
    def _null_only_where_clearable(self) -> Self:
        for name in self.model_fields_set - NULLABLE:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class MoveIn(Strict):
    """Where to put the task: right before or after another task (whose status it joins,
    unless ``status_id`` is given and must then be the anchor's), or at the end of
    ``status_id`` (or of its current status) without an anchor."""

    status_id: UUID | None = None
    before_id: UUID | None = None
    after_id: UUID | None = None

    model_config = ConfigDict(json_schema_extra={"not": {"required": ["before_id", "after_id"]}})

    @model_validator(mode="after")
    def _one_anchor(self) -> Self:
        if self.before_id is not None and self.after_id is not None:
            raise ValueError("give before_id or after_id, not both")
        return self


class LabelRef(BaseModel):
    id: UUID
    name: str
    color: str


class TaskSummary(BaseModel):
    """A task as lists show it (everything but the description)."""

    id: UUID
    key: str
    number: int
    project_id: UUID
    title: str
    status_id: UUID
    priority: int
    parent_id: UUID | None
    due_at: datetime | None
    estimate: int | None
    position: int
    created_by: UUID
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    version: int
    assignee_ids: list[UUID]
    labels: list[LabelRef]


class TaskOut(TaskSummary):
    description: str


class TaskList(BaseModel):
    items: list[TaskSummary]
    next_cursor: str | None
