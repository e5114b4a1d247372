"""Every row of every table, to show that a refused change left the database exactly as it was."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlmodel import SQLModel

from app.store.db import Database


async def dump(database: Database, skip: tuple[str, ...] = ()) -> dict[str, list[tuple[Any, ...]]]:
    """Table name -> its rows (all columns) in primary-key order."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    async with database.session() as session:
        for table in SQLModel.metadata.sorted_tables:
            if table.name in skip:
                continue
            keys = list(table.primary_key.columns) or list(table.columns)
            rows = (await session.execute(select(table).order_by(*keys))).all()
            out[table.name] = [tuple(r) for r in rows]
    return out


def differences(before: dict[str, list[Any]], after: dict[str, list[Any]]) -> dict[str, tuple[int, int]]:
    """Tables whose contents changed, with their row counts before and after (for a readable failure)."""
    return {t: (len(before[t]), len(after.get(t, []))) for t in before if before[t] != after.get(t)}
