"""The cyclic garbage collector of a server process, tuned once the app has started.

A request leaves its reference cycles (asyncio tasks and futures, execution contexts, exceptions and their
tracebacks) for the collector. With Python's thresholds (700, 10, 10) a dashboard request ran ~9 gen-0
collections, and every few requests a full collection walked everything start-up had made (the schema, the
modules, SQLAlchemy's caches): ~100 ms pauses. `tune` collects once, freezes what start-up made (gc.freeze:
kept out of every later collection) and sets the thresholds from the settings. Each worker process runs it
in its own start-up.

What the server makes later and keeps (a thousand live subscriptions, pooled connections, caches) would be
walked by every full collection in the same way: with 500 subscriptions a worker's full collections took
175-560 ms each, twice in a burst of submissions, and stalled every delivery behind them. So what survives a
full collection is frozen too (`SurvivorFreezer`), and a full collection then walks what was promoted since.
Frozen objects that later die by reference counting are freed as usual; those that end in a reference cycle
(an ended subscription's task and frames) would stay until a collection walks them, so every
`gc_reclaim_every`-th full collection first thaws everything and walks it all once.
"""

from __future__ import annotations

import gc
from typing import Any

from app.settings import Settings


class SurvivorFreezer:
    """A gc callback: freezes what survived each full collection; every `reclaim_every`-th one walks all."""

    def __init__(self, reclaim_every: int) -> None:
        self.reclaim_every = reclaim_every
        self.full_collections = 0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self.full_collections += 1
            if self.full_collections % self.reclaim_every == 0:
                gc.unfreeze()  # into the oldest generation, which this collection is about to walk
        else:
            gc.freeze()


def tune(settings: Settings) -> dict[str, object]:
    if settings.gc_threshold:
        gc.set_threshold(*settings.gc_threshold)
    gc.callbacks[:] = [c for c in gc.callbacks if not isinstance(c, SurvivorFreezer)]  # one per process
    if settings.gc_freeze:
        gc.collect()
        gc.freeze()
        gc.callbacks.append(SurvivorFreezer(settings.gc_reclaim_every))
    return {"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()}
