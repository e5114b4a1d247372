"""The Starlette application: GraphQL, exports, imports, health and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from app.http.cors import PathCors, cors_origins
from app.http.errors import EXCEPTION_HANDLERS
from app.http.graphql_view import GroupGraphView
from app.runtime.logs import configure_logging
from app.runtime.metrics import POOL_CHECKED_OUT, POOL_SIZE, registry
from app.schema import build_schema
from app.services.events import attach
from app.settings import Settings, get_settings
from app.store.db import Database


def extra_routes() -> list[BaseRoute]:
    """Routes of the HTTP surface beside /graphql (exports, imports), each module owning its own."""
    routes: list[BaseRoute] = []
    for module_name in ("app.http.exports", "app.http.imports", "app.http.gateway_exports", "app.http.graphiql"):
        try:
            module = __import__(module_name, fromlist=["routes"])
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        routes.extend(module.routes)
    return routes


def create_app(settings: Settings | None = None, database: Database | None = None) -> Starlette:
    settings = settings or get_settings()
    configure_logging()
    database = database or Database(settings)
    schema = build_schema(settings)
    broker = attach(database, settings)  # committed transactions publish their live-update events here
    view = GroupGraphView(schema, database, settings, broker)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        try:
            async with database.session() as session:
                await session.execute(text("SELECT 1"))
        except Exception as exc:  # any failure to reach the database means not ready
            return JSONResponse({"status": "unavailable", "error": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def metrics(_: Request) -> Response:
        pool = database.engine.pool
        if hasattr(pool, "checkedout"):
            POOL_CHECKED_OUT.set(pool.checkedout())
            POOL_SIZE.set(pool.size())
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        workers = []
        for starter in getattr(app.state, "background", []):
            workers.append(starter())
        await broker.warm()  # the LISTEN connection is ready before the first subscription or commit
        yield
        for worker in workers:
            worker.cancel()
        await database.dispose()

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            *extra_routes(),
            Route("/graphql", view, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", view),
        ],
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,  # JSON errors with a code everywhere
    )
    origins = cors_origins(settings)
    if origins:
        app.add_middleware(PathCors, origins=origins)
    app.state.settings = settings
    app.state.database = database
    app.state.schema = schema
    app.state.broker = broker
    app.state.background = []
    if settings.bench:  # per-request SQL cost headers for scripts/bench
        from app.http.bench_metrics import BenchHeaders, instrument

        instrument(database)
        app.add_middleware(BenchHeaders)
    if settings.smtp_host:
        from app.services.mailer import background_worker

        app.state.background.append(background_worker(database, settings))
    return app
