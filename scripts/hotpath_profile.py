"""In-process cost of the dashboard and members-page queries on a seeded bench database: SQL statements,
cProfile function calls and CPU ms (time.process_time) per request, as the site admin.

    .venv/bin/python scripts/hotpath_profile.py [--engine postgres] [--preset medium] [--runs 30] [--no-gc] [--freeze]

Seed first with `./scripts/bench --preset medium --engine postgres --only D1` (or bench.server.ensure_seeded).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import pstats
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.server import CACHE, database_url

# the peer-bench queries, beside the project (../shared from the main checkout, ../../shared from a worktree)
QUERIES = next(
    (p for p in (Path("../shared/peer-bench/queries"), Path("../../shared/peer-bench/queries")) if p.is_dir()),
    Path("../shared/peer-bench/queries"),
)


def scenarios(groups: dict[str, int]) -> list[tuple[str, str, dict[str, Any]]]:
    from app.runtime.ids import to_global_id

    d1 = (QUERIES / "gg_d1.graphql").read_text()
    members = (QUERIES / "gg_members.graphql").read_text()
    return [
        ("d1-level5", d1, {"id": to_global_id("Group", groups["level5"])}),
        ("d1-root", d1, {"id": to_global_id("Group", groups["root"])}),
        ("members100", members, {"id": to_global_id("Group", groups["level1"]), "first": 100}),
        ("members500", members, {"id": to_global_id("Group", groups["level1"]), "first": 500}),
    ]


async def main(
    engine: str, preset: str, runs: int, profile_out: str | None, only: str | None = None, freeze: bool = False
) -> None:
    from app.context import Context
    from app.schema import build_schema
    from app.services.auth import authenticate
    from app.settings import Settings
    from app.store.db import Database

    viewers = json.loads((CACHE / f"viewers-{engine}-{preset}.json").read_text())
    settings = Settings(database_url=database_url(engine, preset))
    database = Database(settings)
    schema = build_schema(settings)
    async with database.session() as session:
        credential = await authenticate(session, viewers["viewers"]["admin"]["token"])

    async def once(query: str, variables: dict[str, Any]) -> Any:
        context = Context(database, settings, credential)
        try:
            result = await schema.execute(query, variable_values=variables, context_value=context)
        finally:
            await context.store.close()
        assert not result.errors, result.errors
        return result

    for name, query, variables in scenarios(viewers["groups"]):
        if only and name != only:
            continue
        for _ in range(3):
            await once(query, variables)
        if freeze:  # as `groupgraph serve` does after start-up: the collector skips what exists now
            gc.collect()
            gc.freeze()
        database.counter.reset()
        database.counter.keep = True
        await once(query, variables)
        database.counter.keep = False
        statements = database.counter.count
        profiler = cProfile.Profile()
        profiler.enable()
        await once(query, variables)
        profiler.disable()
        calls = pstats.Stats(profiler).total_calls  # type: ignore[attr-defined]
        if profile_out:
            profiler.dump_stats(f"{profile_out}-{name}.prof")
        if gc.isenabled():
            gc.collect()
        started = time.process_time()
        for _ in range(runs):
            await once(query, variables)
        cpu = (time.process_time() - started) / runs * 1000
        print(f"{name:11s} statements {statements:3d}  calls {calls:8d}  cpu {cpu:7.1f} ms/request")
    await database.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", default="postgres")
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--no-gc", action="store_true", help="measure with the cyclic GC off (its share of the CPU)")
    parser.add_argument("--only", default=None, help="one scenario")
    parser.add_argument("--freeze", action="store_true", help="gc.freeze() after the warm-up, as the server does")
    parser.add_argument("--ordinary-fields", action="store_true", help="without app.runtime.plain_fields and app.runtime.subtrees")
    parser.add_argument("--profile", default=None, help="write cProfile stats to PREFIX-<scenario>.prof")
    args = parser.parse_args()
    if args.no_gc:
        gc.disable()
    if args.ordinary_fields:
        from app.runtime import plain_fields, subtrees

        plain_fields.plain_leaf = lambda _field: None  # type: ignore[assignment]
        subtrees.ENABLED = False
    asyncio.run(main(args.engine, args.preset, args.runs, args.profile, args.only, args.freeze))
