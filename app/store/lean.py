"""Lean reads on PostgreSQL: a statement built once per process, compiled once, run as a prepared statement on
the pooled connection's asyncpg connection, its rows returned as asyncpg records (or tuples when a column's
type converts its values).

What SQLAlchemy's execution does for a read, kept: the same compiled SQL, bind and result processors, and the
same prepared statements (the connection adapter's cache); the engine's `before_cursor_execute` and
`after_cursor_execute` events (the statement counters, `app.store.db.RoundTrips`, the bench headers) fire
with the statement, its parameters and no execution context. What it skips: about 100 us of SQLAlchemy's
CPU per statement, and the transaction. A read outside a transaction runs in autocommit: under READ COMMITTED
every statement of a transaction reads its own snapshot anyway, so reads see the same data, without the
BEGIN and ROLLBACK round trips. A transaction the ordinary path has begun on the connection (a mutation) is
left to the ordinary path, and so is any error: the statement runs again through SQLAlchemy, which reports
it, maps it and invalidates the pool as it always does (`dataloaders.store.Store.rows`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Executable
from sqlalchemy.engine import Connection, Dialect


class LeanStatement:
    """One statement compiled for asyncpg, with its processors; the result processors are found at the first
    run, from the column types PostgreSQL reports (as SQLAlchemy finds them from the cursor's description)."""

    __slots__ = ("binds", "compiled", "dialect", "positions", "postcompile", "results")

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        self.compiled = compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        self.dialect = dialect
        self.postcompile = bool(compiled.literal_execute_params or compiled.post_compile_params)
        self.positions = tuple(compiled.positiontup or ())
        self.binds: dict[str, Callable[[Any], Any]] = dict(compiled._bind_processors)
        self.results: list[tuple[int, Callable[[Any], Any]]] | None = None

    def arguments(self, params: dict[str, Any] | None) -> tuple[str, list[Any]]:
        compiled = self.compiled
        values = compiled.construct_params(params, escape_names=False)
        if self.postcompile:
            expanded = compiled._process_parameters_for_postcompile(values)
            binds = {**self.binds, **expanded.processors}
            sql, positions = expanded.statement, expanded.positiontup or ()
        else:
            binds, sql, positions = self.binds, compiled.string, self.positions
        return sql, [binds[key](values[key]) if key in binds else values[key] for key in positions]

    def result_processors(self, attributes: Sequence[Any]) -> list[tuple[int, Callable[[Any], Any]]]:
        found = []
        for index, (column, attribute) in enumerate(zip(self.compiled._result_columns, attributes, strict=False)):
            processor = column.type._cached_result_processor(self.dialect, attribute.type.oid)
            if processor is not None:
                found.append((index, processor))
        return found


def outside_transaction(adapter: Any) -> bool:
    """Whether the connection has no transaction open (asyncpg's BEGIN is sent with a transaction's first
    statement through SQLAlchemy)."""
    return adapter._transaction is None


async def fetch(connection: Connection, adapter: Any, lean: LeanStatement, params: dict[str, Any] | None) -> Sequence[Any]:
    """The statement's rows, run on `adapter`'s asyncpg connection outside any transaction."""
    sql, args = lean.arguments(params)
    dispatch = connection.dispatch
    dispatch.before_cursor_execute(connection, None, sql, args, None, False)
    prepared, attributes = await adapter._prepare(sql, connection.dialect._invalidate_schema_cache_asof)  # type: ignore[attr-defined]
    rows = await prepared.fetch(*args)
    dispatch.after_cursor_execute(connection, None, sql, args, None, False)
    results = lean.results
    if results is None:
        results = lean.results = lean.result_processors(attributes)
    if not results:
        return rows  # type: ignore[no-any-return]
    converted = []
    for row in rows:
        values = list(row)
        for index, processor in results:
            values[index] = processor(values[index])
        converted.append(tuple(values))
    return converted
