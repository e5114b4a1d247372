"""Subscriptions over WebSocket (graphql-transport-ws): sign-in from connection_init, errors with codes,
fresh credentials per operation, keep-alive pings, a message size limit, and the live metrics."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from graphql import GraphQLError
from starlette.types import Message, Receive, Scope, Send
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
    _OperationStreamClosed,
)
from strawberry.types.execution import ExecutionResult, PreExecutionError

from app.context import LiveContext
from app.runtime.errors import Unauthenticated
from app.runtime.logs import log
from app.runtime.metrics import LIVE_CONNECTIONS, LIVE_DELIVERED, LIVE_DELIVERY
from app.schema import format_error

FIELDS = ("reviewQueueChanged", "accessRequestChanged", "groupProgressChanged")
MESSAGE_TOO_BIG = 1009


class LiveHandler(BaseGraphQLTransportWSHandler[Any, Any]):
    context: LiveContext

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_heard = time.monotonic()
        self.keepalive: asyncio.Task[None] | None = None

    async def handle_message(self, message: Any) -> None:
        self.last_heard = time.monotonic()
        await super().handle_message(message)

    async def handle_connection_init(self, message: Any) -> None:
        await super().handle_connection_init(message)
        if self.connection_acknowledged and self.keepalive is None:
            self.keepalive = asyncio.create_task(self._keep_alive())

    async def _keep_alive(self) -> None:
        """A ping when the client has been quiet for live_ping_seconds; no answer within live_pong_seconds
        closes the connection (a client gone without a close frame does not hold its subscriptions)."""
        settings = self.context.settings
        while True:
            quiet = time.monotonic() - self.last_heard
            if quiet < settings.live_ping_seconds:
                await asyncio.sleep(settings.live_ping_seconds - quiet)
                continue
            pinged = time.monotonic()
            await self.send_message({"type": "ping"})
            await asyncio.sleep(settings.live_pong_seconds)
            if self.last_heard < pinged:
                await self.websocket.close(code=1001, reason="No pong")
                return

    async def run_operation(self, operation: Operation[Any, Any]) -> None:
        """Each operation authenticates the connection's token again and reads through its own scope."""
        try:
            try:
                await self.context.renew()
            except Unauthenticated as error:
                await self._send_errors(operation, [error])
                return
            await super().run_operation(operation)
        finally:
            await self.context.end_scope()

    async def _send_errors(self, operation: Operation[Any, Any], errors: list[GraphQLError]) -> None:
        await operation.send_operation_message(
            {"id": operation.id, "type": "error", "payload": [format_error(e, self.context.request_id) for e in errors]}
        )

    async def _send_result_stream(self, operation: Operation[Any, Any], result_source: Any) -> None:
        """As Strawberry's, with our error format; a stream that ends in an error (the permission is gone,
        a limit) sends that error as the operation's `error` message, which ends it. A client gone away
        ends the operation quietly."""
        try:
            await self._send_results(operation, result_source)
        except WebSocketDisconnected:
            self.operations.pop(operation.id, None)
            raise _OperationStreamClosed from None

    async def _send_results(self, operation: Operation[Any, Any], result_source: Any) -> None:
        first = True
        async for result in result_source:
            if first and isinstance(result, PreExecutionError):
                await self._handle_pre_execution_error(operation, result)
                return
            if not isinstance(result, ExecutionResult):
                await self._reject_incremental_delivery(operation)
                return
            if result.data is None and result.errors and all(e.path is None or len(e.path) <= 1 for e in result.errors):
                await self._send_errors(operation, result.errors)
                return
            published = self.context.event_published_at
            await self.context.end_scope()  # the result is whole: its connection and delivery slot go back
            payload: dict[str, Any] = {"data": result.data}
            if result.errors:
                payload["errors"] = [format_error(e, self.context.request_id) for e in result.errors]
            await operation.send_operation_message({"id": operation.id, "type": "next", "payload": payload})
            first = False
            field = next(iter(result.data or {}), "")
            LIVE_DELIVERED.labels(field=field if field in FIELDS else "other").inc()
            if published:
                LIVE_DELIVERY.observe(max(0.0, time.time() - published))

    async def _handle_pre_execution_error(self, operation: Operation[Any, Any], result: PreExecutionError) -> None:
        assert result.errors
        if self._get_pre_execution_close_reason(result.errors[0]):
            await super()._handle_pre_execution_error(operation, result)
            return
        await self._send_errors(operation, result.errors)

    async def shutdown(self) -> None:
        if self.keepalive is not None:
            self.keepalive.cancel()
            with contextlib.suppress(BaseException):
                await self.keepalive
        try:
            await super().shutdown()
        finally:
            await self.context.close()


def limit_messages(scope: Scope, receive: Receive, send: Send, limit: int) -> tuple[Receive, Send]:
    """A client message over `limit` bytes closes the connection (1009), before anything parses it."""
    closed = False

    async def limited_receive() -> Message:
        nonlocal closed
        message = await receive()
        if message["type"] == "websocket.receive":
            text = message.get("text")
            size = len(text.encode()) if text is not None else len(message.get("bytes") or b"")
            if size > limit:
                log.info("live_message_too_big", size=size, limit=limit)
                closed = True
                await send({"type": "websocket.close", "code": MESSAGE_TOO_BIG, "reason": "Message too big"})
                return {"type": "websocket.disconnect", "code": MESSAGE_TOO_BIG}
        return message

    async def guarded_send(message: Message) -> None:
        if not closed:
            await send(message)

    return limited_receive, guarded_send


async def serve_websocket(view: Any, scope: Scope, receive: Receive, send: Send) -> None:
    receive, send = limit_messages(scope, receive, send, view.settings.live_max_message_bytes)
    LIVE_CONNECTIONS.inc()
    try:
        await view.serve_socket(scope, receive, send)
    finally:
        LIVE_CONNECTIONS.dec()
