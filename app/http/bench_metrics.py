"""Per-request SQL cost for the bench, only when GROUPGRAPH_BENCH=1: statements and database seconds of
each HTTP request, sent back as `x-bench-*` response headers. Off by default (it is debug information)."""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.store.db import Database

SKIPPED = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "PRAGMA")  # as app.store.db.StatementCounter


@dataclass
class RequestCost:
    statements: int = 0
    db_seconds: float = 0.0


# SQLAlchemy runs the sync cursor events in a greenlet that shares the awaiting task's context.
CURRENT: ContextVar[RequestCost | None] = ContextVar("bench_request_cost", default=None)


def _before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
    if CURRENT.get() is not None and not statement.startswith(SKIPPED):
        conn.info["bench_started"] = time.perf_counter()


def _after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
    cost = CURRENT.get()
    started = conn.info.pop("bench_started", None)
    if cost is not None and started is not None:
        cost.statements += 1
        cost.db_seconds += time.perf_counter() - started


def instrument(database: Database) -> None:
    for engine in {database.engine, database.write_engine}:
        event.listen(engine.sync_engine, "before_cursor_execute", _before)
        event.listen(engine.sync_engine, "after_cursor_execute", _after)


class BenchHeaders:
    """ASGI middleware: x-bench-statements, x-bench-db-ms and x-bench-server-ms on every response (counted up
    to the moment the headers go out, so a streamed export reports its first chunk only)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cost = RequestCost()
        token = CURRENT.set(cost)
        started = time.perf_counter()

        async def send_with_cost(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-bench-statements", str(cost.statements).encode()),
                    (b"x-bench-db-ms", f"{cost.db_seconds * 1000:.3f}".encode()),
                    (b"x-bench-server-ms", f"{(time.perf_counter() - started) * 1000:.3f}".encode()),
                ]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_cost)
        finally:
            CURRENT.reset(token)
