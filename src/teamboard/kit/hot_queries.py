"""The registry of hot queries that ``teamboard db explain`` checks.

A feature lists its hot reads (every dashboard, list and search) in a ``hot_queries``
module of its package as ``QUERIES``, a list of :class:`HotQuery`, and names that module in
``teamboard.ops.explain.PROVIDERS``. A hot query is the feature's own service call, run with
a sample of real ids: the audit explains every statement it issues, so the checked SQL is
exactly the SQL the API runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from teamboard.deps import TeamContext
from teamboard.kit.pagination import CursorCodec


@dataclass(frozen=True)
class Sample:
    """Ids of a large team, as seen by its owner: the team, the owner, a busy project of the
    team and a task of it with comments, a word of its title, and the current time."""

    team_id: UUID
    user_id: UUID
    project_id: UUID
    task_id: UUID
    word: str
    now: datetime


Run = Callable[[TeamContext, Sample, CursorCodec], Awaitable[object]]


@dataclass(frozen=True)
class HotQuery:
    """``window``: the span, ending now, of the event partitions its reads may touch (None:
    none). ``unbounded``: why it may touch every partition (a task's whole history). Either
    way, a probe of the rollup tail (a scan bounded by ``tx_id >=`` the watermark) may touch
    any partition: it returns the few events not folded yet, wherever they are dated."""

    name: str
    run: Run
    window: timedelta | None = None
    unbounded: str | None = None
