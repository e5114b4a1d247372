"""The migrations build exactly the tables the models declare, on both engines, and leave a single head."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

import app.store.models  # noqa: F401  (registers the tables)
from app.settings import Settings
from app.store.db import Database
from app.store.migrate import alembic_config


async def test_migrations_match_models(engine: str) -> None:
    database = Database(Settings(database_url=engine))
    try:
        async with database.engine.connect() as connection:
            diff = await connection.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), SQLModel.metadata
                )
            )
    finally:
        await database.dispose()
    assert diff == [], f"models and migrations differ: {diff}"


def test_one_migration_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    assert len(heads) == 1, f"merge the migration heads: {heads}"
