"""What an upload claims to be, checked: its media type, its first bytes, its file name."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from urllib.parse import quote

from teamboard.errors import TeamboardError, Unprocessable

#: Bytes read before the content is checked against its declared type.
SNIFF_BYTES = 512
MAX_FILENAME_CHARS = 255

_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")

# Each type: alternatives, each a list of (offset, bytes) that must all match.
Signature = tuple[tuple[int, bytes], ...]
_ZIP: tuple[Signature, ...] = (((0, b"PK\x03\x04"),), ((0, b"PK\x05\x06"),))
SIGNATURES: dict[str, tuple[Signature, ...]] = {
    "image/png": (((0, b"\x89PNG\r\n\x1a\n"),),),
    "image/jpeg": (((0, b"\xff\xd8\xff"),),),
    "image/gif": (((0, b"GIF87a"),), ((0, b"GIF89a"),)),
    "image/webp": (((0, b"RIFF"), (8, b"WEBP")),),
    "application/pdf": (((0, b"%PDF-"),),),
    "application/gzip": (((0, b"\x1f\x8b"),),),
    "application/zip": _ZIP,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": _ZIP,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": _ZIP,
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": _ZIP,
}
#: Binary formats that a text upload must not turn out to be (executables included).
_BINARY_MARKERS: tuple[Signature, ...] = (
    *(signature for signatures in SIGNATURES.values() for signature in signatures),
    ((0, b"MZ"),),
    ((0, b"\x7fELF"),),
)
_TEXT_TYPES = ("application/json",)


class UnsupportedMediaType(TeamboardError):
    status, code = 415, "unsupported_media_type"


class PayloadTooLarge(TeamboardError):
    status, code = 413, "attachment_too_large"


def media_type(header: str | None, allowed: Collection[str]) -> str:
    """The declared type without parameters (``text/plain; charset=utf-8`` -> ``text/plain``),
    refused with 415 when missing, malformed or not allowed."""
    essence = (header or "").split(";", 1)[0].strip().lower()
    if not essence:
        raise UnsupportedMediaType(
            "Send the file's type in Content-Type", code="content_type_missing"
        )
    if not _MEDIA_TYPE.fullmatch(essence) or essence not in allowed:
        raise UnsupportedMediaType(
            f"Attachments of type {essence[:100]} are not accepted",
            code="content_type_not_allowed",
            extra={"allowed": sorted(allowed)},
        )
    return essence


def _matches(head: bytes, signature: Signature) -> bool:
    return all(head[offset : offset + len(magic)] == magic for offset, magic in signature)


def check_content(declared: str, head: bytes) -> None:
    """Refuse (415) content whose first bytes contradict the declared type.

    Types with a signature must start with it; text types must not start like a known
    binary format nor contain NUL bytes; other allowed types cannot be checked this way.
    """
    signatures = SIGNATURES.get(declared)
    if signatures is not None:
        valid = any(_matches(head, signature) for signature in signatures)
    elif declared.startswith("text/") or declared in _TEXT_TYPES:
        valid = b"\x00" not in head and not any(_matches(head, s) for s in _BINARY_MARKERS)
    else:
        valid = True
    if not valid:
        raise UnsupportedMediaType(f"The content is not {declared}", code="content_type_mismatch")


def _invisible(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category[0] == "C" or category in ("Zl", "Zp")


def clean_filename(raw: str) -> str:
    """The name to show and to offer on download: its last path component, without control
    or formatting characters (bidi overrides included); 422 when nothing usable is left.

    It is metadata only: storage keys never derive from it.
    """
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if not _invisible(ch))
    name = name.strip()
    if name in ("", ".", "..") or len(name) > MAX_FILENAME_CHARS:
        raise Unprocessable(
            f"The file name must have 1 to {MAX_FILENAME_CHARS} visible characters",
            code="invalid_filename",
        )
    return name


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback and the exact name in RFC 5987 form."""
    fallback = "".join(ch if " " <= ch <= "~" and ch not in '"\\' else "_" for ch in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
