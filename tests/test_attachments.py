"""Attachments through the REST API: streaming uploads with their limits and checks, the
stored bytes, authorized downloads, lists, deletion, and bytes that follow their rows."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from typer.testing import CliRunner

from teamboard import cli as cli_module
from teamboard.attachments import cleanup
from teamboard.attachments.storage import LocalStorage, storage_dependency
from teamboard.config import Settings
from teamboard.db import InsufficientPrivilege
from teamboard.ops.database import DatabaseUrls
from tests.conftest import Actor
from tests.taskdata import create_task
from tests.test_teams import create_project, events, problem, sql_count, without_instance

pytestmark = pytest.mark.asyncio

API = "/api/v1"
MiB = 1024 * 1024
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 8
JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + bytes(500)
PDF = b"%PDF-1.7\n" + b"1 0 obj << >> endobj\n" * 40

Owner = psycopg.Connection[dict[str, Any]]
MakeUser = Callable[..., Actor]
MakeTeam = Callable[..., Awaitable[uuid.UUID]]


@dataclass
class World:
    team: uuid.UUID
    owner: Actor  # the team's owner
    member: Actor
    admin: Actor
    guest: Actor  # on the team project only
    project: uuid.UUID
    private_project: uuid.UUID
    task: uuid.UUID
    private_task: uuid.UUID


@pytest.fixture
async def world(
    app: Any, client: httpx.AsyncClient, make_user: MakeUser, make_team: MakeTeam
) -> World:
    owner, member, admin, guest = (make_user(n) for n in ("owner", "member", "admin", "guest"))
    team = await make_team(owner, members=[(member, "member"), (admin, "admin"), (guest, "guest")])
    project = uuid.UUID((await create_project(client, owner, team, "FIL"))["id"])
    private = uuid.UUID((await create_project(client, owner, team, "SEC", "private"))["id"])
    added = await client.post(
        f"{API}/teams/{team}/projects/{project}/members",
        json={"user_id": str(guest.id)},
        headers=owner.headers,
    )
    assert added.status_code == 201, added.text
    task = await create_task(app, owner.id, team, project, "with files")
    private_task = await create_task(app, owner.id, team, private, "secret files")
    return World(team, owner, member, admin, guest, project, private, task, private_task)


async def upload(
    client: httpx.AsyncClient,
    actor: Actor,
    team: uuid.UUID,
    task: uuid.UUID,
    content: bytes | AsyncIterator[bytes],
    content_type: str | None = "image/png",
    filename: str = "picture.png",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    sent = {**actor.headers, **(headers or {})}
    if content_type is not None:
        sent["content-type"] = content_type
    return await client.post(
        f"{API}/teams/{team}/tasks/{task}/attachments",
        params={"filename": filename},
        content=content,
        headers=sent,
    )


def stored_files(settings: Settings, team: uuid.UUID) -> list[Path]:
    root = settings.attachment_root / str(team)
    return sorted(root.iterdir()) if root.exists() else []


def staged_files(settings: Settings) -> list[Path]:
    staging = settings.attachment_root / ".incoming"
    return list(staging.iterdir()) if staging.exists() else []


def attachment_rows(owner: Owner, task: uuid.UUID) -> list[dict[str, Any]]:
    return owner.execute(
        "select * from attachment where task_id = %s order by id", (task,)
    ).fetchall()


class Counted:
    """A chunked body that records how much of it the server pulled."""

    def __init__(self, total: int, chunk: int = MiB, head: bytes = PNG) -> None:
        self.total, self.chunk, self.head, self.pulled = total, chunk, head, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        block = bytes(self.chunk)
        while self.pulled < self.total:
            piece = self.head + block[len(self.head) :] if self.pulled == 0 else block
            self.pulled += len(piece)
            yield piece


# --------------------------------------------------------------------------- upload


async def test_upload_stores_bytes_sha256_and_event(
    client: httpx.AsyncClient, owner: Owner, settings: Settings, world: World
) -> None:
    response = await upload(client, world.member, world.team, world.task, PNG)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert body["size_bytes"] == len(PNG)
    assert body["content_type"] == "image/png"
    assert body["filename"] == "picture.png"
    assert body["task_id"] == str(world.task)
    assert body["project_id"] == str(world.project)
    assert body["uploaded_by"] == str(world.member.id)
    assert "storage_key" not in body

    [row] = attachment_rows(owner, world.task)
    assert str(row["id"]) == body["id"]
    assert row["storage_key"] == f"{world.team}/{body['id']}"
    path = settings.attachment_root / str(world.team) / body["id"]
    assert path.read_bytes() == PNG
    assert stored_files(settings, world.team) == [path]
    assert staged_files(settings) == []

    [event] = events(owner, world.team, "attachment.uploaded")
    assert event["subject_id"] == world.task  # in the task's activity
    assert event["project_id"] == world.project
    assert event["actor_id"] == world.member.id
    assert event["payload"] == {
        "attachment_id": str(row["id"]),
        "task_id": str(world.task),
        "filename": "picture.png",
        "content_type": "image/png",
        "size_bytes": len(PNG),
        "sha256": body["sha256"],
    }


async def test_a_streamed_body_over_the_limit_is_cut_off_and_leaves_nothing(
    client: httpx.AsyncClient, owner: Owner, settings: Settings, world: World
) -> None:
    limit = settings.attachment_max_bytes
    assert limit == 25 * MiB  # the default
    body = Counted(total=limit + 20 * MiB)
    response = await upload(client, world.member, world.team, world.task, body)
    problem(response, 413, "attachment_too_large")
    assert response.json()["max_bytes"] == limit
    # The server stopped reading at the chunk that crossed the limit.
    assert limit < body.pulled <= limit + body.chunk
    assert attachment_rows(owner, world.task) == []
    assert stored_files(settings, world.team) == []
    assert staged_files(settings) == []
    assert events(owner, world.team, "attachment.uploaded") == []


async def test_exactly_the_limit_is_accepted(
    client: httpx.AsyncClient, settings: Settings, world: World
) -> None:
    body = Counted(total=settings.attachment_max_bytes)
    response = await upload(client, world.member, world.team, world.task, body)
    assert response.status_code == 201, response.text
    assert response.json()["size_bytes"] == settings.attachment_max_bytes


async def test_an_announced_length_over_the_limit_is_refused_before_reading(
    client: httpx.AsyncClient, owner: Owner, settings: Settings, world: World
) -> None:
    body = Counted(total=2 * MiB)
    too_long = str(settings.attachment_max_bytes + 1)
    response = await upload(
        client, world.member, world.team, world.task, body, headers={"content-length": too_long}
    )
    problem(response, 413, "attachment_too_large")
    assert body.pulled == 0
    assert attachment_rows(owner, world.task) == []
    assert staged_files(settings) == []


async def test_a_lying_content_length_does_not_raise_the_limit(
    client: httpx.AsyncClient, owner: Owner, settings: Settings, world: World
) -> None:
    body = Counted(total=settings.attachment_max_bytes + 3 * MiB)
    response = await upload(
        client, world.member, world.team, world.task, body, headers={"content-length": "10"}
    )
    problem(response, 413, "attachment_too_large")
    assert attachment_rows(owner, world.task) == []
    assert stored_files(settings, world.team) == []
    assert staged_files(settings) == []


@pytest.mark.parametrize(
    ("content_type", "content", "code"),
    [
        (None, PNG, "content_type_missing"),
        ("text/html", b"<script>alert(1)</script>", "content_type_not_allowed"),
        ("image/svg+xml", b"<svg onload=alert(1)>", "content_type_not_allowed"),
        ("application/octet-stream", PNG, "content_type_not_allowed"),
        ("not a type", PNG, "content_type_not_allowed"),
        ("image/png", JPEG, "content_type_mismatch"),
        ("image/jpeg", PNG, "content_type_mismatch"),
        ("application/pdf", b"<html>not a pdf</html>", "content_type_mismatch"),
        ("application/zip", PDF, "content_type_mismatch"),
        ("image/gif", b"GIF88a" + bytes(100), "content_type_mismatch"),
        ("text/plain", PNG, "content_type_mismatch"),
        ("text/plain", b"MZ\x90\x00 an executable", "content_type_mismatch"),
        ("text/csv", b"a,b\n1,\x00\n", "content_type_mismatch"),
    ],
)
async def test_content_types_are_checked(
    client: httpx.AsyncClient,
    owner: Owner,
    settings: Settings,
    world: World,
    content_type: str | None,
    content: bytes,
    code: str,
) -> None:
    response = await upload(client, world.member, world.team, world.task, content, content_type)
    problem(response, 415, code)
    assert attachment_rows(owner, world.task) == []
    assert stored_files(settings, world.team) == []
    assert staged_files(settings) == []


async def test_a_mismatch_is_refused_as_soon_as_the_first_bytes_arrive(
    client: httpx.AsyncClient, world: World
) -> None:
    body = Counted(total=10 * MiB, head=b"GIF89a")
    response = await upload(client, world.member, world.team, world.task, body, "image/png")
    problem(response, 415, "content_type_mismatch")
    assert body.pulled == body.chunk


@pytest.mark.parametrize(
    ("content_type", "content", "stored_type"),
    [
        ("image/png", PNG, "image/png"),
        ("IMAGE/JPEG", JPEG, "image/jpeg"),
        ("application/pdf", PDF, "application/pdf"),
        ("image/gif", b"GIF89a" + bytes(10), "image/gif"),
        ("application/zip", b"PK\x03\x04" + bytes(30), "application/zip"),
        ("text/plain; charset=utf-8", "héllo wörld\n".encode(), "text/plain"),
        ("application/json", b'{"a": 1}', "application/json"),
    ],
)
async def test_accepted_types(
    client: httpx.AsyncClient,
    world: World,
    content_type: str,
    content: bytes,
    stored_type: str,
) -> None:
    response = await upload(client, world.member, world.team, world.task, content, content_type)
    assert response.status_code == 201, response.text
    assert response.json()["content_type"] == stored_type


async def test_an_empty_body_is_refused(
    client: httpx.AsyncClient, owner: Owner, settings: Settings, world: World
) -> None:
    response = await upload(client, world.member, world.team, world.task, b"", "text/plain")
    problem(response, 422, "empty_attachment")
    assert attachment_rows(owner, world.task) == []
    assert staged_files(settings) == []


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("/abs/path/report.pdf", "report.pdf"),
        ("evil\r\nSet-Cookie: x=1.png", "evilSet-Cookie: x=1.png"),
        ("name\u202egnp.exe", "namegnp.exe"),
        ("  spaced .png  ", "spaced .png"),
    ],
)
async def test_file_names_are_reduced_to_a_safe_base_name(
    client: httpx.AsyncClient,
    owner: Owner,
    settings: Settings,
    world: World,
    given: str,
    kept: str,
) -> None:
    response = await upload(client, world.member, world.team, world.task, PNG, filename=given)
    assert response.status_code == 201, response.text
    assert response.json()["filename"] == kept
    [row] = attachment_rows(owner, world.task)
    # Storage never uses the name: the object sits at {team}/{id} under the root.
    assert row["storage_key"] == f"{world.team}/{row['id']}"
    assert stored_files(settings, world.team) == [
        settings.attachment_root / str(world.team) / str(row["id"])
    ]


@pytest.mark.parametrize("name", ["..", ".", "a/", "\r\n", "x" * 256])
async def test_unusable_file_names_are_refused(
    client: httpx.AsyncClient, owner: Owner, world: World, name: str
) -> None:
    response = await upload(client, world.member, world.team, world.task, PNG, filename=name)
    problem(response, 422, "invalid_filename")
    assert attachment_rows(owner, world.task) == []


async def test_guests_upload_to_tasks_they_can_see_only(
    client: httpx.AsyncClient, owner: Owner, world: World
) -> None:
    ok = await upload(client, world.guest, world.team, world.task, PNG)
    assert ok.status_code == 201, ok.text
    hidden = await upload(client, world.guest, world.team, world.private_task, PNG)
    missing = await upload(client, world.guest, world.team, uuid.uuid4(), PNG)
    problem(hidden, 404, "not_found")
    assert without_instance(hidden) == without_instance(missing)
    assert attachment_rows(owner, world.private_task) == []


async def test_read_only_api_keys_cannot_upload(
    client: httpx.AsyncClient, owner: Owner, world: World
) -> None:
    created = await client.post(
        f"{API}/teams/{world.team}/api-keys",
        json={"name": "ro", "scopes": ["read"]},
        headers=world.owner.headers,
    )
    assert created.status_code == 201, created.text
    key = {"Authorization": f"Bearer {created.json()['token']}"}
    response = await client.post(
        f"{API}/teams/{world.team}/tasks/{world.task}/attachments",
        params={"filename": "a.png"},
        content=PNG,
        headers={**key, "content-type": "image/png"},
    )
    problem(response, 403, "insufficient_scope")
    assert attachment_rows(owner, world.task) == []


async def test_upload_to_a_soft_deleted_task_is_a_404(
    client: httpx.AsyncClient, owner: Owner, world: World
) -> None:
    owner.execute("update task set deleted_at = now() where id = %s", (world.task,))
    response = await upload(client, world.member, world.team, world.task, PNG)
    problem(response, 404, "not_found")


class FailingAfterPut(LocalStorage):
    """Stores the object, then fails as a flaky backend would after writing."""

    async def put(self, key: str, source: Path, content_type: str) -> None:
        await super().put(key, source, content_type)
        raise OSError("the backend failed after storing")


async def test_a_failed_transaction_removes_the_stored_object(
    app: Any, client: httpx.AsyncClient, owner: Owner, settings: Settings, world: World
) -> None:
    failing = FailingAfterPut(settings.attachment_root)
    app.dependency_overrides[storage_dependency] = lambda: failing
    try:
        response = await upload(client, world.member, world.team, world.task, PNG)
    finally:
        app.dependency_overrides.pop(storage_dependency)
    problem(response, 503, "storage_unavailable")
    assert attachment_rows(owner, world.task) == []
    assert stored_files(settings, world.team) == []
    assert staged_files(settings) == []
    assert events(owner, world.team, "attachment.uploaded") == []


async def test_a_failed_commit_removes_the_stored_object(
    client: httpx.AsyncClient, owner: Owner, settings: Settings, world: World
) -> None:
    # A deferred constraint trigger fails the COMMIT itself, after the object was stored.
    owner.execute(
        "create function test_fail_commit() returns trigger language plpgsql as $$"
        " begin raise exception 'refused at commit'; end $$"
    )
    owner.execute(
        "create constraint trigger test_fail_commit after insert on attachment"
        " deferrable initially deferred for each row"
        " when (new.filename = 'fail-at-commit.png') execute function test_fail_commit()"
    )
    try:
        response = await upload(
            client, world.member, world.team, world.task, PNG, filename="fail-at-commit.png"
        )
        kept = await upload(client, world.member, world.team, world.task, PNG)
    finally:
        owner.execute("drop trigger test_fail_commit on attachment")
        owner.execute("drop function test_fail_commit()")
    problem(response, 500, "internal_error")
    assert kept.status_code == 201
    [row] = attachment_rows(owner, world.task)
    assert stored_files(settings, world.team) == [
        settings.attachment_root / str(world.team) / str(row["id"])
    ]
    assert staged_files(settings) == []


async def test_concurrent_uploads_each_get_their_own_object(
    client: httpx.AsyncClient, owner: Owner, settings: Settings, world: World
) -> None:
    bodies = [PNG + bytes([i]) * 100 for i in range(8)]
    responses = await asyncio.gather(
        *(upload(client, world.member, world.team, world.task, b) for b in bodies)
    )
    assert [r.status_code for r in responses] == [201] * 8
    by_hash = {r.json()["sha256"]: r.json()["id"] for r in responses}
    assert set(by_hash) == {hashlib.sha256(b).hexdigest() for b in bodies}
    for data in bodies:
        attachment = by_hash[hashlib.sha256(data).hexdigest()]
        assert (settings.attachment_root / str(world.team) / attachment).read_bytes() == data
    assert len(attachment_rows(owner, world.task)) == 8


async def test_an_upload_retried_with_its_idempotency_key_is_replayed(
    client: httpx.AsyncClient, owner: Owner, settings: Settings, world: World
) -> None:
    """The key applies to the file, not to the bytes that carried it: a retry streams the
    same file again and gets the first answer, byte for byte, with one row and one object."""
    key = {"Idempotency-Key": "upload-1"}
    first = await upload(client, world.member, world.team, world.task, PNG, headers=key)
    assert first.status_code == 201, first.text
    again = await upload(client, world.member, world.team, world.task, PNG, headers=key)
    assert again.status_code == 201, again.text
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["content-type"] == first.headers["content-type"]
    assert len(attachment_rows(owner, world.task)) == 1
    assert [p.name for p in stored_files(settings, world.team)] == [first.json()["id"]]
    assert staged_files(settings) == []

    # Another file (or another name) under the same key is refused, and leaves nothing.
    other = await upload(
        client, world.member, world.team, world.task, JPEG, "image/jpeg", headers=key
    )
    problem(other, 422, "idempotency_key_reused")
    renamed = await upload(
        client, world.member, world.team, world.task, PNG, filename="other.png", headers=key
    )
    problem(renamed, 422, "idempotency_key_reused")
    # The key is the caller's: another member's upload with it is their own.
    theirs = await upload(client, world.admin, world.team, world.task, PNG, headers=key)
    assert theirs.status_code == 201, theirs.text
    assert "idempotent-replayed" not in theirs.headers
    assert len(attachment_rows(owner, world.task)) == 2
    assert len(stored_files(settings, world.team)) == 2
    assert staged_files(settings) == []

    malformed = await upload(
        client, world.member, world.team, world.task, PNG, headers={"Idempotency-Key": "a b"}
    )
    problem(malformed, 400, "invalid_idempotency_key")
    assert len(attachment_rows(owner, world.task)) == 2


async def test_concurrent_uploads_with_one_idempotency_key_make_one_attachment(
    client: httpx.AsyncClient, owner: Owner, settings: Settings, world: World
) -> None:
    key = {"Idempotency-Key": "upload-many"}
    responses = await asyncio.gather(
        *(upload(client, world.member, world.team, world.task, PNG, headers=key) for _ in range(10))
    )
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 409}, [r.text for r in responses]
    created = [r for r in responses if r.status_code == 201]
    assert len([r for r in created if "idempotent-replayed" not in r.headers]) == 1
    assert {r.content for r in created} == {created[0].content}
    for refused in (r for r in responses if r.status_code == 409):
        problem(refused, 409, "idempotency_in_flight")
    assert len(attachment_rows(owner, world.task)) == 1
    assert len(stored_files(settings, world.team)) == 1
    assert staged_files(settings) == []


# --------------------------------------------------------------------------- download


async def test_download_streams_the_bytes_with_safe_headers(
    client: httpx.AsyncClient, world: World
) -> None:
    created = await upload(
        client, world.member, world.team, world.task, PDF, "application/pdf", 'résumé "v2".pdf'
    )
    attachment = created.json()
    url = f"{API}/teams/{world.team}/attachments/{attachment['id']}/content"
    response = await client.get(url, headers=world.guest.headers)
    assert response.status_code == 200, response.text
    assert response.content == PDF
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-length"] == str(len(PDF))
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["etag"] == f'"{hashlib.sha256(PDF).hexdigest()}"'
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"r_sum_ _v2_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22v2%22.pdf"
    )
    assert "private" in response.headers["cache-control"]

    etag = response.headers["etag"]
    for condition in (etag, f'"other", W/{etag}', "*"):
        cached = await client.get(url, headers={**world.guest.headers, "if-none-match": condition})
        assert cached.status_code == 304, condition
        assert cached.content == b""
        assert cached.headers["etag"] == etag
    changed = await client.get(url, headers={**world.guest.headers, "if-none-match": '"other"'})
    assert changed.status_code == 200


async def test_download_needs_authentication(client: httpx.AsyncClient, world: World) -> None:
    created = await upload(client, world.member, world.team, world.task, PNG)
    response = await client.get(
        f"{API}/teams/{world.team}/attachments/{created.json()['id']}/content"
    )
    problem(response, 401, "unauthorized")


async def test_other_teams_and_guests_off_the_project_get_the_404_of_a_missing_id(
    client: httpx.AsyncClient, make_user: MakeUser, make_team: MakeTeam, world: World
) -> None:
    public = (await upload(client, world.member, world.team, world.task, PNG)).json()["id"]
    private = (await upload(client, world.owner, world.team, world.private_task, PNG)).json()
    stranger = make_user("stranger")
    own_team = await make_team(stranger)
    paths = ("/attachments/{id}/content", "/attachments/{id}")
    for path in paths:
        missing = await client.get(
            f"{API}/teams/{own_team}{path.format(id=uuid.uuid4())}", headers=stranger.headers
        )
        problem(missing, 404, "not_found")
        cases = [
            (stranger, world.team, public),  # not a member of the team
            (stranger, own_team, public),  # their own team, someone else's id
            (world.guest, world.team, private["id"]),  # a guest off the private project
            (world.member, world.team, private["id"]),  # a member off the private project
        ]
        for actor, team, attachment in cases:
            response = await client.get(
                f"{API}/teams/{team}{path.format(id=attachment)}", headers=actor.headers
            )
            assert without_instance(response) == without_instance(missing), (actor, path)
    listing = await client.get(
        f"{API}/teams/{world.team}/tasks/{world.private_task}/attachments",
        headers=world.guest.headers,
    )
    problem(listing, 404, "not_found")
    ok = await client.get(
        f"{API}/teams/{world.team}/attachments/{private['id']}/content",
        headers=world.owner.headers,
    )
    assert ok.status_code == 200
    assert ok.content == PNG


async def test_a_missing_stored_object_is_a_404_not_a_500(
    client: httpx.AsyncClient, settings: Settings, world: World
) -> None:
    created = (await upload(client, world.member, world.team, world.task, PNG)).json()
    (settings.attachment_root / str(world.team) / created["id"]).unlink()
    response = await client.get(
        f"{API}/teams/{world.team}/attachments/{created['id']}/content",
        headers=world.member.headers,
    )
    problem(response, 404, "not_found")


# --------------------------------------------------------------------------- list and detail


async def test_list_is_keyset_paginated_with_constant_statements(
    client: httpx.AsyncClient, world: World
) -> None:
    ids = [
        (
            await upload(client, world.member, world.team, world.task, PNG, filename=f"{i}.png")
        ).json()["id"]
        for i in range(5)
    ]
    url = f"{API}/teams/{world.team}/tasks/{world.task}/attachments"
    seen: list[str] = []
    cursor: str | None = None
    counts = set()
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = await client.get(url, params=params, headers=world.guest.headers)
        assert response.status_code == 200, response.text
        counts.add(sql_count(response))
        seen += [item["id"] for item in response.json()["items"]]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == ids  # upload order, none skipped or repeated
    full = await client.get(url, params={"limit": 200}, headers=world.guest.headers)
    one = await client.get(url, params={"limit": 1}, headers=world.guest.headers)
    assert [item["id"] for item in full.json()["items"]] == ids
    assert sql_count(full) == sql_count(one) == 2
    assert counts == {2}
    assert set(full.json()["items"][0]) == {
        "id",
        "task_id",
        "project_id",
        "filename",
        "content_type",
        "size_bytes",
        "sha256",
        "uploaded_by",
        "created_at",
    }


async def test_list_cursors_are_bound_to_their_task(
    app: Any, client: httpx.AsyncClient, world: World
) -> None:
    for _ in range(2):
        await upload(client, world.member, world.team, world.task, PNG)
    other = await create_task(app, world.owner.id, world.team, world.project, "other")
    url = f"{API}/teams/{world.team}/tasks/{{task}}/attachments"
    first = await client.get(
        url.format(task=world.task), params={"limit": 1}, headers=world.member.headers
    )
    cursor = first.json()["next_cursor"]
    assert cursor
    for task, bad in ((other, cursor), (world.task, cursor[:-3] + "AAA"), (world.task, "x")):
        response = await client.get(
            url.format(task=task),
            params={"limit": 1, "cursor": bad},
            headers=world.member.headers,
        )
        problem(response, 400, "invalid_cursor")


async def test_detail_is_one_statement(client: httpx.AsyncClient, world: World) -> None:
    created = (await upload(client, world.member, world.team, world.task, PNG)).json()
    response = await client.get(
        f"{API}/teams/{world.team}/attachments/{created['id']}", headers=world.guest.headers
    )
    assert response.status_code == 200
    assert response.json() == created
    assert sql_count(response) == 1
    download = await client.get(
        f"{API}/teams/{world.team}/attachments/{created['id']}/content",
        headers=world.guest.headers,
    )
    assert sql_count(download) == 1


# --------------------------------------------------------------------------- delete


async def test_the_uploader_deletes_and_the_bytes_go_after_commit(
    client: httpx.AsyncClient, owner: Owner, settings: Settings, world: World
) -> None:
    created = (await upload(client, world.guest, world.team, world.task, PNG)).json()
    path = settings.attachment_root / str(world.team) / created["id"]
    assert path.exists()
    response = await client.delete(
        f"{API}/teams/{world.team}/attachments/{created['id']}", headers=world.guest.headers
    )
    assert response.status_code == 204, response.text
    assert attachment_rows(owner, world.task) == []
    assert not path.exists()
    queued = owner.execute(
        "select count(*) as n from attachment_purge where team_id = %s", (world.team,)
    ).fetchone()
    assert queued == {"n": 0}
    [event] = events(owner, world.team, "attachment.deleted")
    assert event["subject_id"] == world.task
    assert event["actor_id"] == world.guest.id
    assert event["payload"] == {
        "attachment_id": created["id"],
        "task_id": str(world.task),
        "filename": "picture.png",
    }
    again = await client.delete(
        f"{API}/teams/{world.team}/attachments/{created['id']}", headers=world.guest.headers
    )
    problem(again, 404, "not_found")


async def test_only_the_uploader_or_an_admin_deletes(
    client: httpx.AsyncClient, owner: Owner, settings: Settings, world: World
) -> None:
    created = (await upload(client, world.member, world.team, world.task, PNG)).json()
    url = f"{API}/teams/{world.team}/attachments/{created['id']}"
    problem(await client.delete(url, headers=world.guest.headers), 403, "insufficient_role")
    assert len(attachment_rows(owner, world.task)) == 1
    assert events(owner, world.team, "attachment.deleted") == []
    assert (await client.delete(url, headers=world.admin.headers)).status_code == 204
    assert attachment_rows(owner, world.task) == []
    assert stored_files(settings, world.team) == []


async def test_bytes_stay_when_the_deletion_rolls_back(
    client: httpx.AsyncClient, owner: Owner, settings: Settings, world: World
) -> None:
    created = (await upload(client, world.member, world.team, world.task, PNG)).json()
    # Make the event append of this deletion fail: the request rolls back after the row
    # was deleted and its key queued, so both must come back and the bytes must stay.
    owner.execute(
        "create function test_refuse_event() returns trigger language plpgsql as $$"
        f" begin if new.payload ->> 'attachment_id' = '{uuid.UUID(created['id'])}' then"
        " raise exception 'refused'; end if; return new; end $$"
    )
    owner.execute(
        "create trigger test_refuse_event before insert on event"
        " for each row execute function test_refuse_event()"
    )
    try:
        response = await client.delete(
            f"{API}/teams/{world.team}/attachments/{created['id']}",
            headers=world.member.headers,
        )
    finally:
        owner.execute("drop trigger test_refuse_event on event")
        owner.execute("drop function test_refuse_event()")
    problem(response, 500, "internal_error")
    assert len(attachment_rows(owner, world.task)) == 1
    assert (settings.attachment_root / str(world.team) / created["id"]).read_bytes() == PNG
    queued = owner.execute(
        "select count(*) as n from attachment_purge where team_id = %s", (world.team,)
    ).fetchone()
    assert queued == {"n": 0}
    assert events(owner, world.team, "attachment.deleted") == []


async def test_attachments_go_with_their_task(
    app: Any, client: httpx.AsyncClient, owner: Owner, settings: Settings, world: World
) -> None:
    for _ in range(3):
        await upload(client, world.member, world.team, world.task, PNG)
    kept = (await upload(client, world.owner, world.team, world.private_task, PNG)).json()
    services = app.state.services
    # An admin purges the task through the app role (what a task purge route does)...
    async with services.db.transaction(user_id=world.admin.id, team_id=world.team) as tx:
        await tx.execute("delete from task where id = %s", (world.task,))
    assert attachment_rows(owner, world.task) == []
    assert len(stored_files(settings, world.team)) == 4  # bytes wait for the cleanup
    # ... then schedules the cleanup after its commit.
    storage = LocalStorage(settings.attachment_root)
    removed = await cleanup.purge_team(services.db, storage, world.admin.id, world.team)
    assert removed == 3
    assert stored_files(settings, world.team) == [
        settings.attachment_root / str(world.team) / kept["id"]
    ]
    queued = owner.execute(
        "select count(*) as n from attachment_purge where team_id = %s", (world.team,)
    ).fetchone()
    assert queued == {"n": 0}


async def test_a_soft_deleted_task_hides_its_attachments(
    client: httpx.AsyncClient, owner: Owner, world: World
) -> None:
    created = (await upload(client, world.member, world.team, world.task, PNG)).json()
    owner.execute("update task set deleted_at = now() where id = %s", (world.task,))
    base = f"{API}/teams/{world.team}"
    for path in (
        f"/attachments/{created['id']}",
        f"/attachments/{created['id']}/content",
        f"/tasks/{world.task}/attachments",
    ):
        problem(await client.get(base + path, headers=world.member.headers), 404, "not_found")
    owner.execute("update task set deleted_at = null where id = %s", (world.task,))
    restored = await client.get(
        f"{base}/attachments/{created['id']}/content", headers=world.member.headers
    )
    assert restored.content == PNG


async def test_the_sweeper_removes_the_bytes_of_a_deleted_team(
    client: httpx.AsyncClient,
    owner: Owner,
    settings: Settings,
    db_urls: DatabaseUrls,
    world: World,
) -> None:
    await upload(client, world.member, world.team, world.task, PNG)
    await upload(client, world.owner, world.team, world.private_task, PNG)
    deleted = await client.delete(f"{API}/teams/{world.team}", headers=world.owner.headers)
    assert deleted.status_code == 204, deleted.text
    # Nobody is left in the team to clean up in a request: its keys wait in the queue.
    queued = owner.execute(
        "select count(*) as n from attachment_purge where team_id = %s", (world.team,)
    ).fetchone()
    assert queued == {"n": 2}
    assert len(stored_files(settings, world.team)) == 2
    # A crash mid-upload leaves a staging file; the sweeper removes it once stale.
    staging = settings.attachment_root / ".incoming"
    stale, live = staging / "upload-stale.part", staging / "upload-live.part"
    for path in (stale, live):
        path.write_bytes(b"partial")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    try:
        removed = await cleanup.sweep_as_owner(db_urls.owner, settings)
        assert staged_files(settings) == [live]
    finally:
        live.unlink()
    assert removed >= 2
    assert stored_files(settings, world.team) == []
    left = owner.execute("select count(*) as n from attachment_purge").fetchone()
    assert left == {"n": 0}


async def test_the_sweep_command_refuses_where_the_attachment_directory_is_not(
    client: httpx.AsyncClient,
    owner: Owner,
    settings: Settings,
    db_urls: DatabaseUrls,
    world: World,
    tmp_path: Path,
) -> None:
    """Run on another machine, the sweep would empty the queue and delete nothing: the
    bytes would stay on the servers' disk for good. It refuses and leaves the queue; with
    nothing queued (an installation that never stored a file), there is nothing to do."""
    await upload(client, world.member, world.team, world.task, PNG)
    deleted = await client.delete(f"{API}/teams/{world.team}", headers=world.owner.headers)
    assert deleted.status_code == 204, deleted.text
    elsewhere = settings.model_copy(update={"attachment_dir": tmp_path / "not-here"})

    with pytest.raises(cleanup.StorageNotHere, match="not-here"):
        await cleanup.sweep_as_owner(db_urls.owner, elsewhere)

    queued = "select count(*) as n from attachment_purge where team_id = %s"
    assert owner.execute(queued, (world.team,)).fetchone() == {"n": 1}
    assert len(stored_files(settings, world.team)) == 1
    assert await cleanup.sweep_as_owner(db_urls.owner, settings) >= 1
    assert stored_files(settings, world.team) == []
    assert await cleanup.sweep_as_owner(db_urls.owner, elsewhere) == 0


async def test_the_sweep_command_exits_1_where_keys_wait_for_another_machine(
    owner: Owner, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What cron sees: exit status 1 and the reason, the queue left as it was."""
    key = [uuid.uuid4(), uuid.uuid4()]
    owner.execute(
        "insert into attachment_purge (team_id, id, project_id, storage_key)"
        " values (%s, %s, %s, %s)",
        (key[0], key[1], uuid.uuid4(), f"{key[0]}/{key[1]}"),
    )
    elsewhere = settings.model_copy(update={"attachment_dir": tmp_path / "not-here"})
    monkeypatch.setattr(cli_module, "get_settings", lambda: elsewhere)
    try:
        result = await asyncio.to_thread(
            CliRunner().invoke, cli_module.app, ["attachments", "sweep"]
        )
        queued = "select count(*) as n from attachment_purge where team_id = %s and id = %s"
        assert owner.execute(queued, key).fetchone() == {"n": 1}
    finally:
        owner.execute("delete from attachment_purge where team_id = %s and id = %s", key)
    assert result.exit_code == 1, result.output
    assert "does not exist here" in result.output


class Rollback(Exception):
    """Raised to end a transaction without committing."""


async def run_as(app: Any, user: uuid.UUID, team: uuid.UUID, sql: Any, params: Any) -> bool:
    """Run one statement as the app role for ``user``, then roll back; True if it returned
    a row."""
    found = False
    try:
        async with app.state.services.db.transaction(user_id=user, team_id=team) as tx:
            found = await tx.fetch_one(sql, params) is not None
            raise Rollback
    except Rollback:
        return found


async def test_rls_keeps_deletes_to_the_uploader_or_admins(
    app: Any, client: httpx.AsyncClient, owner: Owner, world: World
) -> None:
    """Below the service, as the app role: the policies enforce the same rules."""
    created = (await upload(client, world.member, world.team, world.task, PNG)).json()
    delete = "delete from attachment where id = %s returning id"
    assert not await run_as(app, world.guest.id, world.team, delete, (created["id"],))
    assert await run_as(app, world.admin.id, world.team, delete, (created["id"],))
    assert await run_as(app, world.member.id, world.team, delete, (created["id"],))
    assert len(attachment_rows(owner, world.task)) == 1

    forged_id = uuid.uuid4()
    as_member = (
        "insert into attachment (id, project_id, task_id, filename, content_type, size_bytes,"
        " sha256, storage_key, uploaded_by) select %s, project_id, task_id, filename,"
        " content_type, size_bytes, sha256, %s, %s from attachment where id = %s returning id"
    )
    params = (forged_id, f"{world.team}/{forged_id}", world.member.id, created["id"])
    with pytest.raises(InsufficientPrivilege):
        await run_as(app, world.guest.id, world.team, as_member, params)
    queue = "insert into attachment_purge (id, project_id, storage_key) values (%s, %s, 'x')"
    with pytest.raises(InsufficientPrivilege):
        await run_as(app, world.owner.id, world.team, queue, (forged_id, world.project))
