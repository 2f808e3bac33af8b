"""Fast JSON responses with orjson."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson
from starlette.responses import JSONResponse


def _default(value: Any) -> Any:
    """What orjson does not serialize itself: the driver's UUID subclass (orjson only
    accepts exact ``uuid.UUID``)."""
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(content: Any) -> bytes:
    """The one JSON encoding of the API (UTC datetimes end in ``Z``)."""
    return orjson.dumps(content, default=_default, option=orjson.OPT_UTC_Z)


class ORJSONResponse(JSONResponse):
    """The default response class: orjson is ~2.4x faster than the stdlib on our lists."""

    def render(self, content: Any) -> bytes:
        return dumps(content)
