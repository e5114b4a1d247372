"""A WebSocket echo behind the app's outermost layer (app.http.observe), for a test that serves it with
app.http.serving in a real process and stops that with SIGTERM (the GraphQL app has no WebSocket route of
its own yet)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from app.http.observe import ObservedApp
from app.runtime.lifecycle import stopping
from app.runtime.logs import configure_logging

configure_logging()


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(text)


async def endless(_: Request) -> Response:
    """A stream with no end of its own (as server-sent events): it ends when the worker stops."""

    async def ticks() -> AsyncIterator[bytes]:
        while not stopping().is_set():
            yield b"tick\n"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping().wait(), 0.2)
        yield b"bye\n"

    return StreamingResponse(ticks(), media_type="text/plain")


app = ObservedApp(
    Starlette(routes=[
        WebSocketRoute("/echo", echo), Route("/stream", endless),
        Route("/readyz", lambda _: PlainTextResponse("ready")),
    ]),
    {},
)
