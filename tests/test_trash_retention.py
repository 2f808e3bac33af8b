"""Trash retention: the worker's upkeep deletes soft-deleted tasks and projects for good once
``TRASH_RETENTION_DAYS`` have passed, with everything that hangs off them, stored attachment
bytes included; before that, a restore brings everything back."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from teamboard.analytics.rollups import rebuild
from teamboard.config import Settings
from teamboard.db import Database, InsufficientPrivilege
from teamboard.ops.database import DatabaseUrls
from teamboard.worker import upkeep as upkeep_module
from teamboard.worker.upkeep import upkeep
from tests.analytics import fold_past
from tests.collab import post_comment
from tests.conftest import Actor
from tests.test_attachments import PNG, stored_files, upload
from tests.test_teams import create_project, problem
from tests.work import API, MakeTeam, MakeUser, Owner

pytestmark = pytest.mark.asyncio


@dataclass
class TrashBoard:
    client: httpx.AsyncClient
    owner: Owner
    actor: Actor
    team: uuid.UUID

    @property
    def base(self) -> str:
        return f"{API}/teams/{self.team}"

    async def project(self, key: str) -> uuid.UUID:
        return uuid.UUID((await create_project(self.client, self.actor, self.team, key))["id"])

    async def task(self, project: uuid.UUID, parent: uuid.UUID | None = None) -> uuid.UUID:
        body: dict[str, Any] = {"title": "kept or purged"}
        if parent is not None:
            body["parent_id"] = str(parent)
        response = await self.client.post(
            f"{self.base}/projects/{project}/tasks", json=body, headers=self.actor.headers
        )
        assert response.status_code == 201, response.text
        return uuid.UUID(response.json()["id"])

    async def furnish(self, task: uuid.UUID) -> str:
        """A comment, a finished time entry and an attachment on ``task``; the attachment's
        id (its stored file's name)."""
        await post_comment(self.client, self.actor, self.team, task, "a comment")
        entry = await self.client.post(
            f"{self.base}/tasks/{task}/time-entries",
            json={"started_at": "2026-12-01T09:00:00Z", "duration_seconds": 600},
            headers=self.actor.headers,
        )
        assert entry.status_code == 201, entry.text
        attached = await upload(self.client, self.actor, self.team, task, PNG)
        assert attached.status_code == 201, attached.text
        return str(attached.json()["id"])

    async def delete(self, path: str) -> None:
        response = await self.client.delete(self.base + path, headers=self.actor.headers)
        assert response.status_code == 204, response.text

    def age_trash(self, days: int, ids: list[uuid.UUID], hours: int = 0) -> None:
        """Move the deletion of these tasks or projects ``days`` days and ``hours`` hours
        into the past."""
        for table in ("task", "project"):
            self.owner.execute(
                f"update {table} set deleted_at = deleted_at"
                " - make_interval(days => %s, hours => %s)"
                " where team_id = %s and id = any(%s) and deleted_at is not null",
                (days, hours, self.team, ids),
            )

    def purge_events(self) -> dict[uuid.UUID, dict[str, Any]]:
        """The ``*.purged`` events of the team, by subject."""
        rows = self.owner.execute(
            "select kind, actor_id, subject_id, project_id, payload from event"
            " where team_id = %s and kind like '%%.purged'",
            (self.team,),
        ).fetchall()
        return {row["subject_id"]: row for row in rows}

    def fold(self) -> None:
        """Fold the analytics past the team's last event."""
        last = self.owner.execute(
            "select max(tx_id::text::bigint) as x from event where team_id = %s", (self.team,)
        ).fetchone()
        assert last is not None
        fold_past(self.owner, last["x"])

    def flow(self) -> dict[tuple[uuid.UUID, str], int]:
        """The team's cumulative flow: tasks per project and status category."""
        rows = self.owner.execute(
            "select project_id, category, tasks from analytics_flow_total"
            " where team_id = %s and tasks <> 0",
            (self.team,),
        ).fetchall()
        return {(row["project_id"], row["category"]): row["tasks"] for row in rows}

    async def restore(self, task: uuid.UUID) -> httpx.Response:
        return await self.client.post(
            f"{self.base}/tasks/{task}/restore", headers=self.actor.headers
        )

    def count(self, table: str, column: str, ids: list[uuid.UUID]) -> int:
        row = self.owner.execute(
            f"select count(*) as n from {table} where team_id = %s and {column} = any(%s)",
            (self.team, ids),
        ).fetchone()
        assert row is not None
        return int(row["n"])


@pytest.fixture
async def board(
    client: httpx.AsyncClient, owner: Owner, make_user: MakeUser, make_team: MakeTeam
) -> TrashBoard:
    actor = make_user("trash")
    return TrashBoard(client, owner, actor, await make_team(actor))


async def test_expired_tasks_go_for_good_with_their_comments_time_and_bytes(
    app: Any, board: TrashBoard, worker_db: Database, settings: Settings
) -> None:
    project = await board.project("TRS")
    parent = await board.task(project)
    child = await board.task(project, parent)
    recent = await board.task(project)
    live = await board.task(project)
    for task in (parent, child, recent):
        await board.furnish(task)
    kept_file = await board.furnish(live)
    await board.delete(f"/tasks/{parent}")  # the subtask goes with it, same stamp
    await board.delete(f"/tasks/{recent}")
    board.age_trash(31, [parent, child])
    board.age_trash(29, [recent])

    report = await upkeep(worker_db, settings)

    assert report.tasks_purged >= 2
    assert report.objects_removed >= 2
    assert "deleted tasks purged" in str(report)
    purged = [parent, child]
    assert board.count("task", "id", purged) == 0
    for table in ("comment", "time_entry", "attachment", "task_follower", "notification"):
        assert board.count(table, "task_id", purged) == 0, table
    assert board.count("task", "id", [recent, live]) == 2
    for table in ("comment", "time_entry", "attachment"):
        assert board.count(table, "task_id", [recent, live]) == 2, table
    queued = board.owner.execute(
        "select count(*) as n from attachment_purge where team_id = %s", (board.team,)
    ).fetchone()
    assert queued == {"n": 0}
    files = {path.name for path in stored_files(settings, board.team)}
    assert kept_file in files
    assert len(files) == 2
    events = board.purge_events()
    assert set(events) == set(purged)
    for event in events.values():
        assert event["kind"] == "task.purged"
        assert event["actor_id"] is None  # upkeep did it, not a member
        assert event["project_id"] == project
        assert event["payload"]["retention_days"] == settings.trash_retention_days
        assert event["payload"]["deleted_at"].endswith("Z")
    async with app.state.services.db.transaction(user_id=board.actor.id, team_id=board.team) as tx:
        seen = await tx.fetch_column("select subject_id from event where kind = 'task.purged'")
    assert set(seen) == set(purged)  # the project's viewers see them (realtime, webhooks)
    problem(await board.restore(parent), 404, "not_found")
    restored = await board.restore(recent)
    assert restored.status_code == 200, restored.text
    entries = await board.client.get(
        f"{board.base}/tasks/{recent}/attachments", headers=board.actor.headers
    )
    assert len(entries.json()["items"]) == 1


async def test_an_expired_project_goes_after_its_tasks_over_several_transactions(
    board: TrashBoard, worker_db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its tasks go first, a batch per transaction, and the project once it is empty: with
    a batch of 2, five tasks go over several transactions of one pass."""
    monkeypatch.setattr(upkeep_module, "TRASH_PURGE_BATCH", 2)
    doomed, recent = await board.project("OLD"), await board.project("NEW")
    tasks = [await board.task(doomed) for _ in range(5)]
    await board.furnish(tasks[0])
    timer = await board.client.post(
        f"{board.base}/tasks/{tasks[1]}/time-entries/start", headers=board.actor.headers
    )
    assert timer.status_code == 201, timer.text  # left running: it goes with its task
    recent_task = await board.task(recent)
    await board.delete(f"/projects/{doomed}")
    await board.delete(f"/projects/{recent}")
    board.age_trash(31, [doomed, *tasks])

    report = await upkeep(worker_db, settings)

    assert report.tasks_purged >= 5
    assert report.projects_purged >= 1
    assert board.count("project", "id", [doomed]) == 0
    assert board.count("task", "id", tasks) == 0
    assert board.count("time_entry", "task_id", tasks) == 0
    for table in ("status", "label", "project_member"):
        assert board.count(table, "project_id", [doomed]) == 0, table
    assert board.count("project", "id", [recent]) == 1
    assert board.count("task", "id", [recent_task]) == 1
    assert stored_files(settings, board.team) == []
    # project.deleted took them out of every view; nobody could read an event about them.
    assert board.purge_events() == {}


async def test_a_retention_of_zero_keeps_the_trash(
    app: Any,
    board: TrashBoard,
    worker_db: Database,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keep = settings.model_copy(update={"trash_retention_days": 0})
    monkeypatch.setattr(app.state.services, "settings", keep)  # the API's restore
    project = await board.project("KEP")
    task = await board.task(project)
    await board.furnish(task)
    await board.delete(f"/tasks/{task}")
    board.age_trash(3650, [task])

    report = await upkeep(worker_db, keep)

    assert report.tasks_purged == 0
    assert board.count("task", "id", [task]) == 1
    assert len(stored_files(settings, board.team)) == 1
    restored = await board.restore(task)
    assert restored.status_code == 200, restored.text


async def test_expired_trash_is_not_restored_and_the_purge_waits_an_hour_more(
    board: TrashBoard, worker_db: Database, settings: Settings
) -> None:
    """A restore at the boundary would lock the task while the purge deleted its subtasks
    (or the purge's batch ended inside the tree), bringing the task back without them: the
    restore window closes at the retention, the purge starts an hour after it."""
    days = settings.trash_retention_days
    project = await board.project("GRC")
    parent = await board.task(project)
    child = await board.task(project, parent)
    in_time = await board.task(project)
    await board.delete(f"/tasks/{parent}")
    await board.delete(f"/tasks/{in_time}")
    board.age_trash(days, [parent, child], hours=0)  # over by the time of the request
    board.age_trash(days - 1, [in_time], hours=23)

    for attempt in (await board.restore(parent), await board.restore(child)):
        problem(attempt, 404, "not_found")
    await upkeep(worker_db, settings)

    assert board.count("task", "id", [parent, child]) == 2  # within the grace hour
    assert board.purge_events() == {}
    restored = await board.restore(in_time)
    assert restored.status_code == 200, restored.text
    board.age_trash(0, [parent, child], hours=1)
    report = await upkeep(worker_db, settings)
    assert report.tasks_purged >= 2
    assert board.count("task", "id", [parent, child]) == 0
    assert set(board.purge_events()) == {parent, child}


@pytest.mark.parametrize(
    "call",
    ["select * from tb_purge_deleted_work(0, 1000)", "select * from tb_take_attachment_purges(1)"],
)
async def test_only_the_worker_may_purge(app: Any, board: TrashBoard, call: str) -> None:
    """The app role (every request) can neither purge trash nor take other teams' keys."""
    db = app.state.services.db
    with pytest.raises(InsufficientPrivilege):
        async with db.transaction(user_id=board.actor.id, team_id=board.team) as tx:
            await tx.fetch_all(call)


async def test_a_worker_without_the_attachment_directory_leaves_the_keys_queued(
    board: TrashBoard, worker_db: Database, settings: Settings, tmp_path: Path
) -> None:
    """A worker on another machine (or another DATA_DIR) would take the keys out of the
    queue and delete nothing there: the bytes would stay on the servers' disk for good."""
    project = await board.project("AWY")
    task = await board.task(project)
    await board.furnish(task)
    await board.delete(f"/tasks/{task}")
    board.age_trash(31, [task])
    elsewhere = settings.model_copy(update={"attachment_dir": tmp_path / "not-here"})

    report = await upkeep(worker_db, elsewhere)

    assert report.tasks_purged >= 1
    assert report.sweep_skipped
    assert "skipped" in str(report)
    queued = "select count(*) as n from attachment_purge where team_id = %s"
    assert board.owner.execute(queued, (board.team,)).fetchone() == {"n": 1}
    assert len(stored_files(settings, board.team)) == 1
    report = await upkeep(worker_db, settings)
    assert report.objects_removed >= 1
    assert board.owner.execute(queued, (board.team,)).fetchone() == {"n": 0}
    assert stored_files(settings, board.team) == []


@pytest.mark.parametrize(("days", "batch"), [(0, 10), (-1, 10), (None, 10), (30, 0), (30, 10**5)])
async def test_the_purge_bounds_what_the_worker_may_ask(
    worker_db: Database, days: int | None, batch: int
) -> None:
    """The worker role's credentials cannot empty every team's trash at once."""
    with pytest.raises(Exception, match="retention_days >= 1"):
        async with worker_db.transaction() as tx:
            await tx.fetch_all("select * from tb_purge_deleted_work(%s, %s)", (days, batch))


async def test_a_rebuild_still_counts_the_deletion_of_a_purged_task(
    board: TrashBoard, worker_db: Database, settings: Settings, db_urls: DatabaseUrls
) -> None:
    """The cumulative flow counts a deletion in the category of the task's status, read
    from its row (and its subtasks', listed in the event): once the rows were purged, a
    rebuild counted the tasks' creation and not their deletion. Their ``task.purged`` events
    record the category."""
    project = await board.project("FLW")
    parent = await board.task(project)
    child = await board.task(project, parent)
    kept = await board.task(project)
    await board.delete(f"/tasks/{parent}")  # the subtask with it, listed in the event
    board.fold()
    folded = board.flow()
    assert sum(folded.values()) == 1  # the kept task only
    board.age_trash(31, [parent, child])
    await upkeep(worker_db, settings)
    assert board.count("task", "id", [parent, child, kept]) == 1
    events = board.purge_events()
    assert set(events) == {parent, child}
    for event in events.values():
        assert event["payload"]["status_category"] in {category for _, category in folded}

    owner_db = Database(db_urls.owner, settings)
    await owner_db.open()
    try:
        await rebuild(owner_db, team_id=board.team)
    finally:
        await owner_db.close()

    assert board.flow() == folded
