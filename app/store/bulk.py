"""Set-based statements that work on both engines: IN-list lookups and multi-row inserts/upserts.

PostgreSQL gets one bound array per column (`= ANY(:array)`, `INSERT ... SELECT unnest(:a), unnest(:b)`):
asyncpg's executemany costs a round trip per row and long IN lists cost more client time than the query.
SQLite gets IN lists in chunks (its bound-parameter limit) and a cached executemany, which runs in C.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, Integer, Table, and_, any_, bindparam, func, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

IN_CHUNK = 20_000  # below SQLite's 32,766 bound parameters
ROWS_CHUNK = 50_000
PAIRS_CHUNK = 5_000  # (a, b) pairs per SQLite statement: 10,000 bound parameters


def is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def chunks(values: Sequence[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


def one_of(postgres: bool, column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """`column IN (...)`, or on PostgreSQL `column = ANY(:array)` (one parameter)."""
    if postgres:
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(list(values))


def value_chunks(postgres: bool, values: Iterable[Any]) -> list[list[Any]]:
    """The values for `one_of`: one chunk on PostgreSQL, several on SQLite when there are many."""
    ordered = sorted(set(values))
    if not ordered:
        return []
    return [ordered] if postgres else list(chunks(ordered, IN_CHUNK))


Finish = Callable[[Any], Any]


_INSERTS: dict[tuple[str, tuple[str, ...], str | None], Any] = {}


def postgres_insert(table: Table, names: Sequence[str], finish: Finish | None = None, prefix: str = "c") -> Any:
    """`INSERT INTO table (names) SELECT unnest(:c0), unnest(:c1), ...` with `finish` applied; the arrays are
    the parameters c0, c1, ... (`prefix` names them; `column_arrays` makes them)."""
    source = select(
        *[func.unnest(bindparam(f"{prefix}{i}", type_=ARRAY(table.c[name].type))) for i, name in enumerate(names)]
    )
    statement = postgresql.insert(table).from_select(list(names), source)
    return finish(statement) if finish is not None else statement


def column_arrays(rows: Sequence[Sequence[Any]], width: int, prefix: str = "c") -> dict[str, list[Any]]:
    """The parameters of `postgres_insert`: one array per column of `rows`."""
    return {f"{prefix}{i}": [r[i] for r in rows] for i in range(width)}


async def insert_rows(
    session: AsyncSession, table: Table, names: Sequence[str], rows: Sequence[Sequence[Any]], finish: Finish | None = None,
    key: str | None = None,
) -> list[Any]:
    """Insert `rows` (tuples in the order of `names`). `finish` adds ON CONFLICT / RETURNING to the dialect's
    insert (it may use `.excluded`). Returns the RETURNING rows (PostgreSQL only; SQLite runs executemany).
    On PostgreSQL the statement is built once per table and columns when there is no `finish`, or when the
    caller names its `finish` with `key` (the same key: the same finish); building it (and its cache key)
    anew cost SQLAlchemy more than the insert's round trip."""
    if not rows:
        return []
    if is_postgres(session):
        returned: list[Any] = []
        if finish is None or key is not None:
            cached = (table.name, tuple(names), key)
            if cached not in _INSERTS:
                _INSERTS[cached] = postgres_insert(table, names, finish)
            statement = _INSERTS[cached]
        else:
            statement = postgres_insert(table, names, finish)
        for chunk in chunks(rows, ROWS_CHUNK):
            result = await session.execute(statement, column_arrays(chunk, len(names)))
            if result.returns_rows:
                returned.extend(result.all())
        return returned
    statement = sqlite.insert(table)
    if finish is not None:
        statement = finish(statement)
    await session.execute(statement, [dict(zip(names, row, strict=True)) for row in rows])
    return []


def unnest_pairs(pairs: Sequence[tuple[int, int]]) -> Any:
    """PostgreSQL: the pairs as a subquery (a, b) of two unnested integer arrays."""
    return select(
        func.unnest(bindparam(None, [x for x, _ in pairs], type_=ARRAY(Integer))).label("a"),
        func.unnest(bindparam(None, [y for _, y in pairs], type_=ARRAY(Integer))).label("b"),
    ).subquery("pairs")


_PAIRS: dict[tuple[str, str, str], Any] = {}


async def existing_pairs(
    session: AsyncSession, a: Any, b: Any, pairs: Iterable[tuple[int, int]], *where: ColumnElement[bool]
) -> set[tuple[int, int]]:
    """Which of the (a, b) pairs have a row (matching `where`): a join to the pairs on PostgreSQL, a row IN
    list on SQLite, so only those pairs are read."""
    ordered = sorted(set(pairs))
    if not ordered:
        return set()
    if is_postgres(session):
        if where:
            joined = unnest_pairs(ordered)
            rows = await session.execute(select(a, b).join(joined, and_(joined.c.a == a, joined.c.b == b)).where(*where))
        else:  # built once per pair of columns: the pairs are the arrays `pa` and `pb`
            cached = (a.table.name, a.name, b.name)
            if cached not in _PAIRS:
                joined = select(func.unnest(bindparam("pa", type_=ARRAY(Integer))).label("a"),
                                func.unnest(bindparam("pb", type_=ARRAY(Integer))).label("b")).subquery("pairs")
                _PAIRS[cached] = select(a, b).join(joined, and_(joined.c.a == a, joined.c.b == b))
            rows = await session.execute(_PAIRS[cached], {"pa": [x for x, _ in ordered], "pb": [y for _, y in ordered]})
        return {(x, y) for x, y in rows}
    found: set[tuple[int, int]] = set()
    for chunk in chunks(ordered, PAIRS_CHUNK):
        rows = await session.execute(select(a, b).where(tuple_(a, b).in_(chunk), *where))
        found.update((x, y) for x, y in rows)
    return found


async def update_rows(
    session: AsyncSession, table: Table, names: Sequence[str], rows: Sequence[Sequence[Any]], key: str = "id"
) -> None:
    """Set the columns `names` of the rows whose `key` is each tuple's first value (`rows`: tuples of the key
    then the values in the order of `names`). PostgreSQL: one UPDATE ... FROM unnest(arrays) per chunk;
    SQLite: a cached executemany."""
    if not rows:
        return
    if is_postgres(session):
        columns = [key, *names]
        for chunk in chunks(rows, ROWS_CHUNK):
            source = select(
                *[
                    func.unnest(bindparam(None, [r[i] for r in chunk], type_=ARRAY(table.c[name].type))).label(f"v_{name}")
                    for i, name in enumerate(columns)
                ]
            ).subquery("v")
            statement = (
                table.update()
                .where(table.c[key] == source.c[f"v_{key}"])
                .values({name: source.c[f"v_{name}"] for name in names})
            )
            await session.execute(statement)
        return
    statement = table.update().where(table.c[key] == bindparam("b_key")).values({n: bindparam(f"b_{n}") for n in names})
    await session.execute(
        statement, [{"b_key": row[0], **{f"b_{n}": v for n, v in zip(names, row[1:], strict=True)}} for row in rows]
    )
