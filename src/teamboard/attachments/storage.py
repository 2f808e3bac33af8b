"""Where attachment bytes live: a local directory by default, S3-compatible storage when
``ATTACHMENT_STORAGE=s3``.

Keys are ``{team_id}/{attachment_id}``, made by :func:`object_key` from server-generated
UUIDs only, and checked again by every backend: nothing a user sends ever becomes part of a
path or an object name. Blocking I/O (files, boto3) runs in worker threads.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, TypeVar
from uuid import UUID

from fastapi import Request

from teamboard.config import Settings
from teamboard.errors import TeamboardError

if TYPE_CHECKING:
    from types_boto3_s3.client import S3Client

CHUNK_BYTES = 256 * 1024
_KEY = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)
_S3_DELETE_BATCH = 1000
T = TypeVar("T")


class ObjectMissing(Exception):
    """The key has no stored object."""


class StorageUnavailable(TeamboardError):
    """The storage backend failed (answered 503, never as a database outage)."""

    status, code = 503, "storage_unavailable"

    def __init__(self) -> None:
        super().__init__(
            "Attachment storage is unavailable; retry later", headers={"Retry-After": "5"}
        )


def object_key(team_id: UUID, attachment_id: UUID) -> str:
    return f"{team_id}/{attachment_id}"


def checked_key(key: str) -> str:
    """``key`` if it has the one shape :func:`object_key` makes; ValueError otherwise."""
    if not _KEY.fullmatch(key):
        raise ValueError("invalid storage key")
    return key


class ObjectStorage(Protocol):
    """The storage contract the attachment service relies on."""

    async def put(self, key: str, source: Path, content_type: str) -> None:
        """Store the file ``source`` under ``key``. ``source`` may be moved away."""

    async def open(self, key: str) -> AsyncIterator[bytes]:
        """Open the object now (raises :class:`ObjectMissing`) and return its chunks.

        Opening before the response starts means a deletion that commits meanwhile does
        not cut the download short (an open file survives its unlink; an S3 body streams).
        """

    async def delete(self, keys: Sequence[str]) -> None:
        """Remove these objects; keys without an object are ignored (deletion is retried)."""


async def _blocking(function: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(function, *args)


async def _iterate(chunks: Iterator[bytes], close: Callable[[], None]) -> AsyncIterator[bytes]:
    """Pull a blocking chunk iterator from a worker thread, closing it at the end."""
    try:
        while chunk := await _blocking(next, chunks, b""):
            yield chunk
    finally:
        await _blocking(close)


class LocalStorage:
    """Objects as files under ``root``: ``root/{team_id}/{attachment_id}``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*checked_key(key).split("/"))

    async def put(self, key: str, source: Path, content_type: str) -> None:
        target = self._path(key)
        await _blocking(self._move, source, target)

    @staticmethod
    def _move(source: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        # A rename on the same file system (the default: uploads are staged under root),
        # so the object appears complete or not at all.
        shutil.move(source, target)

    async def open(self, key: str) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            handle: BinaryIO = await _blocking(path.open, "rb")
        except FileNotFoundError as exc:
            raise ObjectMissing(key) from exc
        return _iterate(iter(lambda: handle.read(CHUNK_BYTES), b""), handle.close)

    async def delete(self, keys: Sequence[str]) -> None:
        paths = [self._path(key) for key in keys]
        await _blocking(self._unlink, paths)

    @staticmethod
    def _unlink(paths: list[Path]) -> None:
        # Team directories stay, even empty: removing one could race with an upload.
        for path in paths:
            path.unlink(missing_ok=True)


class S3Storage:
    """Objects in an S3-compatible bucket: ``{prefix}{team_id}/{attachment_id}``.

    ``client`` is a boto3 S3 client (thread-safe; its calls run in worker threads).
    """

    def __init__(self, client: S3Client, bucket: str, prefix: str = "") -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = prefix

    def _name(self, key: str) -> str:
        return self._prefix + checked_key(key)

    async def put(self, key: str, source: Path, content_type: str) -> None:
        name = self._name(key)

        def upload() -> None:
            with source.open("rb") as body:
                self._client.put_object(
                    Bucket=self._bucket, Key=name, Body=body, ContentType=content_type
                )

        await _blocking(upload)

    async def open(self, key: str) -> AsyncIterator[bytes]:
        name = self._name(key)
        try:
            response = await _blocking(
                lambda: self._client.get_object(Bucket=self._bucket, Key=name)
            )
        except self._client.exceptions.NoSuchKey as exc:
            raise ObjectMissing(key) from exc
        body = response["Body"]
        return _iterate(body.iter_chunks(CHUNK_BYTES), body.close)

    async def delete(self, keys: Sequence[str]) -> None:
        names = [self._name(key) for key in keys]
        for start in range(0, len(names), _S3_DELETE_BATCH):
            batch = names[start : start + _S3_DELETE_BATCH]
            response = await _blocking(
                lambda batch=batch: self._client.delete_objects(
                    Bucket=self._bucket,
                    Delete={"Objects": [{"Key": name} for name in batch], "Quiet": True},
                )
            )
            if response.get("Errors"):
                raise OSError(f"S3 refused to delete {len(response['Errors'])} objects")


def build_storage(settings: Settings) -> ObjectStorage:
    """The storage the settings ask for (boto3 is imported only when S3 is used)."""
    if settings.attachment_storage == "local":
        return LocalStorage(settings.attachment_root)
    import boto3  # the optional dependency: pip install 'teamboard[s3]'

    secret = settings.s3_secret_access_key
    client = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
    )
    assert settings.s3_bucket is not None  # checked by Settings
    return S3Storage(client, settings.s3_bucket, settings.s3_prefix)


def staging_dir(settings: Settings) -> Path:
    """Where uploads are streamed before they are stored: under the local storage root,
    so that storing them locally is a rename."""
    return settings.attachment_root / ".incoming"


async def storage_dependency(request: Request) -> ObjectStorage:
    """The process's storage, built on first use from the app's settings."""
    state = request.app.state
    storage: ObjectStorage | None = getattr(state, "attachment_storage", None)
    if storage is None:
        storage = build_storage(state.services.settings)
        state.attachment_storage = storage
    return storage
