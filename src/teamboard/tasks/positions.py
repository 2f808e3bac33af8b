"""Manual ordering of tasks within a status: integer keys with gaps, local rebalance.

A status's tasks are ordered by ``(position, id)``. ``position`` is an integer kept within
±(2**53 - 1), so JavaScript clients read it exactly:

* a new task, or a task moved to the end of a status, goes to ``last + STEP``;
* a task moved between two neighbours takes the midpoint of their positions: only the moved
  task is written, nobody else is renumbered;
* when the neighbours are adjacent integers (about 16 moves into the same gap) there is no
  midpoint: the tasks of a window around the gap (``WINDOW`` on each side, then 4x more
  until the new gaps are at least ``MIN_GAP`` or the window spans the status) are spread
  evenly between the positions just outside the window. This *local rebalance* keeps their
  relative order; their version (ETag) is not bumped, since neither their content nor the
  order changed.

Deleted tasks keep their position and take no part in ordering. All placement runs while
the caller holds the project lock, so two moves cannot choose the same gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from teamboard.db import Tx
from teamboard.kit.pagination import limit_clause

STEP = 1 << 16
MAX_POSITION = (1 << 53) - 1
WINDOW = 8
MIN_GAP = STEP >> 4

Side = Literal["before", "after"]


@dataclass(frozen=True)
class Key:
    position: int
    id: UUID


def between(lo: int | None, hi: int | None) -> int | None:
    """A free position strictly between two neighbours (None: the ends of the status), or
    None when there is no room left."""
    if lo is None and hi is None:
        return 0
    if hi is None:
        assert lo is not None
        return lo + STEP if lo + STEP <= MAX_POSITION else None
    if lo is None:
        return hi - STEP if hi - STEP >= -MAX_POSITION else None
    return lo + (hi - lo) // 2 if hi - lo >= 2 else None


def spread(lo: int, hi: int, count: int) -> list[int] | None:
    """``count`` increasing positions evenly spaced strictly between ``lo`` and ``hi``."""
    gap = (hi - lo) // (count + 1)
    return [lo + gap * (i + 1) for i in range(count)] if gap >= 1 else None


async def _rows(
    tx: Tx, status_id: UUID, moving: UUID, key: Key | None, *, after: bool, limit: int
) -> list[Key]:
    """Live tasks of the status other than ``moving``, nearest first: those after ``key``
    (``after``), or those at or before it; ``key`` None means from the start / nothing."""
    params: dict[str, Any] = {
        "team": tx.team_id,
        "status": status_id,
        "moving": moving,
    }
    # The size in the text (a generic plan costs it right); sizes are 1, 2 and the
    # rebalance windows, so there are few texts.
    rows = limit_clause(limit, at_most=None)
    base = (
        "select id, position from task where team_id = %(team)s and status_id = %(status)s"
        " and deleted_at is null and id <> %(moving)s"
    )
    if key is None:
        if not after:
            return []
        found = await tx.fetch_all(base + f" order by position, id {rows}", params)
    else:
        params |= {"position": key.position, "id": key.id}
        if after:
            sql = base + (
                f" and (position, id) > (%(position)s, %(id)s) order by position, id {rows}"
            )
        else:
            sql = base + (
                " and (position, id) <= (%(position)s, %(id)s)"
                f" order by position desc, id desc {rows}"
            )
        found = await tx.fetch_all(sql, params)
    return [Key(row["position"], row["id"]) for row in found]


async def _last(tx: Tx, status_id: UUID, moving: UUID) -> Key | None:
    rows = await tx.fetch_all(
        "select id, position from task where team_id = %s and status_id = %s"
        " and deleted_at is null and id <> %s order by position desc, id desc limit 1",
        (tx.team_id, status_id, moving),
    )
    return Key(rows[0]["position"], rows[0]["id"]) if rows else None


async def place(
    tx: Tx, status_id: UUID, moving: UUID, anchor: Key | None = None, side: Side = "after"
) -> int:
    """The position for ``moving`` in ``status_id``: right ``side`` of ``anchor`` (a live
    task of that status), or at the end without one. May rebalance a window of others."""
    if anchor is None:
        left, right = await _last(tx, status_id, moving), None
    elif side == "after":
        left = anchor
        following = await _rows(tx, status_id, moving, anchor, after=True, limit=1)
        right = following[0] if following else None
    else:
        right = anchor
        preceding = await _rows(tx, status_id, moving, anchor, after=False, limit=2)
        # The anchor itself comes first (``<=``); the row before it is the left neighbour.
        before = [row for row in preceding if row.id != anchor.id]
        left = before[0] if before else None
    position = between(
        None if left is None else left.position, None if right is None else right.position
    )
    if position is not None:
        return position
    return await _rebalance(tx, status_id, moving, left)


async def _rebalance(tx: Tx, status_id: UUID, moving: UUID, left: Key | None) -> int:
    """Spread a window around the gap right after ``left`` and return the moving task's
    slot in it (the other tasks of the window are rewritten here)."""
    size = WINDOW
    while True:
        before = await _rows(tx, status_id, moving, left, after=False, limit=size + 1)
        after = await _rows(tx, status_id, moving, left, after=True, limit=size + 1)
        low_bound = before[size] if len(before) > size else None
        high_bound = after[size] if len(after) > size else None
        window = [*reversed(before[:size]), None, *after[:size]]  # None: the moving task
        existing = [key.position for key in window if key is not None]
        lo = (
            low_bound.position
            if low_bound is not None
            else max(-MAX_POSITION - 1, min(existing) - STEP)
        )
        hi = (
            high_bound.position
            if high_bound is not None
            else min(MAX_POSITION + 1, max(existing) + STEP)
        )
        whole = low_bound is None and high_bound is None
        positions = spread(lo, hi, len(window))
        if whole and positions is None:
            positions = spread(-MAX_POSITION - 1, MAX_POSITION + 1, len(window))
        if positions is not None and (whole or positions[1] - positions[0] >= MIN_GAP):
            break
        size *= 4
    changed = [
        (key.id, new)
        for key, new in zip(window, positions, strict=True)
        if key is not None and key.position != new
    ]
    if changed:
        await tx.execute(
            "update task t set position = v.position"
            " from unnest(%s::uuid[], %s::bigint[]) as v(id, position)"
            " where t.team_id = %s and t.id = v.id",
            ([task_id for task_id, _ in changed], [new for _, new in changed], tx.team_id),
        )
    return positions[window.index(None)]
