"""What one request costs the worker process, measured in-process on the bench database (no HTTP server, no
load generator competing for the cores): CPU time, cyclic garbage collections and their pauses per generation,
and trips to the database (checkouts, transactions, statements, pings).

    .venv/bin/python -m bench.runtime --engine postgres --preset medium [--requests 40] [--gc-threshold 700,10,10]

Scenarios: the D1 dashboard of the level-5 group (the mentor) and the 500-member page with steps (D2) of the
level-1 group (its leader). The app's lifespan runs first, as under `groupgraph serve` (so gc.freeze and the
collector's thresholds apply as configured); `--gc-threshold` and `--no-gc-freeze` override the settings.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import statistics
import time
from typing import Any

import httpx

from bench.scenarios import D1, D2, gid
from bench.server import CACHE, database_url, ensure_seeded


class Collections:
    """gc.callbacks: collections and their CPU time per generation while `on`."""

    def __init__(self) -> None:
        self.on = False
        self.count = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.longest = [0.0, 0.0, 0.0]
        self.collected = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if not self.on:
            return
        if phase == "start":
            self._started = time.thread_time()
            return
        took = time.thread_time() - self._started  # CPU time: a busy machine does not inflate it
        generation = info["generation"]
        self.count[generation] += 1
        self.seconds[generation] += took
        self.longest[generation] = max(self.longest[generation], took)
        self.collected += info.get("collected", 0)

    def reset(self) -> None:
        self.count = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.longest = [0.0, 0.0, 0.0]
        self.collected = 0


async def measure(args: argparse.Namespace, seed: dict[str, Any]) -> dict[str, Any]:
    from app.server import create_app
    from app.settings import Settings
    from app.store.db import Database, RoundTrips

    overrides: dict[str, Any] = {"database_url": database_url(args.engine, args.preset), "access_log": False,
                                 "log_level": "WARNING", "export_worker": False}
    if args.gc_threshold is not None:
        overrides["gc_threshold"] = args.gc_threshold
    if args.no_gc_freeze:
        overrides["gc_freeze"] = False
    settings = Settings(**overrides)
    database = Database(settings)
    trips = RoundTrips()
    for engine in {database.engine, database.write_engine}:
        trips.attach(engine)
    app = create_app(settings, database)
    collections = Collections()
    gc.callbacks.append(collections)
    scenarios = {
        "D1 level-5 (mentor)": (seed["viewers"]["mentor"]["token"], D1, {"id": gid(seed["groups"]["level5"])}),
        "D2 500 members (leader, level-1)": (seed["viewers"]["leader"]["token"], D2, {"id": gid(seed["groups"]["level1"])}),
    }
    out: dict[str, Any] = {"engine": args.engine, "preset": args.preset, "gc_threshold": list(gc.get_threshold())}
    try:
        async with app.router.lifespan_context(app):
            out["gc_threshold"] = list(gc.get_threshold())
            out["gc_frozen"] = gc.get_freeze_count()
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=300) as client:
                for name, (token, query, variables) in scenarios.items():
                    requests = args.requests if name.startswith("D1") else max(args.requests // 4, 5)
                    headers = {"Authorization": f"Bearer {token}"}
                    for _ in range(args.warmup):
                        response = await client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
                        assert "errors" not in response.json(), response.text[:300]
                    trips.reset()
                    collections.reset()
                    collections.on = True
                    cpu: list[float] = []
                    wall: list[float] = []
                    for _ in range(requests):
                        started, started_cpu = time.perf_counter(), time.process_time()
                        response = await client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
                        cpu.append(time.process_time() - started_cpu)
                        wall.append(time.perf_counter() - started)
                        assert response.status_code == 200
                    collections.on = False
                    cpu.sort()
                    wall.sort()
                    out[name] = {
                        "requests": requests,
                        "cpu_ms_median": round(statistics.median(cpu) * 1000, 2),
                        "cpu_ms_mean": round(statistics.fmean(cpu) * 1000, 2),
                        "wall_ms_p50": round(statistics.median(wall) * 1000, 2),
                        "wall_ms_p95": round(wall[int(0.95 * (len(wall) - 1))] * 1000, 2),
                        "gc_per_request": [round(c / requests, 2) for c in collections.count],
                        "gc_ms_per_request": round(sum(collections.seconds) / requests * 1000, 2),
                        "gc_ms_per_request_by_generation": [round(s / requests * 1000, 2) for s in collections.seconds],
                        "gc_longest_ms_by_generation": [round(s * 1000, 2) for s in collections.longest],
                        "gc_collected_objects_per_request": round(collections.collected / requests),
                        "per_request": {k: round(v / requests, 2) for k, v in trips.as_dict().items()},
                        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                    }
                    print(name, json.dumps(out[name]), flush=True)
    finally:
        gc.callbacks.remove(collections)
        await database.dispose()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.runtime", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="medium", choices=("small", "medium", "large"))
    parser.add_argument("--engine", default="postgres", choices=("postgres", "sqlite"))
    parser.add_argument("--requests", type=int, default=40, help="timed D1 requests (D2: a quarter, at least 5)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--gc-threshold", default=None, help="e.g. 700,10,10 (Python's default)")
    parser.add_argument("--no-gc-freeze", action="store_true")
    parser.add_argument("--label", default="")
    args = parser.parse_args(argv)
    out = asyncio.run(measure(args, ensure_seeded(args.engine, args.preset)))
    out["label"] = args.label
    CACHE.mkdir(exist_ok=True)
    with (CACHE / "runtime.jsonl").open("a") as log:
        log.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
