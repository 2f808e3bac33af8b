"""Removing stored bytes once their attachment rows are gone, and never before.

Deleting an ``attachment`` row, directly or through a cascade (a purged task or project, a
deleted team), queues its storage key in ``attachment_purge`` in the same transaction, by
trigger. A queued key therefore exists only if the deletion committed, and the bytes are
removed from the queue, never from a guess:

* after a request that deleted attachments, :func:`purge_after_commit` schedules a cleanup
  that runs once the response is sent (the request transaction has committed by then);
* :func:`sweep` empties the queue of every team, catching what a crash, a deleted team or
  the purge of expired trash left behind: the worker's upkeep runs it every pass (through
  the owner's function ``tb_take_attachment_purges``), and ``teamboard attachments sweep``
  runs it as the owner on demand. With local storage both sweep only where the attachment
  directory exists (:func:`sweeps_here`).

Objects are removed and their queue rows deleted in one transaction: a failure leaves the
rows for the next run, and removing an object twice is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from uuid import UUID

from fastapi import BackgroundTasks

from teamboard.attachments import repository
from teamboard.attachments.storage import ObjectStorage, build_storage, staging_dir
from teamboard.config import Settings
from teamboard.db import Database, Tx
from teamboard.deps import TeamContext

logger = logging.getLogger("teamboard.attachments")
BATCH = 500
STALE_UPLOAD = timedelta(hours=1)


async def purge_team(db: Database, storage: ObjectStorage, user_id: UUID, team_id: UUID) -> int:
    """Remove the queued objects this user can see in the team; never raises (what is
    left is the sweeper's). Returns how many were removed."""
    removed = 0
    try:
        while True:
            async with db.transaction(user_id=user_id, team_id=team_id) as tx:
                keys = await repository.take_purges(tx, BATCH)
                await storage.delete(keys)
            removed += len(keys)
            if len(keys) < BATCH:
                return removed
    except Exception:
        logger.warning("attachment cleanup failed; the sweeper will retry", exc_info=True)
        return removed


def purge_after_commit(
    background: BackgroundTasks, db: Database, storage: ObjectStorage, ctx: TeamContext
) -> None:
    """Schedule :func:`purge_team` for after the response, i.e. after the request's commit.

    Any route that deletes attachments (or tasks, or projects) calls this; when the
    transaction rolls back the queue holds nothing new, so the cleanup finds nothing new.
    """
    background.add_task(purge_team, db, storage, ctx.user_id, ctx.team_id)


#: Takes up to ``limit`` keys out of the queue, in the caller's transaction.
TakePurges = Callable[[Tx, int], Awaitable[list[str]]]


async def sweep(
    db: Database, storage: ObjectStorage, take: TakePurges = repository.take_purges
) -> int:
    """Empty the whole queue: as the owner with the default ``take`` (it sees every team,
    deleted ones included), or as the worker with :func:`repository.take_any_purges`."""
    removed = 0
    while True:
        async with db.transaction() as tx:
            keys = await take(tx, BATCH)
            await storage.delete(keys)
        removed += len(keys)
        if len(keys) < BATCH:
            return removed


def sweeps_here(settings: Settings) -> bool:
    """Whether this process may empty the queue: S3 is the same bucket from anywhere, but
    local storage is a directory of the servers' machine. A worker elsewhere (another
    container, another ``DATA_DIR``) would take the keys out of the queue and delete
    nothing, orphaning the bytes for good; where the directory does not exist, the keys
    stay queued for a process that has it."""
    return settings.attachment_storage != "local" or settings.attachment_root.is_dir()


class StorageNotHere(Exception):
    """Keys are queued, and the local attachment directory is not on this machine (see
    :func:`sweeps_here`)."""

    def __init__(self, root: Path) -> None:
        super().__init__(
            f"the attachment directory {root} does not exist here: run the sweep where the"
            " servers store attachments (the queue is left as it was)"
        )


async def sweep_as_owner(owner_url: str, settings: Settings) -> int:
    """:func:`sweep` on a one-connection owner pool (``teamboard attachments sweep``), and
    the removal of staging files left by uploads that a crash interrupted.

    Where :func:`sweeps_here` says no, the queue is left as it was: an empty one is nothing
    to do (an installation that never stored a file has no directory yet), a key in it
    raises :class:`StorageNotHere`."""
    await asyncio.to_thread(remove_stale_uploads, staging_dir(settings), STALE_UPLOAD)
    db = Database(owner_url, settings.model_copy(update={"pool_min_size": 1, "pool_max_size": 1}))
    await db.open()
    try:
        if sweeps_here(settings):
            return await sweep(db, build_storage(settings))
        async with db.transaction() as tx:
            if await repository.any_queued(tx):
                raise StorageNotHere(settings.attachment_root)
        return 0
    finally:
        await db.close()


def remove_stale_uploads(staging: Path, older_than: timedelta) -> int:
    """Delete staging files not touched for ``older_than`` (a live upload writes to its
    file continuously); returns how many were removed."""
    if not staging.is_dir():
        return 0
    cutoff = time.time() - older_than.total_seconds()
    removed = 0
    for path in staging.glob("upload-*.part"):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed
