"""Each task row carries its card: ``key`` (``ENG-42``), ``assignee_ids`` and ``labels``.

Every read of a task (by id, a list page, a GraphQL level) showed its key, assignees and
labels through three correlated subqueries per task, each a plan node with Row Level
Security quals and its own init plans. Measured on the 2-vCPU machine with the harness's
data (the app role, prepared statements):

===========================  ==========  ==============
statement                    subqueries  columns
===========================  ==========  ==============
a task by id                 ~290 µs     ~225 µs
a page of 50 tasks           ~880 µs     ~330 µs
===========================  ==========  ==============

The columns are derived data, kept exact by triggers in the writing transaction, so no
code path can forget them:

* ``key``: set before a task is inserted or its project or number changes, and rewritten
  for a project's tasks if the project's key ever changes (the API never changes it);
* ``assignee_ids`` (sorted) and ``labels`` (``[{id, name, color}]`` ordered by lower-case
  name, then id): recomputed, once per task and statement, after any write to
  ``task_assignee`` or ``task_label`` (a label's deletion reaches them through its
  cascade), and after a label is renamed or recoloured.

The triggers are SECURITY DEFINER (the owner bypasses Row Level Security) so that a card
never depends on what the writer may see, and a card refresh does not move ``updated_at``
(``task_touch`` skips updates that change only the card). Visibility is unchanged: a card
holds only the task's own project's labels, and whoever sees the task saw them already.

Extended statistics on ``task (team_id, project_id, status_id)`` (functional
dependencies: a status implies its project, a project its team). The subqueries were
expensive per row, which kept the planner on the ordered index of a list even when it
misjudged how many tasks a project holds; without them, a generic plan (a prepared
statement after five runs) multiplied the selectivities of ``team_id = $1`` and
``project_id = $2`` as if independent, estimated one row, and could read and sort a whole
project instead (``test_every_sort_is_a_keyset_index_scan`` caught it). With the
dependencies the estimate is a project's average size, and the ordered index wins. Sorting
by number gets a partial index of live tasks like every other sort: against the unique
index (which also holds deleted tasks) a generic plan still preferred another partial
index and a sort.

Revision ID: 20261206_task_cards
Revises: 20261206_policy_functions
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "20261206_task_cards"
down_revision = "20261206_policy_functions"
branch_labels = None
depends_on = None

_DEFINER = "language plpgsql security definer set search_path = pg_catalog, public"

#: The card's parts for task ``t``, as the triggers and the backfill compute them.
ASSIGNEES_OF_T = (
    "array(select a.user_id from task_assignee a where a.team_id = t.team_id"
    " and a.project_id = t.project_id and a.task_id = t.id order by a.user_id)"
)
LABELS_OF_T = (
    "coalesce((select json_agg(json_build_object('id', l.id, 'name', l.name, 'color', l.color)"
    " order by lower(l.name), l.id) from task_label tl join label l on l.team_id = tl.team_id"
    " and l.project_id = tl.project_id and l.id = tl.label_id where tl.team_id = t.team_id"
    " and tl.project_id = t.project_id and tl.task_id = t.id), '[]'::json)"
)

COLUMNS = """
alter table task
    add column key text,
    add column assignee_ids uuid[] not null default '{}',
    add column labels json not null default '[]';
"""

#: Fill the cards of existing tasks (one pass over the table) without touching ``updated_at``.
BACKFILL = f"""
alter table task disable trigger task_touch;
update task t set key = p.key || '-' || t.number, assignee_ids = {ASSIGNEES_OF_T},
    labels = {LABELS_OF_T}
from project p where p.team_id = t.team_id and p.id = t.project_id;
alter table task enable trigger task_touch;
alter table task alter column key set not null;
create statistics task_team_project_status (dependencies) on team_id, project_id, status_id
    from task;
create index ix_task_team_id_project_id_number on task (team_id, project_id, number)
    where deleted_at is null;
analyze task;
"""

FUNCTIONS = f"""
create function tb_task_set_key() returns trigger {_DEFINER} as $$
begin
    select p.key || '-' || new.number into new.key from project p
    where p.team_id = new.team_id and p.id = new.project_id;
    return new;
end
$$;

-- Card refreshes mark themselves so that task_touch leaves updated_at alone.
create function tb_project_rekey_tasks() returns trigger {_DEFINER} as $$
begin
    perform set_config('tb.card_refresh', 'on', true);
    update task t set key = new.key || '-' || t.number
    where t.team_id = new.team_id and t.project_id = new.id;
    perform set_config('tb.card_refresh', '', true);
    return null;
end
$$;

-- Recompute the cards of the tasks a statement on task_assignee or task_label wrote about:
-- its transition tables, new_rows after an insert, old_rows after a delete, both after an
-- update.
create function tb_task_card_refresh() returns trigger {_DEFINER} as $$
declare
    teams uuid[];
    tasks uuid[];
begin
    if tg_op = 'INSERT' then
        select array_agg(team_id), array_agg(task_id) into teams, tasks
        from (select distinct team_id, task_id from new_rows) x;
    elsif tg_op = 'DELETE' then
        select array_agg(team_id), array_agg(task_id) into teams, tasks
        from (select distinct team_id, task_id from old_rows) x;
    else
        select array_agg(team_id), array_agg(task_id) into teams, tasks
        from (select team_id, task_id from new_rows
              union select team_id, task_id from old_rows) x;
    end if;
    if tg_table_name = 'task_label' and tg_op <> 'DELETE' then
        -- A rename holds its label's row until it commits; waiting for it here means the
        -- card is computed with the name it committed (its own refresh could not see
        -- this statement's new links).
        perform 1 from label l
        join (select distinct team_id, project_id, label_id from new_rows) n
            on l.team_id = n.team_id and l.project_id = n.project_id and l.id = n.label_id
        order by l.team_id, l.id for share of l;
    end if;
    perform tb_task_card(teams, tasks);
    return null;
end
$$;

create function tb_label_relabel_tasks() returns trigger {_DEFINER} as $$
declare
    tasks uuid[];
begin
    select array_agg(tl.task_id) into tasks from task_label tl
    where tl.team_id = new.team_id and tl.project_id = new.project_id and tl.label_id = new.id;
    if tasks is not null then
        perform tb_task_card(array_fill(new.team_id, array[cardinality(tasks)]), tasks);
    end if;
    return null;
end
$$;

-- The tasks (teams[i], tasks[i]) get their current assignees and labels.
create function tb_task_card(teams uuid[], tasks uuid[]) returns void {_DEFINER} as $$
begin
    if tasks is null then
        return;
    end if;
    -- Lock the tasks first: a concurrent writer of the same task (whose own refresh will
    -- lock it too) has then committed, and the update below, a new statement, reads its
    -- links with a snapshot taken after that.
    perform 1 from task t join unnest(teams, tasks) r (team_id, task_id)
        on t.team_id = r.team_id and t.id = r.task_id
    order by t.team_id, t.id for no key update of t;
    perform set_config('tb.card_refresh', 'on', true);
    update task t set assignee_ids = c.ids, labels = c.labels
    from (select t.team_id, t.id, {ASSIGNEES_OF_T} as ids, {LABELS_OF_T} as labels
          from unnest(teams, tasks) r (team_id, task_id)
          join task t on t.team_id = r.team_id and t.id = r.task_id) c
    where t.team_id = c.team_id and t.id = c.id
      and (t.assignee_ids is distinct from c.ids or t.labels::text <> c.labels::text);
    perform set_config('tb.card_refresh', '', true);
end
$$;
revoke all on function tb_task_card(uuid[], uuid[]) from public;
revoke all on function tb_task_set_key() from public;
revoke all on function tb_project_rekey_tasks() from public;
revoke all on function tb_task_card_refresh() from public;
revoke all on function tb_label_relabel_tasks() from public;
"""

TRIGGERS = (
    """
create trigger task_set_key before insert or update of project_id, number on task
    for each row execute function tb_task_set_key();
create trigger project_rekey_tasks after update of key on project
    for each row when (old.key is distinct from new.key)
    execute function tb_project_rekey_tasks();
"""
    + "".join(
        f"""
create trigger {table}_card_{event} after {event} on {table}
    referencing {transition}
    for each statement execute function tb_task_card_refresh();"""
        for table in ("task_assignee", "task_label")
        for event, transition in (
            ("insert", "new table as new_rows"),
            ("update", "new table as new_rows old table as old_rows"),
            ("delete", "old table as old_rows"),
        )
    )
    + """
create trigger label_relabel_tasks after update of name, color on label
    for each row when (old.name is distinct from new.name or old.color is distinct from new.color)
    execute function tb_label_relabel_tasks();
"""
)

#: ``task_touch`` again, leaving out the card refreshes (see ``tb_task_card``). The flag
#: is a setting any session may change, so it only counts below a trigger: an update a
#: client issues itself (trigger depth 0) always moves ``updated_at``.
TOUCH_UNLESS_CARD = """
drop trigger task_touch on task;
create trigger task_touch before update on task for each row
    when (pg_trigger_depth() = 0
          or current_setting('tb.card_refresh', true) is distinct from 'on')
    execute function tb_touch_updated_at();
"""

DOWN = """
drop trigger task_touch on task;
create trigger task_touch before update on task
    for each row execute function tb_touch_updated_at();
drop trigger label_relabel_tasks on label;
drop trigger task_label_card_insert on task_label;
drop trigger task_label_card_update on task_label;
drop trigger task_label_card_delete on task_label;
drop trigger task_assignee_card_insert on task_assignee;
drop trigger task_assignee_card_update on task_assignee;
drop trigger task_assignee_card_delete on task_assignee;
drop trigger project_rekey_tasks on project;
drop trigger task_set_key on task;
drop function tb_label_relabel_tasks();
drop function tb_task_card_refresh();
drop function tb_task_card(uuid[], uuid[]);
drop function tb_project_rekey_tasks();
drop function tb_task_set_key();
drop index ix_task_team_id_project_id_number;
drop statistics task_team_project_status;
alter table task drop column key, drop column assignee_ids, drop column labels;
"""


def upgrade() -> None:
    op.execute(COLUMNS)
    op.execute(BACKFILL)
    op.execute(FUNCTIONS)
    op.execute(TRIGGERS)
    op.execute(TOUCH_UNLESS_CARD)


def downgrade() -> None:
    op.execute(DOWN)
