"""Text that PostgreSQL can store: ``text`` refuses NUL characters, so they are refused at
validation (422) instead of failing in the driver (500)."""

from __future__ import annotations

from typing import Any

from pydantic import AfterValidator, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic_core import core_schema


def _no_nul(value: str | None) -> str | None:
    if value is not None and "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


def _not_blank(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("must not be blank")
    return value


class _NoNul:
    """Refuses NUL, and says so in the OpenAPI document (a ``pattern``), so that clients
    and Schemathesis know such text is invalid."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(_no_nul, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        document: dict[str, Any] = handler(schema)
        document.setdefault("pattern", "^[^\\u0000]*$")
        return document


#: Add to an ``Annotated[str, ...]`` type: ``Annotated[str, ..., NO_NUL]``.
NO_NUL = _NoNul()
#: Refuse text that is only whitespace.
NOT_BLANK = AfterValidator(_not_blank)
