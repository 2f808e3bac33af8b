"""A timer stopped because its user lost sight of its project ends within
``TIME_ENTRY_MAX_SECONDS`` of its start, as one stopped through the API.

``tb_stop_timers_out_of_sight_of`` (migration ``2026-12-07_timers_follow_access``) ended such
a timer at the moment of the change, however long it had run: a timer forgotten for a week
became a week-long entry, which no user can send and which the API's stop caps (a forgotten
timer ends ``TIME_ENTRY_MAX_SECONDS`` after its start). The setting is the app's, so every
write transaction of the app and the worker now carries it in
``app.time_entry_max_seconds`` (set with the context, in the same round trip:
``teamboard.db``), and the function caps the end with it. A transaction that did not set it
(the owner's: a migration, psql) uses the setting's default, 24 hours.

Entries stopped before this migration keep their end: an admin can edit them.

Revision ID: 20261207_timer_cap
Revises: 20261207_timers_follow_access
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

from teamboard.migrations.support import OR_REPLACE_FUNCTION, rewritten, sibling

previous = sibling("2026-12-07_timers_follow_access.py")

revision = "20261207_timer_cap"
down_revision = "20261207_timers_follow_access"
branch_labels = None
depends_on = None

#: The app's ``TIME_ENTRY_MAX_SECONDS`` for this transaction (at most nine digits, as the
#: setting's bound), or its default when unset.
CAP = (
    "(case when current_setting('app.time_entry_max_seconds', true) ~ '^[0-9]{1,9}$'"
    " then current_setting('app.time_entry_max_seconds', true)::integer else 86400 end)"
)
UNCAPPED = "set ended_at = greatest(now(), e.started_at)"
CAPPED = (
    "set ended_at = least(greatest(now(), e.started_at),"
    f" e.started_at + {CAP} * interval '1 second')"
)


def _install(end: str) -> None:
    """``tb_stop_timers_out_of_sight_of`` as the previous migration wrote it, with ``end``
    as its ``set`` clause (its grants, none, are kept by ``create or replace``)."""
    ended_at = ("{ended_at}", previous.summaries.api_text("s.ended_at"))
    changes = ((UNCAPPED, end), OR_REPLACE_FUNCTION, ended_at)
    op.execute(rewritten(previous.STOP, changes, "tb_stop_timers_out_of_sight_of"))


def upgrade() -> None:
    _install(CAPPED)


def downgrade() -> None:
    _install(UNCAPPED)
