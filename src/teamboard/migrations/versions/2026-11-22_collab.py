"""Collaboration: comments, task followers, notifications, search vectors and the event
index behind the task activity, all under Row Level Security.

* ``comment``, ``task_follower`` and ``notification`` carry the task's ``project_id`` so
  their policies check project visibility without a join; the composite foreign key
  ``(team_id, task_id, project_id) -> task`` keeps it right (``on update cascade`` follows a
  task that changes project). A unique index on ``task (team_id, id, project_id)`` is what
  that key references.
* Search: stored generated ``tsvector`` columns (``task.search``: title weight A,
  description B; ``comment.search``: body weight C) with partial GIN indexes. Typo
  tolerance uses ``pg_trgm`` when the server has it (detected here, at migration time):
  ``tb_similar_task_titles(q)`` is then a trigram query on task titles backed by a GIN
  trigram index; without the extension (the embedded PostgreSQL ships no contrib) the same
  function exists and returns no rows, so the application has one code path.
* ``event``: an index on ``(team_id, subject_id, occurred_at, id)`` created on the
  partitioned parent, so every monthly partition (present and future, see
  ``tb_create_event_partition``) gets it and the activity of a task is an ordered index
  scan per partition under a Merge Append.
* The creator of a task follows it: an AFTER INSERT trigger on ``task``, so every path
  that creates tasks (REST, GraphQL, seed, imports) does it.

Adding the stored column rewrites ``task``, and the indexes are built without
CONCURRENTLY: fine for this release (no deployed data). A later migration touching large
tables must build indexes concurrently (per partition, then attach).

Revision ID: 20261122_collab
Revises: 20261122_writes
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

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

revision = "20261122_collab"
down_revision = "20261122_writes"
branch_labels = None
depends_on = None

TIMESTAMPS = """
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()"""

#: Comment bodies are Markdown source of at most this many characters.
COMMENT_MAX_LENGTH = 10_000
#: At most this many distinct users are mentioned by one comment.
MAX_MENTIONS = 50
#: Minimum word similarity (0..1) for a title to match a query with a typo.
TRIGRAM_THRESHOLD = 0.5

TABLES = f"""
create unique index uq_task_team_id_id_project_id on task (team_id, id, project_id);

-- Title (A) and description (B); descriptions are capped so that no text can exceed the
-- tsvector size limit and make a task unwritable.
alter table task add column search tsvector generated always as (
    setweight(to_tsvector('simple', title), 'A')
    || setweight(to_tsvector('simple', left(description, 100000)), 'B')
) stored;
create index ix_task_search on task using gin (search) where deleted_at is null;

create table comment (
    team_id uuid not null,
    id uuid not null,
    task_id uuid not null,
    project_id uuid not null,
    author_id uuid not null,
    body text not null,
    mentions uuid[] not null default '{{}}',
    edited_at timestamptz,{TIMESTAMPS},
    deleted_at timestamptz,
    search tsvector generated always as (setweight(to_tsvector('simple', body), 'C')) stored,
    constraint pk_comment primary key (team_id, id),
    constraint fk_comment_team_id_task_id_project_id_task
        foreign key (team_id, task_id, project_id) references task (team_id, id, project_id)
        on delete cascade on update cascade,
    -- A deleted comment keeps its row (events and notifications refer to it), not its text.
    constraint ck_comment_body_length check (
        (deleted_at is null and length(body) between 1 and {COMMENT_MAX_LENGTH})
        or (deleted_at is not null and body = '')
    ),
    constraint ck_comment_mentions_count check (cardinality(mentions) <= {MAX_MENTIONS})
);
create index ix_comment_team_id_task_id_project_id on comment (team_id, task_id, project_id, id);
create index ix_comment_search on comment using gin (search) where deleted_at is null;

create table task_follower (
    team_id uuid not null,
    task_id uuid not null,
    project_id uuid not null,
    user_id uuid not null,{TIMESTAMPS},
    -- project_id is determined by task_id; it is in the key so that the key also indexes
    -- the foreign key to task.
    constraint pk_task_follower primary key (team_id, task_id, project_id, user_id),
    constraint fk_task_follower_team_id_task_id_project_id_task
        foreign key (team_id, task_id, project_id) references task (team_id, id, project_id)
        on delete cascade on update cascade,
    constraint fk_task_follower_team_id_user_id_team_member foreign key (team_id, user_id)
        references team_member (team_id, user_id) on delete cascade
);
create index ix_task_follower_team_id_user_id on task_follower (team_id, user_id);

create table notification (
    team_id uuid not null,
    id uuid not null,
    recipient_id uuid not null,
    kind text not null,
    task_id uuid not null,
    project_id uuid not null,
    comment_id uuid,
    actor_id uuid not null,
    read_at timestamptz,{TIMESTAMPS},
    constraint pk_notification primary key (team_id, id),
    constraint fk_notification_team_id_task_id_project_id_task
        foreign key (team_id, task_id, project_id) references task (team_id, id, project_id)
        on delete cascade on update cascade,
    constraint fk_notification_team_id_comment_id_comment foreign key (team_id, comment_id)
        references comment (team_id, id) on delete cascade,
    constraint fk_notification_team_id_recipient_id_team_member
        foreign key (team_id, recipient_id) references team_member (team_id, user_id)
        on delete cascade,
    constraint ck_notification_kind check (kind in ('assigned', 'mentioned', 'commented')),
    constraint ck_notification_comment_id check ((kind = 'assigned') = (comment_id is null))
);
create index ix_notification_team_id_recipient_id on notification (team_id, recipient_id, id);
create index ix_notification_team_id_recipient_id_unread on notification (team_id, recipient_id, id)
    where read_at is null;
create index ix_notification_team_id_task_id_project_id
    on notification (team_id, task_id, project_id);
create index ix_notification_team_id_comment_id on notification (team_id, comment_id);

create index ix_event_team_id_subject_id_occurred_at_id
    on event (team_id, subject_id, occurred_at, id);
"""

# The visibility rule of tb_visible_project_ids (team projects for non-guests, private ones
# for their members), asked about another member: notifications and mentions go only to
# members who can see the task. It answers for projects the caller sees, else false, so it
# reveals nothing the caller could not read from project_member and team_member already.
FUNCTIONS_SQL = """
create function tb_member_sees_project(member uuid, target uuid) returns boolean
    language plpgsql stable security definer set search_path = pg_catalog, public
    as $$
    begin
        return (
        with seeing as (
            select m.user_id from team_member m
            join project p on p.team_id = m.team_id and p.id = target
            where m.team_id = tb_current_team_id()
              and m.user_id in (member, tb_current_user_id())
              and (
                  (p.visibility = 'team' and m.role <> 'guest')
                  or exists (
                      select 1 from project_member pm
                      where pm.team_id = p.team_id and pm.project_id = p.id
                        and pm.user_id = m.user_id
                  )
              )
        )
        select exists (select 1 from seeing where user_id = member)
           and exists (select 1 from seeing where user_id = tb_current_user_id())
        );
    end
    $$;

-- Runs as the owner: the creator follows whatever the caller's context (seeds, imports),
-- provided they are a member of the task's team.
create function tb_task_creator_follows() returns trigger
    language plpgsql security definer set search_path = pg_catalog, public as $$
begin
    insert into task_follower (team_id, task_id, project_id, user_id)
    select new.team_id, new.id, new.project_id, new.created_by
    where exists (
        select 1 from team_member m where m.team_id = new.team_id and m.user_id = new.created_by
    )
    on conflict do nothing;
    return null;
end $$;
create trigger task_creator_follows after insert on task
    for each row execute function tb_task_creator_follows();
"""

FUNCTIONS = (
    "tb_member_sees_project(uuid, uuid)",
    "tb_task_creator_follows()",
    "tb_similar_task_titles(text)",
)
#: Functions the app role calls (the trigger function is only fired by PostgreSQL).
APP_FUNCTIONS = ("tb_member_sees_project(uuid, uuid)", "tb_similar_task_titles(text)")

SIMILAR_TITLES_SIGNATURE = (
    "create function tb_similar_task_titles(q text) returns table (task_id uuid, similarity real)"
)


def similar_titles_sql(trigram_schema: str | None) -> str:
    """``tb_similar_task_titles(q)``: visible, undeleted tasks whose title contains a word
    similar to ``q`` (invoker's rights, so RLS applies), with the similarity; no rows when
    ``trigram_schema`` (where pg_trgm lives) is None."""
    if trigram_schema is None:
        return (
            f"{SIMILAR_TITLES_SIGNATURE} language sql stable"
            " as $$ select null::uuid, null::real where false $$"
        )
    return (
        f"{SIMILAR_TITLES_SIGNATURE} language sql stable"
        f" set pg_trgm.word_similarity_threshold = {TRIGRAM_THRESHOLD}"
        f" set search_path = pg_catalog, public, {trigram_schema}"
        " as $$ select t.id, word_similarity(q, t.title) from task t"
        " where q <% t.title and t.deleted_at is null $$"
    )


def trigram_schema(bind: Connection) -> str | None:
    """Install pg_trgm when the server offers it and the owner may; return its schema
    (quoted), or None to fall back to full-text search only."""
    available = bind.exec_driver_sql(
        "select exists (select 1 from pg_available_extensions where name = 'pg_trgm')"
    ).scalar()
    if not available:
        return None
    try:
        with bind.begin_nested():
            bind.exec_driver_sql("create extension if not exists pg_trgm")
    except DBAPIError:
        return None
    schema = bind.exec_driver_sql(
        "select quote_ident(n.nspname) from pg_extension e"
        " join pg_namespace n on n.oid = e.extnamespace where e.extname = 'pg_trgm'"
    ).scalar()
    return str(schema)


def _policies() -> list[tuple[str, Policies, dict[str, object]]]:
    me = CURRENT_USER
    visible = project_visible_by_call()
    return [
        (
            "comment",
            Policies(
                select=visible,
                insert=f"{visible} and author_id = {me}",
                # Authors edit and delete, admins delete (soft: an update); the service
                # keeps editing to authors.
                update=f"{visible} and (author_id = {me} or {CURRENT_ROLE} in ('owner', 'admin'))",
                delete=DENY,
            ),
            {
                "grants": (
                    "select",
                    "insert",
                    "update (body, mentions, edited_at, deleted_at, updated_at)",
                )
            },
        ),
        (
            "task_follower",
            Policies(
                select=visible,
                insert=f"{visible} and user_id = {me}",
                update=DENY,
                delete=f"{visible} and user_id = {me}",
            ),
            {"grants": ("select", "insert", "delete"), "touch": False},
        ),
        (
            "notification",
            Policies(
                select=f"{visible} and recipient_id = {me}",
                insert=(
                    f"{visible} and actor_id = {me}"
                    " and tb_member_sees_project(recipient_id, project_id)"
                ),
                update=f"{visible} and recipient_id = {me}",
                delete=DENY,
            ),
            {"grants": ("select", "insert", "update (read_at, updated_at)")},
        ),
    ]


def upgrade() -> None:
    role = app_role()
    schema = trigram_schema(op.get_bind())
    op.execute(TABLES)
    if schema is not None:
        op.execute(
            f"create index ix_task_title_trgm on task using gin (title {schema}.gin_trgm_ops)"
            " where deleted_at is null"
        )
    op.execute(FUNCTIONS_SQL)
    op.execute(similar_titles_sql(schema))
    for function in FUNCTIONS:
        op.execute(f"revoke all on function {function} from public")
    for function in APP_FUNCTIONS:
        op.execute(f"grant execute on function {function} to {role}")
    for table, policies, options in _policies():
        tenancy.apply(op.execute, secure_table(table, policies, app_role=role, **options))  # type: ignore[arg-type]


def downgrade() -> None:
    """Drops everything this revision made except the pg_trgm extension, which is a
    database-wide resource others may use (upgrading again reuses it)."""
    op.execute("drop table if exists notification, task_follower, comment")
    op.execute("drop trigger if exists task_creator_follows on task")
    op.execute("drop function if exists " + ", ".join(FUNCTIONS))
    op.execute(
        "drop index if exists ix_event_team_id_subject_id_occurred_at_id, ix_task_title_trgm,"
        " ix_task_search, uq_task_team_id_id_project_id"
    )
    op.execute("alter table task drop column if exists search")
