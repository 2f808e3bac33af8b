"""Response shapes and OpenAPI refinements shared by several features."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, model_validator


class Person(BaseModel):
    """A user as teammates see them (``display_name`` is null once they left the team)."""

    id: UUID
    display_name: str | None


def null_only_for(clearable: frozenset[str]) -> Callable[[dict[str, Any]], None]:
    """A ``json_schema_extra`` for a patch body that refuses ``null`` except in the fields
    that can be cleared: the document then says what its validator enforces (found by
    Schemathesis: it sent ``null`` where the document allowed it and got a 422)."""

    def refine(schema: dict[str, Any]) -> None:
        for name, prop in schema.get("properties", {}).items():
            options = prop.get("anyOf")
            if name not in clearable and options:
                kept = [option for option in options if option.get("type") != "null"]
                prop.pop("anyOf")
                prop.update(kept[0] if len(kept) == 1 else {"anyOf": kept})

    return refine


class Patch(BaseModel):
    """A PATCH body: unknown fields refused (no mass assignment), a field left out is
    unchanged, and ``null`` is refused (422) rather than read as "unchanged", so a client
    that means "clear" learns that the field cannot be cleared."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=null_only_for(frozenset()))

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(value is None for value in data.values()):
            raise ValueError("fields cannot be null; leave a field out to keep it")
        return data
