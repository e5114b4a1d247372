"""Admission of GraphQL operations over HTTP, with live-update deliveries first.

A worker runs at most `limit` operations at once; the rest wait, first come first served, before any of
their work starts (the sign-in included). While live-update deliveries are outstanding (events heard and not
yet sent or dropped), operations that have not started keep waiting, so a decided event does not queue in the
event loop behind requests that started meanwhile; operations already running carry on. Deliveries are
produced by mutations, so they cannot hold requests back for long; still, no operation waits for deliveries
longer than `hold_seconds` in all: past that it goes ahead as soon as a place is free. A burst that keeps
deliveries outstanding therefore delays each operation by at most `hold_seconds` and does not lower the
number of operations a worker runs at once. A `hold_seconds` of 0 gives deliveries no precedence (the limit
alone applies).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from app.runtime.metrics import ADMISSION_RUNNING, ADMISSION_WAIT, ADMISSION_WAITING


class Admission:
    def __init__(self, limit: int, hold_seconds: float) -> None:
        if limit < 1:
            raise ValueError("admission needs a limit of at least 1 operation")
        self.limit = limit
        self.hold_seconds = hold_seconds
        self.running = 0
        self.outstanding = 0  # live-update deliveries heard and not yet sent (or dropped)
        self._waiters: deque[tuple[float, asyncio.Future[None]]] = deque()  # (since, admitted), oldest first
        self._timer: asyncio.TimerHandle | None = None

    @property
    def waiting(self) -> int:
        return sum(1 for _, w in self._waiters if not w.done())

    async def acquire(self) -> None:
        """Wait for a place (FIFO); the time waited goes to groupgraph_http_admission_wait_seconds."""
        if not self._waiters and self.running < self.limit and not self.outstanding:
            self.running += 1
            ADMISSION_RUNNING.inc()
            ADMISSION_WAIT.observe(0.0)
            return
        started = time.monotonic()
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((started, waiter))
        ADMISSION_WAITING.inc()
        self._admit()
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():  # admitted as it was cancelled: give the place on
                self.release()
            raise
        finally:
            ADMISSION_WAITING.dec()
            ADMISSION_WAIT.observe(time.monotonic() - started)

    def release(self) -> None:
        self.running -= 1
        ADMISSION_RUNNING.dec()
        self._admit()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *_: object) -> None:
        self.release()

    def deliveries_begin(self, count: int = 1) -> None:
        """`count` deliveries are on their way: operations not yet started wait for them."""
        if count > 0 and self.hold_seconds > 0:
            self.outstanding += count

    def deliveries_end(self, count: int = 1) -> None:
        if count <= 0 or self.hold_seconds <= 0:
            return
        self.outstanding = max(0, self.outstanding - count)
        if not self.outstanding:
            self._admit()

    def _admit(self) -> None:
        now = time.monotonic()
        while self._waiters and self.running < self.limit:
            since, waiter = self._waiters[0]
            if waiter.done():  # cancelled while waiting
                self._waiters.popleft()
                continue
            if self.outstanding and now - since < self.hold_seconds:
                break  # deliveries first: the oldest waits on, until the hold runs out
            self._waiters.popleft()
            self.running += 1
            ADMISSION_RUNNING.inc()
            waiter.set_result(None)
        self._arm(now)

    def _arm(self, now: float) -> None:
        """While deliveries hold the oldest operation back, look again when its hold runs out."""
        if self._timer is not None or not self._waiters or not self.outstanding or self.running >= self.limit:
            return

        def again() -> None:
            self._timer = None
            self._admit()

        since = self._waiters[0][0]
        self._timer = asyncio.get_running_loop().call_later(max(0.0, since + self.hold_seconds - now), again)
