"""Time-entry rules: one running timer per user and team, bounded entries that end after
they start and not in the future, and edits by the entry's user or an admin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from teamboard.deps import TeamContext
from teamboard.errors import Conflict, NotFound, Unprocessable
from teamboard.events.repository import append
from teamboard.kit.etag import changed_meanwhile, check_if_match
from teamboard.kit.ids import new_id
from teamboard.tasks.lookup import live_task_project
from teamboard.time_tracking import repository
from teamboard.time_tracking.schemas import ManualEntryIn, TimeEntryPatch

#: Tolerated clock difference between a client and the server.
CLOCK_SKEW = timedelta(minutes=1)


def check_span(started: datetime, ended: datetime | None, max_seconds: int) -> None:
    """422 unless the entry ends after it starts, lasts at most ``max_seconds`` and does
    not reach into the future (a running entry: it did not start in the future)."""
    latest = datetime.now(UTC) + CLOCK_SKEW
    if ended is None:
        if started > latest:
            raise Unprocessable("started_at is in the future", code="time_in_future")
        return
    if ended <= started:
        raise Unprocessable("ended_at must be after started_at", code="invalid_time_range")
    if ended - started > timedelta(seconds=max_seconds):
        raise _too_long(max_seconds)
    if ended > latest:
        raise Unprocessable("ended_at is in the future", code="time_in_future")


async def start_timer(ctx: TeamContext, task_id: UUID, note: str) -> dict[str, Any]:
    entry = await repository.start_timer(ctx.tx, new_id(), task_id, ctx.user_id, note)
    if entry is None:
        running = await repository.running_entry(ctx.tx, ctx.user_id)
        if running is None and await live_task_project(ctx.tx, task_id) is None:
            raise NotFound()
        raise Conflict(
            "A timer is already running; stop it first",
            code="timer_already_running",
            extra={"running_entry_id": str(running["id"])} if running else None,
        )
    await append(
        ctx.tx,
        "time_entry.started",
        subject_id=task_id,
        project_id=entry["project_id"],
        payload={
            "time_entry_id": entry["id"],
            "task_id": task_id,
            "started_at": entry["started_at"],
            "note": note,
        },
    )
    return entry


async def running_timer(ctx: TeamContext) -> dict[str, Any]:
    await ctx.require("guest")
    entry = await repository.running_entry(ctx.tx, ctx.user_id)
    if entry is None:
        raise NotFound("No timer is running", code="no_running_timer")
    return entry


async def stop_timer(ctx: TeamContext, max_seconds: int) -> dict[str, Any]:
    await ctx.require("guest")
    entry = await repository.stop_timer(ctx.tx, ctx.user_id, max_seconds)
    if entry is None:
        raise Conflict("No timer is running", code="timer_not_running")
    await append(
        ctx.tx,
        "time_entry.stopped",
        subject_id=entry["task_id"],
        project_id=entry["project_id"],
        payload={
            "time_entry_id": entry["id"],
            "task_id": entry["task_id"],
            "ended_at": entry["ended_at"],
            "duration_seconds": entry["duration_seconds"],
        },
    )
    return entry


def _too_long(max_seconds: int) -> Unprocessable:
    return Unprocessable(
        f"A time entry lasts at most {max_seconds} seconds",
        code="duration_too_long",
        extra={"max_seconds": max_seconds},
    )


def _end_of(body: ManualEntryIn, max_seconds: int) -> datetime:
    if body.ended_at is not None:
        return body.ended_at
    assert body.duration_seconds is not None  # the schema requires one of the two
    if body.duration_seconds > max_seconds:
        raise _too_long(max_seconds)
    try:
        return body.started_at + timedelta(seconds=body.duration_seconds)
    except OverflowError:
        raise Unprocessable("started_at is out of range", code="invalid_time_range") from None


async def create_entry(
    ctx: TeamContext, task_id: UUID, body: ManualEntryIn, max_seconds: int
) -> dict[str, Any]:
    ended = _end_of(body, max_seconds)
    check_span(body.started_at, ended, max_seconds)
    values = {
        "id": new_id(),
        "task": task_id,
        "user": ctx.user_id,
        "started_at": body.started_at,
        "ended_at": ended,
        "note": body.note,
    }
    entry = await repository.insert_entry(ctx.tx, values)
    if entry is None:
        raise NotFound()
    await append(
        ctx.tx,
        "time_entry.created",
        subject_id=task_id,
        project_id=entry["project_id"],
        payload={
            "time_entry_id": entry["id"],
            "task_id": task_id,
            "started_at": entry["started_at"],
            "ended_at": entry["ended_at"],
            "note": entry["note"],
        },
    )
    return entry


async def get_entry(ctx: TeamContext, entry_id: UUID, *, lock: bool = False) -> dict[str, Any]:
    entry = await repository.get_entry(ctx.tx, entry_id, lock=lock)
    if entry is None:
        raise NotFound()
    return entry


async def _editable(ctx: TeamContext, entry_id: UUID) -> dict[str, Any]:
    """The entry, if the caller may change it: their own, or any as an admin."""
    entry = await get_entry(ctx, entry_id)
    if entry["user_id"] != ctx.user_id:
        await ctx.require("admin")
    return entry


async def update_entry(
    ctx: TeamContext,
    entry_id: UUID,
    patch: TimeEntryPatch,
    max_seconds: int,
    if_match: str | None = None,
) -> dict[str, Any]:
    """Change the entry; ``if_match`` (the ``If-Match`` header) must match the version.

    The entry is read again, locked, once the caller may change it (a lock needs the update
    policy, which a guest does not pass: checked first, they get their 403): the fields not
    sent are written back as read, so a stop committed meanwhile must be what is read."""
    await _editable(ctx, entry_id)
    entry = await get_entry(ctx, entry_id, lock=True)
    version = check_if_match(if_match, entry["version"])
    changes = patch.model_dump(exclude_unset=True)
    started = patch.started_at or entry["started_at"]
    ended = patch.ended_at or entry["ended_at"]
    if patch.started_at or patch.ended_at:  # a note alone keeps an entry valid as it was
        check_span(started, ended, max_seconds)
    note = entry["note"] if patch.note is None else patch.note
    updated = await repository.update_entry(ctx.tx, entry_id, started, ended, note, version)
    if updated is None:
        raise changed_meanwhile() if version is not None else NotFound()
    await append(
        ctx.tx,
        "time_entry.updated",
        subject_id=entry["task_id"],
        project_id=entry["project_id"],
        payload={**changes, "time_entry_id": entry_id, "task_id": entry["task_id"]},
    )
    return updated


async def delete_entry(ctx: TeamContext, entry_id: UUID) -> None:
    entry = await _editable(ctx, entry_id)
    if not await repository.delete_entry(ctx.tx, entry_id):
        raise NotFound()
    await append(
        ctx.tx,
        "time_entry.deleted",
        subject_id=entry["task_id"],
        project_id=entry["project_id"],
        payload={"time_entry_id": entry_id, "task_id": entry["task_id"]},
    )


async def list_entries(
    ctx: TeamContext,
    filters: dict[str, Any],
    limit: int,
    after: tuple[datetime, UUID] | None,
) -> list[dict[str, Any]]:
    """A page of the team's entries (``filters["task"]`` set: of that live task, 404 if
    there is none; otherwise the caller must be a member)."""
    if filters["task"] is not None:
        if await live_task_project(ctx.tx, filters["task"]) is None:
            raise NotFound()
    else:
        await ctx.require("guest")
    return await repository.list_entries(ctx.tx, filters, limit, after)


async def task_totals(ctx: TeamContext, task_id: UUID, range_: dict[str, Any]) -> dict[str, Any]:
    return _found(await repository.task_totals(ctx.tx, task_id, range_))


async def project_totals(
    ctx: TeamContext, project_id: UUID, range_: dict[str, Any]
) -> dict[str, Any]:
    return _found(await repository.project_totals(ctx.tx, project_id, range_))


async def user_totals(ctx: TeamContext, user_id: UUID, range_: dict[str, Any]) -> dict[str, Any]:
    return _found(await repository.user_totals(ctx.tx, ctx.team_id, user_id, range_))


def _found(row: dict[str, Any] | None) -> dict[str, Any]:
    if row is None:
        raise NotFound()
    return row
