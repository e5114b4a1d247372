"""Benchmark of the OneRoster import: a generated district (default 100,000 students, 5,000 classes,
1,000,000 student enrollments, plus teachers, schools and guardians), imported on SQLite and/or PostgreSQL:
the dry run, the first apply and a no-change re-run, each in its own process so that its peak RSS is its own.

    .venv/bin/python scripts/roster_bench.py [--students 100000] [--engines sqlite,postgres]
        [--pg-admin postgresql://postgres@127.0.0.1:5432/postgres]

Prints one line per phase (rows/s over every CSV row of the bundle, seconds, peak RSS, the run's counts) and
the machine's load average before and after (the machine may be shared).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def generate(path: Path, students: int) -> int:
    """Write the district's bundle (OneRoster 1.1) to `path`; returns its number of CSV data rows."""
    classes = max(1, students // 20)
    schools = max(1, classes // 100)
    teachers = max(1, classes // 5)
    guardians = students // 5
    per_student = 10
    rows = 0

    def table(header: list[str], body: object) -> bytes:
        nonlocal rows
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(header)
        for row in body:  # type: ignore[attr-defined]
            writer.writerow(row)
            rows += 1
        return out.getvalue().encode()

    files = {
        "manifest.csv": "propertyName,value\r\nmanifest.version,1.0\r\noneroster.version,1.1\r\n"
        + "".join(f"file.{n},bulk\r\n" for n in ("orgs", "academicSessions", "courses", "classes", "users", "enrollments"))
        + "file.demographics,absent\r\n",
    }
    archive = zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED)
    archive.writestr("manifest.csv", files["manifest.csv"])
    archive.writestr("orgs.csv", table(
        ["sourcedId", "status", "dateLastModified", "name", "type", "identifier", "parentSourcedId"],
        [("D", "", "", "Bench District", "district", "", ""),
         *((f"S{n}", "", "", f"School {n}", "school", "", "D") for n in range(schools))],
    ))
    archive.writestr("academicSessions.csv", table(
        ["sourcedId", "status", "dateLastModified", "title", "type", "startDate", "endDate", "parentSourcedId", "schoolYear"],
        [("T1", "", "", "Fall", "term", "2026-08-24", "2026-12-18", "", "2027")],
    ))
    archive.writestr("courses.csv", table(
        ["sourcedId", "status", "dateLastModified", "schoolYearSourcedId", "title", "courseCode", "grades", "orgSourcedId"],
        ((f"C{n}", "", "", "", f"Course {n}", "", "", "D") for n in range(50)),
    ))
    archive.writestr("classes.csv", table(
        ["sourcedId", "status", "dateLastModified", "title", "grades", "courseSourcedId", "classCode", "classType",
         "location", "schoolSourcedId", "termSourcedIds"],
        ((f"K{n}", "", "", f"Class {n}", "", f"C{n % 50}", f"K-{n}", "scheduled", "", f"S{n % schools}", "T1")
         for n in range(classes)),
    ))
    users = ["sourcedId", "status", "dateLastModified", "enabledUser", "orgSourcedIds", "role", "username", "userIds",
             "givenName", "familyName", "middleName", "identifier", "email", "sms", "phone", "agentSourcedIds"]

    def people():  # type: ignore[no-untyped-def]
        for n in range(teachers):
            yield (f"t{n}", "", "", "true", f"S{n % schools}", "teacher", "", "", "Teach", f"Er{n}", "", "", f"t{n}@bench.example", "", "", "")
        for n in range(students):
            school = (n * classes // students) % schools
            yield (f"s{n}", "", "", "true", f"S{school}", "student", "", "", "Stu", f"Dent{n}", "", "", f"s{n}@bench.example", "", "",
                   f"g{n // 5}")
        for n in range(guardians):
            yield (f"g{n}", "", "", "true", "D", "guardian", "", "", "Guar", f"Dian{n}", "", "", f"g{n}@home.example", "", "", "")

    archive.writestr("users.csv", table(users, people()))

    def enrollments():  # type: ignore[no-untyped-def]
        for n in range(classes):
            yield (f"et{n}", "", "", f"K{n}", f"S{n % schools}", f"t{n // 5}", "teacher", "true", "", "")
        for n in range(students):
            for k in range(per_student):
                klass = (n * 7 + k * 131) % classes
                yield (f"e{n}-{k}", "", "", f"K{klass}", f"S{klass % schools}", f"s{n}", "student", "false", "", "")

    archive.writestr("enrollments.csv", table(
        ["sourcedId", "status", "dateLastModified", "classSourcedId", "schoolSourcedId", "userSourcedId", "role",
         "primary", "beginDate", "endDate"],
        enrollments(),
    ))
    archive.close()
    return rows


async def phase(url: str, data: bytes, dry_run: bool) -> dict[str, object]:
    from app.services.rostering import run_import
    from app.settings import Settings
    from app.store.db import Database

    settings = Settings(database_url=url, roster_hold_percent=100)
    database = Database(settings)
    started = time.perf_counter()
    database.counter.reset()
    result = await run_import(database.transaction, settings, None, data, dry_run, "cli")
    seconds = time.perf_counter() - started
    statements = database.counter.count
    await database.dispose()
    report = result.as_json()
    return {
        "status": report["status"], "seconds": round(seconds, 2), "statements": statements,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "counts": {k: v for k, v in report.items() if isinstance(v, int) and k != "id" and v},
        "errors": report["errors"][:3],
    }


async def migrate(url: str) -> None:
    from app.settings import Settings
    from app.store.db import Database
    from app.store.migrate import upgrade

    database = Database(Settings(database_url=url))
    await upgrade(database.engine)
    await database.dispose()


async def pause_rollup(url: str) -> None:
    """For every later session (PostgreSQL: a database default) or for good (SQLite: the triggers dropped)."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from app.settings import Settings
    from app.store import rollup
    from app.store.db import Database

    database = Database(Settings(database_url=url))
    async with database.engine.begin() as conn:
        if database.is_sqlite:
            await rollup.run(conn, rollup.drop_statements("sqlite"))
        else:
            name = make_url(url).database
            await conn.execute(text(f'ALTER DATABASE "{name}" SET {rollup.PAUSE_SETTING} = \'paused\''))
    await database.dispose()


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ")[:3].__str__()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=100_000)
    parser.add_argument("--engines", default="sqlite,postgres")
    parser.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--without-rollup", action="store_true",
                        help="pause the rolled-up progress summary's triggers (to measure what they cost)")
    parser.add_argument("--phase", choices=["dry", "apply"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--bundle", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:  # a child: one phase, its result as JSON
        print(json.dumps(asyncio.run(phase(args.url, Path(args.bundle).read_bytes(), args.phase == "dry"))))
        return

    work = Path(tempfile.mkdtemp(prefix="roster-bench-"))
    bundle = work / "district.zip"
    started = time.perf_counter()
    rows = generate(bundle, args.students)
    print(f"bundle: {rows:,} CSV rows, {bundle.stat().st_size / 1e6:.1f} MB zipped, generated in {time.perf_counter() - started:.0f}s")
    print(f"load average before: {loadavg()} ({os.cpu_count()} cores)")
    for engine in args.engines.split(","):
        if engine == "sqlite":
            url, drop = f"sqlite+aiosqlite:///{work}/bench.db", None
        else:
            import asyncpg

            name = f"roster_bench_{uuid.uuid4().hex[:8]}"

            async def create(name: str = name) -> None:
                conn = await asyncpg.connect(args.pg_admin)
                await conn.execute(f'CREATE DATABASE "{name}"')
                await conn.close()

            asyncio.run(create())
            url, drop = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", name
        try:
            asyncio.run(migrate(url))
            if args.without_rollup:
                asyncio.run(pause_rollup(url))
            for label, step in (("dry run", "dry"), ("first apply", "apply"), ("no-change re-run", "apply")):
                child = subprocess.run(
                    [sys.executable, __file__, "--phase", step, "--url", url, "--bundle", str(bundle)],
                    capture_output=True, text=True, check=False, cwd=ROOT,
                )
                if child.returncode != 0:
                    print(f"{engine} {label}: failed\n{child.stderr[-3000:]}")
                    break
                result = json.loads(child.stdout.strip().splitlines()[-1])
                print(
                    f"{engine:8} {label:17} {result['status']:8} {result['seconds']:8.1f}s "
                    f"{rows / result['seconds']:>10,.0f} rows/s  peak RSS {result['peak_rss_mb']:,} MB  "
                    f"statements {result['statements']}  {result['counts']} {result['errors'] or ''}",
                    flush=True,
                )
        finally:
            if drop:
                import asyncpg

                async def remove(name: str = drop) -> None:
                    conn = await asyncpg.connect(args.pg_admin)
                    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    await conn.close()

                asyncio.run(remove())
    print(f"load average after: {loadavg()}")


if __name__ == "__main__":
    main()
