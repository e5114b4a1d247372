"""Lean reads (app.store.lean): on PostgreSQL a statement built once runs on asyncpg directly, outside a
transaction, with the same rows, the same statement counts and the same errors as through SQLAlchemy; in a
transaction, and on SQLite, `Store.rows` goes SQLAlchemy's way."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
from sqlalchemy import column, select, table, text
from sqlalchemy.exc import ProgrammingError

from app.store.db import RoundTrips
from dataloaders.records import UserRecord, ids_in
from dataloaders.store import Store
from tests.site import Site


@cache
def _users(postgres: bool) -> Any:
    return select(*UserRecord.columns).where(ids_in(UserRecord.columns[0], postgres)).order_by(UserRecord.columns[0])


@cache
def _missing() -> Any:
    return select(column("id")).select_from(table("no_such_table"))


def counting(site: Site) -> RoundTrips:
    trips = RoundTrips()
    trips.attach(site.database.engine)
    return trips


async def test_lean_rows_are_the_ordinary_rows_outside_a_transaction(site: Site) -> None:
    users = [await site.user(name) for name in ("Ada", "Bo", "Cy")]
    ids = [u.id for u in users]
    statement = _users(not site.database.is_sqlite)
    ordinary = Store(site.database)
    try:
        expected = [tuple(row) for row in await ordinary.all(statement, {"ids": ids})]
    finally:
        await ordinary.close()
    assert [row[0] for row in expected] == ids
    created = [c.key for c in UserRecord.columns].index("created_at")
    assert all(row[created].tzinfo is not None for row in expected)  # a column whose type converts its values
    trips = counting(site)
    store = Store(site.database)
    try:
        with site.statements() as counted:
            rows = await store.rows(statement, {"ids": ids})
            again = await store.rows(statement, {"ids": ids[:1]})
    finally:
        await store.close()
    assert [tuple(row) for row in rows] == expected  # created_at converted as SQLAlchemy converts it
    assert [tuple(row) for row in again] == expected[:1]
    assert counted.count == 2 and trips.statements == 2
    # PostgreSQL: no BEGIN and no ROLLBACK; SQLite: the ordinary path's one transaction
    transactions = 1 if site.database.is_sqlite else 0
    assert (trips.begins, trips.ends, trips.checkouts) == (transactions, transactions, 1)


async def test_in_a_transaction_rows_go_sqlalchemys_way(site: Site) -> None:
    user = await site.user("Dee")
    statement = _users(not site.database.is_sqlite)
    trips = counting(site)
    store = Store(site.database)
    try:
        await store.all(text("SELECT 1"))  # an ordinary statement: its transaction is open from here on
        rows = await store.rows(statement, {"ids": [user.id]})
    finally:
        await store.close()
    assert [row[0] for row in rows] == [user.id]
    assert (trips.begins, trips.ends, trips.statements) == (1, 1, 2)


async def test_a_failing_lean_statement_raises_as_sqlalchemy_does(site: Site) -> None:
    if site.database.is_sqlite:
        pytest.skip("lean reads are PostgreSQL's")
    store = Store(site.database)
    try:
        with pytest.raises(ProgrammingError) as lean:
            await store.rows(_missing())
    finally:
        await store.close()
    ordinary = Store(site.database)
    try:
        with pytest.raises(ProgrammingError) as expected:
            await ordinary.all(_missing())
    finally:
        await ordinary.close()
    assert type(lean.value.orig) is type(expected.value.orig)
    assert "no_such_table" in str(lean.value)
    # the store (and its connection) still answers
    after = Store(site.database)
    try:
        assert [tuple(r) for r in await after.rows(_users(True), {"ids": [0]})] == []
    finally:
        await after.close()
