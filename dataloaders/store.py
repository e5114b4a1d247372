"""The request's one database session, shared by loaders and resolvers.

Strawberry resolves sibling fields concurrently, and an AsyncSession allows one
operation at a time, so every statement goes through a lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import Executable, Result, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from app.runtime.errors import ConcurrentChange
from app.store.db import Database, concurrent_change
from app.store.lean import fetch, outside_transaction

T = TypeVar("T")


class Store:
    def __init__(self, database: Database) -> None:
        self.database = database
        self.write = False
        self._session: AsyncSession | None = None
        self._lean: tuple[AsyncSession, Connection, Any] | None = None  # the session, its connection, asyncpg's adapter
        self._lock = asyncio.Lock()
        self._published: list[dict[str, Any]] | None = None  # a list while a transaction is open
        # the course catalogue's version as read with the Reach at the start of the request (dataloaders.reach)
        self.catalogue_version: int | None = None

    @property
    def dialect(self) -> str:
        return self.database.dialect

    def _get(self) -> AsyncSession:
        if getattr(self, "_closed", False):
            raise RuntimeError("the request's store is closed")
        if self._session is None:
            self._session = self.database.session(write=self.write)
        return self._session

    async def execute(self, statement: Executable, params: Any = None) -> Result[Any]:
        async with self._lock:
            return await self._get().execute(statement, params)

    async def all(self, statement: Executable, params: Any = None) -> Sequence[Any]:
        async with self._lock:
            return (await self._get().execute(statement, params)).all()

    async def rows(self, statement: Executable, params: dict[str, Any] | None = None) -> Sequence[Any]:
        """The rows of a Core statement built once per process (kept by identity), as records or tuples:
        indexed, sliced or unpacked, without attribute names. On PostgreSQL outside a transaction it runs
        lean (app.store.lean: no SQLAlchemy execution, no BEGIN/ROLLBACK); anything else, and any error,
        goes SQLAlchemy's way."""
        async with self._lock:
            session = self._get()
            if self.database.lean_reads:
                lean = self._lean
                if lean is None or lean[0] is not session or lean[1].closed or lean[1].invalidated:
                    connection = (await session.connection()).sync_connection
                    lean = self._lean = (session, connection, connection.connection.dbapi_connection)
                if outside_transaction(lean[2]):
                    try:
                        return await fetch(lean[1], lean[2], self.database.lean_statement(statement), params)
                    except Exception:  # run again below, where SQLAlchemy reports and maps it
                        pass
            return (await session.execute(statement, params)).all()

    async def scalars(self, statement: Executable, params: Any = None) -> Sequence[Any]:
        async with self._lock:
            return (await self._get().execute(statement, params)).scalars().all()

    async def scalar(self, statement: Executable, params: Any = None) -> Any:
        async with self._lock:
            return (await self._get().execute(statement, params)).scalar()

    async def stream(self, statement: Executable, yield_per: int = 1000) -> AsyncIterator[Any]:
        """Rows of a server-side cursor, `yield_per` fetched at a time. Holds the store until the iteration ends
        (for a store of its own: an export job's, a download's)."""
        async with self._lock:
            result = await self._get().stream(statement.execution_options(yield_per=yield_per))  # type: ignore[attr-defined]
            async for row in result:
                yield row

    async def copy_csv(
        self, statement: Executable, output: Callable[[bytes], Awaitable[Any]], local_settings: Mapping[str, str] | None = None
    ) -> str:
        """PostgreSQL only: `COPY (statement) TO STDOUT WITH (FORMAT csv)` on the session's own connection
        (in its transaction, after `local_settings` for that transaction), each block of output awaited by
        `output` as it arrives (asyncpg reads no more while `output` waits, so the server waits too). Holds
        the store for the whole COPY: cancel the task running it before closing the store. Returns the
        COPY's status ("COPY <rows>")."""
        async with self._lock:
            connection = await self._get().connection()
            for name, value in (local_settings or {}).items():
                await connection.execute(select(func.set_config(name, value, True)))
            compiled = statement.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
            params = compiled.construct_params()
            args = [params[name] for name in compiled.positiontup or ()]
            driver = (await connection.get_raw_connection()).driver_connection
            assert driver is not None and connection.dialect.name == "postgresql", "COPY needs PostgreSQL"
            return str(await driver.copy_from_query(compiled.string, *args, output=output, format="csv"))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One mutation: committed on success, rolled back (nothing changed) on any error. What was
        `publish`ed inside goes to the live-update subscribers after the commit, and never on a rollback."""
        async with self._lock:
            session = self._get()
            self._published = []
            try:
                yield session
                await session.commit()
            except BaseException as exc:
                self._published = None
                await session.rollback()
                if concurrent_change(exc):
                    raise ConcurrentChange() from exc
                raise
            published, self._published = self._published, None
        if published and self.database.after_commit is not None:
            await self.database.after_commit(published)

    def publish(self, event: Mapping[str, Any]) -> None:
        """A live-update event (ids only: app.services.events builds them) for when this transaction commits."""
        if self._published is None:
            raise RuntimeError("publish() belongs inside store.transaction()")
        self._published.append(dict(event))

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]], attempts: int = 3) -> T:
        """`work` in one transaction, run again (at most `attempts` times in all) when it collided with a
        concurrent write: for writes whose outcome is the same whichever transaction goes first (a slug
        taken meanwhile is skipped on the next try, a user enrolled meanwhile counts as enrolled)."""
        for attempt in range(1, attempts + 1):
            try:
                async with self.transaction() as session:
                    return await work(session)
            except ConcurrentChange:
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Never raises: the response is already made. Under the lock, so that a statement still running for a
        field whose sibling failed (and nulled the parent) finishes before the session goes; later statements
        open no new session. A connection that cannot even be closed cleanly (the database went away, the
        driver closed it after an error) is dropped from the pool instead."""
        async with self._lock:
            self._closed = True
            if self._session is None:
                return
            session, self._session = self._session, None
            self._lean = None
            try:
                await session.close()
            except Exception as exc:  # any failure here is logged, never sent
                from app.runtime.logs import log

                log.warning("session_close_failed", error=type(exc).__name__)
                try:
                    await session.invalidate()
                except Exception:  # nothing more can be done for this connection
                    pass
