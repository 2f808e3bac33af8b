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
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import strawberry
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLField,
    GraphQLIncludeDirective,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSkipDirective,
    GraphQLString,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
)
from graphql.execution.values import VariableValues, get_argument_values
from strawberry.execution import optimized_is_awaitable
from strawberry.schema.name_converter import NameConverter
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
    resolver: tuple[StrawberryField, GraphQLField, FieldNode] | None = None
    typename: str | None = None

    @property
    def pure(self) -> bool:
        """No resolver below: the value is all in the row (an embedded object or a leaf)."""
        return self.resolver is None and (self.child is None or self.child.pure)

    @property
    def inline(self) -> bool:
        """Built by the plan's generated function (see :func:`_generate`)."""
        return self.pure and not (self.child is None and self.listed)


@dataclass
class ObjectPlan:
    keys: tuple[str, ...]
    fields: list[FieldPlan] = field(default_factory=list)
    build: Callable[[Any], dict[str, Any]] = dict
    deferred: list[FieldPlan] = field(default_factory=list)

    @property
    def pure(self) -> bool:
        return all(step.pure for step in self.fields)


def _missing(key: str) -> None:
    raise Fallback(key)  # a null the schema forbids: the engine reports it


def _generate(plan: ObjectPlan) -> Callable[[Any], dict[str, Any]]:
    """``source -> output`` for one object of ``plan``: the inline fields filled (read,
    serialized, embedded objects built by their own generated function), the deferred ones
    left None for the executor, every key in response order.

    Generated Python source: one dict display per object instead of a loop over its fields
    (the engine's per-field cost is what this path removes). Only ``repr`` of strings
    (response keys, row keys, type names) enters the source; functions are passed in.
    """
    env: dict[str, Any] = {"missing": _missing}
    entries = []
    for i, step in enumerate(plan.fields):
        key, name = repr(step.key), repr(step.name)
        if step.typename is not None:
            entries.append(f"{key}: {step.typename!r}")
            continue
        if not step.inline:
            entries.append(f"{key}: None")
            continue
        if step.child is None:
            env[f"f{i}"] = step.serialize
            value = f"f{i}(v)"
        else:
            env[f"f{i}"] = step.child.build
            value = f"[f{i}(x) for x in v]" if step.listed else f"f{i}(v)"
        null = f"missing({key})" if step.non_null else "None"
        entries.append(f"{key}: ({value} if (v := source[{name}]) is not None else {null})")
    code = "def build(source):\n    return {" + ", ".join(entries) + "}\n"
    exec(code, env)  # noqa: S102 - see the docstring: no input reaches the source unquoted
    build: Callable[[Any], dict[str, Any]] = env["build"]
    return build


class Planner:
    """Compiles the selection sets of one operation. A plan depends on the variables only
    through ``@skip``/``@include``: ``variable`` says whether it met one."""

    def __init__(self, prepared: Prepared) -> None:
        self._fragments: dict[str, FragmentDefinitionNode] = prepared.fragments
        assert prepared.variables is not None
        self._variables: VariableValues = prepared.variables
        self.variable = False

    def _included(self, node: FieldNode | FragmentSpreadNode | InlineFragmentNode) -> bool:
        for directive in node.directives or ():
            name = directive.name.value
            if name == "skip":
                self.variable = True
                if get_argument_values(GraphQLSkipDirective, directive, self._variables)["if"]:
                    return False
            elif name == "include":
                self.variable = True
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
        plan.build = _generate(plan)
        plan.deferred = [step for step in plan.fields if step.typename is None and not step.inline]
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
            plan.serialize = _serializer(named)
        if strawberry_field.base_resolver is not None:
            plan.resolver = (strawberry_field, definition, nodes[0])
        return plan


class Plans:
    """The plans of the operations run lately (those without ``@skip``/``@include``, whose
    plan is the same for any variables), by operation node: the document cache keeps a
    text's nodes, so a repeated query is planned once."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._plans: OrderedDict[int, tuple[OperationDefinitionNode, ObjectPlan]] = OrderedDict()

    def plan(self, prepared: Prepared, root: GraphQLObjectType) -> ObjectPlan:
        key = id(prepared.operation)
        cached = self._plans.get(key)
        if cached is not None and cached[0] is prepared.operation:
            self._plans.move_to_end(key)
            return cached[1]
        planner = Planner(prepared)
        plan = planner.plan([prepared.operation.selection_set], root)
        if not planner.variable:
            self._plans[key] = (prepared.operation, plan)
            if len(self._plans) > self._size:
                self._plans.popitem(last=False)
        return plan


def caller(
    step: FieldPlan, variables: VariableValues, info: ResolverInfo, names: NameConverter
) -> Callable[[Any], Any]:
    """``source -> resolver(...)`` for this request, called as Strawberry calls it."""
    assert step.resolver is not None
    strawberry_field, definition, node = step.resolver
    resolver = strawberry_field.base_resolver
    assert resolver is not None
    values = get_argument_values(definition, node, variables)
    kwargs: dict[str, Any] = {}
    for argument in strawberry_field.arguments:
        value = values.get(names.get_graphql_name(argument))
        if isinstance(value, dict):
            raise Fallback("input object argument")  # converted by Strawberry only
        kwargs[argument.python_name] = value
    if resolver.info_parameter is not None:
        kwargs[resolver.info_parameter.name] = info
    function = cast("Callable[..., Any]", resolver.wrapped_func)  # plain functions here
    root = resolver.root_parameter
    if root is None:
        return lambda _source: function(**kwargs)
    root_name = root.name
    return lambda source: function(**{root_name: source}, **kwargs)


_INT_RANGE = range(-(2**31), 2**31)


def _serializer(scalar: GraphQLScalarType | GraphQLEnumType) -> Callable[[Any], Any]:
    """The scalar's ``serialize``, with the same answer given at once for the values that
    it returns unchanged (strings, booleans, 32-bit integers)."""
    serialize = scalar.serialize
    if scalar is GraphQLString:
        return lambda value: value if value.__class__ is str else serialize(value)
    if scalar is GraphQLBoolean:
        return lambda value: value if value.__class__ is bool else serialize(value)
    if scalar is GraphQLInt:
        return lambda value: (
            value if value.__class__ is int and value in _INT_RANGE else serialize(value)
        )
    return serialize


async def _resolve(
    call: Callable[[Any], Any], sources: list[Any], scope: RequestScope
) -> list[Any]:
    """The resolver's value for every source. All are called before any is awaited, so
    that their DataLoader keys form one batch; coroutines are started as tasks (they run
    concurrently, as under the engine), futures are awaited in turn (once the batch is in,
    each one is already done)."""
    values: list[Any] = []
    pending: list[int] = []
    for source in sources:
        value = call(source)
        if optimized_is_awaitable(value):
            if asyncio.iscoroutine(value):
                value = scope.start(value)
            pending.append(len(values))
        values.append(value)
    for index in pending:
        values[index] = await values[index]
    return values


class Executor:
    """Applies a plan level by level for one request."""

    def __init__(self, schema: strawberry.Schema, prepared: Prepared, scope: RequestScope) -> None:
        assert prepared.variables is not None
        self._variables = prepared.variables
        self._info = ResolverInfo(scope)
        self._names = schema.config.name_converter
        self._scope = scope
        self._counters = scope.counters
        self._callers: dict[int, Callable[[Any], Any]] = {}

    def _caller(self, step: FieldPlan) -> Callable[[Any], Any]:
        call = self._callers.get(id(step))
        if call is None:
            call = self._callers[id(step)] = caller(step, self._variables, self._info, self._names)
        return call

    async def complete(self, plan: ObjectPlan, sources: list[Any]) -> list[dict[str, Any]]:
        """``plan`` applied to every source (none of them null). Counted: the fields of the
        objects completed here, not of those built inline below them."""
        build = plan.build
        outputs = [build(source) for source in sources]
        self._counters.resolved_fields += len(plan.fields) * len(sources)
        for step in plan.deferred:
            if step.resolver is not None:
                values = await _resolve(self._caller(step), sources, self._scope)
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


async def run(
    schema: strawberry.Schema, plans: Plans, prepared: Prepared, scope: RequestScope
) -> Any:
    """The operation's ``data``, or None when the engine must answer (see the module
    docstring)."""
    root = schema._schema.query_type
    if prepared.mutation or root is None:
        return None
    try:
        plan = plans.plan(prepared, root)
        (data,) = await Executor(schema, prepared, scope).complete(plan, [None])
    except Exception:  # Fallback, or an error: the engine answers, with it in place
        return None
    return data
