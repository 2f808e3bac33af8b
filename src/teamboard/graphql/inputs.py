"""GraphQL input types, checked by the REST request models.

An input becomes the dict of the fields the client sent (an omitted field stays omitted, an
explicit ``null`` is kept, so ``UpdateTaskInput`` has PATCH semantics) and is validated by
the same pydantic model as the REST body or query (``TaskIn``, ``TaskPatch``, ``TaskQuery``
...): the same bounds, the same refusal of NUL characters, the same 422
``validation_failed``. Ids, numbers, versions and authorship are never inputs.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar
from uuid import UUID

import strawberry
from pydantic import BaseModel, ValidationError

from teamboard.graphql.errors import invalid_input
from teamboard.graphql.types import StatusCategory, Visibility

M = TypeVar("M", bound=BaseModel)


def sent(value: Any) -> dict[str, Any]:
    """The fields of an input object the client gave, enums as their REST values."""
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(value):
        item = getattr(value, field.name)
        if item is strawberry.UNSET:
            continue
        if isinstance(item, list):
            item = [element.value if isinstance(element, Enum) else element for element in item]
        elif isinstance(item, Enum):
            item = item.value
        fields[field.name] = item
    return fields


def given(value: Any) -> dict[str, Any]:
    """The fields of an update input that carry a value: in GraphQL's nullable input fields
    ``null`` means "unchanged", as leaving the field out does (REST's PATCH refuses it)."""
    return {name: item for name, item in sent(value).items() if item is not None}


def validated(model: type[M], data: dict[str, Any], argument: str = "input") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_input(exc, argument) from None


@strawberry.input
class CreateProjectInput:
    key: str = strawberry.field(description="Upper-case letters and digits, like `ENG`.")
    name: str
    description: str | None = strawberry.UNSET
    visibility: Visibility | None = strawberry.UNSET


@strawberry.input(description="Only the fields given change; `archived` archives/unarchives.")
class UpdateProjectInput:
    name: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    visibility: Visibility | None = strawberry.UNSET
    archived: bool | None = strawberry.UNSET


@strawberry.input
class CreateLabelInput:
    name: str
    color: str = strawberry.field(description="`#rrggbb`")


@strawberry.input
class UpdateLabelInput:
    name: str | None = strawberry.UNSET
    color: str | None = strawberry.UNSET


@strawberry.input(description="A new task (see docs/work-management.md for the rules).")
class CreateTaskInput:
    title: str
    description: str | None = strawberry.UNSET
    status_id: UUID | None = strawberry.UNSET
    priority: int | None = strawberry.UNSET
    assignee_ids: list[UUID] | None = strawberry.UNSET
    label_ids: list[UUID] | None = strawberry.UNSET
    parent_id: UUID | None = strawberry.UNSET
    due_at: datetime | None = strawberry.UNSET
    estimate: int | None = strawberry.UNSET


@strawberry.input(
    description="Only the fields given change; `assigneeIds`/`labelIds` replace the set;"
    " `parentId`, `dueAt` and `estimate` are cleared with null."
)
class UpdateTaskInput:
    title: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    status_id: UUID | None = strawberry.UNSET
    priority: int | None = strawberry.UNSET
    assignee_ids: list[UUID] | None = strawberry.UNSET
    label_ids: list[UUID] | None = strawberry.UNSET
    parent_id: UUID | None = strawberry.UNSET
    due_at: datetime | None = strawberry.UNSET
    estimate: int | None = strawberry.UNSET


@strawberry.input(
    description="Right before or after another task (joining its status), or at the end of"
    " `statusId` (or of the current status)."
)
class MoveTaskInput:
    status_id: UUID | None = strawberry.UNSET
    before_id: UUID | None = strawberry.UNSET
    after_id: UUID | None = strawberry.UNSET


@strawberry.input(description="Filters of a task list (AND; a list matches any of its values).")
class TaskFilter:
    status_ids: list[UUID] | None = strawberry.UNSET
    status_categories: list[StatusCategory] | None = strawberry.UNSET
    assignee_ids: list[UUID] | None = strawberry.UNSET
    label_ids: list[UUID] | None = strawberry.UNSET
    priorities: list[int] | None = strawberry.UNSET
    due_after: datetime | None = strawberry.UNSET
    due_before: datetime | None = strawberry.UNSET
    created_after: datetime | None = strawberry.UNSET
    created_before: datetime | None = strawberry.UNSET
    updated_after: datetime | None = strawberry.UNSET
    updated_before: datetime | None = strawberry.UNSET
    parent_id: UUID | None = strawberry.UNSET
    q: str | None = strawberry.field(
        default=strawberry.UNSET, description="Case-insensitive substring of the title."
    )


#: TaskFilter's list fields as the REST query parameters they are.
FILTER_NAMES = {
    "status_ids": "status_id",
    "status_categories": "status_category",
    "assignee_ids": "assignee_id",
    "label_ids": "label_id",
    "priorities": "priority",
}


def filter_query(value: TaskFilter | None) -> dict[str, Any]:
    """The filter as REST task-list query parameters (a null list means no filter)."""
    if value is None:
        return {}
    return {
        FILTER_NAMES.get(name, name): item for name, item in sent(value).items() if item is not None
    }
