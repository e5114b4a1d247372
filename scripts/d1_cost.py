"""What one D1 dashboard costs over the whole ASGI app, in process, as the site admin with its API token: SQL
statements, the worker's CPU (time.process_time) and PostgreSQL's CPU (utime + stime of the request's backend,
from /proc) per request, for the level-5, level-1 and root groups of the seeded bench database.

    .venv/bin/python scripts/d1_cost.py [--runs 60] [--rounds 3] [--only level5] [--show] [--no-lean] [--as-served] [--freeze]
        [--query TEXT --variables JSON]

Seed first with `./scripts/bench --preset medium --engine postgres --only D1` (or bench.server.ensure_seeded).
The server's cost only: a raw ASGI call (middleware, sign-in, Strawberry's view, the response's encoding), no
HTTP client. Rounds alternate the groups so that a busy minute spreads over all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.store.db import RoundTrips
from bench.scenarios import D1, gid
from bench.server import CACHE, database_url

TICK = os.sysconf("SC_CLK_TCK")


def backend_cpu(pids: list[int]) -> float:
    """Seconds of CPU used so far by these PostgreSQL backends (they run on this machine)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


async def main(runs: int, rounds: int, only: str | None, profile: str | None = None, show: bool = False, lean: bool = True,
    query: str | None = None, served: bool = False, freeze: bool = False, variables: dict[str, Any] | None = None,
) -> None:
    os.environ.setdefault("GROUPGRAPH_LOG_LEVEL", "warning")
    from sqlalchemy import text

    from app.server import create_app
    from app.settings import Settings

    seed = json.loads((CACHE / "viewers-postgres-medium.json").read_text())
    token = seed["viewers"]["admin"]["token"]
    settings = Settings(database_url=database_url("postgres", "medium"), access_log=served, bench=served)
    app = create_app(settings)
    database = app.state.database
    database.counter.keep = False
    database.lean_reads = lean
    trips = RoundTrips()
    trips.attach(database.engine)

    async def call(group_id: int) -> bytes:
        body = json.dumps({"query": query or D1, "variables": {"id": gid(group_id), **(variables or {})}}).encode()
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": "/graphql", "raw_path": b"/graphql", "query_string": b"", "root_path": "",
            "headers": [
                (b"host", b"bench"), (b"content-type", b"application/json"), (b"accept", b"application/json"),
                (b"authorization", f"Bearer {token}".encode()), (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 5000), "server": ("bench", 80),
        }
        sent = False
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await app(scope, receive, send)
        return b"".join(chunks)

    groups = {k: v for k, v in seed["groups"].items() if k in ("level5", "level1", "root") and (not only or k == only)}
    for group_id in groups.values():  # warm: the catalogue, the query cache, the pool
        for _ in range(3):
            answer = json.loads(await call(group_id))
            assert "errors" not in answer, answer["errors"][:2]
    if freeze:  # as a served worker: start-up (and the warm-up) kept out of later collections
        from app.runtime.collector import tune

        tune(settings)
    async with database.engine.connect() as connection:  # the pool's backends, this one among them
        pids = [int(p) for p in (await connection.execute(text(
            "select pid from pg_stat_activity where datname = current_database()"
        ))).scalars()]
    print("backends", pids)
    if show:  # the statements of one request of each group
        for name, group_id in groups.items():
            database.counter.reset()
            database.counter.keep = True
            await call(group_id)
            database.counter.keep = False
            print(f"{name}:", *(" ".join(s.split())[:240] for s in database.counter.statements), sep="\n  ")
    if profile:  # cProfile of `runs` requests of each group, to PROFILE-<group>.prof
        import cProfile

        for name, group_id in groups.items():
            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
            for _ in range(runs):
                await call(group_id)
            profiler.disable()
            profiler.dump_stats(f"{profile}-{name}.prof")
        await database.dispose()
        return
    cpu: dict[str, list[float]] = {k: [] for k in groups}
    pg: dict[str, list[float]] = {k: [] for k in groups}
    statements: dict[str, int] = {}
    round_trips: dict[str, dict[str, int]] = {}
    wall: dict[str, list[float]] = {k: [] for k in groups}
    for _ in range(rounds):
        for name, group_id in groups.items():
            database.counter.reset()
            trips.reset()
            await call(group_id)
            statements[name] = database.counter.count
            round_trips[name] = trips.as_dict()
            pg_before, started = backend_cpu(pids), time.process_time()
            for _ in range(runs):
                began = time.perf_counter()
                await call(group_id)
                wall[name].append((time.perf_counter() - began) * 1000)
            cpu[name].append((time.process_time() - started) / runs * 1000)
            pg[name].append((backend_cpu(pids) - pg_before) / runs * 1000)
    for name in groups:
        print(
            f"{name:7s} statements {statements[name]:2d}  worker CPU ms {statistics.median(cpu[name]):6.2f} "
            f"({', '.join(f'{c:.2f}' for c in cpu[name])})  PostgreSQL CPU ms {statistics.median(pg[name]):6.2f} "
            f"({', '.join(f'{c:.2f}' for c in pg[name])})"
        )
        print(f"{name:7s} trips {round_trips[name]}  wall ms p50 {statistics.median(wall[name]):.2f} (busy machine: indicative)")
    await database.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=None)
    parser.add_argument("--profile", default=None, help="write cProfile stats to PROFILE-<group>.prof instead")
    parser.add_argument("--show", action="store_true", help="print the statements of one request of each group")
    parser.add_argument("--no-lean", action="store_true", help="every statement through SQLAlchemy (app.store.lean off)")
    parser.add_argument("--query", default=None, help="another query (its variable: $id), for the request's fixed cost")
    parser.add_argument("--variables", default=None,
                        help='more variables of --query as JSON, e.g. \'{"first": 500}\' for the members page')
    parser.add_argument("--as-served", action="store_true",
                        help="as the peer bench serves it: the access log on, GROUPGRAPH_BENCH's headers (send stderr away)")
    parser.add_argument("--freeze", action="store_true",
                        help="tune the collector after the warm-up as a served worker's start-up does (gc.freeze)")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.rounds, args.only, args.profile, args.show, not args.no_lean, args.query, args.as_served,
                     args.freeze, json.loads(args.variables) if args.variables else None))
