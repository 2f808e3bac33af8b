"""Attachments (metadata; the bytes live in object storage), the queue of stored objects to
remove once their metadata is gone, and time entries.

Attachments and time entries point at their task through ``(team_id, project_id, task_id)``
so that their ``project_id`` (which the visibility policies read) can never disagree with the
task's: a task moved to another project carries them along (``on update cascade``), and a
purged task takes them with it (``on delete cascade``).

Revision ID: 20261122_files
Revises: 20261122_collab
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

from teamboard.migrations.support import app_role
from teamboard.ops import tenancy
from teamboard.ops.tenancy import (
    CURRENT_ROLE,
    CURRENT_USER,
    DENY,
    Policies,
    project_visible_by_call,
    secure_table,
)

revision = "20261122_files"
down_revision = "20261122_collab"
branch_labels = None
depends_on = None

TIMESTAMPS = """
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()"""

UUID_PATTERN = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

TABLES = f"""
-- The composite foreign keys below need a key on exactly these columns.
create unique index uq_task_team_id_project_id_id on task (team_id, project_id, id);

create table attachment (
    team_id uuid not null,
    id uuid not null,
    project_id uuid not null,
    task_id uuid not null,
    filename text not null,
    content_type text not null,
    size_bytes bigint not null,
    sha256 text not null,
    storage_key text not null,
    uploaded_by uuid not null,{TIMESTAMPS},
    constraint pk_attachment primary key (team_id, id),
    constraint fk_attachment_team_id_project_id_task_id_task
        foreign key (team_id, project_id, task_id) references task (team_id, project_id, id)
        on delete cascade on update cascade,
    constraint ck_attachment_filename_length check (length(filename) between 1 and 255),
    constraint ck_attachment_content_type_format
        check (content_type ~ '^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$'),
    constraint ck_attachment_size_bytes_positive check (size_bytes > 0),
    constraint ck_attachment_sha256_format check (sha256 ~ '^[0-9a-f]{{64}}$'),
    constraint ck_attachment_storage_key_format
        check (storage_key ~ '^{UUID_PATTERN}/{UUID_PATTERN}$')
);
create index ix_attachment_team_id_task_id_project_id
    on attachment (team_id, task_id, project_id, id);

-- Stored objects whose attachment row is gone. A row appears only when the deletion
-- commits, so removing the bytes of the rows found here is always safe; the request that
-- deleted them does it after its commit, and `teamboard attachments sweep` catches the rest
-- (a crash in between, a purge by another feature, a deleted team).
create table attachment_purge (
    team_id uuid not null,
    id uuid not null,
    project_id uuid not null,
    storage_key text not null,{TIMESTAMPS},
    constraint pk_attachment_purge primary key (team_id, id)
);
create index ix_attachment_purge_created_at on attachment_purge (created_at);

-- Runs as the owner: the deletion may come from a cascade (a purged task or project, a
-- deleted team) whose context no longer passes the queue's policies.
create function tb_queue_attachment_purge() returns trigger
    language plpgsql security definer set search_path = pg_catalog, public as $$
begin
    insert into attachment_purge (team_id, id, project_id, storage_key)
    select gone.team_id, gone.id, gone.project_id, gone.storage_key from gone
    on conflict do nothing;
    return null;
end $$;
revoke all on function tb_queue_attachment_purge() from public;

create trigger attachment_queue_purge after delete on attachment
    referencing old table as gone
    for each statement execute function tb_queue_attachment_purge();

create table time_entry (
    team_id uuid not null,
    id uuid not null,
    project_id uuid not null,
    task_id uuid not null,
    user_id uuid not null,
    started_at timestamptz not null,
    ended_at timestamptz,
    note text not null default '',{TIMESTAMPS},
    constraint pk_time_entry primary key (team_id, id),
    constraint fk_time_entry_team_id_project_id_task_id_task
        foreign key (team_id, project_id, task_id) references task (team_id, project_id, id)
        on delete cascade on update cascade,
    constraint ck_time_entry_ended_after_started
        check (ended_at is null or ended_at >= started_at),
    constraint ck_time_entry_note_length check (length(note) <= 2000)
);
-- At most one running timer per user and team, whatever the concurrency.
create unique index uq_time_entry_team_id_user_id_running
    on time_entry (team_id, user_id) where ended_at is null;
create index ix_time_entry_team_id_task_id_project_id
    on time_entry (team_id, task_id, project_id, started_at, id);
create index ix_time_entry_team_id_project_id_started_at
    on time_entry (team_id, project_id, started_at, id);
create index ix_time_entry_team_id_user_id_started_at
    on time_entry (team_id, user_id, started_at, id);
create index ix_time_entry_team_id_started_at on time_entry (team_id, started_at, id);
"""


def own_or_admin(column: str) -> str:
    """The row is the caller's (by ``column``), or the caller is an admin of the team."""
    return f"({column} = {CURRENT_USER} or {CURRENT_ROLE} in ('owner', 'admin'))"


def _policies() -> list[tuple[str, Policies, dict[str, object]]]:
    visible = project_visible_by_call()
    return [
        (
            "attachment",
            Policies(
                select=visible,
                insert=f"{visible} and uploaded_by = {CURRENT_USER}",
                update=DENY,
                delete=f"{visible} and {own_or_admin('uploaded_by')}",
            ),
            {"grants": ("select", "insert", "delete")},
        ),
        (
            "attachment_purge",
            # Filled by the trigger only; read and emptied by the after-commit cleanup,
            # which locks the rows it takes (FOR UPDATE needs an UPDATE grant and policy).
            Policies(select=visible, insert=DENY, update=visible, delete=visible),
            {"grants": ("select", "update (updated_at)", "delete")},
        ),
        (
            "time_entry",
            Policies(
                select=visible,
                insert=f"{visible} and user_id = {CURRENT_USER}",
                update=f"{visible} and {own_or_admin('user_id')}",
                delete=f"{visible} and {own_or_admin('user_id')}",
            ),
            {
                "grants": (
                    "select",
                    "insert",
                    "update (started_at, ended_at, note, updated_at)",
                    "delete",
                )
            },
        ),
    ]


def upgrade() -> None:
    role = app_role()
    op.execute(TABLES)
    for table, policies, options in _policies():
        tenancy.apply(op.execute, secure_table(table, policies, app_role=role, **options))  # type: ignore[arg-type]


def downgrade() -> None:
    op.execute("drop table if exists time_entry, attachment, attachment_purge")
    op.execute("drop function if exists tb_queue_attachment_purge()")
    op.execute("drop index if exists uq_task_team_id_project_id_id")
