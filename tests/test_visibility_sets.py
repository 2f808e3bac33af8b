"""Each member's stored set of visible projects (``team_member_visibility``, migration
``2026-12-06_visible_project_sets``): what Row Level Security reads for every statement over
projects and their rows.

The sets must equal what memberships and projects give after any sequence of writes, also
when two transactions write to one team at once, and reading them must not depend on how
many projects the team has.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from teamboard.ops.audit import check_visibility_sets
from teamboard.ops.database import DatabaseUrls
from tests.conftest import Actor, add_member
from tests.test_isolation import as_caller

Row = dict[str, Any]
ROLES = ("owner", "admin", "member", "guest")
MakeUser = Callable[..., Actor]


def _team(owner: psycopg.Connection[Row], creator: uuid.UUID) -> uuid.UUID:
    team_id = uuid.uuid4()
    owner.execute(
        "insert into team (id, name, created_by) values (%s, 'Visibility', %s)", (team_id, creator)
    )
    owner.execute(
        "insert into team_member (team_id, user_id, role) values (%s, %s, 'owner')",
        (team_id, creator),
    )
    return team_id


def _project(
    conn: psycopg.Connection[Row], team: uuid.UUID, key: str, visibility: str, creator: uuid.UUID
) -> uuid.UUID:
    project_id = uuid.uuid4()
    conn.execute(
        "insert into project (team_id, id, key, name, visibility, created_by)"
        " values (%s, %s, %s, %s, %s, %s)",
        (team, project_id, key, key, visibility, creator),
    )
    return project_id


def _sets(owner: psycopg.Connection[Row], team: uuid.UUID) -> dict[uuid.UUID, set[uuid.UUID]]:
    rows = owner.execute(
        "select user_id, project_ids from team_member_visibility where team_id = %s", (team,)
    ).fetchall()
    return {row["user_id"]: set(row["project_ids"]) for row in rows}


def _drift(owner: psycopg.Connection[Row]) -> list[str]:
    with owner.cursor(row_factory=dict_row) as cur:
        return [finding.detail for finding in check_visibility_sets(cur)]


@pytest.fixture
def second(db_urls: DatabaseUrls) -> Iterator[psycopg.Connection[Row]]:
    """Another owner connection, for a concurrent transaction."""
    with psycopg.connect(db_urls.owner, row_factory=dict_row) as conn:
        yield conn
        conn.rollback()


def test_sets_follow_every_kind_of_write(
    owner: psycopg.Connection[Row], make_user: MakeUser
) -> None:
    """A seeded random walk over every write that changes what a member sees; after each,
    the stored sets equal a recomputation (``db audit``'s check) and the expected sets."""
    rng = random.Random(20261206)
    creator = make_user().id
    team = _team(owner, creator)
    roles = {creator: "owner"}
    projects: dict[uuid.UUID, str] = {}  # id -> visibility
    memberships: set[tuple[uuid.UUID, uuid.UUID]] = set()  # (project, user)
    people = [make_user().id for _ in range(6)]

    def expected() -> dict[uuid.UUID, set[uuid.UUID]]:
        return {
            user: {
                p
                for p, visibility in projects.items()
                if (visibility == "team" and role != "guest") or (p, user) in memberships
            }
            for user, role in roles.items()
        }

    for step in range(90):
        action = rng.choice(
            ["join", "role", "leave", "erase", "project", "add", "remove", "visibility", "delete"]
        )
        outsiders = [p for p in people if p not in roles]
        members = [u for u in roles if u != creator]
        if action == "join" and outsiders:
            user, role = rng.choice(outsiders), rng.choice(ROLES[1:])
            owner.execute(
                "insert into team_member (team_id, user_id, role) values (%s, %s, %s)",
                (team, user, role),
            )
            roles[user] = role
        elif action == "role" and members:
            user = rng.choice(members)
            roles[user] = rng.choice([r for r in ROLES[1:] if r != roles[user]])
            owner.execute(
                "update team_member set role = %s where team_id = %s and user_id = %s",
                (roles[user], team, user),
            )
        elif action == "leave" and members:
            user = rng.choice(members)
            owner.execute(
                "delete from team_member where team_id = %s and user_id = %s", (team, user)
            )
            del roles[user]
            memberships = {(p, u) for p, u in memberships if u != user}
        elif action == "erase" and members:  # the user's account is deleted
            user = rng.choice(members)
            owner.execute("delete from app_user where id = %s", (user,))
            people.remove(user)
            del roles[user]
            memberships = {(p, u) for p, u in memberships if u != user}
        elif action == "project" or not projects:
            visibility = rng.choice(["team", "private"])
            projects[_project(owner, team, f"V{step}", visibility, creator)] = visibility
        elif action == "add":
            pair = (rng.choice(list(projects)), rng.choice(list(roles)))
            if pair not in memberships:
                owner.execute(
                    "insert into project_member (team_id, project_id, user_id) values (%s, %s, %s)",
                    (team, *pair),
                )
                memberships.add(pair)
        elif action == "remove" and memberships:
            project, user = rng.choice(sorted(memberships))
            owner.execute(
                "delete from project_member where team_id = %s and project_id = %s"
                " and user_id = %s",
                (team, project, user),
            )
            memberships.discard((project, user))
        elif action == "visibility":
            project = rng.choice(list(projects))
            projects[project] = "private" if projects[project] == "team" else "team"
            owner.execute(
                "update project set visibility = %s where team_id = %s and id = %s",
                (projects[project], team, project),
            )
        elif action == "delete":
            project = rng.choice(list(projects))
            owner.execute("delete from project where team_id = %s and id = %s", (team, project))
            del projects[project]
            memberships = {(p, u) for p, u in memberships if p != project}
        assert _sets(owner, team) == expected(), f"step {step}: {action}"
    assert _drift(owner) == []
    owner.execute("delete from team where id = %s", (team,))
    assert _sets(owner, team) == {}


def test_the_audit_reports_a_drifted_set(
    owner: psycopg.Connection[Row], make_user: MakeUser
) -> None:
    creator = make_user().id
    team = _team(owner, creator)
    _project(owner, team, "DRIFT", "private", creator)
    with owner.transaction():
        owner.execute(
            "update team_member_visibility set project_ids = array(select id from project"
            " where team_id = %s) where team_id = %s",
            (team, team),
        )
        assert _drift(owner) == [f"team {team}: 1 member(s)"]
        raise psycopg.Rollback()
    assert _drift(owner) == []


def _waiting_on_advisory_lock(owner: psycopg.Connection[Row], pid: int) -> bool:
    row = owner.execute(
        "select count(*) as n from pg_locks where pid = %s and locktype = 'advisory'"
        " and not granted",
        (pid,),
    ).fetchone()
    return row is not None and row["n"] > 0


@pytest.mark.parametrize("first", ["project", "member"])
def test_concurrent_writers_do_not_miss_each_other(
    owner: psycopg.Connection[Row], second: psycopg.Connection[Row], first: str, make_user: MakeUser
) -> None:
    """A team-visible project created while a member joins: whichever commits first, the
    new member's set holds the new project (without the team's lock, each transaction
    would compute from a snapshot without the other's row)."""
    creator, joiner = make_user().id, make_user().id
    team = _team(owner, creator)
    project_id = uuid.uuid4()

    def create_project(conn: psycopg.Connection[Row]) -> None:
        conn.execute(
            "insert into project (team_id, id, key, name, created_by)"
            " values (%s, %s, 'RACE', 'Race', %s)",
            (team, project_id, creator),
        )

    def join(conn: psycopg.Connection[Row]) -> None:
        conn.execute(
            "insert into team_member (team_id, user_id, role) values (%s, %s, 'member')",
            (team, joiner),
        )

    writes = [create_project, join] if first == "project" else [join, create_project]
    writes[0](second)  # holds the team's lock until it commits
    errors: list[BaseException] = []
    with psycopg.connect(owner.info.dsn, row_factory=dict_row) as third:
        pid = third.info.backend_pid

        def later() -> None:
            try:
                writes[1](third)
                third.commit()
            except BaseException as exc:  # reported by the test thread
                errors.append(exc)

        thread = threading.Thread(target=later)
        thread.start()
        try:
            for _ in range(100):
                if _waiting_on_advisory_lock(owner, pid):
                    break
                threading.Event().wait(0.05)
            else:
                pytest.fail("the second writer did not wait for the team's lock")
        finally:
            second.commit()
            thread.join(timeout=10)
    assert not thread.is_alive()
    assert errors == []
    assert project_id in _sets(owner, team)[joiner]
    assert _drift(owner) == []


def test_the_set_function_reads_only_its_row(
    db_urls: DatabaseUrls, owner: psycopg.Connection[Row], make_user: MakeUser
) -> None:
    """Within one transaction (``pg_stat_xact_user_tables``), ten calls of the policy
    function scan ``team_member_visibility`` ten times and ``project`` never."""
    creator = make_user().id
    team = _team(owner, creator)
    for n in range(40):
        _project(owner, team, f"SCAN{n}", "team", creator)
    with psycopg.connect(db_urls.app, row_factory=dict_row) as conn:
        as_caller(conn, creator, team)
        for _ in range(10):
            row = conn.execute("select cardinality(tb_visible_project_ids()) as n").fetchone()
            assert row is not None
            assert row["n"] == 40
        scans = {
            row["relname"]: row["scans"]
            for row in conn.execute(
                "select relname, seq_scan + coalesce(idx_scan, 0) as scans"
                " from pg_stat_xact_user_tables"
                " where relname in ('project', 'team_member_visibility')"
            ).fetchall()
        }
        conn.rollback()
    assert scans.get("project", 0) == 0
    assert scans["team_member_visibility"] == 10


def test_a_member_reads_only_their_own_set(
    db_urls: DatabaseUrls, owner: psycopg.Connection[Row], make_user: MakeUser
) -> None:
    """Another member's set would name private projects the caller is not in."""
    admin, other = make_user(), make_user()
    team = _team(owner, admin.id)
    add_member(owner, team, other, "admin")
    _project(owner, team, "OWNSET", "private", admin.id)
    with psycopg.connect(db_urls.app, row_factory=dict_row) as conn:
        for caller in (admin.id, other.id):
            as_caller(conn, caller, team)
            rows = conn.execute("select * from team_member_visibility").fetchall()
            assert [(row["team_id"], row["user_id"]) for row in rows] == [(team, caller)]


def test_writes_above_read_committed_are_refused(
    owner: psycopg.Connection[Row], make_user: MakeUser
) -> None:
    """A fixed snapshot would compute a set from before what it waited for."""
    creator = make_user().id
    team = _team(owner, creator)
    with owner.transaction():
        owner.execute("set transaction isolation level repeatable read")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            _project(owner, team, "SNAP", "team", creator)
        raise psycopg.Rollback()
    assert _sets(owner, team) == {creator: set()}


def test_owner_only_writes_keep_the_sets(
    owner: psycopg.Connection[Row], make_user: MakeUser
) -> None:
    """TRUNCATE fires no row trigger, and a project's id can change (the owner's only)."""
    creator = make_user().id
    team = _team(owner, creator)
    project = _project(owner, team, "OWNER", "private", creator)
    owner.execute(
        "insert into project_member (team_id, project_id, user_id) values (%s, %s, %s)",
        (team, project, creator),
    )
    with owner.transaction():
        owner.execute("truncate project_member")
        assert _sets(owner, team) == {creator: set()}
        assert _drift(owner) == []
        raise psycopg.Rollback()
    assert _sets(owner, team) == {creator: {project}}
    with owner.transaction():
        owner.execute("delete from project_member where project_id = %s", (project,))
        owner.execute("update project set visibility = 'team' where id = %s", (project,))
        renamed = uuid.uuid4()
        owner.execute("update project set id = %s where id = %s", (renamed, project))
        assert _sets(owner, team) == {creator: {renamed}}
        raise psycopg.Rollback()
