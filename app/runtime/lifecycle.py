"""The worker's stop signal for work with no natural end.

A worker that got SIGTERM sets `stopping()` (app.http.serving) before it waits for in-flight requests: a
stream that would otherwise run until cut after the grace period (server-sent events, a long poll, a
subscription's loop) waits on it too and ends by itself, e.g.

    async for event in wait_or_stop(events):  ...  # or: if stopping().is_set(): break
"""

from __future__ import annotations

import asyncio

_STOPPING: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}


def stopping() -> asyncio.Event:
    """Set once this worker stops (one event per event loop: tests run several apps in one process)."""
    loop = asyncio.get_running_loop()
    event = _STOPPING.get(loop)
    if event is None:
        event = _STOPPING[loop] = asyncio.Event()
    return event


def begin_stop() -> None:
    stopping().set()
