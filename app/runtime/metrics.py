"""Prometheus metrics: requests, latency per operation, errors per code, database pool."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

registry = CollectorRegistry(auto_describe=True)

REQUESTS = Counter("groupgraph_requests_total", "HTTP requests", ["path", "status"], registry=registry)
LATENCY = Histogram(
    "groupgraph_operation_seconds",
    "GraphQL operation latency",
    ["operation"],
    registry=registry,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ERRORS = Counter("groupgraph_errors_total", "GraphQL errors by code", ["code"], registry=registry)
POOL_CHECKED_OUT = Gauge("groupgraph_db_pool_checked_out", "Database connections in use", registry=registry)
POOL_SIZE = Gauge("groupgraph_db_pool_size", "Database connections in the pool", registry=registry)
EXPORT_JOBS = Gauge(
    "groupgraph_export_jobs", "Export jobs by status (all workers', read from the database at each scrape)",
    ["status"], registry=registry,
)
EXPORT_JOB_SECONDS = Histogram(
    "groupgraph_export_job_seconds",
    "Time an export job took to run, from claim to outcome (jobs run by this process)",
    ["report", "format", "status"],
    registry=registry,
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)
EXPORT_JOB_ROWS = Counter(
    "groupgraph_export_job_rows_total", "Rows written by export jobs (jobs run by this process)",
    ["report", "format"], registry=registry,
)
