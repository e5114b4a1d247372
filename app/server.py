"""The Starlette application: GraphQL, exports, imports, health and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import Metric
from sqlalchemy import case, func, select, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp

from app.http.cors import PathCors, cors_origins
from app.http.errors import EXCEPTION_HANDLERS
from app.http.graphql_view import GroupGraphView
from app.http.observe import ObservedApp, route_templates
from app.runtime import metrics as app_metrics
from app.runtime.collector import tune
from app.runtime.logs import configure_logging, log
from app.runtime.tracing import Tracing, enabled_by_environment, provider_from_environment
from app.schema import build_schema
from app.services.events import attach
from app.services.export_jobs import job_gauges
from app.settings import Settings, get_settings
from app.store.db import Database
from app.store.models import OutboxEmail


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


class GroupGraphApp(Starlette):
    """Starlette with ObservedApp (request id, metrics, access log) outside everything, error pages included,
    and the OpenTelemetry ASGI middleware outside that when tracing is on."""

    observed_access_log: bool = True
    tracing: Tracing | None = None

    def build_middleware_stack(self) -> ASGIApp:
        app: ASGIApp = ObservedApp(
            super().build_middleware_stack(), route_templates(self.routes), access_log=self.observed_access_log
        )
        return self.tracing.wrap(app) if self.tracing is not None else app


def outbox_gauges(database: Database, settings: Settings) -> app_metrics.ScrapeHook:
    """The outbox's unsent emails, still to be tried and given up, measured at scrape time (one statement
    per scrape, none per request)."""
    given_up = OutboxEmail.attempts >= settings.email_max_attempts

    async def hook() -> list[Metric]:
        statement = select(
            func.coalesce(func.sum(case((given_up, 0), else_=1)), 0), func.coalesce(func.sum(case((given_up, 1), else_=0)), 0)
        ).where(OutboxEmail.sent_at.is_(None))  # type: ignore[union-attr]
        try:
            async with database.session() as session:
                waiting, abandoned = (await session.execute(statement)).one()
        except Exception as exc:  # a scrape must still answer when the database does not
            log.warning("metrics_outbox_unavailable", error=type(exc).__name__)
            return []
        return [
            app_metrics.scrape_gauge("groupgraph_email_outbox_waiting", "Outbox emails not sent yet, still to be tried", waiting),
            app_metrics.scrape_gauge("groupgraph_email_outbox_given_up", "Outbox emails given up (attempts used)", abandoned),
        ]

    return hook


def create_app(
    settings: Settings | None = None, database: Database | None = None, tracer_provider: Any | None = None
) -> Starlette:
    """The app. Tracing is on with `tracer_provider` (tests) or when the OTEL_EXPORTER_OTLP_* variables say."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    database = database or Database(settings)
    engines = list({database.engine, database.write_engine})
    app_metrics.watch_pools(engines)
    app_metrics.allow_operations(settings.metrics_operations.split(","))
    tracing = None
    if tracer_provider is not None:
        tracing = Tracing(tracer_provider, engines)
    elif enabled_by_environment():
        tracing = Tracing(provider_from_environment(), engines, owned=True)
    if tracing is not None:
        database.lean_reads = False  # every statement through SQLAlchemy's execution, which makes the spans
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

    scrape_hooks = [outbox_gauges(database, settings), job_gauges(database)]

    async def metrics(_: Request) -> Response:
        return Response(await app_metrics.exposition(scrape_hooks), media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        workers = []
        for starter in getattr(app.state, "background", []):
            workers.append(starter())
        await broker.warm()  # the LISTEN connection is ready before the first subscription or commit
        collector = tune(settings)  # last: everything start-up made is frozen out of later collections
        loop = type(asyncio.get_running_loop())
        log.info("worker_started", loop=f"{loop.__module__}.{loop.__qualname__}", gc_threshold=collector["threshold"],
                 gc_frozen=collector["frozen"])
        yield
        for worker in workers:
            worker.cancel()
        await database.dispose()
        if tracing is not None:
            tracing.stop()
        app_metrics.process_stopped()

    app = GroupGraphApp(
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
    app.observed_access_log = settings.access_log
    app.tracing = tracing
    app.state.settings = settings
    app.state.tracing = tracing
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
    if settings.export_worker:
        from app.services.export_jobs import background_worker as export_worker

        app.state.background.append(export_worker(database, settings))
    return app
