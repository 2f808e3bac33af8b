"""The storage backends and the content checks, at the unit level.

The S3 backend is exercised against botocore's Stubber: real request validation against
the S3 model, no network.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from pydantic import ValidationError

from teamboard.attachments import content
from teamboard.attachments.storage import (
    LocalStorage,
    ObjectMissing,
    S3Storage,
    build_storage,
    checked_key,
    object_key,
)
from teamboard.config import DEFAULT_ATTACHMENT_TYPES, Settings
from teamboard.errors import TeamboardError

KEY = object_key(uuid.uuid4(), uuid.uuid4())
BAD_KEYS = ["../../etc/passwd", f"{KEY}/..", "a/b", f"/{KEY}", KEY.upper(), f"{KEY}\x00"]


async def read_all(chunks: Any) -> bytes:
    return b"".join([chunk async for chunk in chunks])


def staged(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "upload.part"
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- keys


def test_keys_are_made_from_ids_only() -> None:
    team, attachment = uuid.uuid4(), uuid.uuid4()
    assert object_key(team, attachment) == f"{team}/{attachment}"
    assert checked_key(KEY) == KEY


@pytest.mark.parametrize("key", BAD_KEYS)
def test_any_other_key_is_refused(key: str) -> None:
    with pytest.raises(ValueError, match="invalid storage key"):
        checked_key(key)


# --------------------------------------------------------------------------- local


async def test_local_round_trip(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "root")
    data = bytes(range(256)) * 5000  # several chunks
    source = staged(tmp_path, data)
    await storage.put(KEY, source, "application/zip")
    assert not source.exists()  # moved, not copied
    assert (tmp_path / "root" / KEY).read_bytes() == data
    assert await read_all(await storage.open(KEY)) == data
    await storage.delete([KEY, object_key(uuid.uuid4(), uuid.uuid4())])  # missing: ignored
    with pytest.raises(ObjectMissing):
        await storage.open(KEY)


async def test_local_open_survives_a_concurrent_delete(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    await storage.put(KEY, staged(tmp_path, b"still here"), "text/plain")
    chunks = await storage.open(KEY)
    await storage.delete([KEY])
    assert await read_all(chunks) == b"still here"


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_local_refuses_foreign_keys(tmp_path: Path, key: str) -> None:
    storage = LocalStorage(tmp_path / "root")
    source = staged(tmp_path, b"x")
    with pytest.raises(ValueError, match="invalid storage key"):
        await storage.put(key, source, "text/plain")
    with pytest.raises(ValueError, match="invalid storage key"):
        await storage.open(key)
    with pytest.raises(ValueError, match="invalid storage key"):
        await storage.delete([key])
    assert source.exists()
    assert not (tmp_path / "root").exists()


# --------------------------------------------------------------------------- S3


@pytest.fixture
def s3() -> Iterator[tuple[S3Storage, Stubber]]:
    client = boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    with Stubber(client) as stubber:
        yield S3Storage(client, "files", "tb/"), stubber
        stubber.assert_no_pending_responses()


async def test_s3_put_sends_the_file_under_the_prefixed_key(
    s3: tuple[S3Storage, Stubber], tmp_path: Path
) -> None:
    storage, stubber = s3
    stubber.add_response(
        "put_object",
        {"ETag": '"x"'},
        {"Bucket": "files", "Key": f"tb/{KEY}", "Body": ANY, "ContentType": "image/png"},
    )
    await storage.put(KEY, staged(tmp_path, b"\x89PNG"), "image/png")


async def test_s3_open_streams_the_body(s3: tuple[S3Storage, Stubber]) -> None:
    storage, stubber = s3
    data = b"0123456789" * 100_000
    stubber.add_response(
        "get_object",
        {"Body": StreamingBody(io.BytesIO(data), len(data)), "ContentLength": len(data)},
        {"Bucket": "files", "Key": f"tb/{KEY}"},
    )
    assert await read_all(await storage.open(KEY)) == data


async def test_s3_missing_object(s3: tuple[S3Storage, Stubber]) -> None:
    storage, stubber = s3
    stubber.add_client_error(
        "get_object",
        service_error_code="NoSuchKey",
        http_status_code=404,
        expected_params={"Bucket": "files", "Key": f"tb/{KEY}"},
    )
    with pytest.raises(ObjectMissing):
        await storage.open(KEY)


async def test_s3_deletes_in_batches_of_a_thousand(s3: tuple[S3Storage, Stubber]) -> None:
    storage, stubber = s3
    keys = [object_key(uuid.uuid4(), uuid.uuid4()) for _ in range(1001)]
    for batch in (keys[:1000], keys[1000:]):
        stubber.add_response(
            "delete_objects",
            {},
            {
                "Bucket": "files",
                "Delete": {"Objects": [{"Key": f"tb/{key}"} for key in batch], "Quiet": True},
            },
        )
    await storage.delete(keys)


async def test_s3_delete_errors_are_raised(s3: tuple[S3Storage, Stubber]) -> None:
    storage, stubber = s3
    stubber.add_response(
        "delete_objects",
        {"Errors": [{"Key": f"tb/{KEY}", "Code": "AccessDenied", "Message": "no"}]},
        {"Bucket": "files", "Delete": {"Objects": [{"Key": f"tb/{KEY}"}], "Quiet": True}},
    )
    with pytest.raises(OSError, match="refused to delete 1"):
        await storage.delete([KEY])


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_s3_refuses_foreign_keys(
    s3: tuple[S3Storage, Stubber], tmp_path: Path, key: str
) -> None:
    storage, _ = s3  # no stubbed response: any call would fail the test
    with pytest.raises(ValueError, match="invalid storage key"):
        await storage.put(key, staged(tmp_path, b"x"), "text/plain")
    with pytest.raises(ValueError, match="invalid storage key"):
        await storage.open(key)
    with pytest.raises(ValueError, match="invalid storage key"):
        await storage.delete([key])


# --------------------------------------------------------------------------- settings


def test_settings_choose_the_backend(tmp_path: Path) -> None:
    local = build_storage(Settings(data_dir=tmp_path))
    assert isinstance(local, LocalStorage)
    assert local.root == tmp_path / "attachments"
    s3 = build_storage(
        Settings(
            attachment_storage="s3",
            s3_bucket="files",
            s3_prefix="tb/",
            s3_endpoint_url="http://127.0.0.1:9",
            s3_region="us-east-1",
        )
    )
    assert isinstance(s3, S3Storage)


def test_s3_needs_a_bucket_and_a_clean_prefix() -> None:
    with pytest.raises(ValidationError, match="S3_BUCKET"):
        Settings(attachment_storage="s3")
    with pytest.raises(ValidationError):
        Settings(attachment_storage="s3", s3_bucket="b", s3_prefix="../x/")


def test_attachment_settings_defaults_and_normalization() -> None:
    settings = Settings()
    assert settings.attachment_max_bytes == 25 * 1024 * 1024
    assert settings.attachment_allowed_types == list(DEFAULT_ATTACHMENT_TYPES)
    assert "text/html" not in settings.attachment_allowed_types
    assert Settings(attachment_allowed_types=[" Image/PNG "]).attachment_allowed_types == [
        "image/png"
    ]


def test_allowed_types_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTACHMENT_ALLOWED_TYPES", '["text/plain", "image/png"]')
    monkeypatch.setenv("ATTACHMENT_MAX_BYTES", "1048576")
    settings = Settings()
    assert settings.attachment_allowed_types == ["text/plain", "image/png"]
    assert settings.attachment_max_bytes == 1024 * 1024


# --------------------------------------------------------------------------- content


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("image/png", "image/png"),
        ("Image/PNG", "image/png"),
        ("text/plain; charset=utf-8", "text/plain"),
    ],
)
def test_media_type(header: str, expected: str) -> None:
    assert content.media_type(header, DEFAULT_ATTACHMENT_TYPES) == expected


@pytest.mark.parametrize("header", [None, "", "text/html", "image/png/x", "image/*"])
def test_media_type_refused(header: str | None) -> None:
    with pytest.raises(TeamboardError) as caught:
        content.media_type(header, [*DEFAULT_ATTACHMENT_TYPES, "image/*"])
    assert caught.value.status == 415


def test_unknown_binary_types_are_not_sniffed() -> None:
    content.check_content("application/vnd.custom", b"\x00\x01anything")


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("plain.txt", "attachment; filename=\"plain.txt\"; filename*=UTF-8''plain.txt"),
        (
            "naïve ☃.txt",
            "attachment; filename=\"na_ve _.txt\"; filename*=UTF-8''na%C3%AFve%20%E2%98%83.txt",
        ),
        (
            'a"b\\c;d.txt',
            "attachment; filename=\"a_b_c;d.txt\"; filename*=UTF-8''a%22b%5Cc%3Bd.txt",
        ),
    ],
)
def test_content_disposition(name: str, header: str) -> None:
    assert content.content_disposition(name) == header
