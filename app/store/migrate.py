"""Run Alembic migrations from code (CLI, serve script and tests share this).

On PostgreSQL the whole upgrade runs in one transaction holding an advisory lock, so `groupgraph migrate`
started on several hosts at once is safe: one upgrades, the others wait for it, then find nothing to do.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"
# pg_advisory_xact_lock key of schema upgrades ("groupgrp" as a 64-bit number)
MIGRATION_LOCK = int.from_bytes(b"groupgrp", "big")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    return config


async def upgrade(engine: AsyncEngine, revision: str = "heads") -> None:
    config = alembic_config(str(engine.url.render_as_string(hide_password=False)))

    def _upgrade(connection) -> None:  # type: ignore[no-untyped-def]
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":  # held until this transaction ends
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        await connection.run_sync(_upgrade)
