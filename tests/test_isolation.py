"""The isolation matrix: every tenant table x every command x every kind of caller.

Three teams (A, B, C) are filled through the owner connection with one row or more in every
tenant table. Then, as the *app role* (the role the API uses) with a transaction-local
context, each table is checked: own rows visible, foreign rows invisible, inserts with a
foreign ``team_id`` rejected, moving a row to another team rejected, foreign rows neither
updatable nor deletable, and no context (or an outsider, or a removed member) sees nothing.

Tenant tables are discovered from the catalog, so a new table automatically joins the
matrix, and fails it until the fixtures below give it rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from teamboard.ops.database import DatabaseUrls
from tests.analytics import fold_past

Row = dict[str, Any]
ROLES = ("owner", "admin", "member", "guest")


@dataclass
class Team:
    id: uuid.UUID
    users: dict[str, uuid.UUID]  # role -> user; plus "removed" and "outsider"
    team_project: uuid.UUID
    private_project: uuid.UUID


def _insert(owner: psycopg.Connection[Row], table: str, **values: Any) -> None:
    query = sql.SQL("insert into {} ({}) values ({})").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, values)),
        sql.SQL(", ").join(sql.Placeholder() * len(values)),
    )
    owner.execute(query, [Jsonb(v) if isinstance(v, dict) else v for v in values.values()])


def _make_user(owner: psycopg.Connection[Row], name: str) -> uuid.UUID:
    user_id = uuid.uuid4()
    _insert(
        owner,
        "app_user",
        id=user_id,
        email=f"{name.lower()}-{user_id.hex[:8]}@iso.test",
        display_name=name,
        password_hash="x",
    )
    session_id = uuid.uuid4()
    _insert(owner, "auth_session", user_id=user_id, id=session_id, expires_at="2099-01-01")
    _insert(
        owner,
        "refresh_token",
        user_id=user_id,
        id=uuid.uuid4(),
        session_id=session_id,
        expires_at="2099-01-01",
    )
    return user_id


def _project(
    owner: psycopg.Connection[Row], team: uuid.UUID, key: str, visibility: str, creator: uuid.UUID
) -> uuid.UUID:
    project_id = uuid.uuid4()
    _insert(
        owner,
        "project",
        team_id=team,
        id=project_id,
        key=key,
        name=key,
        visibility=visibility,
        created_by=creator,
    )
    status_id = uuid.uuid4()
    _insert(
        owner,
        "status",
        team_id=team,
        id=status_id,
        project_id=project_id,
        name="Todo",
        category="unstarted",
        position=1,
    )
    task_id, label_id = uuid.uuid4(), uuid.uuid4()
    _insert(
        owner,
        "task",
        team_id=team,
        id=task_id,
        project_id=project_id,
        number=1,
        title=f"{key} task",
        status_id=status_id,
        created_by=creator,
    )  # its creator now follows it (task_follower, by trigger)
    _insert(
        owner,
        "comment",
        team_id=team,
        id=uuid.uuid4(),
        task_id=task_id,
        project_id=project_id,
        author_id=creator,
        body=f"{key} comment",
    )
    _insert(
        owner, "label", team_id=team, id=label_id, project_id=project_id, name=key, color="#aabbcc"
    )
    _insert(
        owner, "task_label", team_id=team, project_id=project_id, task_id=task_id, label_id=label_id
    )
    _insert(
        owner,
        "task_assignee",
        team_id=team,
        project_id=project_id,
        task_id=task_id,
        user_id=creator,
    )
    _task_children(owner, team, project_id, task_id, creator)
    _analytics_events(owner, team, project_id, task_id, status_id, creator)
    return project_id


def _analytics_events(
    owner: psycopg.Connection[Row],
    team: uuid.UUID,
    project_id: uuid.UUID,
    task_id: uuid.UUID,
    status_id: uuid.UUID,
    creator: uuid.UUID,
) -> None:
    """The task's creation (assigned) and completion: once folded, a row in every rollup."""
    done = uuid.uuid4()
    _insert(
        owner,
        "status",
        team_id=team,
        id=done,
        project_id=project_id,
        name="Done",
        category="completed",
        position=2,
    )
    created = {"status_id": str(status_id), "assignee_ids": [str(creator)]}
    moved = {"from_status_id": str(status_id), "to_status_id": str(done)}
    for kind, payload in (("task.created", created), ("task.moved", moved)):
        _insert(
            owner,
            "event",
            team_id=team,
            id=uuid.uuid4(),
            actor_id=creator,
            kind=kind,
            subject_id=task_id,
            project_id=project_id,
            payload=payload,
        )


def _task_children(
    owner: psycopg.Connection[Row],
    team: uuid.UUID,
    project_id: uuid.UUID,
    task_id: uuid.UUID,
    creator: uuid.UUID,
) -> None:
    """An attachment, a time entry, and a stored object queued for removal."""
    attachment_id = uuid.uuid4()
    _insert(
        owner,
        "attachment",
        team_id=team,
        id=attachment_id,
        project_id=project_id,
        task_id=task_id,
        filename="notes.txt",
        content_type="text/plain",
        size_bytes=5,
        sha256="0" * 64,
        storage_key=f"{team}/{attachment_id}",
        uploaded_by=creator,
    )
    gone = uuid.uuid4()
    _insert(
        owner,
        "attachment_purge",
        team_id=team,
        id=gone,
        project_id=project_id,
        storage_key=f"{team}/{gone}",
    )
    _insert(
        owner,
        "time_entry",
        team_id=team,
        id=uuid.uuid4(),
        project_id=project_id,
        task_id=task_id,
        user_id=creator,
        started_at="2026-01-01T09:00:00Z",
        ended_at="2026-01-01T10:00:00Z",
    )


def _make_team(owner: psycopg.Connection[Row], label: str) -> Team:
    users = {role: _make_user(owner, f"{label}-{role}") for role in ROLES}
    users["removed"] = _make_user(owner, f"{label}-removed")
    users["outsider"] = _make_user(owner, f"{label}-outsider")
    team_id = uuid.uuid4()
    _insert(owner, "team", id=team_id, name=f"Team {label}", created_by=users["owner"])
    for role in ROLES:
        _insert(owner, "team_member", team_id=team_id, user_id=users[role], role=role)
    # The removed member was a member once: their rows stay, their access does not.
    _insert(owner, "team_member", team_id=team_id, user_id=users["removed"], role="member")
    team_project = _project(owner, team_id, "PUB", "team", users["owner"])
    private_project = _project(owner, team_id, "SEC", "private", users["owner"])
    for project, user in ((team_project, users["guest"]), (private_project, users["owner"])):
        _insert(owner, "project_member", team_id=team_id, project_id=project, user_id=user)
    # Everyone, the removed member included, has a notification on each project's task:
    # only the recipient may see it, and only while they can see the project.
    for comment in owner.execute(
        "select id, task_id, project_id from comment where team_id = %s", (team_id,)
    ).fetchall():
        for user in (*ROLES, "removed"):
            _insert(
                owner,
                "notification",
                team_id=team_id,
                id=uuid.uuid4(),
                recipient_id=users[user],
                kind="mentioned",
                task_id=comment["task_id"],
                project_id=comment["project_id"],
                comment_id=comment["id"],
                actor_id=users["owner"],
            )
    owner.execute(
        "delete from team_member where team_id = %s and user_id = %s", (team_id, users["removed"])
    )
    _insert(
        owner,
        "invitation",
        team_id=team_id,
        id=uuid.uuid4(),
        email=f"inv-{label.lower()}@iso.test",
        role="member",
        token_hash=uuid.uuid4().hex,
        invited_by=users["owner"],
        expires_at="2099-01-01",
    )
    _insert(
        owner,
        "api_key",
        team_id=team_id,
        id=uuid.uuid4(),
        name="k",
        prefix=uuid.uuid4().hex[:12],
        secret_hash="h",
        scopes=["read"],
        created_by=users["owner"],
    )
    _insert(
        owner,
        "event",
        team_id=team_id,
        id=uuid.uuid4(),
        actor_id=users["owner"],
        kind="team.created",
        payload={},
    )
    _webhook(owner, team_id, users["owner"])
    return Team(team_id, users, team_project, private_project)


def _webhook(owner: psycopg.Connection[Row], team_id: uuid.UUID, creator: uuid.UUID) -> None:
    """A webhook with one delivery and one attempt (the team's admins' business only)."""
    webhook_id, delivery_id = uuid.uuid4(), uuid.uuid4()
    _insert(
        owner,
        "webhook",
        team_id=team_id,
        id=webhook_id,
        url="https://hooks.example.com/in",
        kinds=["*"],
        secret_ciphertext=b"sealed",
        created_by=creator,
    )
    _insert(
        owner,
        "webhook_delivery",
        team_id=team_id,
        id=delivery_id,
        webhook_id=webhook_id,
        event_id=uuid.uuid4(),
        event_occurred_at="2026-01-01",
        event_kind="team.created",
    )
    _insert(
        owner,
        "webhook_attempt",
        team_id=team_id,
        id=uuid.uuid4(),
        delivery_id=delivery_id,
        status_code=500,
        duration_ms=12,
    )


@pytest.fixture(scope="module")
def teams(owner: psycopg.Connection[Row]) -> dict[str, Team]:
    made = {label: _make_team(owner, label) for label in "ABC"}
    last = owner.execute("select max(tx_id::text::bigint) as x from event").fetchone()
    assert last is not None
    fold_past(owner, last["x"])  # the analytics rollups of the events above
    return made


@pytest.fixture(scope="module")
def tenant_tables(owner: psycopg.Connection[Row]) -> list[str]:
    rows = owner.execute(
        "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " join pg_attribute a on a.attrelid = c.oid and a.attname = 'team_id'"
        " where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relispartition"
        " order by 1"
    ).fetchall()
    return [row["relname"] for row in rows]


@pytest.fixture
def app_conn(db_urls: DatabaseUrls) -> Iterator[psycopg.Connection[Row]]:
    """An app-role connection in an open transaction, rolled back after the test."""
    with psycopg.connect(db_urls.app, row_factory=dict_row) as conn:
        yield conn
        conn.rollback()


def as_caller(
    conn: psycopg.Connection[Row], user: uuid.UUID | None, team: uuid.UUID | None
) -> None:
    conn.execute(
        "select set_config('app.user_id', %s, true), set_config('app.team_id', %s, true)",
        ("" if user is None else str(user), "" if team is None else str(team)),
    )


def visible(conn: psycopg.Connection[Row], table: str) -> list[Row]:
    return conn.execute(sql.SQL("select * from {}").format(sql.Identifier(table))).fetchall()


def _rejected(conn: psycopg.Connection[Row], statement: sql.Composable, params: Any = None) -> bool:
    """True when the statement is refused by RLS, a trigger or a missing grant."""
    try:
        with conn.transaction():
            conn.execute(statement, params)
    except psycopg.errors.InsufficientPrivilege:
        return True
    return False


#: Per-team sums and sets over every project: for callers who see every project (here, the
#: owner, the only member of the private project besides being able to see the team one).
WHOLE_TEAM_ONLY = {"analytics_team_daily", "analytics_team_actor", "analytics_actor_last"}
ROLLUP_TABLES = (
    "analytics_daily",
    "analytics_actor_daily",
    "analytics_flow_total",
    "analytics_task",
    "analytics_completion",
    "analytics_task_link",
    # Per-project rows; the completion nodes' whole-team rows (nil project) follow
    # tb_analytics_sees_all like WHOLE_TEAM_ONLY.
    "analytics_completion_node",
    "analytics_time_daily",
)
EXPECTED_TENANT_TABLES = {
    *ROLLUP_TABLES,
    "analytics_state",
    *WHOLE_TEAM_ONLY,
    "api_key",
    "comment",
    "attachment",
    "attachment_purge",
    "event",
    "invitation",
    "notification",
    "label",
    "project",
    "project_member",
    "status",
    "task",
    "task_follower",
    "task_assignee",
    "task_label",
    "team_member",
    "team_member_visibility",
    "time_entry",
    "webhook",
    "webhook_attempt",
    "webhook_delivery",
}
#: Tenant tables whose rows belong to a project (visibility follows the project's).
PROJECT_TABLES = (
    "task",
    "status",
    "project_member",
    "event",
    "comment",
    "task_follower",
    "attachment",
    "attachment_purge",
    "time_entry",
    "label",
    "task_label",
    "task_assignee",
    *ROLLUP_TABLES,
)
ADMIN_ONLY = {"api_key", "invitation", "webhook", "webhook_attempt", "webhook_delivery"}


def test_every_tenant_table_is_in_the_matrix(tenant_tables: list[str]) -> None:
    """A new tenant table must be added to the fixtures above (and to this set)."""
    assert set(tenant_tables) == EXPECTED_TENANT_TABLES


#: Tables without ``team_id``, each kept to its rows by a rule of its own (and its tests).
GLOBAL_TABLES = {
    "team": "the caller's teams (test_non_members_see_nothing and the REST matrix)",
    "app_user": "the caller and their teammates",
    "auth_session": "the caller's own",
    "refresh_token": "the caller's own",
    "idempotency_record": "the caller's own (test_idempotency)",
    "event_consumer": "the worker's offsets, nobody else's (test_app_role_cannot_touch_...)",
    "analytics_watermark": "one row, read-only to any signed-in caller (a transaction id)",
}


def test_every_other_table_is_a_known_global_one(
    owner: psycopg.Connection[Row], tenant_tables: list[str], db_urls: DatabaseUrls
) -> None:
    """A new table without ``team_id`` must be added here, with its rule; none of them may
    be open to every caller (a permissive policy of ``true`` for the app role passes the
    audit, which only asks that some policy exists)."""
    rows = owner.execute(
        "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relispartition"
        " and c.relname <> 'alembic_version'"
    ).fetchall()
    assert {row["relname"] for row in rows} - set(tenant_tables) == set(GLOBAL_TABLES)
    open_to_all = owner.execute(
        "select c.relname, p.polname from pg_policy p join pg_class c on c.oid = p.polrelid"
        " where c.relname = any(%(tables)s) and p.polpermissive"
        " and (pg_get_expr(p.polqual, p.polrelid) = 'true'"
        "  or pg_get_expr(p.polwithcheck, p.polrelid) = 'true'"
        "  or (p.polcmd in ('r', 'w', 'd', '*') and p.polqual is null))"
        " and exists (select from unnest(p.polroles) as target(oid) where target.oid = 0"
        "  or pg_has_role(%(role)s, target.oid, 'MEMBER'))",
        {"tables": list(GLOBAL_TABLES), "role": db_urls.app_role},
    ).fetchall()
    assert open_to_all == []


@pytest.mark.parametrize("role", ROLES)
def test_members_see_only_their_team(
    app_conn: psycopg.Connection[Row], teams: dict[str, Team], tenant_tables: list[str], role: str
) -> None:
    team = teams["A"]
    as_caller(app_conn, team.users[role], team.id)
    for table in tenant_tables:
        rows = visible(app_conn, table)
        assert {row["team_id"] for row in rows} <= {team.id}, f"{table} leaked for {role}"
        expect_rows = not (table in ADMIN_ONLY and role in ("member", "guest")) and not (
            table in WHOLE_TEAM_ONLY and role != "owner"
        )
        assert bool(rows) == expect_rows, f"{table} as {role}: {len(rows)} rows"


@pytest.mark.parametrize("who", ["removed", "outsider", "no-user", "no-context"])
def test_non_members_see_nothing(
    app_conn: psycopg.Connection[Row], teams: dict[str, Team], tenant_tables: list[str], who: str
) -> None:
    team = teams["A"]
    user = team.users.get(who)
    as_caller(app_conn, user, None if who == "no-context" else team.id)
    for table in [*tenant_tables, "team"]:
        assert visible(app_conn, table) == [], f"{table} visible to {who}"


def test_member_of_a_cannot_read_b_by_naming_it(
    app_conn: psycopg.Connection[Row], teams: dict[str, Team], tenant_tables: list[str]
) -> None:
    a, b = teams["A"], teams["B"]
    as_caller(app_conn, a.users["owner"], b.id)
    for table in tenant_tables:
        rows = visible(app_conn, table)
        if table == "team_member":  # one's own memberships stay visible, and nothing else
            assert [(r["team_id"], r["user_id"]) for r in rows] == [(a.id, a.users["owner"])]
        else:
            assert rows == [], table


def test_guest_sees_only_projects_they_were_added_to(
    app_conn: psycopg.Connection[Row], teams: dict[str, Team]
) -> None:
    team = teams["A"]
    as_caller(app_conn, team.users["guest"], team.id)
    for table in (*PROJECT_TABLES, "notification"):
        projects = {row["project_id"] for row in visible(app_conn, table)} - {None}
        assert projects == {team.team_project}, table
    assert [row["id"] for row in visible(app_conn, "project")] == [team.team_project]
    assert all(row["project_id"] for row in visible(app_conn, "event"))


@pytest.mark.parametrize("role", ["admin", "member"])
def test_private_projects_are_for_their_members_only(
    app_conn: psycopg.Connection[Row], teams: dict[str, Team], role: str
) -> None:
    team = teams["A"]
    as_caller(app_conn, team.users[role], team.id)
    for table in (*PROJECT_TABLES, "notification"):
        projects = {row["project_id"] for row in visible(app_conn, table)}
        assert team.private_project not in projects, table
    # Nor the completion nodes' whole-team rows (nil project), which include it.
    nodes = {row["project_id"] for row in visible(app_conn, "analytics_completion_node")}
    assert uuid.UUID(int=0) not in nodes
    as_caller(app_conn, team.users["owner"], team.id)
    assert uuid.UUID(int=0) in {
        row["project_id"] for row in visible(app_conn, "analytics_completion_node")
    }
    assert team.private_project in {row["id"] for row in visible(app_conn, "project")}


def _foreign_copy(owner: psycopg.Connection[Row], table: str, source: Team, target: Team) -> Row:
    """A row of ``target`` re-labelled as ``source``'s: what a forged insert would carry."""
    row = owner.execute(
        sql.SQL("select * from {} where team_id = %s limit 1").format(sql.Identifier(table)),
        (target.id,),
    ).fetchone()
    assert row is not None, f"no {table} row for the fixture team"
    copy = dict(row)
    if "id" in copy:
        copy["id"] = uuid.uuid4()
    for key in ("tx_id", *_generated_columns(owner, table)):
        copy.pop(key, None)
    return copy


def _generated_columns(owner: psycopg.Connection[Row], table: str) -> list[str]:
    rows = owner.execute(
        "select attname from pg_attribute where attrelid = %s::regclass and attgenerated <> ''",
        (table,),
    ).fetchall()
    return [row["attname"] for row in rows]


def _insert_statement(table: str, row: Row) -> tuple[sql.Composable, list[Any]]:
    statement = sql.SQL("insert into {} ({}) values ({})").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, row)),
        sql.SQL(", ").join(sql.Placeholder() * len(row)),
    )
    return statement, [_parameter(v) for v in row.values()]


def _parameter(value: Any) -> Any:
    """JSON documents (objects, lists of objects such as a task card's labels) as JSON."""
    if isinstance(value, dict) or (
        isinstance(value, list) and value and all(isinstance(item, dict) for item in value)
    ):
        return Jsonb(value)
    return value


def test_inserts_into_another_team_are_rejected(
    app_conn: psycopg.Connection[Row],
    owner: psycopg.Connection[Row],
    teams: dict[str, Team],
    tenant_tables: list[str],
) -> None:
    a, b = teams["A"], teams["B"]
    as_caller(app_conn, a.users["owner"], a.id)
    for table in tenant_tables:
        statement, params = _insert_statement(table, _foreign_copy(owner, table, a, b))
        assert _rejected(app_conn, statement, params), f"insert into {table} for team B passed"


def test_inserts_without_context_are_rejected(
    app_conn: psycopg.Connection[Row],
    owner: psycopg.Connection[Row],
    teams: dict[str, Team],
    tenant_tables: list[str],
) -> None:
    a = teams["A"]
    as_caller(app_conn, None, None)
    for table in tenant_tables:
        row = _foreign_copy(owner, table, a, a)
        row["team_id"] = None  # the trigger would fill it from the (absent) context
        statement, params = _insert_statement(table, row)
        try:
            refused = _rejected(app_conn, statement, params)
        except psycopg.errors.NotNullViolation:
            refused = True
        assert refused, f"insert into {table} without context passed"


def test_rows_cannot_move_to_another_team(
    app_conn: psycopg.Connection[Row], teams: dict[str, Team], tenant_tables: list[str]
) -> None:
    a, b = teams["A"], teams["B"]
    as_caller(app_conn, a.users["owner"], a.id)
    for table in tenant_tables:
        statement = sql.SQL("update {} set team_id = %s where team_id = %s").format(
            sql.Identifier(table)
        )
        assert _rejected(app_conn, statement, (b.id, a.id)), f"{table} row moved to team B"


#: How a table's rows of a team are summed up, for tables without ``updated_at``.
SUMMARY_OF = {
    "event": "count(*) as n",
    "team_member_visibility": (
        "count(*) as n, string_agg(project_ids::text, ';' order by user_id) as sets"
    ),
}


def test_foreign_rows_cannot_be_updated_or_deleted(
    app_conn: psycopg.Connection[Row],
    owner: psycopg.Connection[Row],
    teams: dict[str, Team],
    tenant_tables: list[str],
) -> None:
    a, b = teams["A"], teams["B"]

    def counts() -> dict[str, Row]:
        return {
            table: owner.execute(
                sql.SQL("select {} from {} where team_id = %s").format(
                    sql.SQL(SUMMARY_OF.get(table, "count(*) as n, max(updated_at) as changed")),
                    sql.Identifier(table),
                ),
                (b.id,),
            ).fetchone()
            or {}
            for table in tenant_tables
        }

    before = counts()
    as_caller(app_conn, a.users["owner"], a.id)
    for table in tenant_tables:
        for statement in (
            sql.SQL("update {} set team_id = team_id where team_id = %s"),
            sql.SQL("delete from {} where team_id = %s"),
        ):
            try:
                with app_conn.transaction():
                    cur = app_conn.execute(statement.format(sql.Identifier(table)), (b.id,))
                    assert cur.rowcount == 0, f"{table}: touched {cur.rowcount} rows of team B"
            except psycopg.errors.InsufficientPrivilege:
                pass  # append-only tables grant no UPDATE/DELETE at all
    assert counts() == before


def test_team_root_table(app_conn: psycopg.Connection[Row], teams: dict[str, Team]) -> None:
    a, b = teams["A"], teams["B"]
    as_caller(app_conn, a.users["admin"], a.id)
    assert [row["id"] for row in visible(app_conn, "team")] == [a.id]
    cur = app_conn.execute("update team set name = 'x' where id = %s", (b.id,))
    assert cur.rowcount == 0
    cur = app_conn.execute("delete from team where id = %s", (a.id,))
    assert cur.rowcount == 0, "only owners delete a team"
    assert _rejected(
        app_conn,
        sql.SQL("insert into team (id, name, created_by) values (%s, 'x', %s)"),
        (uuid.uuid4(), b.users["owner"]),
    ), "a team was created in someone else's name"


def test_membership_cannot_be_self_granted(
    app_conn: psycopg.Connection[Row], teams: dict[str, Team]
) -> None:
    a, b = teams["A"], teams["B"]
    as_caller(app_conn, a.users["owner"], b.id)
    assert _rejected(
        app_conn,
        sql.SQL("insert into team_member (team_id, user_id, role) values (%s, %s, 'owner')"),
        (b.id, a.users["owner"]),
    )
    as_caller(app_conn, a.users["member"], a.id)
    cur = app_conn.execute(
        "update team_member set role = 'owner' where team_id = %s and user_id = %s",
        (a.id, a.users["member"]),
    )
    assert cur.rowcount == 0, "a member promoted themselves"


def test_global_tables_show_only_self_and_teammates(
    app_conn: psycopg.Connection[Row], teams: dict[str, Team]
) -> None:
    a, b = teams["A"], teams["B"]
    as_caller(app_conn, a.users["member"], a.id)
    users = {row["id"] for row in app_conn.execute("select id from app_user").fetchall()}
    assert a.users["member"] in users
    assert b.users["member"] not in users
    assert users <= set(a.users.values())
    for table in ("auth_session", "refresh_token"):
        assert {row["user_id"] for row in visible(app_conn, table)} == {a.users["member"]}
    cur = app_conn.execute(
        "update app_user set display_name = 'pwned' where id = %s", (b.users["member"],)
    )
    assert cur.rowcount == 0


# Regressions from the security review: each of these was possible at the RLS level.


def _pending_invitation(owner: psycopg.Connection[Row], team: Team, email: str, role: str) -> str:
    token_hash = uuid.uuid4().hex
    _insert(
        owner,
        "invitation",
        team_id=team.id,
        id=uuid.uuid4(),
        email=email,
        role=role,
        token_hash=token_hash,
        invited_by=team.users["owner"],
        expires_at="2099-01-01",
    )
    return token_hash


def test_invitation_holders_cannot_rewrite_their_invitation(
    app_conn: psycopg.Connection[Row], owner: psycopg.Connection[Row], teams: dict[str, Team]
) -> None:
    a = teams["A"]
    invitee = _make_user(owner, "invitee")
    email = owner.execute("select email from app_user where id = %s", (invitee,)).fetchone()
    assert email is not None
    token_hash = _pending_invitation(owner, a, email["email"], "guest")
    as_caller(app_conn, invitee, a.id)
    app_conn.execute("select set_config('app.invitation_token', %s, true)", (token_hash,))
    assert _rejected(
        app_conn,
        sql.SQL("update invitation set role = 'admin' where token_hash = %s"),
        (token_hash,),
    ), "an invitee upgraded their own invitation"
    assert _rejected(
        app_conn,
        sql.SQL("insert into team_member (team_id, user_id, role) values (%s, %s, 'admin')"),
        (a.id, invitee),
    ), "an invitee joined with a role they were not invited to"


def test_a_changed_email_does_not_claim_someone_elses_invitation(
    app_conn: psycopg.Connection[Row], owner: psycopg.Connection[Row], teams: dict[str, Team]
) -> None:
    a = teams["A"]
    token_hash = _pending_invitation(owner, a, "victim-inv@iso.test", "member")
    outsider = a.users["outsider"]
    as_caller(app_conn, outsider, None)
    assert _rejected(
        app_conn,
        sql.SQL("update app_user set email = 'victim-inv@iso.test' where id = %s"),
        (outsider,),
    ), "a user changed the email that invitations are matched on"
    as_caller(app_conn, outsider, a.id)
    app_conn.execute("select set_config('app.invitation_token', %s, true)", (token_hash,))
    assert _rejected(
        app_conn,
        sql.SQL("insert into team_member (team_id, user_id, role) values (%s, %s, 'member')"),
        (a.id, outsider),
    )


def test_api_key_prefix_alone_shows_and_changes_nothing(
    app_conn: psycopg.Connection[Row], owner: psycopg.Connection[Row], teams: dict[str, Team]
) -> None:
    key = owner.execute(
        "select prefix from api_key where team_id = %s limit 1", (teams["A"].id,)
    ).fetchone()
    assert key is not None
    owner.execute("update api_key set revoked_at = now() where prefix = %s", (key["prefix"],))
    as_caller(app_conn, None, None)
    app_conn.execute("select set_config('app.api_key_prefix', %s, true)", (key["prefix"],))
    assert app_conn.execute("select * from api_key").fetchall() == []
    cur = app_conn.execute(
        "update api_key set revoked_at = null where prefix = %s", (key["prefix"],)
    )
    assert cur.rowcount == 0, "a revoked key was revived with its prefix"


def test_admins_cannot_take_or_remove_the_owner_role(
    app_conn: psycopg.Connection[Row], teams: dict[str, Team]
) -> None:
    a = teams["A"]
    as_caller(app_conn, a.users["admin"], a.id)
    assert _rejected(
        app_conn,
        sql.SQL("update team_member set role = 'owner' where team_id = %s and user_id = %s"),
        (a.id, a.users["admin"]),
    ), "an admin made themselves owner"
    for statement in (
        sql.SQL("update team_member set role = 'guest' where team_id = %s and user_id = %s"),
        sql.SQL("delete from team_member where team_id = %s and user_id = %s"),
    ):
        cur = app_conn.execute(statement, (a.id, a.users["owner"]))
        assert cur.rowcount == 0, "an admin demoted or removed an owner"


def test_project_creators_cannot_let_themselves_back_in(
    app_conn: psycopg.Connection[Row], owner: psycopg.Connection[Row], teams: dict[str, Team]
) -> None:
    a = teams["A"]
    owner.execute(
        "update project set created_by = %s where id = %s", (a.users["member"], a.private_project)
    )
    as_caller(app_conn, a.users["member"], a.id)
    assert _rejected(
        app_conn,
        sql.SQL("insert into project_member (project_id, user_id) values (%s, %s)"),
        (a.private_project, a.users["member"]),
    ), "the creator re-entered a private project they were removed from"
    assert _rejected(
        app_conn,
        sql.SQL("update project set created_by = %s where id = %s"),
        (a.users["member"], a.team_project),
    ), "a member rewrote a project's creator"


def test_events_cannot_be_forged_into_invisible_projects(
    app_conn: psycopg.Connection[Row], teams: dict[str, Team]
) -> None:
    a = teams["A"]
    as_caller(app_conn, a.users["guest"], a.id)
    assert _rejected(
        app_conn,
        sql.SQL(
            "insert into event (team_id, id, actor_id, kind, project_id)"
            " values (%s, %s, %s, 'task.deleted', %s)"
        ),
        (a.id, uuid.uuid4(), a.users["guest"], a.private_project),
    )


def test_password_hashes_are_not_readable(
    app_conn: psycopg.Connection[Row], teams: dict[str, Team]
) -> None:
    a = teams["A"]
    as_caller(app_conn, a.users["member"], a.id)
    assert _rejected(app_conn, sql.SQL("select password_hash from app_user"))


# Collaboration tables: rules beyond team and project visibility.


@pytest.mark.parametrize("role", ROLES)
def test_notifications_are_visible_to_their_recipient_only(
    app_conn: psycopg.Connection[Row], teams: dict[str, Team], role: str
) -> None:
    team = teams["A"]
    as_caller(app_conn, team.users[role], team.id)
    rows = visible(app_conn, "notification")
    assert rows
    assert {row["recipient_id"] for row in rows} == {team.users[role]}
    others = [user for name, user in team.users.items() if name in ROLES and name != role]
    cur = app_conn.execute(
        "update notification set read_at = now() where recipient_id = any(%s)", (others,)
    )
    assert cur.rowcount == 0, "marked someone else's notifications read"


def _task_and_comment(owner: psycopg.Connection[Row], project: uuid.UUID) -> Row:
    row = owner.execute(
        "select task_id, id as comment_id from comment where project_id = %s", (project,)
    ).fetchone()
    assert row is not None
    return row


def test_notifications_cannot_be_forged(
    app_conn: psycopg.Connection[Row], owner: psycopg.Connection[Row], teams: dict[str, Team]
) -> None:
    a = teams["A"]
    public = _task_and_comment(owner, a.team_project)
    private = _task_and_comment(owner, a.private_project)

    def forge(actor: str, recipient: str, project: uuid.UUID, target: Row) -> bool:
        return _rejected(
            app_conn,
            sql.SQL(
                "insert into notification (id, recipient_id, kind, task_id, project_id,"
                " comment_id, actor_id) values (%s, %s, 'mentioned', %s, %s, %s, %s)"
            ),
            (
                uuid.uuid4(),
                a.users[recipient],
                target["task_id"],
                project,
                target["comment_id"],
                a.users[actor],
            ),
        )

    as_caller(app_conn, a.users["member"], a.id)
    assert not forge("member", "admin", a.team_project, public), "a legitimate notification"
    assert forge("owner", "admin", a.team_project, public), "sent in someone else's name"
    assert not forge("member", "guest", a.team_project, public), "the guest was added to PUB"
    assert forge("member", "owner", a.private_project, private), "into an invisible project"
    as_caller(app_conn, a.users["owner"], a.id)
    assert forge("owner", "member", a.private_project, private), "to a member who cannot see it"
    assert not forge("owner", "owner", a.private_project, private)


def test_comments_and_follows_cannot_be_made_in_someone_elses_name(
    app_conn: psycopg.Connection[Row], owner: psycopg.Connection[Row], teams: dict[str, Team]
) -> None:
    a = teams["A"]
    public = _task_and_comment(owner, a.team_project)
    as_caller(app_conn, a.users["member"], a.id)
    assert _rejected(
        app_conn,
        sql.SQL(
            "insert into comment (id, task_id, project_id, author_id, body)"
            " values (%s, %s, %s, %s, 'x')"
        ),
        (uuid.uuid4(), public["task_id"], a.team_project, a.users["admin"]),
    )
    assert _rejected(
        app_conn,
        sql.SQL("insert into task_follower (task_id, project_id, user_id) values (%s, %s, %s)"),
        (public["task_id"], a.team_project, a.users["admin"]),
    )
    cur = app_conn.execute("delete from task_follower where user_id = %s", (a.users["owner"],))
    assert cur.rowcount == 0, "unfollowed on someone else's behalf"
    cur = app_conn.execute(
        "update comment set body = 'rewritten' where author_id = %s", (a.users["owner"],)
    )
    assert cur.rowcount == 0, "a member edited another member's comment"
    as_caller(app_conn, a.users["admin"], a.id)
    cur = app_conn.execute(
        "update comment set body = '', deleted_at = now() where id = %s", (public["comment_id"],)
    )
    assert cur.rowcount == 1, "admins delete (soft) any visible comment"


def test_member_visibility_helper_answers_only_for_visible_projects(
    app_conn: psycopg.Connection[Row], teams: dict[str, Team]
) -> None:
    a = teams["A"]

    def sees(user: str, project: uuid.UUID) -> bool:
        row = app_conn.execute(
            "select tb_member_sees_project(%s, %s) as sees", (a.users[user], project)
        ).fetchone()
        assert row is not None
        return bool(row["sees"])

    as_caller(app_conn, a.users["owner"], a.id)
    assert sees("member", a.team_project)
    assert sees("guest", a.team_project)
    assert not sees("member", a.private_project)
    assert sees("owner", a.private_project)
    as_caller(app_conn, a.users["member"], a.id)
    assert not sees("owner", a.private_project), "answered about a project the caller cannot see"
    as_caller(app_conn, a.users["owner"], teams["B"].id)
    assert not sees("owner", a.team_project)


def _project_row(owner: psycopg.Connection[Row], table: str, project: uuid.UUID) -> Row:
    row = owner.execute(
        sql.SQL("select * from {} where project_id = %s limit 1").format(sql.Identifier(table)),
        (project,),
    ).fetchone()
    assert row is not None, table
    return dict(row)


@pytest.mark.parametrize("table", ["task", "label", "task_label", "task_assignee"])
def test_guests_cannot_write_work_items_even_where_they_read(
    app_conn: psycopg.Connection[Row],
    owner: psycopg.Connection[Row],
    teams: dict[str, Team],
    table: str,
) -> None:
    a = teams["A"]
    row = _project_row(owner, table, a.team_project)
    as_caller(app_conn, a.users["guest"], a.id)
    assert visible(app_conn, table), f"the guest should read {table} of their project"
    copy = {**row, "id": uuid.uuid4()} if "id" in row else dict(row)
    if table == "task":
        copy["number"] = 999
    for column in _generated_columns(owner, table):
        copy.pop(column, None)
    statement, params = _insert_statement(table, copy)
    assert _rejected(app_conn, statement, params), f"a guest inserted into {table}"
    for statement in (
        sql.SQL("update {} set created_at = created_at where project_id = %s"),
        sql.SQL("delete from {} where project_id = %s"),
    ):
        try:
            with app_conn.transaction():
                cur = app_conn.execute(statement.format(sql.Identifier(table)), (a.team_project,))
                assert cur.rowcount == 0, f"a guest changed {table}"
        except psycopg.errors.InsufficientPrivilege:
            pass  # link tables grant no UPDATE at all


def test_a_task_cannot_carry_a_label_or_parent_of_another_project(
    app_conn: psycopg.Connection[Row], owner: psycopg.Connection[Row], teams: dict[str, Team]
) -> None:
    a = teams["A"]
    task = _project_row(owner, "task", a.team_project)
    label = _project_row(owner, "label", a.private_project)
    parent = _project_row(owner, "task", a.private_project)
    as_caller(app_conn, a.users["owner"], a.id)
    with pytest.raises(psycopg.errors.ForeignKeyViolation), app_conn.transaction():
        app_conn.execute(
            "insert into task_label (project_id, task_id, label_id) values (%s, %s, %s)",
            (a.team_project, task["id"], label["id"]),
        )
    with pytest.raises(psycopg.errors.ForeignKeyViolation), app_conn.transaction():
        app_conn.execute("update task set parent_id = %s where id = %s", (parent["id"], task["id"]))


# The worker role: the one role that reads every team's event log, and nothing else.


@pytest.fixture
def worker_conn(db_urls: DatabaseUrls) -> Iterator[psycopg.Connection[Row]]:
    with psycopg.connect(db_urls.worker, row_factory=dict_row) as conn:
        yield conn
        conn.rollback()


def test_worker_role_reads_the_log_and_nothing_else(
    worker_conn: psycopg.Connection[Row], teams: dict[str, Team], tenant_tables: list[str]
) -> None:
    seen = {row["team_id"] for row in worker_conn.execute("select team_id from event")}
    assert {team.id for team in teams.values()} <= seen
    readable = {"event", "webhook", "webhook_delivery", "webhook_attempt"}
    for table in [*tenant_tables, "team", "app_user", "auth_session", "idempotency_record"]:
        if table not in readable:
            statement = sql.SQL("select * from {}").format(sql.Identifier(table))
            assert _rejected(worker_conn, statement), f"the worker role read {table}"
    a = teams["A"]
    assert _rejected(
        worker_conn,
        sql.SQL("insert into event (team_id, id, kind) values (%s, %s, 'task.created')"),
        (a.id, uuid.uuid4()),
    ), "the worker role appended an event"
    assert _rejected(worker_conn, sql.SQL("delete from event"))
    assert _rejected(worker_conn, sql.SQL("update webhook set url = 'https://evil.example'"))
    partition = worker_conn.execute(
        "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid"
        " where i.inhparent = 'event'::regclass limit 1"
    ).fetchone()
    assert partition is not None
    assert _rejected(
        worker_conn, sql.SQL("select * from {}").format(sql.Identifier(partition["relname"]))
    )


def test_app_role_cannot_touch_consumer_offsets(
    app_conn: psycopg.Connection[Row], teams: dict[str, Team]
) -> None:
    as_caller(app_conn, teams["A"].users["owner"], teams["A"].id)
    for statement in (
        sql.SQL("select * from event_consumer"),
        sql.SQL("update event_consumer set seq = 0"),
        sql.SQL("insert into event_consumer (name, tx_id, seq) values ('evil', '1', 0)"),
        sql.SQL("select tb_ensure_event_partitions(3)"),
        sql.SQL("select tb_drop_event_partitions(1)"),
    ):
        assert _rejected(app_conn, statement), statement.as_string()


def test_managed_private_projects_are_counted_for_members_only(
    app_conn: psycopg.Connection[Row], teams: dict[str, Team]
) -> None:
    """The SECURITY DEFINER count of the private projects only one member still manages
    answers a member of the context team; naming another team in the context gets 0."""
    a, b = teams["A"], teams["B"]
    count = "select tb_private_projects_managed_only_by(%s) as n"
    as_caller(app_conn, a.users["owner"], a.id)
    assert app_conn.execute(count, (a.users["owner"],)).fetchone() == {"n": 1}
    for outsider in (b.users["owner"], a.users["outsider"], a.users["removed"]):
        as_caller(app_conn, outsider, a.id)
        assert app_conn.execute(count, (a.users["owner"],)).fetchone() == {"n": 0}, outsider
