"""Every database test runs on SQLite (a real file) and on PostgreSQL (a database created and dropped here).

PostgreSQL tests skip with a reason when the server is unreachable, and fail instead under
REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.settings import Settings
from app.store.db import Database
from tests.site import Site, empty_tables

PG_ADMIN_DSN = os.environ.get("GROUPGRAPH_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_URL_BASE = os.environ.get("GROUPGRAPH_TEST_PG_BASE", "postgresql+asyncpg://postgres@127.0.0.1:5432/")
REQUIRE_POSTGRES = os.environ.get("REQUIRE_POSTGRES") == "1"


ENGINES = ("sqlite", "postgres")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "engines(*names): run a database test on these engines only (a fault of one engine)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("engines")
        engines = list(marker.args) if marker else list(ENGINES)
        assert set(engines) <= set(ENGINES), engines
        metafunc.parametrize("engine", engines, indirect=True, scope="session")


async def _pg_reachable() -> str | None:
    import asyncpg

    try:
        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    except Exception as exc:  # any failure to connect is the reason to report
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


@pytest.fixture(scope="session")
async def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """The database URL of a freshly migrated database of the requested engine."""
    from app.store.migrate import upgrade

    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("db") / "groupgraph-test.db"
        url = f"sqlite+aiosqlite:///{path}"
        database = Database(Settings(database_url=url))
        await upgrade(database.engine)
        await database.dispose()
        yield url
        return

    reason = await _pg_reachable()
    if reason is not None:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL is required (REQUIRE_POSTGRES=1) but unreachable: {reason}")
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN_DSN}: {reason}")
    import asyncpg

    name = f"groupgraph_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = PG_URL_BASE + name
    database = Database(Settings(database_url=url))
    await upgrade(database.engine)
    await database.dispose()
    try:
        yield url
    finally:
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module (or with indirect parametrization) to change settings."""
    return {}


@pytest.fixture
async def site(engine: str, settings_overrides: dict[str, Any]) -> AsyncIterator[Site]:
    """An empty database of the engine under test, an app on it, and helpers to fill and query it."""
    from app.server import create_app

    settings = Settings(database_url=engine, graphiql=True, **settings_overrides)
    database = Database(settings)
    await empty_tables(database)
    app = create_app(settings, database)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield Site(database, settings, client, app)
    await database.dispose()
