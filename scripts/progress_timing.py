"""Timing of progress ingestion and the progress dashboard on one engine (not a test: prints numbers).

    .venv/bin/python scripts/progress_timing.py sqlite
    .venv/bin/python scripts/progress_timing.py postgres   # needs PostgreSQL on 127.0.0.1:5432

Builds a throwaway database: LEARNERS learners in nested groups, COURSES courses of STEPS steps, every
learner enrolled in every course. Then times, through the GraphQL endpoint as an admin API token:
a 10,000-event recordProgress batch, the same batch again (all repeats), the group dashboard (cards with
step detail for DASHBOARD learners, reached through the review queue) and progressSummary over everyone.
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import sys
import tempfile
import time
import uuid
from datetime import timedelta

import httpx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from app.runtime.ids import to_global_id
from app.services.auth import API_TOKEN_PREFIX, new_token, token_hash
from app.services.tree import attach
from app.settings import Settings
from app.store.bulk import insert_rows
from app.store.db import Database
from app.store.migrate import upgrade
from app.store.models import ApiToken, Course, Enrollment, Group, Membership, Step, User, utcnow

LEARNERS = int(os.environ.get("LEARNERS", 5000))
DASHBOARD = int(os.environ.get("DASHBOARD", 500))
COURSES = int(os.environ.get("COURSES", 20))
STEPS = int(os.environ.get("STEPS", 10))
EVENTS = int(os.environ.get("EVENTS", 10_000))


async def build(database: Database) -> tuple[str, str, list[int], list[list[int]]]:
    now = utcnow()
    async with database.transaction() as session:
        admin = User(email="admin@x", email_normalized="admin@x", first_name="A", last_name="A", last_name_normalized="a",
                     kind="STAFF", site_roles="ADMIN")
        session.add(admin)
        root = Group(name="District", name_normalized="district", slug="district")
        session.add(root)
        await session.flush()
        await attach(session, root.id, None)  # type: ignore[arg-type]
        classes = []
        for n in range(20):
            g = Group(name=f"C{n}", name_normalized=f"c{n}", slug=f"c{n}", parent_id=root.id, depth=1)
            session.add(g)
            await session.flush()
            await attach(session, g.id, root.id)  # type: ignore[arg-type]
            classes.append(g.id)
        user_table = User.__table__  # type: ignore[attr-defined]
        await insert_rows(session, user_table, ["email", "email_normalized", "first_name", "last_name", "last_name_normalized", "kind",
                                                "site_roles", "status", "synced", "agreed_to_download_reports", "created_at", "login_count"],
                          [(f"l{n}@x", f"l{n}@x", f"L{n}", "D", "d", "LEARNER", "", "ACTIVE", False, True, now, 0) for n in range(LEARNERS)])
        from sqlalchemy import select
        ids = list(await session.scalars(select(User.id).where(User.kind == "LEARNER").order_by(User.id)))
        await insert_rows(session, Membership.__table__, ["user_id", "group_id", "role", "created_at"],  # type: ignore[attr-defined]
                          [(u, classes[n % 20], "MEMBER", now) for n, u in enumerate(ids)])
        steps: list[list[int]] = []
        for c in range(COURSES):
            course = Course(name=f"Course {c:02d}")
            session.add(course)
            await session.flush()
            rows = [Step(course_id=course.id, title=f"S{s}", position=s + 1, kind="ASSIGNMENT" if s == STEPS - 1 else "LESSON",  # type: ignore[arg-type]
                         max_points=10 if s == STEPS - 1 else None) for s in range(STEPS)]
            session.add_all(rows)
            await session.flush()
            steps.append([r.id for r in rows])  # type: ignore[misc]
        courses = list(await session.scalars(select(Course.id).order_by(Course.id)))
        await insert_rows(session, Enrollment.__table__, ["user_id", "course_id", "activated_at"],  # type: ignore[attr-defined]
                          [(u, c, now - timedelta(days=30)) for u in ids for c in courses])
        token = new_token(API_TOKEN_PREFIX)
        await session.flush()
        session.add(ApiToken(user_id=admin.id, name="platform", token_hash=token_hash(token)))  # type: ignore[arg-type]
    return token, to_global_id("Group", root.id), ids, steps  # type: ignore[arg-type]


def events(ids: list[int], steps: list[list[int]], count: int, seed: int) -> list[dict]:
    rnd = random.Random(seed)
    start = utcnow() - timedelta(days=2)
    out = []
    for n in range(count):
        user = to_global_id("User", rnd.choice(ids))
        course = rnd.randrange(len(steps))
        step = steps[course][rnd.randrange(len(steps[course]) - 1)]
        at = (start + timedelta(seconds=n)).isoformat()
        roll = rnd.random()
        if roll < 0.4:
            out.append({"userId": user, "kind": "VIEWED", "stepId": to_global_id("Step", step), "occurredAt": at})
        elif roll < 0.8:
            out.append({"userId": user, "kind": "COMPLETED", "stepId": to_global_id("Step", step), "occurredAt": at})
        elif roll < 0.9:
            out.append({"userId": user, "kind": "USAGE", "minutes": rnd.randint(1, 30), "occurredAt": at})
        elif roll < 0.95:
            out.append({"userId": user, "kind": "SUBMITTED", "stepId": to_global_id("Step", steps[course][-1]), "body": "work", "occurredAt": at})
        else:
            out.append({"userId": user, "kind": "DISCUSSION_POST", "courseId": to_global_id("Course", course + 1), "body": "hi", "occurredAt": at})
    return out


RECORD = "mutation($e: [ProgressEventInput!]!) { recordProgress(events: $e) }"
DASH = """query($g: ID!, $n: Int) { group(id: $g) {
  reviewQueue(first: $n) { totalCount edges { node { user { courseProgress { course { name } activatedAt expiresAt completedAt
    percentViewed percentCompleted gradePercent stepsCompleted stepCount steps { step { position kind } viewedAt completedAt points } } } } } } } }"""
SUMMARY = """query($g: ID!) { group(id: $g) { progressSummary(includeNested: true) { learnerCount
  courses { course { name } enrolledCount completedCount averagePercentCompleted } } } }"""


async def main(engine: str) -> None:
    from app.server import create_app

    admin_dsn = "postgresql://postgres@127.0.0.1:5432/postgres"
    name = f"progress_timing_{uuid.uuid4().hex[:6]}"
    if engine == "sqlite":
        url = f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/timing.db"
    else:
        import asyncpg

        admin = await asyncpg.connect(admin_dsn)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    settings = Settings(database_url=url, max_page_size=1000, max_body_bytes=50_000_000, max_query_cost=10_000_000)
    database = Database(settings)
    try:
        await upgrade(database.engine)
        started = time.perf_counter()
        token, group, ids, steps = await build(database)
        print(f"[{engine}] built {LEARNERS} learners x {COURSES} courses x {STEPS} steps in {time.perf_counter() - started:.1f}s")
        app = create_app(settings, database)
        slowest: list[tuple[float, str]] = []
        if os.environ.get("STATEMENT_TIMES"):
            from sqlalchemy import event

            def _before(conn, cursor, statement, params, context, many):  # type: ignore[no-untyped-def]
                conn.info["started"] = time.perf_counter()

            def _after(conn, cursor, statement, params, context, many):  # type: ignore[no-untyped-def]
                slowest.append((time.perf_counter() - conn.info["started"], " ".join(statement.split())[:80]))

            for sync_engine in {database.engine.sync_engine, database.write_engine.sync_engine}:
                event.listen(sync_engine, "before_cursor_execute", _before)
                event.listen(sync_engine, "after_cursor_execute", _after)

        def rss() -> str:
            return f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"

        print(f"[{engine}] after building: {rss()}")

        def report() -> None:
            print(f"      {rss()}")
            for took, statement in sorted(slowest, reverse=True)[:4]:
                print(f"      {took * 1000:7.1f} ms  {statement}")
            slowest.clear()

        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=600) as client:
            for run in range(3):
                batch = events(ids, steps, EVENTS, seed=run)
                database.counter.reset()
                t = time.perf_counter()
                r = (await client.post("/graphql", json={"query": RECORD, "variables": {"e": batch}}, headers=headers)).json()
                print(f"[{engine}] recordProgress {EVENTS} events (run {run + 1}): {time.perf_counter() - t:.2f}s, applied {r.get('data')}, "
                      f"{database.counter.count} statements")
                report()
            t = time.perf_counter()
            r = (await client.post("/graphql", json={"query": RECORD, "variables": {"e": batch}}, headers=headers)).json()
            print(f"[{engine}] the same batch again: {time.perf_counter() - t:.2f}s, applied {r.get('data')}")
            # every dashboard learner hands in one assignment so the review queue lists them
            subs = [{"userId": to_global_id("User", u), "kind": "SUBMITTED", "stepId": to_global_id("Step", steps[0][-1]), "body": "x",
                     "occurredAt": (utcnow() - timedelta(minutes=1)).isoformat()} for u in ids]
            await client.post("/graphql", json={"query": RECORD, "variables": {"e": subs[:10_000]}}, headers=headers)
            slowest.clear()
            for n in (DASHBOARD,):
                for _attempt in range(2):
                    database.counter.reset()
                    t = time.perf_counter()
                    r = (await client.post("/graphql", json={"query": DASH, "variables": {"g": group, "n": n}}, headers=headers)).json()
                    took = time.perf_counter() - t
                    assert "errors" not in r, r["errors"][:1]
                    edges = r["data"]["group"]["reviewQueue"]["edges"]
                    cards = sum(len(e["node"]["user"]["courseProgress"]) for e in edges)
                    print(f"[{engine}] dashboard {len(edges)} learners, {cards} cards with steps: {took:.2f}s, {database.counter.count} statements")
                    report()
            for _attempt in range(2):
                database.counter.reset()
                t = time.perf_counter()
                r = (await client.post("/graphql", json={"query": SUMMARY, "variables": {"g": group}}, headers=headers)).json()
                took = time.perf_counter() - t
                assert "errors" not in r, r["errors"][:1]
                print(f"[{engine}] progressSummary over {r['data']['group']['progressSummary']['learnerCount']} learners: {took:.3f}s, "
                      f"{database.counter.count} statements")
                report()
    finally:
        await database.dispose()
        if engine != "sqlite":
            import asyncpg

            admin = await asyncpg.connect(admin_dsn)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "sqlite"))
