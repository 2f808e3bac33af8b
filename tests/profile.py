"""Short and long test profiles of the reliability suites (fuzzing, faults, load).

``pytest`` runs the short profile: bounded examples and cycles, so CI stays within minutes.
``TEAMBOARD_TEST_PROFILE=long`` (``make reliability-long``) runs the long one, whose figures
go in closing notes. Every loop is bounded both in count and in time, whatever the profile.
"""

from __future__ import annotations

import os
from typing import TypeVar

from hypothesis import HealthCheck, settings

T = TypeVar("T")

LONG = os.environ.get("TEAMBOARD_TEST_PROFILE", "short") == "long"


def pick(short: T, long: T) -> T:
    """The short-profile value, or the long one under ``TEAMBOARD_TEST_PROFILE=long``."""
    return long if LONG else short


# Requests to a real database are slow next to Hypothesis's defaults: no per-example deadline
# (wall-clock assertions are not deterministic), and fixtures shared across examples are fine
# because every example makes its own teams and users.
_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    "print_blob": True,
}
settings.register_profile("teamboard-short", max_examples=60, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("teamboard-long", max_examples=10_000, **_COMMON)  # type: ignore[arg-type]
settings.load_profile(pick("teamboard-short", "teamboard-long"))
