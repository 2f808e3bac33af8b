"""Keyset pages of many parents in one statement.

A :class:`ListQuery` describes one list (its rows, conditions and order key). One statement
fetches a page of it for every parent at once: the parents are unnested and each one's page
is a ``LATERAL`` subquery, an index range scan that starts at the cursor and stops after
``size + 1`` rows. So a level of a GraphQL query costs one statement whatever the number of
parents, and each parent's page costs what the REST list's does. Pages are fetched in the
reversed order for ``last``/``before`` and put back in order by the caller (see
``pagination.Page``).
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from teamboard.db import Tx
from teamboard.graphql.pagination import Bounds, Row
from teamboard.kit.pagination import limit_clause


@dataclass(frozen=True)
class Key:
    """One column of the order: the SQL expression, and the cursor value as the same
    expression with ``{}`` where the parameter goes (``"{}::timestamptz"``)."""

    expression: str
    parameter: str


@dataclass(frozen=True)
class Decoration:
    """Columns added to a page's rows once the page is cut: ``columns`` and ``joins`` read
    the page's rows as ``tb_page``, so they run for the rows returned, not for the rows
    scanned."""

    columns: str
    joins: str

    def apply(self, page: str, order: str = "") -> str:
        """``page`` (a statement) with the decoration's columns."""
        return (
            f"with tb_page as materialized ({page})"
            f" select tb_page.*, {self.columns} from tb_page {self.joins}{order}"
        )


@dataclass(frozen=True)
class ListQuery:
    """``select {columns} from {source} where {conditions}`` ordered by ``keys``.

    ``parents`` are the columns that name a row's parent (for example the task and project
    of a comment) with their SQL types; ``compare_first_only`` is for a unique first key
    (task numbers), which REST compares alone so that its unique index serves the range;
    ``decoration`` adds columns computed over the whole page.
    """

    columns: str
    source: str
    conditions: tuple[str, ...]
    keys: tuple[Key, ...]
    descending: bool = False
    parents: tuple[tuple[str, str], ...] = ()
    compare_first_only: bool = False
    decoration: Decoration | None = None


@functools.lru_cache(maxsize=512)
def page_sql(query: ListQuery, after: bool, before: bool, backward: bool, rows: int) -> str:
    """The statement of a page of ``rows`` rows per parent at most (see the module
    docstring, and ``limit_clause`` for why the number is in the text); cached per list
    shape."""
    descending = query.descending != backward
    direction = "desc" if descending else "asc"
    order = ", ".join(f"{key.expression} {direction}" for key in query.keys)
    compared = query.keys[:1] if query.compare_first_only else query.keys
    conditions = list(query.conditions)

    def bound(prefix: str, operator: str) -> str:
        left = ", ".join(key.expression for key in compared)
        right = ", ".join(
            key.parameter.format(f"%({prefix}{i})s") for i, key in enumerate(compared)
        )
        return f"({left}) {operator} ({right})"

    if after:
        conditions.append(bound("tb_after_", "<" if query.descending else ">"))
    if before:
        conditions.append(bound("tb_before_", ">" if query.descending else "<"))
    if not query.parents:
        return (
            f"select {query.columns} from {query.source} where {' and '.join(conditions)}"
            f" order by {order} {limit_clause(rows)}"
        )
    conditions += [f"{column} = tb_p.p{i}" for i, (column, _) in enumerate(query.parents)]
    arrays = ", ".join(f"%(tb_parent_{i})s::{kind}[]" for i, (_, kind) in enumerate(query.parents))
    names = ", ".join(f"p{i}" for i in range(len(query.parents)))
    page = (
        f"select tb_p.p0 as tb_parent, tb_r.* from unnest({arrays}) as tb_p({names})"
        f" cross join lateral (select {query.columns},"
        f" row_number() over (order by {order}) as tb_rank from {query.source}"
        f" where {' and '.join(conditions)} order by {order} {limit_clause(rows)}) tb_r"
    )
    if query.decoration is not None:
        return query.decoration.apply(page, " order by tb_page.tb_rank")
    return page + " order by tb_r.tb_rank"


def _sql(query: ListQuery, want: Bounds) -> str:
    return page_sql(
        query, want.after is not None, want.before is not None, want.backward, want.size + 1
    )


def _parameters(params: Mapping[str, Any], want: Bounds) -> dict[str, Any]:
    values = dict(params)
    for prefix, key in (("tb_after_", want.after), ("tb_before_", want.before)):
        for i, value in enumerate(key or ()):
            values[f"{prefix}{i}"] = value
    return values


async def fetch_pages(
    tx: Tx,
    query: ListQuery,
    params: Mapping[str, Any],
    want: Bounds,
    parents: Sequence[tuple[Any, ...]],
) -> dict[Hashable, list[Row]]:
    """Up to ``size + 1`` rows per parent (``parents``: one tuple of ``query.parents``
    values each), in fetch order, by the first value of the parent tuple."""
    sql = _sql(query, want)
    values = _parameters(params, want)
    for i in range(len(query.parents)):
        values[f"tb_parent_{i}"] = [parent[i] for parent in parents]
    pages: dict[Hashable, list[Row]] = {parent[0]: [] for parent in parents}
    for row in await tx.fetch_all(sql, values):
        del row["tb_rank"]
        pages[row.pop("tb_parent")].append(row)
    return pages


async def fetch_page(
    tx: Tx, query: ListQuery, params: Mapping[str, Any], want: Bounds
) -> list[Row]:
    """Up to ``size + 1`` rows of a list without parents, in fetch order."""
    sql = _sql(query, want)
    return await tx.fetch_all(sql, _parameters(params, want))
