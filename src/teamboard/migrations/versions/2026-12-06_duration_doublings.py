"""Duration histograms by doubling: locating a percentile merges a bounded number of counts.

A node's lead or cycle histogram row (``analytics_completion_node``, ``dim`` ``*``) lists its
non-empty buckets, 16 per doubling of the duration. How many are non-empty grows with the
node's completions (about 100 of a 16-day node of the busiest team at 1M events, 180 at
10M), and a dashboard merged every bucket of every node of its period to locate its ranks:
the one read that grew with the data. The row now also counts its completions per
*doubling* (``doublings``, ``doubling_counts``: at most the 20-odd doublings durations
span), with where each doubling's buckets end in ``buckets`` (``doubling_ends``): a
dashboard locates a rank's doubling first, then merges the 16 buckets of that doubling
only, sliced from the same rows (``analytics.counted``).

A ``BEFORE`` row trigger derives the three arrays from ``buckets`` and ``counts`` whenever a
histogram row is written (by ``tb_analytics_count_completions``, whose statements are
unchanged), and a check constraint makes a histogram row without them an error rather than
a row the dashboards would silently leave out. The existing rows are rewritten once here,
under the table's exclusive lock: 36 s for the 10M-event benchmark set (891,002
histogram rows), during which folds and the dashboards over completions wait.

Revision ID: 20261206_duration_doublings
Revises: 20261206_member_projects
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "20261206_duration_doublings"
down_revision = "20261206_member_projects"
branch_labels = None
depends_on = None

UPGRADE = """
alter table analytics_completion_node
    add column doublings integer[],
    add column doubling_counts bigint[],
    add column doubling_ends integer[];

-- A bucket is 1/16 of a doubling (tb_analytics_duration_bucket), so ``bucket / 16`` is its
-- doubling; ``buckets`` is sorted, so each doubling's buckets are one slice of it, ending at
-- the position ``doubling_ends`` gives.
create function tb_analytics_node_doublings() returns trigger
    language plpgsql set search_path = pg_catalog as $$
declare
    scattered boolean;
begin
    select coalesce(array_agg(d order by d), '{}'), coalesce(array_agg(n order by d), '{}'),
           coalesce(array_agg(e order by d), '{}'), coalesce(bool_or(e - s + 1 <> k), false)
    into new.doublings, new.doubling_counts, new.doubling_ends, scattered
    from (
        select b / 16, sum(c)::bigint, max(i)::integer, min(i)::integer, count(*)::integer
        from unnest(new.buckets, new.counts) with ordinality u (b, c, i)
        group by b / 16
    ) x (d, n, e, s, k);
    if scattered then
        raise exception 'analytics_completion_node: buckets out of order (%)', new.buckets;
    end if;
    return new;
end $$;
revoke all on function tb_analytics_node_doublings() from public;

create trigger analytics_completion_node_doublings
    before insert or update on analytics_completion_node
    for each row when (new.dim = '*' and new.measure <> 'assignee')
    execute function tb_analytics_node_doublings();

-- As the owner, which bypasses Row Level Security (an owner that did not would update no
-- row at all, silently): with row_security off, that is an error instead.
set local row_security = off;
update analytics_completion_node set doublings = null
where dim = '*' and measure <> 'assignee';
reset row_security;
alter table analytics_completion_node
    add constraint ck_analytics_completion_node_doublings check (
        dim <> '*' or measure = 'assignee'
        or (doublings is not null
            and cardinality(doubling_counts) = cardinality(doublings)
            and cardinality(doubling_ends) = cardinality(doublings)));
analyze analytics_completion_node;
"""

DOWNGRADE = """
drop trigger if exists analytics_completion_node_doublings on analytics_completion_node;
drop function if exists tb_analytics_node_doublings();
alter table analytics_completion_node
    drop constraint if exists ck_analytics_completion_node_doublings,
    drop column if exists doublings,
    drop column if exists doubling_counts,
    drop column if exists doubling_ends;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
