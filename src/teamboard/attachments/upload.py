"""Receiving an upload: the request body streamed to a staging file, with the size limit,
the content check and the SHA-256 applied while it arrives.

Nothing is trusted up front: a ``Content-Length`` above the limit is refused before a byte
is read, but the limit is enforced on the bytes actually received, so a missing or lying
length changes nothing. On any error (too large, wrong content, client gone) the staging
file is removed before the error propagates.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from teamboard.attachments.content import SNIFF_BYTES, PayloadTooLarge, check_content
from teamboard.errors import BadRequest, Unprocessable

#: Received chunks are written (and hashed) in batches of this size, off the event loop.
FLUSH_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ReceivedFile:
    path: Path
    size: int
    sha256: str


def too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"Attachments are limited to {max_bytes} bytes", extra={"max_bytes": max_bytes}
    )


def check_announced_length(header: str | None, max_bytes: int) -> None:
    """Refuse early a body whose announced length is already over the limit."""
    if header is None:
        return
    if not header.strip().isdigit():
        raise BadRequest("Content-Length is invalid", code="invalid_content_length")
    if int(header) > max_bytes:
        raise too_large(max_bytes)


class _Sink:
    """The staging file and the running hash (used from a worker thread)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=directory, prefix="upload-", suffix=".part")
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self._file.write(data)

    def close(self) -> str:
        self._file.close()
        return self._hash.hexdigest()

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


async def receive(
    chunks: AsyncIterator[bytes], *, declared: str, max_bytes: int, staging: Path
) -> ReceivedFile:
    """Stream ``chunks`` into a new file under ``staging``.

    Raises 413 as soon as more than ``max_bytes`` arrived, 415 as soon as the first bytes
    contradict ``declared``, 422 for an empty body; the file is gone in every such case.
    """
    # Creating and discarding the file are quick and stay on the loop, so that a
    # cancellation cannot slip between them and the cleanup.
    sink = _Sink(staging)
    try:
        size, head, pending = 0, b"", bytearray()
        checked = False
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise too_large(max_bytes)
            if not checked:
                head += chunk[: SNIFF_BYTES - len(head)]
                if len(head) >= SNIFF_BYTES:
                    check_content(declared, head)
                    checked = True
            pending += chunk
            if len(pending) >= FLUSH_BYTES:
                await asyncio.to_thread(sink.write, bytes(pending))
                pending.clear()
        if size == 0:
            raise Unprocessable("The attachment is empty", code="empty_attachment")
        if not checked:
            check_content(declared, head)
        await asyncio.to_thread(sink.write, bytes(pending))
        digest = await asyncio.to_thread(sink.close)
    except BaseException:
        sink.discard()
        raise
    return ReceivedFile(sink.path, size, digest)
