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
