"""The worker deletes expired idempotency records.

A record is kept 24 hours and then only overwritten when its key comes back, so the table
(each row holding a whole response body) grew with every idempotent POST for good. The
worker's upkeep now calls ``tb_purge_idempotency_records``, a SECURITY DEFINER function of
the owner (as for the event partitions): it deletes at most ``batch`` records past their
expiry, oldest first, and says how many. The worker gets no privilege on the table itself.

Revision ID: 20261207_idempotency_expiry
Revises: 20261207_row_versions
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

from teamboard.migrations.support import worker_role

revision = "20261207_idempotency_expiry"
down_revision = "20261207_row_versions"
branch_labels = None
depends_on = None

FUNCTION = "tb_purge_idempotency_records(integer)"


def upgrade() -> None:
    op.execute(
        """
        create function tb_purge_idempotency_records(batch integer) returns integer
            language sql security definer set search_path = pg_catalog, public, pg_temp as $$
            with gone as (
                delete from idempotency_record where (user_id, id) in (
                    select user_id, id from idempotency_record where expires_at <= now()
                    order by expires_at limit batch)
                returning 1)
            select count(*)::integer from gone
        $$;
        """
    )
    op.execute(f"revoke all on function {FUNCTION} from public")
    op.execute(f"grant execute on function {FUNCTION} to {worker_role()}")


def downgrade() -> None:
    op.execute(f"drop function {FUNCTION}")
