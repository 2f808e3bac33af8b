"""The instants and days the API accepts: those that Python and PostgreSQL both hold.

Python's ``datetime`` stops at the years 1 and 9999, and the driver converts every instant
to UTC before sending it: ``9999-12-31T23:00-05:00`` passed validation and then failed in
the driver, a 500. An instant is refused at validation instead (422) when its UTC form is
beyond Python's range, as text that PostgreSQL cannot store is (``kit.text``), and so are
the two ends of that range themselves: the driver sends ``datetime.min`` and
``datetime.max`` (in UTC) as ``-infinity`` and ``infinity`` (a due date of
``0001-01-01T00:00:00Z`` came back null). ``9999-12-31T23:59:59Z``, a common "never",
stays valid. Days (analytics periods) keep a margin for the arithmetic made on them: a day
added to a period's end, a month's end.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime

RANGE = "after 0001-01-01T00:00:00Z and before 9999-12-31T23:59:59.999999Z, once in UTC"
_FIRST, _LAST = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
#: The first and last days of a period.
FIRST_DAY, LAST_DAY = date(1, 1, 2), date(9998, 12, 31)
DAY_RANGE = f"between {FIRST_DAY} and {LAST_DAY}"


def within_range(value: datetime) -> datetime:
    """``value`` when its UTC form is a ``datetime`` other than the two ends (a naive value
    is read as UTC), else ValueError."""
    try:
        moment = value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
    except OverflowError:
        raise ValueError(f"must be {RANGE}") from None
    if not _FIRST < moment < _LAST:
        raise ValueError(f"must be {RANGE}")
    return value


def day_within_range(day: date) -> bool:
    return FIRST_DAY <= day <= LAST_DAY


#: An instant with its offset, in the range.
Instant = Annotated[AwareDatetime, AfterValidator(within_range)]
