"""Event-log consumers: commit-safe offsets, wake-up signals, partition upkeep, webhooks, and
notifications produced from the log.

* ``event.seq`` (a sequence) orders the events of one transaction; an event's **offset** is
  ``(tx_id, seq)``. Readers only go past events whose transaction id is below the xmin of
  their snapshot (``pg_snapshot_xmin(pg_current_snapshot())``): every transaction with a
  smaller id has ended, so no event can ever appear before that offset later, whatever the
  commit order (``teamboard.events.log``). Indexes: ``(tx_id, seq)`` for the consumers (all
  teams) and ``(team_id, tx_id, seq)`` for the realtime feed, on every monthly partition.
* ``tb_notify_event``: every event insert, and every membership that ends, sends
  ``NOTIFY tb_event, '<team_id>'`` at commit (one per team and transaction): a wake-up
  signal only, never the data.
* ``event_consumer``: the durable offset of each consumer. Not tenant data; the app role has
  no privilege on it.
* The **worker role** (``DATABASE_WORKER_ROLE``, created by ``teamboard migrate``) is the
  dedicated path that reads the event log of every team: policies ``TO`` that role only, on
  ``event`` (read), ``event_consumer``, ``webhook`` (read; failure counters) and the delivery
  log. It owns nothing, cannot bypass RLS, and ``teamboard db audit`` checks it. Everything
  else the worker does (notifications, reading an event for a webhook's creator) runs on
  the app role with a team context, under the ordinary policies.
* Partition upkeep: ``tb_ensure_event_partitions(months_ahead)`` creates the monthly
  partitions ahead and strips every privilege from every partition (including any that
  default privileges granted), ``tb_drop_event_partitions(keep_months)`` detaches and drops
  the partitions entirely older than the retention. SECURITY DEFINER, executable by the
  worker role only.
* Webhooks (``webhook``, ``webhook_delivery``, ``webhook_attempt``): team admins manage
  them through the app role; the worker queues, sends and records deliveries.
* ``notification.event_id``: notifications are produced by a consumer; one per recipient and
  event (unique), so reprocessing an event adds nothing.

Adding ``event.seq`` rewrites the event partitions: fine for this release (no deployed data).

Revision ID: 20261122_events
Revises: 20261122_work
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

from teamboard.migrations.support import app_role, worker_role
from teamboard.ops import tenancy
from teamboard.ops.tenancy import ADMIN, CURRENT_USER, DENY, Policies, secure_table

revision = "20261122_events"
down_revision = "20261122_work"
branch_labels = None
depends_on = None

TIMESTAMPS = """
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()"""

#: Consumers known to this release, registered at the migration's position so that no
#: event committed after it is missed, even before the first worker starts.
CONSUMERS = ("notifications", "webhooks")

EVENT_LOG = """
create sequence event_seq as bigint;
alter table event add column seq bigint not null default nextval('event_seq');
alter sequence event_seq owned by event.seq;
create index ix_event_tx_id_seq on event (tx_id, seq);
create index ix_event_team_id_tx_id_seq on event (team_id, tx_id, seq);

create function tb_notify_event() returns trigger
    language plpgsql set search_path = pg_catalog, public as $$
begin
    perform pg_notify('tb_event', coalesce(new.team_id, old.team_id)::text);
    return null;
end $$;
create trigger event_notify after insert on event
    for each row execute function tb_notify_event();
-- A membership that ends (removal, leaving, the team's deletion) wakes the team's streams
-- too, whatever the path, so that the member's stream ends at once.
create trigger team_member_notify after delete on team_member
    for each row execute function tb_notify_event();

create table event_consumer (
    name text not null,
    tx_id xid8 not null,
    seq bigint not null,{timestamps},
    constraint pk_event_consumer primary key (name),
    constraint ck_event_consumer_name_format check (name ~ '^[a-z][a-z0-9_]{{0,62}}$')
);
insert into event_consumer (name, tx_id, seq)
select name, pg_snapshot_xmin(pg_current_snapshot()), 0 from unnest(array[{consumers}]) name;
"""

PARTITION_FUNCTIONS = """
create function tb_ensure_event_partitions(months_ahead integer)
    returns table (partition_name text, created boolean)
    language plpgsql volatile security definer set search_path = pg_catalog, public as $$
declare
    month date;
    part record;
begin
    if months_ahead not between 0 and 24 then
        raise exception 'months_ahead must be between 0 and 24' using errcode = 'check_violation';
    end if;
    for m in 0 .. months_ahead loop
        month := (date_trunc('month', now()) + make_interval(months => m))::date;
        partition_name := format('event_y%sm%s', to_char(month, 'YYYY'), to_char(month, 'MM'));
        created := to_regclass(format('public.%I', partition_name)) is null;
        perform tb_create_event_partition(month);
        return next;
    end loop;
    -- A partition is read and written only through the parent, whose policies apply: nobody
    -- but the owner keeps a privilege on one (default privileges could have granted some).
    for part in
        select c.relname, a.grantee
        from pg_inherits i
        join pg_class c on c.oid = i.inhrelid
        cross join lateral aclexplode(c.relacl) a
        where i.inhparent = 'public.event'::regclass and a.grantee <> c.relowner
    loop
        if part.grantee = 0 then
            execute format('revoke all on public.%I from public cascade', part.relname);
        else
            execute format('revoke all on public.%I from %I cascade',
                part.relname, pg_get_userbyid(part.grantee));
        end if;
    end loop;
end $$;

create function tb_drop_event_partitions(keep_months integer) returns setof text
    language plpgsql volatile security definer set search_path = pg_catalog, public as $$
declare
    cutoff date := (date_trunc('month', now()) - make_interval(months => keep_months))::date;
    part record;
begin
    if keep_months < 1 then
        raise exception 'keep_months must be positive' using errcode = 'check_violation';
    end if;
    -- Detaching takes a short exclusive lock on the event table: never queue behind a long
    -- reader for more than this (the next run tries again).
    perform set_config('lock_timeout', '2s', true);
    for part in
        select c.relname, make_date(m[1]::int, m[2]::int, 1) as first_day
        from pg_inherits i
        join pg_class c on c.oid = i.inhrelid
        cross join lateral regexp_match(c.relname, '^event_y(\\d{{4}})m(\\d{{2}})$') m
        where i.inhparent = 'public.event'::regclass and m is not null  -- never the default
        order by 2
    loop
        continue when (part.first_day + interval '1 month')::date > cutoff;
        execute format('alter table public.event detach partition public.%I', part.relname);
        execute format('drop table public.%I', part.relname);
        return next part.relname;
    end loop;
end $$;
"""

WEBHOOK_TABLES = """
create table webhook (
    team_id uuid not null,
    id uuid not null,
    url text not null,
    kinds text[] not null,
    description text not null default '',
    secret_ciphertext bytea not null,
    enabled boolean not null default true,
    disabled_reason text,
    consecutive_failures integer not null default 0,
    created_by uuid not null,{timestamps},
    constraint pk_webhook primary key (team_id, id),
    constraint fk_webhook_team_id_team foreign key (team_id) references team (id)
        on delete cascade,
    constraint ck_webhook_url_length check (length(url) between 10 and 2048),
    constraint ck_webhook_kinds_count check (cardinality(kinds) between 1 and 50),
    constraint ck_webhook_description_length check (length(description) <= 500),
    constraint ck_webhook_consecutive_failures check (consecutive_failures >= 0),
    constraint ck_webhook_disabled_reason check (enabled or disabled_reason is not null)
);

create table webhook_delivery (
    team_id uuid not null,
    id uuid not null,
    webhook_id uuid not null,
    event_id uuid not null,
    event_occurred_at timestamptz not null,
    event_kind text not null,
    redelivery_of uuid,
    status text not null default 'pending',
    attempts integer not null default 0,
    next_attempt_at timestamptz default now(),
    locked_until timestamptz,
    last_status_code smallint,
    last_error text,
    completed_at timestamptz,{timestamps},
    constraint pk_webhook_delivery primary key (team_id, id),
    constraint fk_webhook_delivery_team_id_webhook_id_webhook foreign key (team_id, webhook_id)
        references webhook (team_id, id) on delete cascade,
    constraint ck_webhook_delivery_status
        check (status in ('pending', 'succeeded', 'failed', 'skipped')),
    constraint ck_webhook_delivery_schedule
        check ((status = 'pending') = (next_attempt_at is not null and completed_at is null)),
    constraint ck_webhook_delivery_attempts check (attempts >= 0)
);
-- One delivery per webhook and event (the fan-out is idempotent); redeliveries are extra.
create unique index uq_webhook_delivery_team_id_webhook_id_event_id
    on webhook_delivery (team_id, webhook_id, event_id) where redelivery_of is null;
create index ix_webhook_delivery_team_id_webhook_id_id
    on webhook_delivery (team_id, webhook_id, id);
-- The queue of every team, read by the worker.
create index ix_webhook_delivery_next_attempt_at
    on webhook_delivery (next_attempt_at) where status = 'pending';
create index ix_webhook_delivery_completed_at
    on webhook_delivery (completed_at) where completed_at is not null;

create table webhook_attempt (
    team_id uuid not null,
    id uuid not null,
    delivery_id uuid not null,
    status_code smallint,
    error text,
    duration_ms integer not null,{timestamps},
    constraint pk_webhook_attempt primary key (team_id, id),
    constraint fk_webhook_attempt_team_id_delivery_id_webhook_delivery
        foreign key (team_id, delivery_id) references webhook_delivery (team_id, id)
        on delete cascade,
    constraint ck_webhook_attempt_outcome check (status_code is not null or error is not null)
);
create index ix_webhook_attempt_team_id_delivery_id on webhook_attempt (team_id, delivery_id, id);
"""

NOTIFICATIONS = """
alter table notification add column event_id uuid;
create unique index uq_notification_team_id_event_id_recipient_id
    on notification (team_id, event_id, recipient_id);
"""

#: The worker role's privileges, table by table (``teamboard.ops.audit.WORKER_PRIVILEGES``
#: holds the same list and fails the audit on any other).
WORKER_GRANTS = {
    "event": ("select",),
    "event_consumer": ("select", "insert", "update"),
    "webhook": ("select", "update (enabled, disabled_reason, consecutive_failures, updated_at)"),
    "webhook_delivery": ("select", "insert", "update", "delete"),
    "webhook_attempt": ("select", "insert"),
}


def _app_policies() -> list[tuple[str, Policies, dict[str, object]]]:
    return [
        ("event_consumer", Policies(DENY, DENY, DENY, DENY), {"tenant": False, "grants": ()}),
        (
            "webhook",
            Policies(
                select=ADMIN,
                insert=f"{ADMIN} and created_by = {CURRENT_USER}",
                update=ADMIN,
                delete=ADMIN,
            ),
            {
                "grants": (
                    "select",
                    "insert",
                    "update (url, kinds, description, enabled, disabled_reason,"
                    " consecutive_failures, updated_at)",
                    "delete",
                )
            },
        ),
        # Admins read the log and ask for redeliveries; the worker does everything else.
        ("webhook_delivery", Policies(ADMIN, ADMIN, DENY, DENY), {"grants": ("select", "insert")}),
        (
            "webhook_attempt",
            Policies(ADMIN, DENY, DENY, DENY),
            {"grants": ("select",), "touch": False},
        ),
    ]


def upgrade() -> None:
    role, worker = app_role(), worker_role()
    consumers = ", ".join(f"'{name}'" for name in CONSUMERS)
    op.execute(EVENT_LOG.format(timestamps=TIMESTAMPS, consumers=consumers))
    op.execute(f"grant usage on sequence event_seq to {role}")
    op.execute("revoke all on function tb_notify_event() from public")
    op.execute(PARTITION_FUNCTIONS.format())
    for function in ("tb_ensure_event_partitions(integer)", "tb_drop_event_partitions(integer)"):
        op.execute(f"revoke all on function {function} from public")
        op.execute(f"grant execute on function {function} to {worker}")
    op.execute(WEBHOOK_TABLES.format(timestamps=TIMESTAMPS))
    op.execute(NOTIFICATIONS)
    for table, policies, options in _app_policies():
        tenancy.apply(op.execute, secure_table(table, policies, app_role=role, **options))  # type: ignore[arg-type]
    for table, grants in WORKER_GRANTS.items():
        command = "select" if grants == ("select",) else "all"
        check = "" if command == "select" else " with check (true)"
        op.execute(
            f"create policy {table}_worker on {table} for {command} to {worker} using (true){check}"
        )
        op.execute(f"grant {', '.join(grants)} on {table} to {worker}")


def downgrade() -> None:
    op.execute(
        "drop function if exists tb_ensure_event_partitions(integer),"
        " tb_drop_event_partitions(integer)"
    )
    op.execute("drop table if exists webhook_attempt, webhook_delivery, webhook, event_consumer")
    op.execute("drop index if exists uq_notification_team_id_event_id_recipient_id")
    op.execute("alter table notification drop column if exists event_id")
    op.execute("drop policy if exists event_worker on event")
    op.execute(f"revoke all on event from {worker_role()}")
    op.execute("drop trigger if exists event_notify on event")
    op.execute("drop trigger if exists team_member_notify on team_member")
    op.execute("drop function if exists tb_notify_event()")
    op.execute("drop index if exists ix_event_tx_id_seq, ix_event_team_id_tx_id_seq")
    op.execute("alter table event drop column if exists seq")  # drops event_seq with it
