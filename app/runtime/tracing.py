"""OpenTelemetry traces through the official instrumentation: off unless OTEL_EXPORTER_OTLP_ENDPOINT (or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set; every other standard OTEL_* variable applies (service name,
sampler, headers, protocol: OTLP over HTTP/protobuf).

A traced request is: the server span of the ASGI instrumentation ("POST /graphql", carrying
`groupgraph.request_id`), a child span per GraphQL operation named like "query Dashboard" (app.schema), and
under it a span per SQL statement (the SQLAlchemy instrumentation). Health, readiness and metrics requests
are not traced. URLs are recorded without their query string (a signed link's token stays out).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from opentelemetry.trace import Tracer, TracerProvider

TRACER: Tracer | None = None
EXCLUDED_URLS = "healthz,readyz,metrics"
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
        self.instrumentor.instrument(engines=[e.sync_engine for e in engines], tracer_provider=provider)

    def wrap(self, app: Any) -> Any:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        return OpenTelemetryMiddleware(
            app, excluded_urls=EXCLUDED_URLS, tracer_provider=self.provider, server_request_hook=_without_query,
            exclude_spans=["receive", "send"],
        )

    def stop(self) -> None:
        global TRACER
        TRACER = None
        if self.instrumentor.is_instrumented_by_opentelemetry:
            self.instrumentor.uninstrument()
        if self.owned:
            shutdown = getattr(self.provider, "shutdown", None)
            if callable(shutdown):
                shutdown()  # flushes the spans still queued
