"""Database engines and sessions for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app.runtime.errors import ConcurrentChange
from app.settings import Settings
from app.store import instants
from app.store.lean import LeanStatement

# unique violation, foreign key violation, serialization failure, deadlock
CONCURRENT_SQLSTATES = frozenset({"23505", "23503", "40001", "40P01"})
_SQLITE_COLLISIONS = ("UNIQUE constraint failed", "FOREIGN KEY constraint failed")


def concurrent_change(exc: BaseException) -> bool:
    """Whether a database error means another transaction changed the same rows first (a taken unique key,
    a row deleted or changed meanwhile, a deadlock), rather than a fault of ours."""
    from sqlalchemy.orm.exc import StaleDataError

    if isinstance(exc, StaleDataError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    code = getattr(exc.orig, "pgcode", None) or getattr(exc.orig, "sqlstate", None)
    if code in CONCURRENT_SQLSTATES:
        return True
    return isinstance(exc, IntegrityError) and any(m in str(exc.orig) for m in _SQLITE_COLLISIONS)


class DatabaseConfigError(RuntimeError):
    """The database URL points somewhere we cannot use (missing directory, unwritable file)."""


@dataclass
class StatementCounter:
    """Counts SQL statements sent to the database (tests and the bench read it)."""

    count: int = 0
    statements: list[str] = field(default_factory=list)
    keep: bool = False

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "PRAGMA")):
            return
        self.count += 1
        if self.keep:
            self.statements.append(statement)

    def reset(self) -> None:
        self.count = 0
        self.statements.clear()


_OPEN = "round_trips_open"  # in a connection's info while a transaction counted by RoundTrips is open


@dataclass
class RoundTrips:
    """Counts what each request costs in trips to the database, from the engines' events: pool checkouts,
    transactions begun and ended, statements, and liveness pings (pool_pre_ping; none unless it is on). On
    asyncpg a transaction is a BEGIN and a COMMIT or ROLLBACK, each one round trip, and a ping is three (it
    wraps its empty query in a transaction of its own). A transaction counts once a statement runs in it
    through SQLAlchemy's execution (asyncpg sends BEGIN with its first statement); lean reads
    (app.store.lean, no execution context) run outside any."""

    checkouts: int = 0
    begins: int = 0
    ends: int = 0
    statements: int = 0
    pings: int = 0

    def attach(self, engine: AsyncEngine) -> None:
        sync = engine.sync_engine
        event.listen(sync, "begin", self._begin)
        event.listen(sync, "commit", self._end)
        event.listen(sync, "rollback", self._end)
        event.listen(sync, "before_cursor_execute", self._statement)
        event.listen(sync.pool, "checkout", self._checkout)
        dialect = sync.dialect
        ping = dialect.do_ping

        def counted_ping(dbapi_connection: Any) -> bool:
            self.pings += 1
            return bool(ping(dbapi_connection))

        dialect.do_ping = counted_ping  # type: ignore[method-assign]

    def _begin(self, conn: Any) -> None:
        conn.info.pop(_OPEN, None)

    def _end(self, conn: Any) -> None:
        if conn.info.pop(_OPEN, None):
            self.ends += 1

    def _checkout(self, *args: Any) -> None:
        self.checkouts += 1

    def _statement(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, *args: Any) -> None:
        if statement.startswith(("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA")):
            return
        self.statements += 1
        if context is not None and conn.in_transaction() and _OPEN not in conn.info:
            conn.info[_OPEN] = True
            self.begins += 1

    @property
    def total(self) -> int:
        """Round trips on PostgreSQL: each statement, BEGIN, COMMIT or ROLLBACK one, each ping three."""
        return self.statements + self.begins + self.ends + 3 * self.pings

    def reset(self) -> None:
        self.checkouts = self.begins = self.ends = self.statements = self.pings = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "checkouts": self.checkouts, "begins": self.begins, "ends": self.ends, "statements": self.statements,
            "pings": self.pings, "round_trips": self.total,
        }


def _check_sqlite_path(url: str) -> None:
    path = make_url(url).database
    if not path or path == ":memory:":
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise DatabaseConfigError(f"database directory does not exist: {directory}")
    target = path if os.path.exists(path) else directory
    if not os.access(target, os.W_OK):
        raise DatabaseConfigError(f"database path is not writable: {os.path.abspath(path)}")


def _configure_sqlite(engine: AsyncEngine, immediate: bool, busy_timeout_ms: int = 10_000) -> None:
    """Pragmas on every connection; we emit BEGIN ourselves so writers can take the lock up front."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """Holds the engines. On SQLite, writes go through a second engine whose transactions begin IMMEDIATE."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.database_url
        self.is_sqlite = self.url.startswith("sqlite")
        self.counter = StatementCounter()
        if self.is_sqlite:
            _check_sqlite_path(self.url)
            self.engine = create_async_engine(self.url)
            self.write_engine = create_async_engine(self.url)
            _configure_sqlite(self.engine, immediate=False, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
            _configure_sqlite(self.write_engine, immediate=True, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
        else:
            # No ping on checkout (three round trips on asyncpg): connections are recycled after
            # database_pool_recycle_seconds, and the first one found dead (the server restarted) invalidates the
            # whole pool, so later checkouts connect afresh (app.context.signed_in repeats the sign-in query once)
            self.engine = create_async_engine(
                self.url, pool_size=settings.database_pool_size, max_overflow=5,
                pool_pre_ping=settings.database_pool_pre_ping, pool_recycle=settings.database_pool_recycle_seconds,
            )
            self.write_engine = self.engine
            instants.decode_once(self.engine)
        for engine in {self.engine, self.write_engine}:
            event.listen(engine.sync_engine, "before_cursor_execute", self.counter)
        # Live updates: what a committed transaction published goes here (app.services.events sets it), and
        # what must close with the engines (the broker's LISTEN connection) registers in `closers`.
        self.after_commit: Callable[[list[dict[str, Any]]], Awaitable[None]] | None = None
        self.closers: list[Callable[[], Awaitable[None]]] = []
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, class_=AsyncSession)
        self.write_sessions = async_sessionmaker(self.write_engine, expire_on_commit=False, class_=AsyncSession)
        # PostgreSQL: statements built once run on asyncpg directly outside a transaction (app.store.lean); off
        # while tracing is on (its spans come from SQLAlchemy's execution)
        self.lean_reads = not self.is_sqlite
        self._lean: dict[int, tuple[Any, LeanStatement]] = {}

    def lean_statement(self, statement: Any) -> LeanStatement:
        """`statement` compiled for asyncpg once per process (it must be built once: kept by identity)."""
        found = self._lean.get(id(statement))
        if found is None or found[0] is not statement:
            found = self._lean[id(statement)] = (statement, LeanStatement(statement, self.engine.sync_engine.dialect))
        return found[1]

    @property
    def dialect(self) -> str:
        return "sqlite" if self.is_sqlite else "postgresql"

    def session(self, write: bool = False) -> AsyncSession:
        return (self.write_sessions if write else self.sessions)()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A write session committed on success, rolled back on any exception."""
        async with self.session(write=True) as session:
            try:
                yield session
                await session.commit()
            except BaseException as exc:
                await session.rollback()
                if concurrent_change(exc):
                    raise ConcurrentChange() from exc
                raise

    async def dispose(self) -> None:
        for close in self.closers:
            await close()
        self.closers.clear()
        await self.engine.dispose()
        if self.write_engine is not self.engine:
            await self.write_engine.dispose()
