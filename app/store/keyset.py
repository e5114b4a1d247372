"""Keyset paging both ways: the WHERE and ORDER BY of one page after and/or before a position.

A page is asked for forwards (`first`, optionally `after`) or backwards (`last`, optionally `before`). Both
are one indexed range scan with a LIMIT, so a page far from the start costs what the first page costs.
Nullable keys sort last in the list's own order (NULLS LAST both ways), on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import and_, bindparam, false, or_, true, tuple_
from sqlalchemy.sql.elements import ColumnElement

T = TypeVar("T")


@dataclass(frozen=True)
class Key:
    """One column of a list's order."""

    column: Any
    descending: bool = False
    nullable: bool = False


@dataclass(frozen=True)
class Window:
    """Which page: `size` rows after `after` (forwards) or the `size` rows just before `before` (backwards)."""

    size: int
    after: tuple[Any, ...] | None = None
    before: tuple[Any, ...] | None = None
    backward: bool = False

    @property
    def fetch(self) -> int:
        """Rows to fetch: one more than the page, to tell whether more lie beyond it."""
        return self.size + 1


def _eq(key: Key, value: Any) -> ColumnElement[bool]:
    return key.column.is_(None) if value is None else key.column == value


def _beyond(key: Key, value: Any) -> ColumnElement[bool]:
    """Strictly later than `value` in the list's order (nulls are last)."""
    if value is None:
        return false()
    later = key.column < value if key.descending else key.column > value
    return or_(later, key.column.is_(None)) if key.nullable else later


def _short_of(key: Key, value: Any) -> ColumnElement[bool]:
    """Strictly earlier than `value` in the list's order."""
    if value is None:
        return key.column.is_not(None)
    return key.column > value if key.descending else key.column < value


def _past(keys: Sequence[Key], values: Sequence[Any], later: bool) -> ColumnElement[bool]:
    if len(keys) > 1 and not any(k.nullable for k in keys) and len({k.descending for k in keys}) == 1:
        # one row-value comparison, which PostgreSQL answers with one index range
        columns, row = tuple_(*(k.column for k in keys)), tuple_(*values)
        return columns < row if keys[0].descending == later else columns > row
    step = _beyond if later else _short_of
    arms = []
    for i, key in enumerate(keys):
        arms.append(and_(*[_eq(k, v) for k, v in zip(keys[:i], values[:i], strict=True)], step(key, values[i])))
    return or_(*arms)


def conditions(keys: Sequence[Key], window: Window) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    if window.after is not None:
        out.append(_past(keys, window.after, later=True))
    if window.before is not None:
        out.append(_past(keys, window.before, later=False))
    return out or [true()]


def parametrized(keys: Sequence[Key], window: Window) -> tuple[Window, dict[str, Any], tuple[Any, ...]]:
    """The window with its cursor's values as bind parameters (`after_0`, `before_1`, ...: a statement built
    with it serves every window of the same shape), the values to bind, and that shape: the direction, and
    which cursors are given with which of their values NULL (a NULL is written as IS NULL, not bound)."""
    params: dict[str, Any] = {}

    def bind(name: str, values: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
        if values is None:
            return None
        out = []
        for i, (key, value) in enumerate(zip(keys, values, strict=True)):
            if value is not None:
                params[f"{name}_{i}"] = value
                value = bindparam(f"{name}_{i}", type_=key.column.type)
            out.append(value)
        return tuple(out)

    def nulls(values: tuple[Any, ...] | None) -> tuple[bool, ...] | None:
        return None if values is None else tuple(v is None for v in values)

    shape = (window.backward, nulls(window.after), nulls(window.before))
    return Window(window.size, bind("after", window.after), bind("before", window.before), window.backward), params, shape


def ordering(keys: Sequence[Key], window: Window) -> list[Any]:
    """ORDER BY in fetch order: the list's order, reversed for a backward page."""
    out = []
    for key in keys:
        descending = key.descending != window.backward
        clause = key.column.desc() if descending else key.column.asc()
        if key.nullable:
            clause = clause.nulls_first() if window.backward else clause.nulls_last()
        out.append(clause)
    return out


def trim(window: Window, fetched: Sequence[T]) -> tuple[list[T], bool, bool]:
    """The page in the list's order, hasNextPage and hasPreviousPage, from rows in fetch order."""
    more = len(fetched) > window.size
    rows = list(fetched[: window.size])
    if window.backward:
        rows.reverse()
        return rows, window.before is not None, more
    return rows, more, window.after is not None
