"""Running a prepared operation: the compiled path when it knows the shape, else Strawberry.

Strawberry's resolvers run on graphql-core's executor, given the already parsed and
validated document (nothing is parsed or validated twice). The executor counts the fields
it resolves (``X-GraphQL-Resolved-Fields`` with the debug headers): the abuse tests prove
with it that a refused operation ran no resolver, and the benchmark divides the engine's
time by it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from inspect import isawaitable
from typing import Any, TypeGuard, cast

import strawberry
from graphql import ExecutionResult, GraphQLSchema, execute
from strawberry.execution import optimized_is_awaitable
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from teamboard.config import Settings
from teamboard.graphql import compiled
from teamboard.graphql.context import RequestScope
from teamboard.graphql.document import Documents, Prepared
from teamboard.graphql.errors import format_error
from teamboard.graphql.limits import Limits
from teamboard.graphql.schema import build_schema

#: Strawberry's faster check (a plain predicate, which graphql-core types as a TypeGuard).
_IS_AWAITABLE = cast("Callable[[Any], TypeGuard[Awaitable[Any]]]", optimized_is_awaitable)


class CountingExecutor(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's executor, counting the fields it resolves in the request's scope."""

    def execute_field(self, *args: Any, **kwargs: Any) -> Any:
        self.context_value.counters.resolved_fields += 1
        return super().execute_field(*args, **kwargs)


@dataclass
class Engine:
    """The schema, the document cache and the limits of one application."""

    schema: strawberry.Schema
    documents: Documents
    settings: Settings
    plans: compiled.Plans = field(default_factory=compiled.Plans)

    @classmethod
    def build(cls, settings: Settings) -> Engine:
        schema = build_schema()
        limits = Limits(
            max_depth=settings.graphql_max_depth,
            max_aliases=settings.graphql_max_aliases,
            max_cost=settings.graphql_max_cost,
        )
        documents = Documents(
            schema._schema,
            limits,
            max_tokens=settings.graphql_max_tokens,
            production=settings.is_production,
        )
        return cls(schema, documents, settings)

    @property
    def graphql_schema(self) -> GraphQLSchema:
        return self.schema._schema

    async def run(self, prepared: Prepared, scope: RequestScope) -> dict[str, Any]:
        """The operation's response: ``data``, and ``errors`` when a field failed."""
        try:
            return await self._run(prepared, scope)
        finally:
            await scope.settle()

    async def _run(self, prepared: Prepared, scope: RequestScope) -> dict[str, Any]:
        if self.settings.graphql_compiled and not prepared.mutation:
            data = await compiled.run(self.schema, self.plans, prepared, scope)
            if data is not None:
                scope.executor = "compiled"
                return {"data": data}
        scope.executor = "engine"
        result = execute(
            self.graphql_schema,
            prepared.document,
            context_value=scope,
            variable_values=prepared.raw_variables,
            operation_name=prepared.operation.name.value if prepared.operation.name else None,
            executor_class=CountingExecutor,
            is_awaitable=_IS_AWAITABLE,
            operation_extensions=None,
        )
        if isawaitable(result):
            result = await result
        assert isinstance(result, ExecutionResult)
        response: dict[str, Any] = {"data": result.data}
        if result.errors:
            response["errors"] = [format_error(error) for error in result.errors]
        return response
