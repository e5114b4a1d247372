"""Prometheus metrics, right across worker processes, with label values from bounded sets.

Across workers: `groupgraph serve --workers N` gives the run an empty directory in PROMETHEUS_MULTIPROC_DIR
(app.http.serving) before the workers start. Each worker then keeps its values in files there, and a scrape
of /metrics, whichever worker answers it, adds every worker's values up (prometheus-client's multiprocess
mode). In one process without that variable (tests, `serve` with one worker) the values live in `registry`.

Adding a metric (subscriptions, rostering, a new job...):
1. declare it below with `counter()`, `gauge()` or `histogram()`: the name starts with `groupgraph_`, ends
   in `_total` for a counter and in the unit for the rest (`_seconds`, `_bytes`);
2. give each label a value from a small fixed set: a code constant, an enum, or `bounded(value, allowed)`.
   Never a user's id, a client-chosen name or an error message: every distinct value is a new series in
   every worker's file and in the monitoring system;
3. call `.labels(...).inc()` / `.observe()` / `.set()` where the thing happens (no SQL for a metric on the
   request path: a value that needs a query is computed at scrape time, see `scrape_gauges`);
4. add a panel to docs/grafana/groupgraph.json (tests/test_observability.py checks that every panel's
   metrics exist).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

registry = CollectorRegistry(auto_describe=True)

OTHER = "other"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def counter(name: str, documentation: str, labels: Iterable[str] = ()) -> Counter:
    return Counter(name, documentation, list(labels), registry=registry)


def gauge(name: str, documentation: str, labels: Iterable[str] = (), mode: str = "livesum") -> Gauge:
    """`mode` says how the workers' values add up on a scrape: livesum (in use, in flight), livemax..."""
    return Gauge(name, documentation, list(labels), registry=registry, multiprocess_mode=mode)


def histogram(
    name: str, documentation: str, labels: Iterable[str] = (), buckets: tuple[float, ...] = LATENCY_BUCKETS
) -> Histogram:
    return Histogram(name, documentation, list(labels), registry=registry, buckets=buckets)


def bounded(value: str | None, allowed: Collection[str]) -> str:
    """The value when it is one of `allowed`, else `other`."""
    return value if value is not None and value in allowed else OTHER


# --- HTTP (app.http.observe) ------------------------------------------------------------------------------

HTTP_METHODS = frozenset(("GET", "POST", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"))
REQUESTS = counter(
    "groupgraph_http_requests_total", "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
)
REQUEST_SECONDS = histogram(
    "groupgraph_http_request_seconds", "Time from request to the last byte of the response (streamed exports too)",
    ["route"],
)
IN_FLIGHT = gauge("groupgraph_http_requests_in_flight", "HTTP requests being answered")
RESPONSE_BYTES = counter("groupgraph_http_response_bytes_total", "Response body bytes sent", ["route"])
WEBSOCKETS = gauge("groupgraph_websockets_open", "WebSocket connections open")

# --- GraphQL (app.schema) ---------------------------------------------------------------------------------

# Operation names that get their own label value (trusted documents' operations, GROUPGRAPH_METRICS_OPERATIONS);
# any other name is counted as `other`, so a client cannot create series.
KNOWN_OPERATIONS: set[str] = set()
OPERATION_TYPES = frozenset(("query", "mutation", "subscription"))
OPERATION_SECONDS = histogram(
    "groupgraph_graphql_operation_seconds", "GraphQL operation latency, by operation name (bounded) and type",
    ["operation", "type"],
)
ERRORS = counter("groupgraph_graphql_errors_total", "GraphQL errors sent to clients, by extensions.code", ["code"])


def allow_operations(names: Iterable[str]) -> None:
    """Give these operation names their own label value."""
    KNOWN_OPERATIONS.update(n.strip() for n in names if n.strip())


def allow_operations_of(documents: Iterable[str]) -> None:
    """Give the named operations of these documents their own label value (call it with the trusted
    documents when they are loaded: a fixed set chosen by the operator, not by clients)."""
    from graphql import OperationDefinitionNode, parse

    for document in documents:
        allow_operations(
            d.name.value for d in parse(document).definitions if isinstance(d, OperationDefinitionNode) and d.name
        )


# --- database pool (app.server wires the engine's pool events) --------------------------------------------

POOL_CHECKED_OUT = gauge("groupgraph_db_pool_checked_out", "Database connections in use")
POOL_SIZE = gauge("groupgraph_db_pool_size", "Database connections the pools keep")
POOL_CHECKOUTS = counter("groupgraph_db_pool_checkouts_total", "Database connections taken from the pool")


def watch_pools(engines: Iterable[Any]) -> None:
    """Keep the pool gauges current from the pools' own events (AsyncEngines; no SQL)."""
    from sqlalchemy import event

    def checkout(*_: Any) -> None:
        POOL_CHECKED_OUT.inc()
        POOL_CHECKOUTS.inc()

    def checkin(*_: Any) -> None:
        POOL_CHECKED_OUT.dec()

    total = 0
    for engine in engines:
        size = getattr(engine.sync_engine.pool, "size", None)
        total += size() if callable(size) else 0
        event.listen(engine.sync_engine, "checkout", checkout)
        event.listen(engine.sync_engine, "checkin", checkin)
    POOL_SIZE.set(total)


# --- exports, imports, email outbox -----------------------------------------------------------------------

EXPORTS = counter("groupgraph_exports_total", "Downloads started, by export (audit action) and format", ["export", "format"])
IMPORTS = counter(
    "groupgraph_imports_total", "Group-assignment imports, by source and outcome (applied, dry_run, rejected)",
    ["source", "outcome"],
)
IMPORT_ROWS = counter("groupgraph_import_rows_total", "Rows of imported files, by source and outcome", ["source", "outcome"])
EMAILS = counter("groupgraph_emails_total", "Outbox emails handled, by outcome (sent, failed, gave_up)", ["outcome"])

# --- export jobs (app.services.export_jobs; the jobs by status are a scrape-time gauge of the database) ---

EXPORT_JOB_SECONDS = histogram(
    "groupgraph_export_job_seconds",
    "Time an export job took to run, from claim to outcome",
    ["report", "format", "status"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)
EXPORT_JOB_ROWS = counter("groupgraph_export_job_rows_total", "Rows written by export jobs", ["report", "format"])

# --- live updates (app.services.events, app.http.live, resolvers.subscriptions) --------------------------

LIVE_CONNECTIONS = gauge("groupgraph_live_connections", "Open live-update connections (WebSocket)")
LIVE_SUBSCRIPTIONS = gauge("groupgraph_live_subscriptions", "Active subscriptions", ["field"])
LIVE_PUBLISHED = counter("groupgraph_live_events_published_total", "Events published", ["kind"])
LIVE_RECEIVED = counter("groupgraph_live_events_received_total", "Events this worker heard (LISTEN or in-process)", ["kind"])
LIVE_DELIVERED = counter("groupgraph_live_events_delivered_total", "Events sent to subscribers", ["field"])
LIVE_ENDED = counter("groupgraph_live_subscriptions_ended_total", "Subscriptions ended by the server, by code", ["code"])
LIVE_DELIVERY = histogram(
    "groupgraph_live_delivery_seconds", "From publication (after commit) to the event sent to the subscriber",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5),
)

# --- admission of GraphQL operations over HTTP (app.runtime.admission) -------------------------------------

ADMISSION_WAIT = histogram(
    "groupgraph_http_admission_wait_seconds",
    "Time a GraphQL operation over HTTP waited for admission (the per-worker limit, live-update deliveries first)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ADMISSION_WAITING = gauge("groupgraph_http_admission_waiting", "GraphQL operations over HTTP waiting for admission")
ADMISSION_RUNNING = gauge("groupgraph_http_admission_running", "GraphQL operations over HTTP admitted and running")

# Gauges measured at scrape time (a query, once per scrape, never per request): each hook answers families.
ScrapeHook = Callable[[], Awaitable[list[Metric]]]
SCRAPE_HOOKS: list[ScrapeHook] = []


def scrape_gauge(name: str, documentation: str, value: float) -> Metric:
    family = GaugeMetricFamily(name, documentation)
    family.add_metric([], value)
    return family


class _Fixed:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def process_stopped() -> None:
    """A worker that stops takes its `live*` gauges out of the sums (its counters stay counted)."""
    if multiprocess_dir() is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())


async def exposition(hooks: Iterable[ScrapeHook] = ()) -> bytes:
    """The text of one scrape: every worker's values (multiprocess mode) or this process's, plus the
    scrape-time gauges."""
    families: list[Metric] = []
    for hook in [*SCRAPE_HOOKS, *hooks]:
        families.extend(await hook())
    if multiprocess_dir() is None:
        text = generate_latest(registry)
    else:
        scrape = CollectorRegistry()
        MultiProcessCollector(scrape)
        text = generate_latest(scrape)
    if families:
        extra = CollectorRegistry()
        extra.register(_Fixed(families))  # type: ignore[arg-type]
        text += generate_latest(extra)
    return text
