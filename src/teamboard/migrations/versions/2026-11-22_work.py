"""Work management: task hierarchy, due dates, estimates, manual order, assignees, labels,
project versions (ETags), list indexes, and guests made read-only on tasks.

Revision ID: 20261122_work
Revises: 20261122_files
Create Date: 2026-11-22

Tasks gain ``parent_id`` (same project: the foreign key carries ``project_id``), ``due_at``,
``estimate`` and ``position`` (a JavaScript-safe bigint with gaps, see
``teamboard.tasks.positions``). ``label``, ``task_label`` and ``task_assignee`` are tenant
tables whose foreign keys carry ``(team_id, project_id)``, so a task can only carry labels of
its own project, at the schema level. The list indexes are partial on live tasks and end
with ``id``, the keyset tiebreaker, so every documented sort is an index range scan.
"""

from __future__ import annotations

from alembic import op

from teamboard.migrations.support import app_role
from teamboard.ops import tenancy
from teamboard.ops.tenancy import (
    IN_TEAM,
    NOT_GUEST,
    Policies,
    project_visible_by_call,
    secure_table,
)

revision = "20261122_work"
down_revision = "20261122_files"
branch_labels = None
depends_on = None

TIMESTAMPS = """
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()"""

#: Largest integer a JavaScript client reads exactly (2**53 - 1).
MAX_SAFE_INTEGER = 9_007_199_254_740_991

#: The list orders (see teamboard.tasks.listing): per project, and across the team.
SORT_KEYS = {
    "created_at": "created_at",
    "updated_at": "updated_at",
    "due_at": "(coalesce(due_at, 'infinity'::timestamptz))",
    "priority": "priority",
}

UPGRADE = f"""
alter table project
    add column version integer not null default 1,
    add constraint ck_project_version_positive check (version > 0);

alter table task
    add column parent_id uuid,
    add column due_at timestamptz,
    add column estimate integer,
    add column position bigint not null default 0,
    add constraint ck_task_estimate_range check (estimate between 0 and 1000000),
    add constraint ck_task_position_range
        check (position between -{MAX_SAFE_INTEGER} and {MAX_SAFE_INTEGER}),
    add constraint ck_task_description_length check (length(description) <= 50000),
    add constraint ck_task_not_own_parent check (parent_id <> id);

-- Existing tasks get the gapped positions new ones would have had, in number order.
update task set position = ordered.position
from (
    select team_id, id,
           65536 * row_number() over (partition by team_id, status_id order by number) as position
    from task
) ordered
where task.team_id = ordered.team_id and task.id = ordered.id;

-- uq_task_team_id_project_id_id (the parent key's target) comes from 20261122_files.
alter table task add constraint fk_task_team_id_project_id_parent_id_task
    foreign key (team_id, project_id, parent_id) references task (team_id, project_id, id)
    on delete set null (parent_id);
create index ix_task_team_id_project_id_parent_id on task (team_id, project_id, parent_id);
create index ix_task_team_id_status_id_position on task (team_id, status_id, position, id)
    where deleted_at is null;

create table label (
    team_id uuid not null,
    id uuid not null,
    project_id uuid not null,
    name text not null,
    color text not null,{TIMESTAMPS},
    constraint pk_label primary key (team_id, id),
    constraint fk_label_team_id_project_id_project foreign key (team_id, project_id)
        references project (team_id, id) on delete cascade,
    constraint ck_label_name_length check (length(name) between 1 and 50),
    constraint ck_label_color_format check (color ~ '^#[0-9a-f]{{6}}$')
);
create unique index uq_label_team_id_project_id_name on label (team_id, project_id, lower(name));
create unique index uq_label_team_id_project_id_id on label (team_id, project_id, id);

create table task_label (
    team_id uuid not null,
    project_id uuid not null,
    task_id uuid not null,
    label_id uuid not null,{TIMESTAMPS},
    constraint pk_task_label primary key (team_id, project_id, task_id, label_id),
    constraint fk_task_label_team_id_project_id_task_id_task
        foreign key (team_id, project_id, task_id)
        references task (team_id, project_id, id) on delete cascade,
    constraint fk_task_label_team_id_project_id_label_id_label
        foreign key (team_id, project_id, label_id)
        references label (team_id, project_id, id) on delete cascade
);
create index ix_task_label_team_id_project_id_label_id
    on task_label (team_id, project_id, label_id, task_id);

create table task_assignee (
    team_id uuid not null,
    project_id uuid not null,
    task_id uuid not null,
    user_id uuid not null,{TIMESTAMPS},
    constraint pk_task_assignee primary key (team_id, project_id, task_id, user_id),
    constraint fk_task_assignee_team_id_project_id_task_id_task
        foreign key (team_id, project_id, task_id)
        references task (team_id, project_id, id) on delete cascade,
    constraint fk_task_assignee_team_id_user_id_team_member foreign key (team_id, user_id)
        references team_member (team_id, user_id) on delete cascade
);
create index ix_task_assignee_team_id_user_id on task_assignee (team_id, user_id, task_id);
"""


def _list_indexes() -> list[str]:
    statements = []
    for name, key in SORT_KEYS.items():
        statements.append(
            f"create index ix_task_team_id_project_id_{name} on task"
            f" (team_id, project_id, {key}, id) where deleted_at is null"
        )
        statements.append(
            f"create index ix_task_team_id_{name} on task (team_id, {key}, id)"
            " where deleted_at is null"
        )
    return statements


#: Guests read what they can see and write nothing (the foundation let them insert and
#: update tasks at the RLS level; the API never did).
TASK_WRITE = f"{project_visible_by_call()} and {NOT_GUEST}"
FOUNDATION_TASK_WRITE = project_visible_by_call()


#: Reading tasks: the project check as ``array_position(...) is not null`` instead of
#: ``= any(...)``. ``= any`` becomes an index condition on the second column of every
#: (team_id, project_id, sort key, id) index, and PostgreSQL before 17 cannot return such a
#: scan in index order, so keyset lists got a Sort; ``@>`` avoids that but is estimated to
#: keep 0.5 % of the rows, which misleads the planner the other way. ``array_position`` is a
#: per-row filter estimated to keep nearly every row (the common case), and the list scans
#: stay ordered (tests/test_task_lists.py checks every sort's plan).
TASK_READ = (
    f"{IN_TEAM} and array_position((select tb_visible_project_ids())::uuid[], project_id)"
    " is not null"
)


def _task_read_policy(predicate: str) -> list[str]:
    return [
        "drop policy task_select on task",
        f"create policy task_select on task for select to public using ({predicate})",
    ]


def _task_write_policies(predicate: str) -> list[str]:
    return [
        "drop policy task_insert on task",
        "drop policy task_update on task",
        f"create policy task_insert on task for insert to public with check ({predicate})",
        f"create policy task_update on task for update to public"
        f" using ({predicate}) with check ({predicate})",
    ]


#: Reading a project's rows: the visible-project set already implies membership of the
#: context team (it is computed from the caller's membership row), so the role check of
#: ``project_visible_by_call()`` is left out. Each check is a PL/pgSQL call per table and statement,
#: and a task read touches four of these tables.
VISIBLE = (
    "team_id = (select tb_current_team_id())"
    " and project_id = any((select tb_visible_project_ids())::uuid[])"
)


def _member_writes() -> Policies:
    return Policies(
        select=VISIBLE,
        insert=TASK_WRITE,
        update=TASK_WRITE,
        delete=TASK_WRITE,
    )


def upgrade() -> None:
    role = app_role()
    op.execute(UPGRADE)
    for statement in _list_indexes():
        op.execute(statement)
    op.execute(f"grant update (version) on project to {role}")
    for statement in _task_read_policy(TASK_READ) + _task_write_policies(TASK_WRITE):
        op.execute(statement)
    tenancy.apply(op.execute, secure_table("label", _member_writes(), app_role=role))
    for table in ("task_label", "task_assignee"):
        statements = secure_table(
            table, _member_writes(), app_role=role, grants=("select", "insert", "delete")
        )
        tenancy.apply(op.execute, statements)


def downgrade() -> None:
    for statement in _task_read_policy(FOUNDATION_TASK_WRITE) + _task_write_policies(
        FOUNDATION_TASK_WRITE
    ):
        op.execute(statement)
    op.execute("drop table task_assignee, task_label, label")
    for name in SORT_KEYS:
        op.execute(f"drop index ix_task_team_id_project_id_{name}, ix_task_team_id_{name}")
    op.execute(
        "drop index ix_task_team_id_status_id_position, ix_task_team_id_project_id_parent_id"
    )
    op.execute("alter table task drop constraint fk_task_team_id_project_id_parent_id_task")
    op.execute(
        "alter table task drop column parent_id, drop column due_at, drop column estimate,"
        " drop column position, drop constraint ck_task_description_length"
    )
    op.execute("alter table project drop column version")
