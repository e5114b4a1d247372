"""A graphql-transport-ws client driving the app in-process (ASGI WebSocket messages, no server), for tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from tests.site import Site

ROOT = Path(__file__).resolve().parent.parent
WAIT = 10.0  # seconds: a bound for the test to fail rather than hang, never a timing assertion


class Closed(Exception):
    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"closed {code} {reason}")
        self.code = code
        self.reason = reason


class Socket:
    """One WebSocket to /graphql. `paused` holds the server's sends (a slow consumer)."""

    def __init__(self, app: Any, *, headers: dict[str, str] | None = None, subprotocol: str = "graphql-transport-ws") -> None:
        self.app = app
        self.headers = headers or {}
        self.subprotocol = subprotocol
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outgoing: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.task: asyncio.Task[None] | None = None
        self.answer_pings = True

    async def _send(self, message: dict[str, Any]) -> None:
        await self.flowing.wait()
        await self.outgoing.put(message)

    async def open(self) -> Socket:
        scope = {
            "type": "websocket", "asgi": {"version": "3.0"}, "scheme": "ws", "path": "/graphql", "raw_path": b"/graphql",
            "query_string": b"", "root_path": "", "server": ("testserver", 80), "client": ("127.0.0.1", 50000),
            "headers": [(k.lower().encode(), v.encode()) for k, v in {"host": "testserver", **self.headers}.items()],
            "subprotocols": [self.subprotocol],
        }
        self.incoming.put_nowait({"type": "websocket.connect"})
        self.task = asyncio.create_task(self.app(scope, self.incoming.get, self._send))
        accepted = await self._raw()
        if accepted["type"] != "websocket.accept":
            raise Closed(accepted.get("code", 0), accepted.get("reason", ""))
        return self

    async def _raw(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.outgoing.get(), WAIT)

    def send(self, message: dict[str, Any] | str) -> None:
        text = message if isinstance(message, str) else json.dumps(message)
        self.incoming.put_nowait({"type": "websocket.receive", "text": text})

    async def receive(self) -> dict[str, Any]:
        """The next protocol message (pings answered on the way, when `answer_pings`); Closed on a close."""
        while True:
            raw = await self._raw()
            if raw["type"] == "websocket.close":
                raise Closed(raw.get("code", 1000), raw.get("reason", ""))
            message = json.loads(raw["text"])
            if message.get("type") == "ping":
                if self.answer_pings:
                    self.send({"type": "pong"})
                continue
            return message

    async def init(self, token: str | None = None) -> Socket:
        await self.open()
        self.send({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"} if token else {}})
        ack = await self.receive()
        assert ack["type"] == "connection_ack", ack
        return self

    def subscribe(self, id: str, query: str, variables: dict[str, Any] | None = None) -> None:
        self.send({"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables or {}}})

    async def next(self, id: str) -> dict[str, Any]:
        """The next message for operation `id`: its `next` payload, or the `error` list as {"error": [...]}."""
        message = await self.receive()
        assert message.get("id") == id, message
        if message["type"] == "error":
            return {"error": message["payload"]}
        assert message["type"] == "next", message
        return message["payload"]

    async def close(self) -> None:
        self.flowing.set()
        self.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
        if self.task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.task, WAIT)


async def connect(site: Site, token: str | None = None, **kwargs: Any) -> Socket:
    return await Socket(site.app, **kwargs).init(token)


async def until(condition: Callable[[], bool], what: str = "condition") -> None:
    for _ in range(int(WAIT / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{what} still false after {WAIT} s")


async def subscribed(site: Site, count: int) -> None:
    """Wait until this worker's broker holds `count` subscriptions (a subscription registers on its first step)."""
    broker = site.app.state.broker
    await until(lambda: broker.subscriber_count == count, f"{count} subscriptions ({broker.subscriber_count} now)")


def codes(result: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in result.get("error", result.get("errors", []))]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def workers(database_url: str, count: int = 1, **settings: str) -> AsyncIterator[list[str]]:
    """App processes of their own (`groupgraph serve`), started together, each on an ephemeral port of 127.0.0.1:
    yields their "127.0.0.1:PORT" addresses; they stop when the block ends."""
    import httpx

    env = {**os.environ, "GROUPGRAPH_DATABASE_URL": database_url, **{f"GROUPGRAPH_{k.upper()}": v for k, v in settings.items()}}
    started: list[tuple[str, asyncio.subprocess.Process]] = []
    try:
        for _ in range(count):
            port = free_port()
            process = await asyncio.create_subprocess_exec(  # as `groupgraph serve` runs it
                sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port), env=env, cwd=ROOT,
            )
            started.append((f"127.0.0.1:{port}", process))
        async with httpx.AsyncClient() as client:
            for address, process in started:
                for _ in range(int(60 / 0.05)):
                    if process.returncode is not None:
                        raise AssertionError(f"the worker exited with {process.returncode}")
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(f"http://{address}/healthz")).status_code == 200:
                            break
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError("the worker did not start")
        yield [address for address, _ in started]
    finally:
        for _, process in started:
            if process.returncode is None:
                process.terminate()
        for _, process in started:
            try:
                await asyncio.wait_for(process.wait(), WAIT)
            except TimeoutError:
                process.kill()
                await process.wait()
