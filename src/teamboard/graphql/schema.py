"""The Strawberry schema and its SDL.

Every field without a resolver reads its value by name from the row (or connection
object) its parent returned: ``StrawberryConfig.default_resolver`` is ``operator.getitem``,
so rows are never copied into objects (the cheapest field resolution Strawberry has; see
DESIGN §9). ``schema.graphql`` at the repository root is :func:`sdl`, written by
``teamboard graphql-schema``; a test fails when it is not current.
"""

from __future__ import annotations

import functools
import operator
from datetime import datetime

import strawberry
from strawberry.schema.config import StrawberryConfig

from teamboard.graphql.mutations import Mutation
from teamboard.graphql.objects import Query
from teamboard.graphql.types import BIG_INT, BigInt, DateTime


@functools.cache
def build_schema() -> strawberry.Schema:
    """The schema (immutable, built once per process)."""
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        config=StrawberryConfig(default_resolver=operator.getitem),
        scalar_overrides={datetime: DateTime, BigInt: BIG_INT},
    )


def sdl() -> str:
    """The schema in SDL, as committed in ``schema.graphql``."""
    return build_schema().as_str() + "\n"
