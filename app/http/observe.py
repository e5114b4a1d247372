"""The outermost layer of the app: a request id, request metrics and the access log for every HTTP request,
and the registry of open WebSockets that a shutting-down worker closes with 1001 (going away).

Nothing here touches the database: the user id and operation name of the access line are noted by the
layers that learn them (app.context, app.schema) on the request's RequestInfo.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

import structlog
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.runtime import metrics, tracing
from app.runtime.logs import CURRENT_REQUEST, REQUEST_ID, RequestInfo, access

GOING_AWAY = 1001

# The send() of every open WebSocket of this process, for close_websockets().
_OPEN_WEBSOCKETS: dict[int, Callable[[Message], Any]] = {}


def route_templates(routes: list[BaseRoute]) -> dict[int, str]:
    """id(endpoint) -> path template ("/exports/groups/{id}/progress.csv"): the bounded `route` label."""
    names: dict[int, str] = {}
    for route in routes:
        if isinstance(route, Route | WebSocketRoute):
            names[id(route.endpoint)] = route.path
        elif isinstance(route, Mount):
            names[id(route.app)] = route.path + "/{path}"
    return names


class ObservedApp:
    def __init__(self, app: ASGIApp, routes: dict[int, str], access_log: bool = True) -> None:
        self.app = app
        self.routes = routes
        self.access_log = access_log
        # the metric children of each label set, looked up once (the label sets are bounded)
        self._counted: dict[tuple[str, str, int], Any] = {}
        self._per_route: dict[str, tuple[Any, Any]] = {}

    def count(self, route: str, method: str, status: int) -> None:
        child = self._counted.get((route, method, status))
        if child is None:
            child = self._counted[(route, method, status)] = metrics.REQUESTS.labels(route, method, str(status))
        child.inc()

    def per_route(self, route: str) -> tuple[Any, Any]:
        children = self._per_route.get(route)
        if children is None:
            children = self._per_route[route] = (metrics.REQUEST_SECONDS.labels(route), metrics.RESPONSE_BYTES.labels(route))
        return children

    def route(self, scope: Scope) -> str:
        return self.routes.get(id(scope.get("endpoint")), metrics.OTHER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request_id = os.urandom(8).hex()
        info = RequestInfo(request_id)
        info_token = CURRENT_REQUEST.set(info)
        id_token = REQUEST_ID.set(request_id)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        trace_id = None
        if tracing.TRACER is not None:  # the server span is the current one: it gets the request id, the log its trace id
            from opentelemetry import trace

            span = trace.get_current_span()
            span.set_attribute(tracing.REQUEST_ID_ATTRIBUTE, request_id)
            if span.get_span_context().is_valid:
                trace_id = format(span.get_span_context().trace_id, "032x")
        method = scope["method"] if scope["method"] in metrics.HTTP_METHODS else metrics.OTHER
        status = 0
        sent = 0
        complete = False
        metrics.IN_FLIGHT.inc()

        async def observed_send(message: Message) -> None:
            nonlocal status, sent, complete
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                headers = message.get("headers")
                if not isinstance(headers, list):
                    message["headers"] = headers = list(headers or [])
                if not any(name == b"x-request-id" for name, _ in headers):
                    headers.append((b"x-request-id", request_id.encode()))
                # counted before the client can see the answer: a scrape right after it counts this request
                self.count(self.route(scope), method, status)
            elif kind == "http.response.body":
                sent += len(message.get("body", b""))
                complete = not message.get("more_body", False)
            await send(message)

        failed: BaseException | None = None
        try:
            await self.app(scope, receive, observed_send)
        except Exception as exc:
            # Starlette answered 500 and logged it with the request id (app.http.errors), then re-raised it
            # for the server. Once that answer is complete there is nothing left for the server to do; a
            # response cut short must reach the server, which then aborts the connection.
            if not complete:
                failed = exc
                raise
        finally:
            metrics.IN_FLIGHT.dec()
            route = self.route(scope)
            seconds = time.perf_counter() - started
            duration, volume = self.per_route(route)
            duration.observe(seconds)
            volume.inc(sent)
            if status == 0:  # nothing was sent: the server answers 500
                self.count(route, method, 500)
            if self.access_log:
                client = scope.get("client")
                access({
                    "request_id": request_id, "method": scope["method"], "path": scope["path"], "route": route,
                    "status": status or 500, "duration_ms": round(seconds * 1000, 3), "bytes": sent,
                    "operation": info.operation, "user_id": info.user_id, "client": client[0] if client else None,
                    **({"trace_id": trace_id} if trace_id else {}),
                    **({"aborted": True} if failed is not None or (status and not complete) else {}),
                })
            structlog.contextvars.unbind_contextvars("request_id")
            REQUEST_ID.reset(id_token)
            CURRENT_REQUEST.reset(info_token)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = id(scope)
        closed = False

        async def tracked_send(message: Message) -> None:
            nonlocal closed
            if closed:  # closed by the server's shutdown: the app's late messages have nowhere to go
                return
            if message["type"] == "websocket.accept":
                _OPEN_WEBSOCKETS[key] = close
                metrics.WEBSOCKETS.inc()
            elif message["type"] == "websocket.close":
                closed = True
                _forget(key)
            await send(message)

        async def close(message: Message) -> None:
            nonlocal closed
            if not closed:
                closed = True
                _forget(key)
                await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        finally:
            _forget(key)


def _forget(key: int) -> None:
    if _OPEN_WEBSOCKETS.pop(key, None) is not None:
        metrics.WEBSOCKETS.dec()


def open_websockets() -> int:
    return len(_OPEN_WEBSOCKETS)


async def close_websockets(code: int = GOING_AWAY, reason: str = "server shutting down") -> int:
    """Close every open WebSocket of this process (a worker that stops); how many there were."""
    closers = list(_OPEN_WEBSOCKETS.values())
    message = {"type": "websocket.close", "code": code, "reason": reason}
    results = await asyncio.gather(*(closer(message) for closer in closers), return_exceptions=True)
    return len(results)
