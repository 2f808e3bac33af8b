"""Relay connections over the REST lists' signed keyset cursors.

A connection's cursors are :class:`~teamboard.kit.pagination.CursorCodec` cursors with the
same scope, filter binding and key columns as the REST list of the same rows, so a REST
``next_cursor`` is a valid ``after`` here and an edge's cursor is a valid REST ``cursor``
(it names a row: REST continues after it). ``first``/``after`` page forward, ``last``/
``before`` backward (the keyset order reversed in SQL, the rows put back in order); both
bounds may be given. Only the paging direction's neighbour is reported: with ``first``,
``hasPreviousPage`` is false, with ``last``, ``hasNextPage`` is (Relay allows it when the
other side cannot be known cheaply).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from teamboard.errors import BadRequest
from teamboard.kit.keyset import typed_key
from teamboard.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, CursorCodec

Row = dict[str, Any]


def invalid_pagination(detail: str) -> BadRequest:
    return BadRequest(detail, code="invalid_pagination")


@dataclass(frozen=True)
class PageArgs:
    """``first``/``after``/``last``/``before`` as given (hashable: a DataLoader key part)."""

    first: int | None = None
    after: str | None = None
    last: int | None = None
    before: str | None = None

    @property
    def backward(self) -> bool:
        return self.last is not None

    @property
    def size(self) -> int:
        """Rows wanted: ``first`` or ``last`` (1 to 200), 50 when neither is given."""
        if self.first is not None and self.last is not None:
            raise invalid_pagination("Give first or last, not both")
        size = self.first if self.first is not None else self.last
        if size is None:
            return DEFAULT_LIMIT
        if not 1 <= size <= MAX_LIMIT:
            raise invalid_pagination(f"first and last must be between 1 and {MAX_LIMIT}")
        return size


@dataclass(frozen=True)
class Keyset:
    """The key a list is ordered by: the row columns a cursor carries and how to read them
    back (the same as the REST list's)."""

    columns: tuple[str, ...]
    converters: tuple[Callable[[Any], Any], ...]


@dataclass(frozen=True)
class Bounds:
    """A page request with its cursors decoded into typed keys."""

    size: int
    backward: bool
    after: tuple[Any, ...] | None
    before: tuple[Any, ...] | None


@dataclass(frozen=True)
class ListScope:
    """Where a list's cursors are valid: the codec scope string and filter binding."""

    scope: str
    binding: Mapping[str, Any]


#: Where a list's cursors are valid, worked out only when a cursor is read or made.
Where = Callable[[], ListScope]


def bounds(codec: CursorCodec, where: Where, keyset: Keyset, args: PageArgs) -> Bounds:
    """Check the arguments and decode the cursors (400 ``invalid_cursor`` when one was made
    for another list, team, sort or filter set, or was tampered with)."""
    if args.after is None and args.before is None:
        return Bounds(args.size, args.backward, None, None)
    scope = where()

    def decode(cursor: str | None) -> tuple[Any, ...] | None:
        if cursor is None:
            return None
        key = codec.decode(scope.scope, scope.binding, cursor)
        typed: tuple[Any, ...] = typed_key(key, keyset.converters)
        return typed

    return Bounds(args.size, args.backward, decode(args.after), decode(args.before))


@dataclass
class Page:
    """The rows of one page in list order, and whether more lie beyond it."""

    rows: list[Row]
    has_next: bool = False
    has_previous: bool = False

    @classmethod
    def from_fetch(cls, rows: list[Row], want: Bounds) -> Page:
        """Rows fetched ``size + 1`` at most, in fetch order (reversed when backward)."""
        more = len(rows) > want.size
        if more:
            del rows[want.size :]
        if want.backward:
            rows.reverse()
            return cls(rows, has_previous=more)
        return cls(rows, has_next=more)


class EdgeValue:
    """One edge; its cursor is signed only if a client asks for it."""

    __slots__ = ("_connection", "node")

    def __init__(self, connection: ConnectionValue, node: Row) -> None:
        self._connection = connection
        self.node = node

    def __getitem__(self, name: str) -> Any:
        if name == "node":
            return self.node
        if name == "cursor":
            return self._connection.cursor(self.node)
        raise KeyError(name)


class ConnectionValue:
    """A page as a Relay connection (``edges``, ``nodes``, ``pageInfo``), read by field name
    like every GraphQL value here (see ``teamboard.graphql.schema``)."""

    __slots__ = ("_codec", "_keyset", "_scope", "_where", "page")

    def __init__(self, codec: CursorCodec, where: Where, keyset: Keyset, page: Page) -> None:
        self._codec = codec
        self._where = where
        self._scope: ListScope | None = None
        self._keyset = keyset
        self.page = page

    def cursor(self, row: Row) -> str:
        if self._scope is None:
            self._scope = self._where()
        key = [row[column] for column in self._keyset.columns]
        return self._codec.encode(self._scope.scope, self._scope.binding, key)

    def page_info(self) -> Row:
        rows = self.page.rows
        return {
            "has_next_page": self.page.has_next,
            "has_previous_page": self.page.has_previous,
            "start_cursor": self.cursor(rows[0]) if rows else None,
            "end_cursor": self.cursor(rows[-1]) if rows else None,
        }

    def __getitem__(self, name: str) -> Any:
        if name == "edges":
            return [EdgeValue(self, row) for row in self.page.rows]
        if name == "nodes":
            return self.page.rows
        if name == "page_info":
            return self.page_info()
        raise KeyError(name)
