"""Static limits of a GraphQL operation, all checked before any resolver runs.

The operation is walked with its fragments expanded where they are spread (so a limit
cannot be dodged by moving fields into fragments, whatever the fragments are called:
only the introspection *fields* ``__schema``/``__type`` are told apart, never a fragment
by its name). Each fragment is measured once and reused, so spreading fragments into each
other cannot blow the walk up (introspection selections included).

* **Depth**: fields nested in each other, leaves included. The plumbing of connections
  (``edges``, ``node``, ``nodes``, ``pageInfo``, ``cursor``: the fields of ``*Connection``
  and ``*Edge`` types) adds no depth, so ``team { projects { edges { node { name } } } }``
  is 3 deep, like the data it reaches.
* **Aliases**: every aliased field, counted each time its fragment is spread.
* **Cost**: a field costs 1; a relation (a field returning an object) 5 plus what it
  selects; a connection 5 plus ``first``/``last`` times what one item selects (without
  either it is priced at the largest page, 200: unpaginated lists are penalised, and the
  error says how to paginate); a plain list of objects (assignees, labels, mentions:
  short lists embedded in their parent) 5 plus 10 times what one item selects. A field
  heavier than that declares its own cost where it is defined (``resolved(..., cost=)``,
  read here from the field's metadata), which takes the place of the 1 or the 5: an
  analytics dashboard costs what its REST route spends, and so does a mutation (a REST
  write's units: ``types.MUTATION_COST``). Introspection fields cost 1 each (static data;
  production refuses them anyway), and their aliases count like any other.

A request spends its cost from the same rate-limit budgets as REST, at
``GRAPHQL_COST_PER_RATE_UNIT`` cost per unit (see ``teamboard.graphql.endpoint``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLList,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
    get_nullable_type,
    type_from_ast,
)
from graphql.execution.values import VariableValues, get_argument_values
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField

from teamboard.errors import BadRequest
from teamboard.graphql.pagination import PageArgs
from teamboard.kit.pagination import MAX_LIMIT

FIELD_COST = 1
RELATION_COST = 5
LIST_FACTOR = 10
UNPAGINATED_FACTOR = MAX_LIMIT
#: Introspection is static data; its queries nest deeply (``ofType`` chains).
INTROSPECTION_DEPTH = 15
INTROSPECTION = frozenset({"__schema", "__type"})
#: The metadata key of a field's declared cost (see :func:`own_cost`).
COST = "teamboard.cost"


class LimitExceeded(Exception):
    """An operation refused before execution (``code`` is the error's extensions code)."""

    def __init__(self, code: str, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.extensions = code, message, extensions


def is_plumbing(parent: GraphQLNamedType) -> bool:
    """Fields of connection and edge types (``edges``, ``nodes``, ``node``, ``pageInfo``,
    ``cursor``) only wrap what a connection returns."""
    return parent.name.endswith(("Connection", "Edge"))


def own_cost(definition: GraphQLField, default: int) -> int:
    """The cost the field declares for itself (its Strawberry field's metadata), else
    ``default``; what it selects is added to either."""
    field = definition.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
    if isinstance(field, StrawberryField):
        return int(field.metadata.get(COST, default))
    return default


def fields_of(
    selection_set: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode]
) -> Iterator[FieldNode | FragmentSpreadNode]:
    """The fields of a selection set with inline fragments flattened; spreads are returned
    as they are (their measure is memoized by the caller)."""
    for selection in selection_set.selections:
        if isinstance(selection, InlineFragmentNode):
            yield from fields_of(selection.selection_set, fragments)
        elif isinstance(selection, FieldNode | FragmentSpreadNode):
            yield selection


@dataclass(frozen=True)
class Measure:
    depth: int = 0
    aliases: int = 0
    cost: int = 0

    def beside(self, other: Measure) -> Measure:
        """Two selections of the same selection set."""
        return Measure(
            max(self.depth, other.depth), self.aliases + other.aliases, self.cost + other.cost
        )


class Walk:
    """Measures one operation of a document that passed validation."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: dict[str, FragmentDefinitionNode],
        variables: VariableValues | None,
    ) -> None:
        self._schema = schema
        self._fragments = fragments
        self._variables = variables  # None: a static walk (depth and aliases only)
        self._memo: dict[tuple[str, int], Measure] = {}
        self._introspection_memo: dict[str, tuple[int, int]] = {}
        self._walking: set[str] = set()
        self.introspection_depth = 0

    def operation(self, operation: OperationDefinitionNode) -> Measure:
        root = self._schema.get_root_type(operation.operation)
        assert root is not None  # validation checked the operation type
        return self.selections(operation.selection_set, root, 1)

    def selections(
        self, selection_set: SelectionSetNode, parent: GraphQLObjectType, items: int
    ) -> Measure:
        """``items``: how many times the items of a connection (``edges``/``nodes``) are
        there, when ``parent`` is that connection."""
        total = Measure()
        for node in fields_of(selection_set, self._fragments):
            if isinstance(node, FragmentSpreadNode):
                total = total.beside(self._spread(node.name.value, items))
            else:
                total = total.beside(self._field(node, parent, items))
        return total

    def _spread(self, name: str, items: int) -> Measure:
        fragment = self._fragments.get(name)
        if fragment is None or name in self._walking:  # validation refuses both
            return Measure()
        key = (name, items)
        if key not in self._memo:
            condition = type_from_ast(self._schema, fragment.type_condition)
            if not isinstance(condition, GraphQLObjectType):
                return Measure()
            self._walking.add(name)
            try:
                self._memo[key] = self.selections(fragment.selection_set, condition, items)
            finally:
                self._walking.discard(name)
        return self._memo[key]

    def _field(self, node: FieldNode, parent: GraphQLObjectType, items: int) -> Measure:
        alias = 1 if node.alias is not None else 0
        name = node.name.value
        definition = parent.fields.get(name)
        if name in INTROSPECTION or name.startswith("__") or definition is None:
            if name in INTROSPECTION and node.selection_set is not None:
                depth, inner = self._introspection(node.selection_set)
                self.introspection_depth = max(self.introspection_depth, depth)
                alias += inner
            return Measure(1, alias, FIELD_COST)
        returned = get_named_type(definition.type)
        child = Measure()
        if node.selection_set is not None and isinstance(returned, GraphQLObjectType):
            child = self.selections(node.selection_set, returned, self._items(node, definition))
        depth = child.depth + (0 if is_plumbing(parent) else 1)
        return Measure(depth, child.aliases + alias, self._cost(definition, parent, child, items))

    def _items(self, node: FieldNode, definition: GraphQLField) -> int:
        """How many items a connection field returns at most (for its ``edges``/``nodes``)."""
        if not get_named_type(definition.type).name.endswith("Connection"):
            return 1
        if self._variables is None:
            return 1
        arguments = get_argument_values(definition, node, self._variables)
        page = PageArgs(arguments.get("first"), None, arguments.get("last"), None)
        if page.first is None and page.last is None:
            return UNPAGINATED_FACTOR
        try:
            return page.size
        except BadRequest as exc:  # an invalid first/last: refused with its message
            raise LimitExceeded(exc.code, exc.detail) from None

    def _cost(
        self, definition: GraphQLField, parent: GraphQLObjectType, child: Measure, items: int
    ) -> int:
        returned = get_named_type(definition.type)
        listed = isinstance(get_nullable_type(definition.type), GraphQLList)
        if is_plumbing(parent):  # edges/nodes: the items; node/pageInfo: what they select
            if not isinstance(returned, GraphQLObjectType):
                return FIELD_COST
            return items * child.cost if listed else child.cost
        if not isinstance(returned, GraphQLObjectType):
            return own_cost(definition, FIELD_COST)
        base = own_cost(definition, RELATION_COST)
        if returned.name.endswith("Connection"):
            return base + child.cost  # its edges/nodes multiply the items
        return base + (LIST_FACTOR if listed else 1) * child.cost

    def _introspection(self, selection_set: SelectionSetNode) -> tuple[int, int]:
        """Depth and aliases of what an introspection field selects (walked by shape: its
        types are not the schema's)."""
        deepest = aliases = 0
        for node in fields_of(selection_set, self._fragments):
            if isinstance(node, FragmentSpreadNode):
                depth, inner = self._fragment_introspection(node.name.value)
            else:
                depth, inner = 1, 1 if node.alias is not None else 0
                if node.selection_set is not None:
                    below, more = self._introspection(node.selection_set)
                    depth, inner = depth + below, inner + more
            deepest, aliases = max(deepest, depth), aliases + inner
        return deepest, aliases

    def _fragment_introspection(self, name: str) -> tuple[int, int]:
        """:meth:`_introspection` of a fragment, measured once (a chain of fragments that
        each spread the next twice would otherwise cost 2^n walks)."""
        fragment = self._fragments.get(name)
        if fragment is None or name in self._walking:  # validation refuses both
            return 0, 0
        if name not in self._introspection_memo:
            self._walking.add(name)
            try:
                self._introspection_memo[name] = self._introspection(fragment.selection_set)
            finally:
                self._walking.discard(name)
        return self._introspection_memo[name]


@dataclass(frozen=True)
class Limits:
    max_depth: int
    max_aliases: int
    max_cost: int


def check_shape(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: dict[str, FragmentDefinitionNode],
    limits: Limits,
) -> None:
    """Depth and aliases (they do not depend on variables)."""
    walk = Walk(schema, fragments, None)
    measure = walk.operation(operation)
    if measure.depth > limits.max_depth or walk.introspection_depth > INTROSPECTION_DEPTH:
        raise LimitExceeded(
            "query_too_deep",
            f"The query is nested {max(measure.depth, walk.introspection_depth)} levels deep;"
            f" at most {limits.max_depth} are allowed",
            depth=measure.depth,
            limit=limits.max_depth,
        )
    if measure.aliases > limits.max_aliases:
        raise LimitExceeded(
            "too_many_aliases",
            f"The query uses {measure.aliases} aliases; at most {limits.max_aliases} are allowed",
            aliases=measure.aliases,
            limit=limits.max_aliases,
        )


def cost(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: dict[str, FragmentDefinitionNode],
    variables: VariableValues,
    limits: Limits,
) -> int:
    """The operation's cost with its variables; refused above the limit."""
    total = Walk(schema, fragments, variables).operation(operation).cost
    if total > limits.max_cost:
        raise LimitExceeded(
            "query_too_costly",
            f"The query costs {total}, more than the limit of {limits.max_cost}. Ask for"
            " fewer items: give every list first or last (a list without them is priced at"
            f" {MAX_LIMIT} items) and page through the rest with after/before, or nest fewer"
            " lists.",
            cost=total,
            limit=limits.max_cost,
        )
    return total
