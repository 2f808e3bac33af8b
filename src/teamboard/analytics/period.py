"""What a dashboard is asked: a period of local days, a bucket size, and filters.

Days are the team's local days (``team.time_zone``). A *window* (``7d``, ``30d``, ``90d``,
``365d``) ends today and includes it; a custom range gives its first and last day. Weeks
start on Monday (ISO), months on the 1st; the first and last buckets may be partial.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from uuid import UUID

from teamboard.errors import Unprocessable
from teamboard.kit.instants import DAY_RANGE, day_within_range

Bucket = Literal["day", "week", "month"]
WINDOWS: dict[str, int] = {"7d": 7, "30d": 30, "90d": 90, "365d": 365}
DEFAULT_WINDOW = "30d"
#: The longest custom range, in days.
MAX_RANGE_DAYS = 731
#: An event kind, or a prefix ``task.*`` / ``custom.*`` matching every kind below it.
KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*(\.\*)?$")
MAX_FILTER_VALUES = 50


@dataclass(frozen=True)
class Span:
    """The last ``days`` local days (today included), or ``start`` to ``end`` (inclusive)."""

    days: int | None = None
    start: date | None = None
    end: date | None = None


def parse_span(window: str | None, start: date | None, end: date | None) -> Span:
    """A window name or a custom range (both: 422)."""
    if start is None and end is None:
        name = window or DEFAULT_WINDOW
        if name not in WINDOWS:
            raise Unprocessable(
                f"window must be one of {', '.join(WINDOWS)}", code="invalid_window"
            )
        return Span(days=WINDOWS[name])
    if window is not None or start is None or end is None:
        raise Unprocessable("Give either a window or both start and end", code="invalid_window")
    if end < start:
        raise Unprocessable("end must not be before start", code="invalid_range")
    if not (day_within_range(start) and day_within_range(end)):
        raise Unprocessable(f"Days must be {DAY_RANGE}", code="invalid_range")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise Unprocessable(f"A range covers at most {MAX_RANGE_DAYS} days", code="invalid_range")
    return Span(start=start, end=end)


@dataclass(frozen=True)
class Filters:
    """Dashboard filters; an empty tuple means no filter. Values of one filter are ORed,
    filters are ANDed."""

    projects: tuple[UUID, ...] = ()
    kinds: tuple[str, ...] = ()
    assignees: tuple[UUID, ...] = ()
    labels: tuple[UUID, ...] = ()
    users: tuple[UUID, ...] = ()

    def __post_init__(self) -> None:
        for name in ("projects", "kinds", "assignees", "labels", "users"):
            if len(getattr(self, name)) > MAX_FILTER_VALUES:
                raise Unprocessable(
                    f"At most {MAX_FILTER_VALUES} values per filter", code="too_many_filters"
                )
        bad = [kind for kind in self.kinds if not KIND_PATTERN.match(kind)]
        if bad:
            raise Unprocessable(
                "Kinds look like task.created, or custom.* for a prefix",
                code="invalid_kind",
                extra={"kinds": bad},
            )

    @property
    def exact_kinds(self) -> list[str]:
        return [kind for kind in self.kinds if not kind.endswith(".*")]

    @property
    def kind_patterns(self) -> list[str]:
        """LIKE patterns of the prefixes (``_`` escaped: it is a wildcard in LIKE)."""
        return [kind[:-1].replace("_", "\\_") + "%" for kind in self.kinds if kind.endswith(".*")]


@dataclass(frozen=True)
class DashboardQuery:
    span: Span
    bucket: Bucket = "day"
    filters: Filters = Filters()


@dataclass(frozen=True)
class Period:
    """A resolved span: local days ``start``..``end`` of ``time_zone``, and the instants
    ``[lo, hi)`` they cover (computed by PostgreSQL, whose zone data buckets the events).
    ``rollups`` tells whether the day-keyed rollups were bucketed in that zone when the
    period was resolved (a hint: a dashboard statement checks it again in its snapshot)."""

    time_zone: str
    start: date
    end: date
    lo: datetime
    hi: datetime
    bucket: Bucket
    rollups: bool = True

    def bucket_of(self, day: date) -> date:
        if self.bucket == "week":
            return day - timedelta(days=day.weekday())
        if self.bucket == "month":
            return day.replace(day=1)
        return day

    def buckets(self) -> list[date]:
        """The start of every bucket that overlaps the period, in order."""
        starts: list[date] = []
        day = self.start
        while day <= self.end:
            bucket = self.bucket_of(day)
            if not starts or starts[-1] != bucket:
                starts.append(bucket)
            day += timedelta(days=1)
        return starts

    def bucket_end(self, bucket: date) -> date:
        """The last day of a bucket, within the period."""
        if self.bucket == "week":
            last = bucket + timedelta(days=6)
        elif self.bucket == "month":
            following = (bucket.replace(day=28) + timedelta(days=4)).replace(day=1)
            last = following - timedelta(days=1)
        else:
            last = bucket
        return min(last, self.end)

    def describe(self) -> dict[str, object]:
        return {
            "start": self.start,
            "end": self.end,
            "time_zone": self.time_zone,
            "bucket": self.bucket,
        }


#: The day node sizes of ``analytics_completion_node`` (days), largest first, and the day
#: they are aligned on (a node of ``n`` days starts a multiple of ``n`` days after it).
NODE_SPANS = (256, 64, 16, 4, 1)
NODE_EPOCH = date(2000, 1, 3)


def nodes(start: date, end: date) -> tuple[list[int], list[date]]:
    """The aligned nodes that exactly cover the days ``start``..``end`` (inclusive), as
    parallel lists of sizes and first days: at each step the largest node that starts
    there and ends within the range (at most about three per size on each side)."""
    day, stop = (start - NODE_EPOCH).days, (end - NODE_EPOCH).days + 1
    spans: list[int] = []
    starts: list[date] = []
    while day < stop:
        span = next(s for s in NODE_SPANS if day % s == 0 and day + s <= stop)
        spans.append(span)
        starts.append(NODE_EPOCH + timedelta(days=day))
        day += span
    return spans, starts
