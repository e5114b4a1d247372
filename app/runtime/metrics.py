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

LIVE_CONNECTIONS = Gauge("groupgraph_live_connections", "Open live-update connections (WebSocket)", registry=registry)
LIVE_SUBSCRIPTIONS = Gauge("groupgraph_live_subscriptions", "Active subscriptions", ["field"], registry=registry)
LIVE_PUBLISHED = Counter("groupgraph_live_events_published_total", "Events published", ["kind"], registry=registry)
LIVE_RECEIVED = Counter(
    "groupgraph_live_events_received_total", "Events this worker heard (LISTEN or in-process)", ["kind"], registry=registry
)
LIVE_DELIVERED = Counter("groupgraph_live_events_delivered_total", "Events sent to subscribers", ["field"], registry=registry)
LIVE_ENDED = Counter(
    "groupgraph_live_subscriptions_ended_total", "Subscriptions ended by the server, by code", ["code"], registry=registry
)
LIVE_DELIVERY = Histogram(
    "groupgraph_live_delivery_seconds",
    "From publication (after commit) to the event sent to the subscriber",
    registry=registry,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
