"""OpenTelemetry traces through the official instrumentation: off unless OTEL_EXPORTER_OTLP_ENDPOINT (or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set; every other standard OTEL_* variable applies (service name,
sampler, headers, protocol: OTLP over HTTP/protobuf).

A traced request is: the server span of the ASGI instrumentation ("POST /graphql", carrying
`groupgraph.request_id`), a child span per GraphQL operation named like "query Dashboard" (app.schema), and
under it a span per SQL statement (the SQLAlchemy instrumentation). Health, readiness and metrics requests
are not traced, nor their SQL. URLs are recorded without their query string (a signed link's token stays out).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from opentelemetry.trace import Tracer, TracerProvider

TRACER: Tracer | None = None
UNTRACED_PATHS = frozenset(("/healthz", "/readyz", "/metrics"))  # probes and scrapes: not even their SQL
REQUEST_ID_ATTRIBUTE = "groupgraph.request_id"
_URL_ATTRIBUTES = ("http.url", "http.target", "url.full")


def enabled_by_environment() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def provider_from_environment() -> TracerProvider:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "groupgraph"}
    provider = SdkTracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def _without_query(span: Any, scope: dict[str, Any]) -> None:
    if not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    for key in _URL_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str) and "?" in value:
            span.set_attribute(key, value.split("?", 1)[0])
    if "url.query" in attributes:
        span.set_attribute("url.query", "")


class _ProbesUntraced:
    def __init__(self, traced: Any, plain: Any) -> None:
        self.traced = traced
        self.plain = plain

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] in UNTRACED_PATHS:
            from opentelemetry.instrumentation.utils import suppress_instrumentation

            with suppress_instrumentation():
                await self.plain(scope, receive, send)
        else:
            await self.traced(scope, receive, send)


class Tracing:
    """Tracing switched on for one app: its engines instrumented, its ASGI app wrapped."""

    def __init__(self, provider: TracerProvider, engines: Iterable[Any], owned: bool = False) -> None:
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        global TRACER
        self.provider = provider
        self.owned = owned
        TRACER = provider.get_tracer("groupgraph")
        self.instrumentor = SQLAlchemyInstrumentor()
        if self.instrumentor.is_instrumented_by_opentelemetry:
            self.instrumentor.uninstrument()
        # The instrumentation declares SQLAlchemy < 2.1 while it works with 2.1 (its engine events are
        # unchanged; tests/test_observability.py shows the statement spans on both databases).
        self.instrumentor.instrument(
            engines=[e.sync_engine for e in engines], tracer_provider=provider, skip_dep_check=True
        )

    def wrap(self, app: Any) -> Any:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        traced = OpenTelemetryMiddleware(
            app, tracer_provider=self.provider, server_request_hook=_without_query, exclude_spans=["receive", "send"]
        )
        return _ProbesUntraced(traced, app)

    def stop(self) -> None:
        global TRACER
        TRACER = None
        if self.instrumentor.is_instrumented_by_opentelemetry:
            self.instrumentor.uninstrument()
        if self.owned:
            shutdown = getattr(self.provider, "shutdown", None)
            if callable(shutdown):
                shutdown()  # flushes the spans still queued
