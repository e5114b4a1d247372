"""Run Alembic migrations from code (CLI, serve script and tests share this).

On PostgreSQL the whole upgrade runs in one transaction holding an advisory lock, so `groupgraph migrate`
started on several hosts at once is safe: one upgrades, the others wait for it, then find nothing to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, pool, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"
# pg_advisory_xact_lock key of schema upgrades ("groupgrp" as a 64-bit number)
MIGRATION_LOCK = int.from_bytes(b"groupgrp", "big")


class ForeignKeysBroken(RuntimeError):
    """A migration left rows pointing at rows that do not exist; it was rolled back."""


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    return config


def _sqlite_migration_engine(url: str) -> AsyncEngine:
    """SQLite changes a table by building a new one and dropping the old (Alembic's batch mode). With foreign
    keys enforced, dropping `user` would first delete, by cascade, every session, membership and progress row
    that points at it: migrations run with enforcement off, in one transaction, and are checked at the end."""
    engine = create_async_engine(url, poolclass=pool.NullPool)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA foreign_keys=OFF")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


async def upgrade(engine: AsyncEngine, revision: str = "heads") -> None:
    url = engine.url.render_as_string(hide_password=False)
    config = alembic_config(str(url))
    sqlite_file = engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:")

    def _upgrade(connection) -> None:  # type: ignore[no-untyped-def]
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        if connection.dialect.name == "sqlite":
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise ForeignKeysBroken(f"rows point at missing rows after migrating: {broken[:5]}")

    migrating = _sqlite_migration_engine(url) if sqlite_file else engine
    try:
        async with migrating.begin() as connection:
            if connection.dialect.name == "postgresql":  # held until this transaction ends
                await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            await connection.run_sync(_upgrade)
    finally:
        if migrating is not engine:
            await migrating.dispose()
