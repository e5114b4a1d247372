"""Admission of GraphQL operations over HTTP, with live-update deliveries first.

A worker runs at most `limit` operations at once; the rest wait, first come first served, before any of
their work starts (the sign-in included). While live-update deliveries are outstanding (events heard and not
yet sent or dropped), operations that have not started keep waiting, so a decided event does not queue in the
event loop behind dozens of interleaved requests; operations already running carry on. Deliveries are
produced by mutations, so they cannot hold requests back for long; still, when deliveries have kept the gate
shut for `hold_seconds`, the operation that waited longest goes ahead anyway, and one more each further
`hold_seconds` while they keep it shut, so no request waits for ever behind a stream of events. A
`hold_seconds` of 0 gives deliveries no precedence (the limit alone applies).
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
        self._held_since: float | None = None  # when deliveries last shut the gate
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    async def acquire(self) -> None:
        """Wait for a place (FIFO); the time waited goes to groupgraph_http_admission_wait_seconds."""
        if not self._waiters and self.running < self.limit and not self.outstanding:
            self.running += 1
            ADMISSION_RUNNING.inc()
            ADMISSION_WAIT.observe(0.0)
            return
        started = time.monotonic()
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        ADMISSION_WAITING.inc()
        self._admit()  # the hold may have run out already; else its timer is set
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
        if count <= 0 or self.hold_seconds <= 0:
            return
        if not self.outstanding:
            self._held_since = time.monotonic()
        self.outstanding += count
        self._arm()

    def deliveries_end(self, count: int = 1) -> None:
        if count <= 0 or self.hold_seconds <= 0:
            return
        self.outstanding = max(0, self.outstanding - count)
        if not self.outstanding:
            self._held_since = None
        self._admit()

    def _held_too_long(self) -> bool:
        return self._held_since is not None and time.monotonic() - self._held_since >= self.hold_seconds

    def _admit(self) -> None:
        while self._waiters and self._waiters[0].done():
            self._waiters.popleft()  # cancelled while waiting
        overdue = self.outstanding > 0 and self._held_too_long()
        while self._waiters and self.running < self.limit and (not self.outstanding or overdue):
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            self.running += 1
            ADMISSION_RUNNING.inc()
            waiter.set_result(None)
            if overdue:  # one past the deliveries at a time; the hold starts again
                self._held_since = time.monotonic()
                break
        self._arm()

    def _arm(self) -> None:
        """While deliveries hold operations back, look again when the hold runs out."""
        if self._timer is not None or not self._waiters or not self.outstanding or self._held_since is None:
            return
        delay = max(0.0, self._held_since + self.hold_seconds - time.monotonic())

        def again() -> None:
            self._timer = None
            self._admit()

        self._timer = asyncio.get_running_loop().call_later(delay, again)
