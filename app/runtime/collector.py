"""The cyclic garbage collector of a server process, tuned once the app has started.

A request leaves its reference cycles (asyncio tasks and futures, execution contexts, exceptions and their
tracebacks) for the collector. With Python's thresholds (700, 10, 10) a dashboard request ran ~9 gen-0
collections, and every few requests a full collection walked everything start-up had made (the schema, the
modules, SQLAlchemy's caches): ~100 ms pauses. `tune` collects once, freezes what start-up made (gc.freeze:
kept out of every later collection) and sets the thresholds from the settings. Each worker process runs it
in its own start-up.
"""

from __future__ import annotations

import gc

from app.settings import Settings


def tune(settings: Settings) -> dict[str, object]:
    if settings.gc_threshold:
        gc.set_threshold(*settings.gc_threshold)
    if settings.gc_freeze:
        gc.collect()
        gc.freeze()
    return {"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()}
