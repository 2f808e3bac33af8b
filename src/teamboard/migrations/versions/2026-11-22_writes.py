"""Idempotency records: the stored first response of a POST sent with an Idempotency-Key.

A record belongs to the user who sent the request (an API key acts for the member who
created it), so Row Level Security scopes it by user like auth sessions; ``caller`` tells a
user's own requests from each of their API keys, and ``team_scope`` is the team of the route
(NULL for routes outside a team). Records expire after 24 hours and are then overwritten.

Revision ID: 20261122_writes
Revises: 20261122_foundation
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

from teamboard.migrations.support import app_role
from teamboard.ops import tenancy
from teamboard.ops.tenancy import CURRENT_USER, Policies, secure_table

revision = "20261122_writes"
down_revision = "20261122_foundation"
branch_labels = None
depends_on = None

TABLE = """
create table idempotency_record (
    user_id uuid not null,
    id uuid not null,
    caller text not null,
    team_scope uuid,
    key text not null check (length(key) between 1 and 255),
    fingerprint bytea not null,
    status smallint not null check (status between 200 and 399),
    headers jsonb not null,
    body bytea not null,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    constraint pk_idempotency_record primary key (user_id, id),
    constraint fk_idempotency_record_user_id_app_user foreign key (user_id)
        references app_user (id) on delete cascade,
    constraint uq_idempotency_record_scope unique nulls not distinct
        (user_id, caller, team_scope, key)
);
create index ix_idempotency_record_expires_at on idempotency_record (expires_at);
"""


def upgrade() -> None:
    op.execute(TABLE)
    mine = f"user_id = {CURRENT_USER}"
    tenancy.apply(
        op.execute,
        secure_table(
            "idempotency_record",
            Policies(select=mine, insert=mine, update=mine, delete=mine),
            app_role=app_role(),
            tenant=False,
            touch=False,
        ),
    )


def downgrade() -> None:
    op.execute("drop table if exists idempotency_record")
