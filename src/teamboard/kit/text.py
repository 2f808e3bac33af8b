"""Text that PostgreSQL can store: ``text`` refuses NUL characters, so they are refused at
validation (422) instead of failing in the driver (500)."""

from __future__ import annotations

from pydantic import AfterValidator


def _no_nul(value: str | None) -> str | None:
    if value is not None and "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


def _not_blank(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("must not be blank")
    return value


#: Add to an ``Annotated[str, ...]`` type: ``Annotated[str, ..., NO_NUL]``.
NO_NUL = AfterValidator(_no_nul)
#: Refuse text that is only whitespace.
NOT_BLANK = AfterValidator(_not_blank)
