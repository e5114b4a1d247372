"""Measure the streamed progress exports (not a test).

    .venv/bin/python -m bench.exports --engine sqlite|postgres --rows 10000,1000000

For each row count: a fresh database (a temporary SQLite file, or a PostgreSQL database dropped afterwards)
filled set-based in SQL (INSERT ... SELECT over a number series, never row by row): 10 courses of 5 steps,
rows/10 learners spread over 10 classes under one school, each enrolled in every course, with some step
progress. Then, for CSV and for XLSX, a fresh uvicorn worker is started as a subprocess (so its peak RSS,
VmHWM, belongs to that one download), the school's progress export is downloaded, and rows/s, time to
first byte, total time, size and the worker's peak RSS are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from sqlalchemy import text

from app.services.auth import SESSION_PREFIX, new_token, token_hash
from app.settings import Settings
from app.store.db import Database
from app.store.migrate import upgrade

PG_ADMIN_DSN = os.environ.get("GROUPGRAPH_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_URL_BASE = os.environ.get("GROUPGRAPH_TEST_PG_BASE", "postgresql+asyncpg://postgres@127.0.0.1:5432/")
COURSES = 10
STEPS = 5
CLASSES = 10


@dataclass
class Result:
    engine: str
    rows: int
    format: str
    seconds: float
    first_byte_seconds: float
    rows_per_second: float
    bytes: int
    rows_seen: int | None
    worker_rss_before_mib: float
    worker_peak_rss_mib: float


def _series(engine: str, n: int) -> tuple[str, str]:
    """(WITH prefix, FROM item) giving i = 1..n."""
    if engine == "sqlite":
        return f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) ", "s"
    return "", f"generate_series(1, {n}) AS s(i)"


async def fill(database: Database, engine: str, rows: int) -> str:
    """The data set; returns an admin's bearer token."""
    learners = max(1, rows // COURSES)
    ts = "'2026-01-01 00:00:00.000000'" if engine == "sqlite" else "TIMESTAMPTZ '2026-01-01 00:00:00+00'"
    false, true = ("0", "1") if engine == "sqlite" else ("false", "true")
    token = new_token(SESSION_PREFIX)
    with_, series = _series(engine, learners)
    statements = [
        f"""INSERT INTO "user" (email, email_normalized, kind, first_name, last_name, last_name_normalized,
            site_roles, status, synced, agreed_to_download_reports, created_at, login_count)
            VALUES ('admin@bench.test', 'admin@bench.test', 'STAFF', 'Ada', 'Admin', 'admin', 'ADMIN',
            'ACTIVE', {false}, {true}, {ts}, 0)""",
        f"""INSERT INTO session (user_id, token_hash, created_at, expires_at)
            SELECT id, '{token_hash(token)}', {ts}, {ts.replace("2026", "2099")} FROM "user" WHERE email = 'admin@bench.test'""",
        f"""INSERT INTO "group" (name, name_normalized, slug, synced, depth, created_at)
            VALUES ('School', 'school', 'school', {false}, 0, {ts})""",
        *(
            f"""INSERT INTO "group" (parent_id, name, name_normalized, slug, synced, depth, created_at)
                SELECT id, 'Class {c}', 'class {c}', 'class-{c}', {false}, 1, {ts} FROM "group" WHERE slug = 'school'"""
            for c in range(CLASSES)
        ),
        """INSERT INTO group_closure (ancestor_id, descendant_id, depth) SELECT id, id, 0 FROM "group" """,
        """INSERT INTO group_closure (ancestor_id, descendant_id, depth) SELECT parent_id, id, 1 FROM "group"
           WHERE parent_id IS NOT NULL""",
        *(f"INSERT INTO course (name, created_at) VALUES ('Course {c}', {ts})" for c in range(COURSES)),
        """INSERT INTO step (course_id, title, position, kind) SELECT c.id, 'Step', p.position, 'LESSON'
            FROM course c CROSS JOIN (SELECT 0 AS position UNION ALL SELECT 1 UNION ALL SELECT 2
            UNION ALL SELECT 3 UNION ALL SELECT 4) p""",
        f"""{with_}INSERT INTO "user" (email, email_normalized, kind, first_name, last_name, last_name_normalized,
            company, site_roles, status, synced, agreed_to_download_reports, created_at, login_count)
            SELECT 'learner' || i || '@bench.test', 'learner' || i || '@bench.test', 'LEARNER', 'First' || i,
            'Last' || i, 'last' || i, 'Company ' || (i % 100), '', 'ACTIVE', {false}, {true}, {ts}, 0 FROM {series}""",
        f"""INSERT INTO membership (user_id, group_id, role, created_at)
            SELECT u.id, g.id, 'MEMBER', {ts} FROM "user" u JOIN "group" g
            ON g.slug = 'class-' || (u.id % {CLASSES}) WHERE u.kind = 'LEARNER'""",
        f"""INSERT INTO enrollment (user_id, course_id, activated_at, completed_at)
            SELECT u.id, c.id, {ts}, CASE WHEN (u.id + c.id) % 7 = 0 THEN {ts} ELSE NULL END
            FROM "user" u CROSS JOIN course c WHERE u.kind = 'LEARNER'""",
        f"""INSERT INTO step_progress (user_id, step_id, course_id, viewed_at, completed_at)
            SELECT e.user_id, s.id, s.course_id, {ts}, CASE WHEN s.position % 2 = 0 THEN {ts} ELSE NULL END
            FROM enrollment e JOIN step s ON s.course_id = e.course_id AND s.position < (e.user_id + e.course_id) % 4""",
    ]
    async with database.engine.begin() as conn:
        for statement in statements:
            await conn.execute(text(statement))
    if engine == "postgres":
        async with database.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("ANALYZE"))
    return token


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rss_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _start_worker(url: str, port: int, **settings: str) -> subprocess.Popen[bytes]:
    """A uvicorn worker on `url`; `settings`: more GROUPGRAPH_ variables (the export worker is off unless
    asked for: the downloads are measured alone)."""
    env = {
        **os.environ, "GROUPGRAPH_DATABASE_URL": url, "GROUPGRAPH_SMTP_HOST": "", "GROUPGRAPH_EXPORT_WORKER": "false",
        **{f"GROUPGRAPH_{k.upper()}": v for k, v in settings.items()},
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.asgi:app", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning"],
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return worker
        except httpx.HTTPError:
            time.sleep(0.2)
    worker.kill()
    raise RuntimeError("the uvicorn worker did not start")


def download(url: str, engine: str, rows: int, format: str, token: str) -> Result:
    port = _free_port()
    worker = _start_worker(url, port)
    try:
        before = _rss_mib(worker.pid, "VmRSS")
        started = time.perf_counter()
        first_byte = None
        size = 0
        lines = 0
        tail = b""
        with httpx.stream(
            "GET", f"http://127.0.0.1:{port}/exports/groups/1/progress.{format.lower()}",
            headers={"Authorization": f"Bearer {token}"}, timeout=3600,
        ) as response:
            if response.status_code != 200:
                raise RuntimeError(f"{format}: HTTP {response.status_code} {response.read()[:300]!r}")
            for chunk in response.iter_raw():
                if first_byte is None:
                    first_byte = time.perf_counter() - started
                size += len(chunk)
                lines += (tail + chunk).count(b"\r\n")  # a line end may be split across two chunks
                tail = chunk[-1:]
        seconds = time.perf_counter() - started
        peak = _rss_mib(worker.pid, "VmHWM")
    finally:
        worker.terminate()
        worker.wait(30)
    return Result(
        engine, rows, format, round(seconds, 2), round(first_byte or seconds, 3), round(rows / seconds),
        size, lines - 1 if format == "CSV" else None, round(before, 1), round(peak, 1),
    )


async def _create(engine: str, rows: int) -> tuple[str, Path | None, str | None]:
    if engine == "sqlite":
        path = Path(tempfile.mkdtemp(prefix="groupgraph-bench-")) / "bench.db"
        return f"sqlite+aiosqlite:///{path}", path, None
    import asyncpg

    name = f"groupgraph_bench_exports_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    return PG_URL_BASE + name, None, name


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    path.parent.rmdir()


async def _drop(path: Path | None, name: str | None) -> None:
    if path is not None:
        _remove(path)
    if name is not None:
        import asyncpg

        admin = await asyncpg.connect(PG_ADMIN_DSN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def prepare(engine: str, rows: int) -> tuple[str, str, Path | None, str | None, float]:
    url, path, name = await _create(engine, rows)
    database = Database(Settings(database_url=url))
    try:
        await upgrade(database.engine)
        started = time.perf_counter()
        token = await fill(database, engine, rows)
        return url, token, path, name, time.perf_counter() - started
    finally:
        await database.dispose()


def run(engine: str, rows: int, formats: list[str]) -> list[Result]:
    url, token, path, name, fill_seconds = asyncio.run(prepare(engine, rows))
    print(f"# {engine}: {rows} report rows filled in {fill_seconds:.1f}s", file=sys.stderr)
    try:
        results = []
        for format in formats:
            result = download(url, engine, rows, format, token)
            print(json.dumps(asdict(result)))
            sys.stdout.flush()
            if result.rows_seen is not None and result.rows_seen != rows:
                raise RuntimeError(f"expected {rows} rows, the CSV held {result.rows_seen}")
            results.append(result)
        return results
    finally:
        asyncio.run(_drop(path, name))


def main(argv: list[str] | None = None) -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rows", default="10000", help="comma-separated report row counts (multiples of 10)")
    parser.add_argument("--formats", default="CSV,XLSX")
    args = parser.parse_args(argv)
    results: list[Result] = []
    for rows in (int(r) for r in args.rows.split(",")):
        results.extend(run(args.engine, rows, [f.strip().upper() for f in args.formats.split(",")]))
    return results


if __name__ == "__main__":
    main()
