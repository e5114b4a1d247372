"""`scripts/bench --preset medium --engine postgres|sqlite`: seed (cached), serve, measure, report."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

from bench import floor, peer, scenarios
from bench.scenarios import D1, D2, D3, VIEWER, Result, gid, missing, post, repeat, walk_pages
from bench.server import CACHE, Server, database_url, driver_dsn, ensure_seeded

VIEWERS = ("admin", "leader", "mentor", "analyst")
DASHBOARD_CONCURRENCY = 4
DASHBOARD_LOAD = f"L D1 level-5 c={DASHBOARD_CONCURRENCY}"
WRK_LOAD = f"L D1 level-5 c={DASHBOARD_CONCURRENCY} wrk"
TARGETS = ("root", "level1", "level2", "level5")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    parser.add_argument("--preset", default="medium", choices=("small", "medium", "large"))
    parser.add_argument("--engine", default="postgres", choices=("postgres", "sqlite"))
    parser.add_argument("--repeat", type=int, default=10, help="timed requests per scenario, after 2 warm-ups")
    parser.add_argument("--duration", type=float, default=30, help="seconds of load per concurrency level (L)")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of warm-up before each load level (L)")
    parser.add_argument("--concurrency", default="1,4,16", help="load levels for L")
    parser.add_argument("--only", default="D1,D2,D3,E,L,P",
                        help="scenarios to run (P: the ratios against PostGraphile 5 and the SQL floor, bench/peer.py)")
    parser.add_argument("--peer-rounds", type=int, default=100, help="interleaved rounds of the peer bench (P)")
    parser.add_argument("--export-rows", default=None,
                        help="report rows for bench.exports (default 100000,1000000 on large, else 10000,100000)")
    parser.add_argument("--reseed", action="store_true", help="drop the cached database and seed again")
    return parser.parse_args(argv)


def git_sha() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        memory_kb = 0
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(),
            "memory_gb": round(memory_kb / 1024 / 1024, 1)}


async def versions(url: str) -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("strawberry-graphql", "sqlalchemy", "sqlmodel", "starlette", "uvicorn", "asyncpg", "aiosqlite",
                    "httpx"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    if url.startswith("sqlite"):
        import sqlite3

        found["sqlite"] = sqlite3.sqlite_version
    else:
        import asyncpg

        conn = await asyncpg.connect(driver_dsn(url))
        found["postgresql"] = await conn.fetchval("SHOW server_version")
        await conn.close()
    return found


def viewer_targets(seed: dict[str, Any]) -> dict[str, list[str]]:
    """Where each viewer opens a dashboard: the preset's groups that it may see."""
    return {
        "admin": list(TARGETS),
        "leader": ["level1", "level5"],
        "mentor": ["level5"],
        "analyst": ["level2", "level5"],
    }


async def run_queries(server: Server, seed: dict[str, Any], fields: set[str], args: argparse.Namespace,
                      only: set[str]) -> list[Result]:
    results: list[Result] = []
    groups = seed["groups"]
    tokens = {key: seed["viewers"][key]["token"] for key in VIEWERS}
    async with httpx.AsyncClient(base_url=server.base, timeout=300) as client:
        for scenario, query in (("D1", D1), ("D2", D2)):
            if scenario not in only:
                continue
            lacking = missing(scenario, fields)
            for viewer, targets in viewer_targets(seed).items():
                for target in targets:
                    result = Result(scenario, viewer, target)
                    results.append(result)
                    if lacking:
                        result.note = "skipped: field missing " + ", ".join(lacking)
                        continue
                    server.reset_peak_rss()
                    samples, body = await repeat(client, tokens[viewer], query, {"id": gid(groups[target])}, args.repeat)
                    result.samples = samples
                    result.peak_rss_mb = server.peak_rss_mb()
                    errors = {s.error for s in samples if s.error}
                    if errors:
                        result.note = "errors: " + "; ".join(sorted(errors))[:120]
                    members = (((body or {}).get("data") or {}).get("group") or {}).get("members") or {}
                    result.extra["members_total"] = members.get("totalCount")
                    print(f"  {scenario} {viewer:8} {target:7} {result.summary().get('p50_ms')} ms", flush=True)
        if "D3" in only:
            results += await run_report(client, server, seed, fields, tokens, args)
    return results


async def run_report(client: httpx.AsyncClient, server: Server, seed: dict[str, Any], fields: set[str],
                     tokens: dict[str, str], args: argparse.Namespace) -> list[Result]:
    results: list[Result] = []
    lacking = missing("D3", fields)
    for viewer, target in (("admin", "root"), ("leader", "level1"), ("mentor", "level5"), ("analyst", "level2")):
        group = seed["groups"][target]
        if lacking:
            results.append(Result("D3 page 1", viewer, target, note="skipped: field missing " + ", ".join(lacking)))
            continue
        after, page = await walk_pages(client, tokens[viewer], group, 1000)
        for n, (label, cursor) in enumerate((("D3 page 1", None), (f"D3 page {page}", after))):
            if n and page == 1:
                continue
            result = Result(label, viewer, target)
            server.reset_peak_rss()
            result.samples, body = await repeat(client, tokens[viewer], D3, {"id": gid(group), "after": cursor},
                                                args.repeat)
            result.peak_rss_mb = server.peak_rss_mb()
            errors = {s.error for s in result.samples if s.error}
            if errors:
                result.note = "errors: " + "; ".join(sorted(errors))[:120]
            report = (((body or {}).get("data") or {}).get("group") or {}).get("progressReport") or {}
            result.extra["rows_total"] = report.get("totalCount")
            results.append(result)
            print(f"  {label} {viewer:8} {target:7} {result.summary().get('p50_ms')} ms", flush=True)
    return results


async def run_floors(url: str, seed: dict[str, Any], args: argparse.Namespace, only: set[str]) -> dict[str, Any]:
    floors: dict[str, Any] = {}
    if "D1" in only:
        for target in TARGETS:
            floors[f"D1 {target}"] = await floor.time_d1_floor(url, seed["groups"][target], args.repeat)
    if "E" in only and not url.startswith("sqlite"):
        floors["E copy root"] = await floor.time_copy(driver_dsn(url), seed["groups"]["root"])
    return floors


async def run_exports(server: Server, seed: dict[str, Any], args: argparse.Namespace) -> list[Result]:
    """Stream the progress CSV/XLSX of the root group and of a level-1 group over HTTP: rows/s, first byte, RSS.
    bench.exports (the exports' standalone measurement) runs too when it is there."""
    results: list[Result] = []
    token = seed["viewers"]["admin"]["token"]
    async with httpx.AsyncClient(base_url=server.base, timeout=600) as client:
        for target in ("level1", "root"):
            for fmt in ("csv", "xlsx"):
                result = Result(f"E {fmt}", "admin", target)
                results.append(result)
                server.reset_peak_rss()
                started = time.perf_counter()
                first: float | None = None
                size = 0
                lines = 0
                async with client.stream("GET", f"/exports/groups/{seed['groups'][target]}/progress.{fmt}",
                                         headers={"Authorization": f"Bearer {token}"}) as response:
                    if response.status_code == 404:
                        result.note = "skipped: export route missing"
                        continue
                    async for chunk in response.aiter_raw():
                        first = first if first is not None else time.perf_counter() - started
                        size += len(chunk)
                        lines += chunk.count(b"\n")
                    status = response.status_code
                seconds = time.perf_counter() - started
                result.peak_rss_mb = server.peak_rss_mb()
                if status != 200:
                    result.note = f"HTTP {status}"
                    continue
                result.extra.update(seconds=round(seconds, 3), ttfb_ms=round((first or 0) * 1000, 1), bytes=size)
                if fmt == "csv":
                    result.extra.update(rows=lines - 1, rows_per_s=round((lines - 1) / seconds))
                print(f"  E {fmt} {target}: {seconds:.2f}s {result.extra.get('rows', '')} rows", flush=True)
    try:
        exports = importlib.import_module("bench.exports")
    except ModuleNotFoundError:
        results.append(Result("E bench.exports", "-", "-", note="skipped: bench.exports missing"))
        return results
    for rows in [int(r) for r in args.export_rows.split(",") if r]:
        try:
            measured = await asyncio.to_thread(exports.run, args.engine, rows, ["CSV", "XLSX"])  # it runs its own loop
        except Exception as exc:  # its failure must not end the run
            results.append(Result("E bench.exports", "-", f"{rows} rows", note=f"failed: {type(exc).__name__}: {exc}"[:200]))
            continue
        for item in measured:
            result = Result(f"E {item.format.lower()} (bench.exports)", "admin", f"{rows} rows")
            result.peak_rss_mb = item.worker_peak_rss_mib
            result.extra.update(rows=rows, rows_per_s=item.rows_per_second, seconds=item.seconds,
                                ttfb_ms=round(item.first_byte_seconds * 1000, 1), bytes=item.bytes)
            results.append(result)
    return results


async def run_load(server: Server, seed: dict[str, Any], args: argparse.Namespace, fields: set[str]) -> list[Result]:
    tokens = {key: seed["viewers"][key]["token"] for key in VIEWERS}
    # what many clients do at once: small dashboards, the signed-in user, a report page
    mix: list[tuple[str, str, dict[str, Any]]] = [(tokens[v], VIEWER, {}) for v in VIEWERS]
    if not missing("D1", fields):
        mix += [(tokens[v], D1, {"id": gid(seed["groups"]["level5"])}) for v in VIEWERS]
    if not missing("D3", fields):
        mix.append((tokens["analyst"], D3, {"id": gid(seed["groups"]["level2"]), "after": None}))
    results = []
    if not missing("D1", fields):  # the level-5 dashboard alone at concurrency 4: the 1-vs-2-worker ratio's load
        dashboards = [(tokens[v], D1, {"id": gid(seed["groups"]["level5"])}) for v in VIEWERS]
        server.reset_peak_rss()
        outcome = await costed(server, scenarios.load(server.base, dashboards, DASHBOARD_CONCURRENCY, args.duration,
                                                      args.warmup))
        result = Result(DASHBOARD_LOAD, "mix", "level5", workers=server.workers, extra=outcome)
        result.peak_rss_mb = server.peak_rss_mb()
        results.append(result)
        print(f"  {DASHBOARD_LOAD} workers={server.workers}: {outcome['req_per_s']} req/s p50 {outcome['p50_ms']} ms "
              f"p95 {outcome['p95_ms']} ms, CPU per request: workers {outcome.get('worker_cpu_ms')} ms, "
              f"loader {outcome.get('loader_cpu_ms')} ms", flush=True)
        if shutil.which("wrk"):
            outcome = await asyncio.to_thread(wrk_load, server, tokens["admin"], gid(seed["groups"]["level5"]), args)
            results.append(Result(WRK_LOAD, "admin", "level5", workers=server.workers, extra=outcome))
            print(f"  {WRK_LOAD} workers={server.workers}: {outcome['req_per_s']} req/s", flush=True)
    for level in [int(c) for c in args.concurrency.split(",") if c]:
        server.reset_peak_rss()
        outcome = await costed(server, scenarios.load(server.base, mix, level, args.duration, args.warmup))
        result = Result(f"L c={level}", "mix", f"{len(mix)} queries", workers=server.workers, extra=outcome)
        result.peak_rss_mb = server.peak_rss_mb()
        results.append(result)
        print(f"  L workers={server.workers} c={level}: {outcome['req_per_s']} req/s p50 {outcome['p50_ms']} ms, CPU per "
              f"request: workers {outcome.get('worker_cpu_ms')} ms, loader {outcome.get('loader_cpu_ms')} ms", flush=True)
    return results


def wrk_load(server: Server, token: str, group: str, args: argparse.Namespace) -> dict[str, Any]:
    """The level-5 dashboard at the same concurrency from `wrk`, a load generator in C that leaves the cores to
    the workers and PostgreSQL. A new connection per request: with keep-alive, the few connections land on
    the workers as the kernel hands them out (all four on one worker, sometimes), and the ratio would measure
    that draw."""
    body = json.dumps({"query": D1, "variables": {"id": group}})
    script = (
        'wrk.method = "POST"\nwrk.body = ' + json.dumps(body) + '\nwrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {token}"\nwrk.headers["Connection"] = "close"\n'
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script)
        lua.flush()
        command = ["wrk", "-t1", f"-c{DASHBOARD_CONCURRENCY}", "-s", lua.name, f"{server.base}/graphql"]
        subprocess.run([*command[:3], f"-d{max(int(args.warmup), 1)}s", *command[3:]], capture_output=True, check=True)
        found = subprocess.run([*command[:3], f"-d{int(args.duration)}s", *command[3:]], capture_output=True,
                               text=True, check=True).stdout
    rate = next(float(line.split()[1]) for line in found.splitlines() if line.startswith("Requests/sec"))
    failed = next((int(line.split()[-1]) for line in found.splitlines() if "Non-2xx" in line), 0)
    return {"req_per_s": round(rate, 1), "errors": failed, "loader": "wrk"}


async def costed(server: Server, load: Any) -> dict[str, Any]:
    """A load run's outcome with the CPU milliseconds per request (warm-up requests counted too) of the workers
    and of this loader: what the machine's cores must share between them and PostgreSQL."""
    workers, loader = server.cpu_seconds(), time.process_time()
    outcome = await load
    total = outcome["requests"] + outcome.get("warmup_requests", 0)
    if total:
        outcome["worker_cpu_ms"] = round((server.cpu_seconds() - workers) * 1000 / total, 2)
        outcome["loader_cpu_ms"] = round((time.process_time() - loader) * 1000 / total, 2)
    return outcome


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def targets(rows: list[dict[str, Any]], floors: dict[str, Any]) -> list[dict[str, Any]]:
    """The performance targets, each with the measured value and met / missed / n/a."""
    def find(scenario: str, viewer: str, target: str, workers: int = 1) -> dict[str, Any]:
        for row in rows:
            if (row["scenario"], row["viewer"], row["target"], row["workers"]) == (scenario, viewer, target, workers):
                return row
        return {}

    checks: list[dict[str, Any]] = []

    def check(name: str, value: Any, ok: bool | None) -> None:
        checks.append({"target": name, "value": value, "status": "n/a" if ok is None else "met" if ok else "missed"})

    counts = {(r["scenario"], r["viewer"], r["target"]): r.get("statements") for r in rows
              if r["scenario"] in ("D1", "D2")}
    values = [v for v in counts.values() if v is not None]
    flat = [x for v in values for x in (v if isinstance(v, list) else [v])]
    check("D1/D2 statements <= 15", max(flat) if flat else None, max(flat) <= 15 if flat else None)
    for scenario in ("D1", "D2"):
        for viewer in VIEWERS:
            seen = {t: v for (s, vw, t), v in counts.items() if s == scenario and vw == viewer and v is not None}
            branches = {str(v) for t, v in seen.items() if t != "level5"}  # level5 is a leaf: no children to count
            check(f"{scenario} statements equal for every group size ({viewer}; level5 has no nested groups)",
                  seen, len(branches) == 1 if branches else None)
    for target in TARGETS:
        app = find("D1", "admin", target).get("p50_ms")
        base = (floors.get(f"D1 {target}") or {}).get("p50_ms")
        value = ratio(app, base)
        check(f"D1 p50 <= 3x SQL floor (admin, {target})", value, value <= 3 if value else None)
    for viewer in ("admin",):
        growth = ratio(find("D1", viewer, "root").get("p50_ms"), find("D1", viewer, "level5").get("p50_ms"))
        check("D1 level-5 -> root p50 growth <= 1.5x (admin)", growth, growth <= 1.5 if growth else None)
    for viewer, target in (("admin", "root"), ("leader", "level1"), ("analyst", "level2")):
        first = find("D3 page 1", viewer, target).get("p50_ms")
        last = next((r for r in rows if r["scenario"].startswith("D3 page ") and r["scenario"] != "D3 page 1"
                     and r["viewer"] == viewer and r["target"] == target), {})
        value = ratio(last.get("p50_ms"), first)
        check(f"D3 {last.get('scenario', 'last page')} <= 1.2x page 1 ({viewer})", value, value <= 1.2 if value else None)
    csv_rate = find("E csv", "admin", "root").get("rows_per_s")
    copy_rate = (floors.get("E copy root") or {}).get("rows_per_s")
    value = ratio(csv_rate, copy_rate)
    check("E CSV >= 80% of COPY rows/s (root)", value, value >= 0.8 if value else None)
    for fmt in ("csv", "xlsx"):
        sized = sorted((r["rows"], r.get("peak_rss_mb")) for r in rows
                       if r["scenario"] == f"E {fmt} (bench.exports)" and r.get("rows"))
        if len(sized) >= 2 and sized[0][1] and sized[-1][1]:
            growth = round(sized[-1][1] - sized[0][1], 1)
            check(f"E {fmt} peak RSS growth {sized[0][0]:,} -> {sized[-1][0]:,} rows <= 20 MB", growth, growth <= 20)
        else:
            check(f"E {fmt} peak RSS growth <= 20 MB", None, None)
    for scenario, label in ((DASHBOARD_LOAD, f"the level-5 dashboard at c={DASHBOARD_CONCURRENCY}"),
                            (WRK_LOAD, f"the level-5 dashboard at c={DASHBOARD_CONCURRENCY} from wrk"),
                            ("L c=4", "the mix at c=4"), ("L c=16", "the mix at c=16")):
        value = worker_ratio(rows, scenario)
        check(f"L two workers >= 1.6x one worker req/s, {label}", value, value >= 1.6 if value else None)
    return checks


def worker_ratio(rows: list[dict[str, Any]], scenario: str) -> float | None:
    """Two workers' req/s over one worker's, for one load scenario."""
    one = next((r for r in rows if r["scenario"] == scenario and r["workers"] == 1), {}).get("req_per_s")
    two = next((r for r in rows if r["scenario"] == scenario and r["workers"] == 2), {}).get("req_per_s")
    return ratio(two, one)


def table(rows: list[dict[str, Any]]) -> str:
    header = ("scenario", "viewer", "target", "w", "n", "p50 ms", "p95 ms", "p99 ms", "stmts", "db%", "bytes",
              "RSS MB", "note")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        note = r.get("note") or ", ".join(
            f"{k}={r[k]}" for k in ("members_total", "rows_total", "req_per_s", "requests", "errors", "worker_cpu_ms",
                                     "loader_cpu_ms", "rows",
                                     "rows_per_s", "ttfb_ms", "seconds") if r.get(k) is not None
        )
        share = r.get("db_share")
        lines.append("| " + " | ".join(str(x) for x in (
            r["scenario"], r["viewer"], r["target"], r["workers"], r.get("n", r.get("requests", "")),
            r.get("p50_ms", ""), r.get("p95_ms", ""), r.get("p99_ms", ""), r.get("statements", ""),
            f"{share * 100:.0f}%" if share is not None else "", r.get("bytes", ""), r.get("peak_rss_mb", ""), note,
        )) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.export_rows is None:
        args.export_rows = "100000,1000000" if args.preset == "large" else "10000,100000"
    only = {s.strip() for s in args.only.split(",")}
    seed = ensure_seeded(args.engine, args.preset, args.reseed)
    url = database_url(args.engine, args.preset)
    started = time.time()
    rows: list[dict[str, Any]] = []
    floors: dict[str, Any] = {}
    fields: set[str] = set()
    for workers in (1, 2) if "L" in only else (1,):
        server = Server(url, workers)
        print(f"uvicorn with {workers} worker(s) on {args.engine}/{args.preset}", flush=True)
        server.start()
        try:
            async def measure(server: Server = server, workers: int = workers) -> list[Result]:
                nonlocal fields
                async with httpx.AsyncClient(base_url=server.base, timeout=60) as client:
                    fields = await scenarios.schema_fields(client, seed["viewers"]["admin"]["token"])
                    sample, _ = await post(client, seed["viewers"]["admin"]["token"], VIEWER, {})
                    if sample.error:
                        raise SystemExit(f"the admin token does not work: {sample.error}")
                found: list[Result] = []
                if workers == 1:
                    found += await run_queries(server, seed, fields, args, only)
                    if "E" in only:
                        found += await run_exports(server, seed, args)
                if "L" in only:
                    found += await run_load(server, seed, args, fields)
                return found

            for result in asyncio.run(measure()):
                rows.append(result.summary())
        finally:
            server.stop()
    floors = asyncio.run(run_floors(url, seed, args, only))
    for name, value in floors.items():
        rows.append({"scenario": f"floor {name.split()[0]}", "viewer": "sql", "target": name.split()[-1],
                     "workers": 0, "n": args.repeat, **value})
    checks = targets(rows, floors)
    peers: dict[str, Any] | None = None
    if "P" in only and args.engine == "postgres" and args.preset in ("small", "medium"):
        print("peer bench: groupgraph, PostGraphile 5 and the SQL floor, interleaved", flush=True)
        peers = peer.run(args.preset, args.peer_rounds)
        peers.pop("samples", None)
        peers["checks"] = peer.judge(peers)
    report = {
        "git_sha": git_sha(), "preset": args.preset, "engine": args.engine, "machine": machine(),
        "versions": asyncio.run(versions(url)), "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 1), "seed": {k: seed.get(k) for k in ("seconds", "counts", "groups")},
        "args": vars(args), "load_generator": "httpx-based closed-loop loader (bench/scenarios.py), same machine",
        "results": rows, "floors": floors, "targets": checks, "peer": peers,
    }
    CACHE.mkdir(exist_ok=True)
    out = CACHE / f"results-{args.engine}-{args.preset}.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    print()
    print(table(rows))
    print()
    for item in checks:
        print(f"- {item['status']:6} {item['target']}: {item['value']}")
    if peers is not None:
        print()
        peer.print_report(peers, peers["checks"])
    by_wrk = worker_ratio(rows, WRK_LOAD)
    if by_wrk is not None:
        print(f"\n{WRK_LOAD}: two workers {by_wrk}x one worker's req/s")
    dashboards = {r["workers"]: r for r in rows if r["scenario"] == DASHBOARD_LOAD}
    if len(dashboards) == 2:
        one, two = dashboards[1], dashboards[2]
        print(f"\n{DASHBOARD_LOAD}: 1 worker {one['req_per_s']} req/s (p50 {one['p50_ms']} ms, worker CPU "
              f"{one.get('worker_cpu_ms')} ms per request), 2 workers {two['req_per_s']} req/s (p50 {two['p50_ms']} ms, "
              f"{two.get('worker_cpu_ms')} ms): {worker_ratio(rows, DASHBOARD_LOAD)}x "
              f"(load average at the end {os.getloadavg()[0]:.2f}; the loader shares the machine's {os.cpu_count()} cores)")
    print(f"\nwrote {out}", file=sys.stderr)
