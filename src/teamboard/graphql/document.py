"""From request text to an operation ready to run, refusing what must not run.

In order, before anything touches the database or a resolver: the token and size limits
while parsing, the GraphQL validation rules (with introspection refused and field
suggestions left out of messages in production), the operation's depth and aliases, its
variables, and its cost with those variables. Parsing, validation and the shape checks
depend only on the text, so their outcome is cached per text (bounded); the cost is
computed per request.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    parse,
    validate,
)
from graphql.execution.values import VariableValues, get_variable_values
from graphql.validation import specified_rules
from graphql.validation.rules.custom.no_schema_introspection import (
    NoSchemaIntrospectionCustomRule,
)

from teamboard.graphql import limits
from teamboard.graphql.limits import LimitExceeded, Limits

MAX_SOURCE_LENGTH = 100_000
CACHE_SIZE = 512


class RequestError(Exception):
    """An operation refused before execution: HTTP 400 with GraphQL errors."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["message"] if errors else "bad request")
        self.errors = errors


def request_error(code: str, message: str, **extensions: Any) -> RequestError:
    return RequestError([{"message": message, "extensions": {"code": code, **extensions}}])


def _graphql_errors(errors: list[GraphQLError], code: str) -> RequestError:
    formatted = []
    for error in errors:
        entry: dict[str, Any] = dict(error.formatted)
        entry["extensions"] = {"code": code}
        formatted.append(entry)
    return RequestError(formatted)


@dataclass(frozen=True)
class Prepared:
    """A valid operation, its fragments, and its variables once coerced."""

    document: DocumentNode
    operation: OperationDefinitionNode
    fragments: dict[str, FragmentDefinitionNode]
    variables: VariableValues | None = None
    raw_variables: dict[str, Any] = field(default_factory=dict)
    cost: int = 0

    @property
    def mutation(self) -> bool:
        return self.operation.operation is OperationType.MUTATION


class Documents:
    """Prepares operations for one schema and one set of limits."""

    def __init__(
        self, schema: GraphQLSchema, limits: Limits, *, max_tokens: int, production: bool
    ) -> None:
        self._schema = schema
        self._limits = limits
        self._max_tokens = max_tokens
        self._production = production
        self._rules = (
            (*specified_rules, NoSchemaIntrospectionCustomRule) if production else specified_rules
        )
        self._cache: OrderedDict[tuple[str, str | None], Prepared | RequestError] = OrderedDict()

    def prepare(
        self, query: str, operation_name: str | None, variables: dict[str, Any] | None
    ) -> Prepared:
        """The operation to run (raises :class:`RequestError`)."""
        shaped = self._shaped(query, operation_name)
        coerced = get_variable_values(
            self._schema,
            shaped.operation.variable_definitions or (),
            variables or {},
            max_errors=10,
            hide_suggestions=self._production,
        )
        if isinstance(coerced, list):
            raise _graphql_errors(coerced, "invalid_variables")
        try:
            total = limits.cost(
                self._schema, shaped.operation, shaped.fragments, coerced, self._limits
            )
        except LimitExceeded as exc:
            raise request_error(exc.code, exc.message, **exc.extensions) from None
        return replace(shaped, variables=coerced, raw_variables=variables or {}, cost=total)

    def _shaped(self, query: str, operation_name: str | None) -> Prepared:
        key = (query, operation_name)
        cached = self._cache.get(key)
        if cached is None:
            try:
                cached = self._check(query, operation_name)
            except RequestError as exc:
                cached = exc
            self._cache[key] = cached
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        if isinstance(cached, RequestError):
            raise cached
        return cached

    def _check(self, query: str, operation_name: str | None) -> Prepared:
        try:
            document = parse(
                query, max_tokens=self._max_tokens, max_source_length=MAX_SOURCE_LENGTH
            )
        except GraphQLError as error:
            code = "too_many_tokens" if "more than" in error.message else "graphql_parse_failed"
            raise _graphql_errors([error], code) from None
        errors = validate(
            self._schema, document, self._rules, max_errors=20, hide_suggestions=self._production
        )
        if errors:
            raise _graphql_errors(errors, _validation_code(errors))
        operation = _operation(document, operation_name)
        fragments = {
            definition.name.value: definition
            for definition in document.definitions
            if isinstance(definition, FragmentDefinitionNode)
        }
        try:
            limits.check_shape(self._schema, operation, fragments, self._limits)
        except LimitExceeded as exc:
            raise request_error(exc.code, exc.message, **exc.extensions) from None
        return Prepared(document, operation, fragments)


def _validation_code(errors: list[GraphQLError]) -> str:
    if any("introspection has been disabled" in error.message for error in errors):
        return "introspection_disabled"
    return "graphql_validation_failed"


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        if len(operations) != 1:
            raise request_error(
                "operation_name_required",
                "The document has several operations: give operationName",
            )
        return operations[0]
    for operation in operations:
        if operation.name is not None and operation.name.value == name:
            return operation
    raise request_error("unknown_operation", f"The document has no operation named {name!r}")
