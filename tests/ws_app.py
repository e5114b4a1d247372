"""A WebSocket echo behind the app's outermost layer (app.http.observe), for a test that serves it with
app.http.serving in a real process and stops that with SIGTERM (the GraphQL app has no WebSocket route of
its own yet)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from app.http.observe import ObservedApp
from app.runtime.logs import configure_logging

configure_logging()


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(text)


app = ObservedApp(
    Starlette(routes=[WebSocketRoute("/echo", echo), Route("/readyz", lambda _: PlainTextResponse("ready"))]), {}
)
