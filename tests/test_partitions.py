"""Partition upkeep of the event log: created ahead, never granted, dropped past retention."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql

from teamboard.config import Settings
from teamboard.db import Database
from teamboard.ops.audit import audit, format_report
from teamboard.ops.database import DatabaseUrls
from teamboard.worker.upkeep import upkeep
from tests.collab import Owner
from tests.conftest import Actor

PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


def month(offset: int) -> date:
    today = datetime.now(UTC).date()
    index = today.year * 12 + today.month - 1 + offset
    return date(index // 12, index % 12 + 1, 1)


def partition_name(offset: int) -> str:
    first = month(offset)
    return f"event_y{first.year:04d}m{first.month:02d}"


def partitions(owner: Owner) -> set[str]:
    rows = owner.execute(
        "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid"
        " where i.inhparent = 'event'::regclass"
    ).fetchall()
    return {row["relname"] for row in rows}


@pytest.fixture
def default_grants(owner: Owner, db_urls: DatabaseUrls) -> Iterator[None]:
    """Default privileges that would grant both roles everything on every new table."""
    grant = sql.SQL("alter default privileges in schema public {} all on tables {} {}, {}")
    roles = (sql.Identifier(db_urls.app_role), sql.Identifier(db_urls.worker_role))
    owner.execute(grant.format(sql.SQL("grant"), sql.SQL("to"), *roles))
    try:
        yield
    finally:
        owner.execute(grant.format(sql.SQL("revoke"), sql.SQL("from"), *roles))


async def test_partitions_are_created_ahead_and_never_granted(
    owner: Owner,
    db_urls: DatabaseUrls,
    worker_db: Database,
    settings: Settings,
    default_grants: None,
) -> None:
    with owner.transaction(force_rollback=True):
        owner.execute("create table scratch_grants (id int)")
        granted = owner.execute(
            "select has_table_privilege(%s, 'scratch_grants', 'SELECT') as g", (db_urls.app_role,)
        ).fetchone()
        assert granted == {"g": True}, "the default privileges apply to new tables"
    new = [partition_name(m) for m in (4, 5, 6)]
    assert not set(new) & partitions(owner), "the migration creates three months ahead"
    try:
        report = await upkeep(worker_db, settings, ahead=6, retention=0)
        assert report.created == new
        assert report.present == [partition_name(m) for m in range(4)]
        assert report.dropped == []
        again = await upkeep(worker_db, settings, ahead=6, retention=0)
        assert again.created == []
        for name in partitions(owner):
            for role in (db_urls.app_role, db_urls.worker_role):
                granted = [
                    p
                    for p in PRIVILEGES
                    if owner.execute(
                        "select has_table_privilege(%s, %s, %s) as g", (role, name, p)
                    ).fetchone()
                    == {"g": True}
                ]
                assert granted == [], f"{role} has {granted} on {name}"
        with psycopg.connect(db_urls.owner) as conn:
            findings = audit(conn, db_urls.app_role, db_urls.worker_role)
        assert findings == [], format_report(findings)
    finally:
        for name in new:
            owner.execute(sql.SQL("drop table if exists {}").format(sql.Identifier(name)))


async def test_retention_detaches_and_drops_whole_old_months(
    owner: Owner,
    worker_db: Database,
    settings: Settings,
    make_user: Callable[..., Actor],
) -> None:
    alice = make_user("alice")
    team = uuid.uuid4()
    owner.execute(
        "insert into team (id, name, created_by) values (%s, 'old', %s)", (team, alice.id)
    )
    for age in (0, 11, 13):
        owner.execute(
            "insert into event (team_id, id, occurred_at, kind)"
            " values (%s, %s, now() - make_interval(months => %s), 'test.aged')",
            (team, uuid.uuid4(), age),
        )
    before = partitions(owner)
    report = await upkeep(worker_db, settings, retention=12)
    # Kept: this month and the twelve complete months before it.
    assert partition_name(-12) in partitions(owner)
    assert partition_name(-13) not in partitions(owner)
    assert set(report.dropped) == before - partitions(owner)
    assert partition_name(-13) in report.dropped
    assert "event_default" in partitions(owner)
    dropped = owner.execute(
        "select count(*) as n from pg_class where relname = any(%s)", (report.dropped,)
    ).fetchone()
    assert dropped == {"n": 0}, "detached, then dropped"
    ages = owner.execute(
        "select count(*) as n from event where team_id = %s and kind = 'test.aged'", (team,)
    ).fetchone()
    assert ages == {"n": 2}


def test_the_partitions_command(settings: Settings, db_urls: DatabaseUrls) -> None:
    env: dict[str, Any] = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(
        DATABASE_URL=db_urls.owner,
        DATABASE_APP_URL=db_urls.app,
        DATABASE_WORKER_URL=db_urls.worker,
        SECRET_KEY=settings.secret_key.get_secret_value(),
    )
    command = os.path.join(os.path.dirname(sys.executable), "teamboard")
    done = subprocess.run(  # noqa: S603 - our own command
        [command, "db", "partitions", "--ahead", "2", "--retention-months", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"already present: {partition_name(0)}, {partition_name(1)}" in done.stdout
    assert "dropped: none" in done.stdout


async def test_upkeep_deletes_expired_idempotency_records_only(
    owner: Owner, worker_db: Database, settings: Settings, make_user: Callable[..., Actor]
) -> None:
    """Kept 24 hours, then only overwritten when the same key comes back: without upkeep the
    records (whole response bodies) piled up for good. The worker deletes the expired ones
    through the owner's function, and has no access to the table itself."""
    alice = make_user("alice")
    ids = {}
    for name, lifetime in (("expired", "-1 second"), ("live", "1 hour")):
        ids[name] = uuid.uuid4()
        owner.execute(
            "insert into idempotency_record (user_id, id, caller, key, fingerprint, status,"
            " headers, body, expires_at) values (%s, %s, 'user:x', %s, '\\x00', 201, '[]', 'b',"
            " now() + %s::interval)",
            (alice.id, ids[name], name, lifetime),
        )
    report = await upkeep(worker_db, settings)
    assert report.idempotency_records_purged >= 1
    assert "idempotency records purged" in str(report)
    left = owner.execute(
        "select id from idempotency_record where user_id = %s", (alice.id,)
    ).fetchall()
    assert [row["id"] for row in left] == [ids["live"]]
    with pytest.raises(Exception, match="permission denied"):
        async with worker_db.transaction() as tx:
            await tx.fetch_all("select id from idempotency_record")
