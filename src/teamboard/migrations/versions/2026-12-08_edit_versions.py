"""Versions for teams, memberships, webhooks and notifications: their ETags.

The row-versions migration (``2026-12-07_row_versions``) gave labels, statuses, comments
and time entries a ``version`` for ``If-Match``. Four PATCH routes still had none: a
team's name and zone, a member's role, a webhook, a notification's read state. A stale
``If-Match`` there was ignored and the update went through (a review found it). Each table
gets the same column and the same trigger (``tb_next_version``), raised by every update
whatever statement makes it (a webhook's failure count moves its version too: its answer
shows that count).

Adding a column with a constant default rewrites nothing (PostgreSQL 11+).

Revision ID: 20261208_edit_versions
Revises: 20261207_flow_after_purge
Create Date: 2026-12-08
"""

from __future__ import annotations

from teamboard.migrations.support import sibling

previous = sibling("2026-12-07_row_versions.py")

revision = "20261208_edit_versions"
down_revision = "20261207_flow_after_purge"
branch_labels = None
depends_on = None

TABLES = ("team", "team_member", "webhook", "notification")


def upgrade() -> None:
    previous.add_versions(TABLES)


def downgrade() -> None:
    previous.drop_versions(TABLES)
