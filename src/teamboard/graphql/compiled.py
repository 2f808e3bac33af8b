"""The compiled path: queries answered without the GraphQL engine's per-field machinery.

Strawberry on graphql-core spends about 6 µs on every field it resolves (DESIGN §9): a
dashboard of 15 projects × 10 tasks with their assignees, labels and comments resolves
thousands of fields and costs tens of milliseconds of engine time for a millisecond of SQL.
This path executes the same validated operation level by level instead:

* each selection set is compiled once per request into a plan (fields collected as the
  specification says: fragments expanded, ``@skip``/``@include`` applied, aliases kept,
  response keys in order);
* a plan is applied to all the objects of a level at once: a leaf is one dict read and the
  scalar's own ``serialize`` (the function graphql-core would call), an embedded object
  or list recurses over all its values together;
* a field with a resolver calls **the same resolver** with the same arguments for every
  object of the level, and gathers the awaitables they return: the resolvers of hot fields
  are plain functions that hand back a DataLoader future, so a level is one batch, one SQL
  statement, exactly as with the engine (the same loaders, the same SQL, the same RLS).

What it does not handle, it hands back to the engine, which then answers (for the parts
already loaded, from the same DataLoaders' caches): mutations, an argument that is an input
object, a null where the schema forbids one, and any error (the engine reports errors with
their paths). The answer is byte for byte the engine's (tests compare both).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from inspect import isawaitable
from typing import Any, cast

import strawberry
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLIncludeDirective,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSkipDirective,
    InlineFragmentNode,
    SelectionSetNode,
    get_named_type,
)
from graphql.execution.values import VariableValues, get_argument_values
from strawberry.types.field import StrawberryField

from teamboard.graphql.context import RequestScope
from teamboard.graphql.document import Prepared

_BACKREF = "strawberry-definition"


class Fallback(Exception):
    """The engine must answer this operation."""


@dataclass
class ResolverInfo:
    """What the resolvers read from Strawberry's ``Info``: the request scope."""

    context: RequestScope


@dataclass
class FieldPlan:
    key: str
    name: str  # the row key (Python name); "" for __typename
    non_null: bool = False
    listed: bool = False
    item_non_null: bool = False
    serialize: Callable[[Any], Any] | None = None  # leaves
    child: ObjectPlan | None = None  # objects
    call: Callable[[Any], Any] | None = None  # fields with a resolver
    typename: str | None = None


@dataclass
class ObjectPlan:
    keys: tuple[str, ...]
    fields: list[FieldPlan] = field(default_factory=list)


class Planner:
    """Compiles the selection sets of one operation with its variables."""

    def __init__(self, schema: strawberry.Schema, prepared: Prepared, scope: RequestScope) -> None:
        self._fragments: dict[str, FragmentDefinitionNode] = prepared.fragments
        assert prepared.variables is not None
        self._variables: VariableValues = prepared.variables
        self._info = ResolverInfo(scope)
        self._names = schema.config.name_converter

    def _included(self, node: FieldNode | FragmentSpreadNode | InlineFragmentNode) -> bool:
        for directive in node.directives or ():
            name = directive.name.value
            if name == "skip":
                if get_argument_values(GraphQLSkipDirective, directive, self._variables)["if"]:
                    return False
            elif name == "include":
                values = get_argument_values(GraphQLIncludeDirective, directive, self._variables)
                if not values["if"]:
                    return False
        return True

    def _collect(
        self,
        selection_set: SelectionSetNode,
        into: dict[str, list[FieldNode]],
        visited: set[str],
    ) -> None:
        for selection in selection_set.selections:
            if not self._included(selection):  # type: ignore[arg-type]
                continue
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                into.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                self._collect(selection.selection_set, into, visited)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name not in visited:
                    visited.add(name)
                    self._collect(self._fragments[name].selection_set, into, visited)

    def plan(
        self, selection_sets: Iterable[SelectionSetNode], parent: GraphQLObjectType
    ) -> ObjectPlan:
        collected: dict[str, list[FieldNode]] = {}
        visited: set[str] = set()
        for selection_set in selection_sets:
            self._collect(selection_set, collected, visited)
        plan = ObjectPlan(tuple(collected))
        for key, nodes in collected.items():
            plan.fields.append(self._field(key, nodes, parent))
        return plan

    def _field(self, key: str, nodes: list[FieldNode], parent: GraphQLObjectType) -> FieldPlan:
        name = nodes[0].name.value
        if name == "__typename":
            return FieldPlan(key, "", typename=parent.name)
        if name.startswith("__"):
            raise Fallback(name)  # introspection
        definition = parent.fields[name]
        strawberry_field = definition.extensions[_BACKREF]
        assert isinstance(strawberry_field, StrawberryField)
        kind = definition.type
        plan = FieldPlan(key, strawberry_field.python_name)
        if isinstance(kind, GraphQLNonNull):
            plan.non_null, kind = True, kind.of_type
        if isinstance(kind, GraphQLList):
            plan.listed, kind = True, kind.of_type
            if isinstance(kind, GraphQLNonNull):
                plan.item_non_null, kind = True, kind.of_type
            if isinstance(kind, GraphQLList):
                raise Fallback("nested lists")
        named = get_named_type(kind)
        if isinstance(named, GraphQLObjectType):
            plan.child = self.plan(
                [node.selection_set for node in nodes if node.selection_set], named
            )
        else:
            plan.serialize = named.serialize
        if strawberry_field.base_resolver is not None:
            plan.call = self._caller(strawberry_field, definition, nodes[0])
        return plan

    def _caller(
        self, strawberry_field: StrawberryField, definition: Any, node: FieldNode
    ) -> Callable[[Any], Any]:
        """``source -> resolver(...)``, called as Strawberry calls it."""
        resolver = strawberry_field.base_resolver
        assert resolver is not None
        values = get_argument_values(definition, node, self._variables)
        kwargs: dict[str, Any] = {}
        for argument in strawberry_field.arguments:
            value = values.get(self._names.get_graphql_name(argument))
            if isinstance(value, dict):
                raise Fallback("input object argument")  # converted by Strawberry only
            kwargs[argument.python_name] = value
        if resolver.info_parameter is not None:
            kwargs[resolver.info_parameter.name] = self._info
        function = cast("Callable[..., Any]", resolver.wrapped_func)  # plain functions here
        root = resolver.root_parameter
        if root is None:
            return lambda _source: function(**kwargs)
        root_name = root.name
        return lambda source: function(**{root_name: source}, **kwargs)


async def _resolve(plan: FieldPlan, sources: list[Any]) -> list[Any]:
    assert plan.call is not None
    values: list[Any] = []
    pending: list[tuple[int, Any]] = []
    for source in sources:
        value = plan.call(source)
        if isawaitable(value):
            pending.append((len(values), value))
        values.append(value)
    if pending:
        results = await asyncio.gather(*(awaitable for _, awaitable in pending))
        for (index, _), result in zip(pending, results, strict=True):
            values[index] = result
    return values


class Executor:
    def __init__(self, scope: RequestScope) -> None:
        self._scope = scope

    async def complete(self, plan: ObjectPlan, sources: list[Any]) -> list[dict[str, Any]]:
        """``plan`` applied to every source (none of them null)."""
        outputs = [dict.fromkeys(plan.keys) for _ in sources]
        self._scope.counters.resolved_fields += len(plan.fields) * len(sources)
        for step in plan.fields:
            key = step.key
            if step.typename is not None:
                for output in outputs:
                    output[key] = step.typename
                continue
            if step.call is not None:
                values = await _resolve(step, sources)
            else:
                name = step.name
                values = [source[name] for source in sources]
            if step.child is None:
                self._leaves(step, values, outputs)
            else:
                await self._objects(step, values, outputs)
        return outputs

    def _leaves(self, step: FieldPlan, values: list[Any], outputs: list[dict[str, Any]]) -> None:
        serialize, key = step.serialize, step.key
        assert serialize is not None
        for output, value in zip(outputs, values, strict=True):
            if value is None:
                if step.non_null:
                    raise Fallback(key)
                output[key] = None
            elif step.listed:
                items = [None if item is None else serialize(item) for item in value]
                if step.item_non_null and None in items:
                    raise Fallback(key)
                output[key] = items
            else:
                output[key] = serialize(value)

    async def _objects(
        self, step: FieldPlan, values: list[Any], outputs: list[dict[str, Any]]
    ) -> None:
        assert step.child is not None
        key = step.key
        flat: list[Any] = []
        for value in values:
            if value is None:
                if step.non_null:
                    raise Fallback(key)
            elif step.listed:
                for item in value:
                    if item is None:
                        raise Fallback(key)  # no list of this schema holds nulls
                    flat.append(item)
            else:
                flat.append(value)
        done = iter(await self.complete(step.child, flat))
        for output, value in zip(outputs, values, strict=True):
            if value is None:
                output[key] = None
            elif step.listed:
                output[key] = [next(done) for _ in value]
            else:
                output[key] = next(done)


async def run(schema: strawberry.Schema, prepared: Prepared, scope: RequestScope) -> Any:
    """The operation's ``data``, or None when the engine must answer (see the module
    docstring)."""
    root = schema._schema.query_type
    if prepared.mutation or root is None:
        return None
    try:
        plan = Planner(schema, prepared, scope).plan([prepared.operation.selection_set], root)
        (data,) = await Executor(scope).complete(plan, [None])
    except Exception:  # Fallback, or an error: the engine answers, with it in place
        return None
    return data
