"""GraphQL leaf types, enums, scalars and the generic Relay connection.

Values are the rows the repositories return (dicts) or the connection objects of
``pagination``, never instances of these classes: the schema reads every field by name
(``StrawberryConfig.default_resolver``), so a row goes to the client without a copy, and
the compiled path reads the same rows the same way. The classes declare the schema.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import Any, Generic, NewType, TypeVar
from uuid import UUID

import strawberry
from strawberry.scalars import JSON

from teamboard.config import Settings
from teamboard.graphql.limits import COST
from teamboard.kit.instants import within_range
from teamboard.kit.ratelimit import WRITE_COST

T = TypeVar("T")


#: A mutation field's own cost: a REST write's rate-limit units times the default cost of
#: a unit (``GRAPHQL_COST_PER_RATE_UNIT``, as ``DASHBOARD_COST``), so that at that default a
#: write spends about the same through either API (without it, a mutation
#: was priced as one field, and a request of 16 aliased deletions spent one unit where REST
#: spends 32).
MUTATION_COST: int = WRITE_COST * Settings.model_fields["graphql_cost_per_rate_unit"].default


def resolved(
    resolver: Callable[..., Any],
    *,
    description: str | None = None,
    mutation: bool = False,
    cost: int | None = None,
) -> Any:
    """A field with a resolver. The class attribute's annotation is the field's schema type
    (Strawberry takes it over the resolver's, which returns rows); typed ``Any`` so that
    the attribute keeps that annotation. ``cost``: the field's own static cost, for a field
    heavier than a relation (see ``teamboard.graphql.limits``); a mutation costs at least
    :data:`MUTATION_COST`, what the same write spends through REST."""
    make = strawberry.mutation if mutation else strawberry.field
    if mutation:
        cost = max(cost or 0, MUTATION_COST)
    metadata = None if cost is None else {COST: cost}
    return make(resolver=resolver, description=description, metadata=metadata)


def serialize_datetime(value: datetime) -> str:
    """ISO 8601 as REST writes it (UTC as ``Z``)."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def parse_datetime(value: Any) -> datetime:
    """An ISO 8601 date-time with a time zone (a naive one is refused, as in REST)."""
    if not isinstance(value, str):
        raise ValueError("DateTime must be a string")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("DateTime needs a time zone offset")
    return within_range(parsed)


DateTime = strawberry.scalar(
    name="DateTime",
    description="An ISO 8601 date-time with its offset (UTC is written `Z`).",
    serialize=serialize_datetime,
    parse_value=parse_datetime,
)


#: An integer that may exceed 32 bits, which GraphQL's ``Int`` refuses: seconds summed over a
#: team and a year can. Its scalar is ``BIG_INT`` (registered by the schema).
BigInt = NewType("BigInt", int)


def parse_big_int(value: Any) -> int:
    """An integer (not a float, a string or a boolean)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("BigInt must be an integer")
    return value


BIG_INT = strawberry.scalar(
    name="BigInt",
    description="An integer that may exceed 32 bits (a JSON number, exact up to 2^53).",
    serialize=int,
    parse_value=parse_big_int,
)


@strawberry.enum
class Role(Enum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    GUEST = "guest"


@strawberry.enum
class Visibility(Enum):
    TEAM = "team"
    PRIVATE = "private"


@strawberry.enum
class StatusCategory(Enum):
    BACKLOG = "backlog"
    UNSTARTED = "unstarted"
    STARTED = "started"
    COMPLETED = "completed"
    CANCELED = "canceled"


@strawberry.enum
class NotificationKind(Enum):
    ASSIGNED = "assigned"
    MENTIONED = "mentioned"
    COMMENTED = "commented"


@strawberry.enum(description="Task orders (id breaks ties in the same direction).")
class TaskSort(Enum):
    CREATED_AT_DESC = "-created_at"
    CREATED_AT_ASC = "created_at"
    UPDATED_AT_DESC = "-updated_at"
    UPDATED_AT_ASC = "updated_at"
    DUE_AT_ASC = "due_at"
    DUE_AT_DESC = "-due_at"
    PRIORITY_ASC = "priority"
    PRIORITY_DESC = "-priority"
    NUMBER_ASC = "number"
    NUMBER_DESC = "-number"
    POSITION_ASC = "position"
    POSITION_DESC = "-position"


@strawberry.type(description="A user as teammates see them (no name once they left).")
class Person:
    id: UUID
    display_name: str | None


@strawberry.type(description="The caller.")
class Viewer:
    id: UUID
    email: str
    display_name: str
    created_at: datetime


@strawberry.type
class Member:
    user_id: UUID
    email: str
    display_name: str | None
    role: Role
    joined_at: datetime


@strawberry.type(description="A member of a private project, or a guest it is open to.")
class ProjectMember:
    user_id: UUID
    display_name: str | None
    added_at: datetime


@strawberry.type(description="A step of a project's workflow.")
class Status:
    id: UUID
    project_id: UUID
    name: str
    category: StatusCategory
    position: int
    created_at: datetime
    updated_at: datetime


@strawberry.type
class Label:
    id: UUID
    project_id: UUID
    name: str
    color: str
    created_at: datetime
    updated_at: datetime
    version: int = strawberry.field(description="Bumped by every change: `expectedVersion`.")


@strawberry.type(description="A label as a task carries it (the project's labels have more).")
class TaskLabel:
    id: UUID
    project_id: UUID
    name: str
    color: str


@strawberry.type(description="Markdown source, as written (render and sanitize it).")
class Comment:
    id: UUID
    task_id: UUID
    author: Person
    body: str
    mentions: list[Person]
    created_at: datetime
    updated_at: datetime
    edited_at: datetime | None
    version: int = strawberry.field(description="Bumped by every edit: `expectedVersion`.")


@strawberry.type(description="An attachment's metadata (download it through REST).")
class Attachment:
    id: UUID
    task_id: UUID
    project_id: UUID
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    uploaded_by: UUID
    created_at: datetime


@strawberry.type
class TimeEntry:
    id: UUID
    task_id: UUID
    project_id: UUID
    user_id: UUID
    started_at: datetime
    ended_at: datetime | None
    duration_seconds: int | None = strawberry.field(description="Null while the timer runs.")
    note: str
    created_at: datetime
    updated_at: datetime


@strawberry.type
class NotificationTask:
    id: UUID
    project_id: UUID
    ref: str
    title: str


@strawberry.type
class Notification:
    id: UUID
    kind: NotificationKind
    task: NotificationTask
    comment_id: UUID | None
    actor: Person
    created_at: datetime
    read_at: datetime | None


@strawberry.type
class ActivityComment:
    id: UUID
    body: str
    edited_at: datetime | None


@strawberry.type(description="An event of a task (its changes, comments, follows).")
class ActivityItem:
    id: UUID
    kind: str
    occurred_at: datetime
    actor: Person | None
    payload: JSON
    comment: ActivityComment | None = strawberry.field(
        description="Comment events: the comment as it is now (null once deleted)."
    )


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type(
    description="A page of a list, on the same signed keyset cursors as the REST list."
)
class Connection(Generic[T]):
    edges: list[Edge[T]]
    nodes: list[T]
    page_info: PageInfo
