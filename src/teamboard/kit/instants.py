"""The instants and days the API accepts: those that Python and PostgreSQL both hold, with
room for the arithmetic made on them (a day added to a period's end, a time zone's offset, a
timer's duration).

Python's ``datetime`` stops at the years 1 and 9999, and the driver converts every instant
to UTC before sending it: ``9999-12-31T23:00-05:00`` passed validation and then failed in
the driver, a 500. Such values are refused at validation instead (422), as text that
PostgreSQL cannot store is (``kit.text``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime

#: The first accepted instant, and the first refused one after the range.
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
AFTER_LATEST = datetime(9999, 1, 1, tzinfo=UTC)
RANGE = "between 0001-01-02 and 9998-12-31 (UTC)"


def within_range(value: datetime) -> datetime:
    """``value`` when it is in the range (a naive value is read as UTC), else ValueError."""
    moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if not EARLIEST <= moment < AFTER_LATEST:
        raise ValueError(f"must be {RANGE}")
    return value


def day_within_range(day: date) -> bool:
    return EARLIEST.date() <= day < AFTER_LATEST.date()


#: An instant with its offset, in the range.
Instant = Annotated[AwareDatetime, AfterValidator(within_range)]
