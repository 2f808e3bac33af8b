"""ETags from row versions, and ``If-Match`` preconditions (RFC 9110 §8.8.3, §13.1.1).

A versioned row's ETag is the strong entity-tag ``"<version>"``. ``If-Match`` uses the strong
comparison: ``*`` matches any existing row, a list matches when one of its tags equals the
current ETag, and a weak tag (``W/"3"``) never matches. A header that is not a valid list of
entity-tags is refused (400 ``invalid_if_match``) rather than ignored, so a client bug
cannot silently turn a conditional update into an unconditional one. Without ``If-Match``
the update is unconditional (last writer wins), as plain HTTP allows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Header

from teamboard.errors import BadRequest, TeamboardError
from teamboard.kit.responses import ORJSONResponse

_ENTITY_TAG = re.compile(r'\s*(W/)?"([\x21\x23-\x7e\x80-\xff]*)"\s*')

#: What ``_tags`` accepts, published in the OpenAPI document (the check stays in ``_tags``,
#: which answers 400 ``invalid_if_match`` rather than a validation error).
IF_MATCH_PATTERN = r'^\s*(\*|(W/)?"[!#-~\x80-\xff]*"\s*(,\s*(W/)?"[!#-~\x80-\xff]*"\s*)*)\s*$'

#: The ``If-Match`` request header of conditional routes.
IfMatch = Annotated[
    str | None, Header(alias="If-Match", json_schema_extra={"pattern": IF_MATCH_PATTERN})
]


class PreconditionFailed(TeamboardError):
    status, code = 412, "precondition_failed"


def etag(version: int) -> str:
    return f'"{version}"'


def versioned(row: Mapping[str, Any], status_code: int = 200) -> ORJSONResponse:
    """The JSON answer for a versioned row, with its version as ``ETag``."""
    return ORJSONResponse(row, status_code=status_code, headers={"ETag": etag(row["version"])})


def _tags(header: str) -> list[str] | None:
    """The strong tags of a valid ``If-Match`` list (weak ones dropped); None for ``*``."""
    if header.strip() == "*":
        return None
    tags: list[str] = []
    for part in header.split(","):
        match = _ENTITY_TAG.fullmatch(part)
        if match is None:
            raise BadRequest(
                'If-Match must be "*" or a list of entity-tags such as "3"',
                code="invalid_if_match",
            )
        if match.group(1) is None:
            tags.append(f'"{match.group(2)}"')
    return tags


_STALE = "The resource has changed since it was read; fetch it again and retry"


def check_if_match(header: str | None, version: int) -> int | None:
    """Raise 412 unless ``header`` (absent: no precondition) matches ``version``; the
    version the update must still find (None without a precondition). Where nothing locks
    the row between the read and the update, the update is made on that version only, and
    finding none means another change came in between: :func:`changed_meanwhile`."""
    if header is None:
        return None
    tags = _tags(header)
    if tags is None:
        return None  # ``*``: any current version will do
    if etag(version) not in tags:
        raise PreconditionFailed(_STALE, extra={"current_etag": etag(version)})
    return version


def changed_meanwhile() -> PreconditionFailed:
    """The 412 of a conditional update that no longer found the version it checked."""
    return PreconditionFailed(_STALE)
