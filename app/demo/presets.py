"""Benchmark data presets (small, medium, large): deterministic rows written in bulk.

Every row is generated in Python from one fixed random seed with explicit ids, so foreign keys need no
round trips, then written with PostgreSQL COPY (asyncpg `copy_records_to_table`) or one SQLite
`executemany` per table inside a single transaction. The four bench viewers get API tokens (random, not
derived from the seed), written to a JSON file that `python -m bench` reads.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from app.services.auth import API_TOKEN_PREFIX, hash_password, new_token, token_hash
from app.store import rollup
from app.store.models import fold, full_name_key

SEED = 8
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "groupgraph-bench"
BASE_TIME = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
FAR_FUTURE = datetime(2099, 1, 1, tzinfo=UTC)
STAFF_ROLES = ("LEADER", "MENTOR", "ANALYST")
CONSENT_STATUSES = ("PENDING", "GRANTED", "DENIED", "REVOKED", "EXPIRED")
LICENCES = ("PARENT_GUARDIAN", "PARENT_GUARDIAN", "PUPIL", "OTHER")
LEVEL_NAMES = ("Trust", "District", "School", "Year", "Class", "Set", "Team", "Squad", "Crew", "Pod")
FIRST = ("Ada", "Ben", "Cara", "Dev", "Ella", "Finn", "Gita", "Hugo", "Isla", "Jon", "Kim", "Liam", "Maya",
         "Nia", "Omar", "Pia", "Quinn", "Rosa", "Sam", "Tara", "Uma", "Vik", "Wren", "Xia", "Yusuf", "Zoe")
LAST = ("Adams", "Baker", "Clark", "Diaz", "Evans", "Fox", "Garcia", "Hughes", "Ito", "Jones", "Khan",
        "Lopez", "Moore", "Nguyen", "Okafor", "Patel", "Quint", "Reyes", "Smith", "Turner", "Usman", "Varga",
        "Wong", "Xu", "Young", "Zhang")


@dataclass(frozen=True)
class Shape:
    groups: int
    depth: int  # number of levels: the root is level 0, the deepest level is depth - 1
    learners: int
    staff: int
    courses: int
    steps: int
    enrollments: int  # per learner
    usage_days: int  # per learner, at most
    complete_share: float  # enrollments finished (every step completed)
    partial_steps: int  # otherwise steps completed: uniform 0..partial_steps


SHAPES = {
    "small": Shape(100, 4, 1_000, 50, 5, 10, 2, 3, 0.1, 9),
    "medium": Shape(2_000, 6, 20_000, 1_000, 20, 20, 2, 3, 0.1, 19),
    "large": Shape(10_000, 10, 200_000, 5_000, 50, 20, 5, 2, 0.05, 6),
}


@dataclass
class Plan:
    """Rows per table (in insert order) plus what the bench needs to know."""

    tables: list[tuple[str, Sequence[str], Iterable[tuple[Any, ...]]]] = field(default_factory=list)
    viewers: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)


def level_sizes(groups: int, depth: int) -> list[int]:
    """Geometric growth from one root so that the levels add up to `groups`."""
    if depth == 1:
        return [groups]
    low, high = 1.0, float(groups)
    for _ in range(100):
        ratio = (low + high) / 2
        if sum(ratio**k for k in range(1, depth)) > groups - 1:
            high = ratio
        else:
            low = ratio
    sizes = [1] + [max(1, round(ratio**k)) for k in range(1, depth)]
    sizes[-1] += groups - sum(sizes)
    return sizes


def plan_preset(preset: str, tokens: dict[str, str], password_hash: str, analyst_seats: int = 3) -> Plan:
    """Every row of `preset`; all users share one password hash (argon2 is slow on purpose)."""
    shape = SHAPES[preset]
    rng = random.Random(SEED)
    plan = Plan()
    times = [BASE_TIME + timedelta(minutes=17 * i) for i in range(20_000)]  # shared objects save memory

    # groups and their closure
    sizes = level_sizes(shape.groups, shape.depth)
    levels: list[list[int]] = []
    parent_of: dict[int, int | None] = {}
    group_rows = []
    next_id = 1
    for level, size in enumerate(sizes):
        ids = list(range(next_id, next_id + size))
        next_id += size
        for n, gid in enumerate(ids):
            parent = levels[level - 1][n % len(levels[level - 1])] if level else None
            parent_of[gid] = parent
            name = f"{LEVEL_NAMES[level % len(LEVEL_NAMES)]} {gid}"
            group_rows.append((gid, parent, name, name.lower(), f"g-{gid}", None, False, level, times[gid % 100]))
        levels.append(ids)
    closure_rows = []
    ancestors: dict[int, list[int]] = {}
    for gid in range(1, next_id):
        parent = parent_of[gid]
        chain = [gid] + (ancestors[parent] if parent is not None else [])
        ancestors[gid] = chain
        closure_rows.extend((anc, gid, d) for d, anc in enumerate(chain))
    plan.tables.append(("group", ("id", "parent_id", "name", "name_normalized", "slug", "description", "synced",
                                  "depth", "created_at"), group_rows))
    plan.tables.append(("group_closure", ("ancestor_id", "descendant_id", "depth"), closure_rows))

    # users: staff first (ids 1..staff), then learners, then guardians (external)
    user_rows: list[tuple[Any, ...]] = []

    def add_user(uid: int, kind: str, roles: str = "", external_id: str | None = None,
                 email: str | None = None) -> None:
        first, last = FIRST[uid % len(FIRST)], LAST[(uid // len(FIRST)) % len(LAST)]
        email = email or f"{first}.{last}.{uid}@example.com".lower()
        user_rows.append((uid, email, email.lower(), external_id, kind, first, last, fold(last), full_name_key(first, last), None,
                          "Bench Trust" if kind == "STAFF" else None, roles, "ACTIVE", False, True,
                          password_hash, times[uid % 1000], None, 0))

    staff_ids = list(range(1, shape.staff + 1))
    learner_ids = list(range(shape.staff + 1, shape.staff + shape.learners + 1))
    deep = min(5, shape.depth - 1)
    level1 = levels[min(1, shape.depth - 1)][0]
    deep_group = next(g for g in levels[deep] if level1 in ancestors[g])  # the leader sees it too
    middle = levels[min(2, shape.depth - 1)]
    analyst_home = next(g for g in middle if g in ancestors[deep_group])
    analyst_groups = [analyst_home, *[g for g in middle if g != analyst_home][:4]]
    memberships: list[tuple[int, int, str]] = []
    viewer_spec = {
        "admin": (staff_ids[0], "ADMIN", []),
        "leader": (staff_ids[1], "", [(level1, "LEADER")]),
        "mentor": (staff_ids[2], "", [(deep_group, "MENTOR")]),
        "analyst": (staff_ids[3], "GROUP_ANALYST", [(g, "ANALYST") for g in analyst_groups]),
    }
    for key, (uid, roles, held) in viewer_spec.items():
        email = ADMIN_EMAIL if key == "admin" else f"bench-{key}@example.com"
        add_user(uid, "STAFF", roles, email=email)
        memberships.extend((uid, g, role) for g, role in held)
        plan.viewers[key] = {"user_id": uid, "email": email, "token": tokens[key],
                             "groups": [g for g, _ in held]}
    plan.groups = {"root": levels[0][0], "level1": level1, "level2": analyst_home, "level5": deep_group}
    # GROUP_ANALYST seats are limited (the API refuses more): the bench's analyst takes one, a few more staff
    # take the others, and the staff who would have been analysts past the limit are mentors instead
    seats_left = analyst_seats - 1
    for n, uid in enumerate(staff_ids[4:]):
        role = STAFF_ROLES[n % 3]
        if role == "ANALYST":
            if seats_left <= 0:
                role = "MENTOR"
            seats_left -= 1
        level = (n // 3) % shape.depth
        add_user(uid, "STAFF", "GROUP_ANALYST" if role == "ANALYST" else "")
        memberships.append((uid, rng.choice(levels[level]), role))
    leaves = levels[-1]
    unplaced = set(rng.sample(learner_ids, len(learner_ids) // 20))
    for uid in learner_ids:
        add_user(uid, "LEARNER", external_id=f"sis-{uid}")
        if uid not in unplaced:
            memberships.append((uid, rng.choice(leaves), "MEMBER"))
    pupils = rng.sample(learner_ids, len(learner_ids) // 20)
    guardian_ids = list(range(learner_ids[-1] + 1, learner_ids[-1] + 1 + (len(pupils) + 1) // 2))
    for uid in guardian_ids:
        add_user(uid, "EXTERNAL", external_id=f"ext-{uid}")
    plan.tables.append(("user", ("id", "email", "email_normalized", "external_id", "kind", "first_name", "last_name",
                                 "last_name_normalized", "name_search", "title", "company", "site_roles", "status", "synced",
                                 "agreed_to_download_reports", "password_hash", "created_at", "last_login_at",
                                 "login_count"), user_rows))
    email_of = {row[0]: row[1] for row in user_rows}
    plan.tables.append(("api_token", ("id", "user_id", "name", "token_hash", "created_at", "expires_at", "revoked_at"), [
        (n, plan.viewers[key]["user_id"], f"bench {key}", token_hash(tokens[key]), BASE_TIME, None, None)
        for n, key in enumerate(plan.viewers, start=1)
    ]))

    # consents (access requests) in every status, for ~2% of learners
    consent_rows = []
    for n, subject in enumerate(rng.sample(learner_ids, max(len(CONSENT_STATUSES), len(learner_ids) // 50)), 1):
        status = CONSENT_STATUSES[n % len(CONSENT_STATUSES)]
        created = times[n % 5000]
        expires = created + timedelta(days=30) if status == "EXPIRED" else FAR_FUTURE
        decided = None if status in ("PENDING", "EXPIRED") else created + timedelta(days=1)
        consent_rows.append((n, rng.choice(staff_ids[4:]), email_of[subject], email_of[subject], subject,
                             "May I follow your progress?", "PENDING" if status == "EXPIRED" else status,
                             created, expires, decided))
    plan.tables.append(("access_request", ("id", "requester_id", "subject_email", "subject_email_normalized",
                                           "subject_user_id", "message", "status", "created_at", "expires_at",
                                           "decided_at"), consent_rows))
    plan.tables.append(("membership", ("id", "user_id", "group_id", "role", "access_request_id", "created_at"), [
        (n, uid, gid, role, None, times[n % 1000]) for n, (uid, gid, role) in enumerate(memberships, 1)
    ]))
    plan.tables.append(("guardian_link", ("id", "external_user_id", "pupil_id", "licence_type", "created_at"), [
        (n, guardian_ids[(n - 1) // 2], pupil, LICENCES[n % len(LICENCES)], times[n % 1000])
        for n, pupil in enumerate(pupils, 1)
    ]))

    # courses and steps
    step_kinds = ["ASSIGNMENT" if p % 5 == 0 else "QUIZ" if p % 5 == 3 else "LESSON" for p in range(1, shape.steps + 1)]
    max_points = [10 if k == "ASSIGNMENT" else 5 if k == "QUIZ" else None for k in step_kinds]
    plan.tables.append(("course", ("id", "name", "created_at"), [
        (c, f"Course {c}", BASE_TIME) for c in range(1, shape.courses + 1)
    ]))
    plan.tables.append(("step", ("id", "course_id", "title", "position", "kind", "max_points"), [
        ((c - 1) * shape.steps + p, c, f"Step {p}", p, step_kinds[p - 1], max_points[p - 1])
        for c in range(1, shape.courses + 1) for p in range(1, shape.steps + 1)
    ]))

    # enrollments: (id, user, course, activated, expires, completed) plus steps completed
    enrollments: list[tuple[int, int, int, int, int]] = []  # id, user, course, steps done, time index
    for uid in learner_ids:
        for course in rng.sample(range(1, shape.courses + 1), shape.enrollments):
            done = shape.steps if rng.random() < shape.complete_share else rng.randint(0, shape.partial_steps)
            enrollments.append((len(enrollments) + 1, uid, course, done, rng.randrange(10_000)))

    def progress_of(eid: int, uid: int, course: int, done: int, t: int) -> Iterator[tuple[Any, ...]]:
        """The enrollment's step_progress rows, without their ids."""
        first_step = (course - 1) * shape.steps
        for p in range(1, min(done + 1, shape.steps) + 1):
            viewed = times[t + 3 * p]
            completed = times[t + 3 * p + 1] if p <= done else None
            points = (eid + p) % (max_points[p - 1] + 1) if completed and max_points[p - 1] else None
            yield (uid, first_step + p, course, viewed, completed, points)

    def enrollment_rows() -> Iterator[tuple[Any, ...]]:
        """With the counters the triggers keep (app.store.rollup, CARD_COUNTS), so that the rebuild after the rows
        rewrites no enrollment (a rewritten row leaves a dead version behind until a vacuum)."""
        for eid, uid, course, done, t in enrollments:
            activated = times[t]
            expires = activated + timedelta(days=365) if eid % 2 else None
            completed = times[t + 3 * shape.steps] if done == shape.steps else None
            rows = list(progress_of(eid, uid, course, done, t))
            graded = [(r[1], r[5]) for r in rows if r[5] is not None]
            counts = (sum(r[3] is not None for r in rows), sum(r[4] is not None for r in rows),
                      sum(points for _, points in graded),
                      sum(max_points[(step - 1) % shape.steps] or 0 for step, _ in graded))
            yield (eid, uid, course, activated, expires, completed, *counts)

    def progress_rows() -> Iterator[tuple[Any, ...]]:
        pid = 0
        for enrollment in enrollments:
            for row in progress_of(*enrollment):
                pid += 1
                yield (pid, *row)

    def submission_rows() -> Iterator[tuple[Any, ...]]:
        sid = 0
        for eid, uid, course, done, t in enrollments:
            reached = [p for p in range(1, done + 1) if step_kinds[p - 1] == "ASSIGNMENT"]
            if not reached:
                continue
            p = reached[-1]
            sid += 1
            waiting = eid % 2 == 0
            yield (sid, uid, (course - 1) * shape.steps + p, course, f"My answer to step {p}.", times[t + 3 * p + 1],
                   "NEEDS_REVIEW" if waiting else "REVIEWED", None if waiting else 7,
                   None if waiting else "Good work.", None if waiting else staff_ids[4 + eid % (len(staff_ids) - 4)],
                   None if waiting else times[t + 3 * p + 2])

    def usage_rows() -> Iterator[tuple[Any, ...]]:
        first_day = BASE_TIME.date()
        for n, uid in enumerate(learner_ids):
            for d in range(1 + n % shape.usage_days):  # every learner is active
                yield (uid, first_day + timedelta(days=d * 7 + n % 7), 5 + (n * 7 + d) % 90)

    plan.tables.append(("enrollment", ("id", "user_id", "course_id", "activated_at", "expires_at", "completed_at",
                                       *rollup.CARD_COUNTS), enrollment_rows()))
    plan.tables.append(("step_progress", ("id", "user_id", "step_id", "course_id", "viewed_at", "completed_at",
                                          "points"), progress_rows()))
    plan.tables.append(("submission", ("id", "user_id", "step_id", "course_id", "body", "submitted_at", "status",
                                       "points", "feedback", "reviewer_id", "reviewed_at"), submission_rows()))
    plan.tables.append(("usage", ("user_id", "day", "minutes"), usage_rows()))
    return plan


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _write_sqlite(path: str, plan: Plan) -> dict[str, int]:
    counts: dict[str, int] = {}
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys=ON")
        if conn.execute('SELECT count(*) FROM "user"').fetchone()[0]:
            raise RuntimeError("the database already has users; presets need an empty, migrated database")
        conn.execute("BEGIN IMMEDIATE")
        for statement in rollup.pause_statements("sqlite"):  # rows first, then one rebuild of the rollup
            conn.execute(statement)
        for table, columns, rows in plan.tables:
            before = conn.total_changes
            conn.executemany(
                f'INSERT INTO "{table}" ({", ".join(columns)}) VALUES ({", ".join("?" * len(columns))})',
                (tuple(_sqlite_value(v) for v in row) for row in rows),
            )
            counts[table] = conn.total_changes - before
        for statement in (*rollup.REBUILD, *rollup.resume_statements("sqlite")):
            conn.execute(statement)
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
    finally:
        conn.close()
    return counts


async def _write_postgres(dsn: str, plan: Plan) -> dict[str, int]:
    import asyncpg

    counts: dict[str, int] = {}
    conn = await asyncpg.connect(dsn)
    try:
        if await conn.fetchval('SELECT count(*) FROM "user"'):
            raise RuntimeError("the database already has users; presets need an empty, migrated database")
        async with conn.transaction():
            for statement in rollup.pause_statements("postgresql"):  # rows first, then one rebuild of the rollup
                await conn.execute(statement)
            for table, columns, rows in plan.tables:
                status = await conn.copy_records_to_table(table, records=rows, columns=list(columns))
                counts[table] = int(status.split()[-1])
                if "id" in columns:
                    await conn.execute(
                        f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
                        f'(SELECT coalesce(max(id), 0) + 1 FROM "{table}"), false)'
                    )
            for statement in (*rollup.REBUILD, *rollup.resume_statements("postgresql")):
                await conn.execute(statement)
        # the visibility map too, as autovacuum would leave it: index-only scans (the closure's) then skip the
        # heap, and the bench measures the database a running site has rather than one just loaded
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return counts


async def seed_preset(
    database_url: str, preset: str, viewers_file: Path | None = None, *, if_empty: bool = False
) -> dict[str, Any] | None:
    """Migrate, then fill an empty database with `preset`. Returns counts, seconds, viewers and groups
    (None when `if_empty` and the database already has users)."""
    from app.settings import Settings
    from app.store.db import Database
    from app.store.migrate import upgrade

    started = time.perf_counter()
    database = Database(Settings(database_url=database_url))
    try:
        await upgrade(database.engine)
        async with database.session() as session:
            has_users = bool(await session.scalar(text('SELECT count(*) FROM "user"')))
    finally:
        await database.dispose()
    if has_users:
        if if_empty:
            return None
        raise RuntimeError("the database already has users; presets need an empty database")
    tokens = {key: new_token(API_TOKEN_PREFIX) for key in ("admin", "leader", "mentor", "analyst")}
    plan = plan_preset(preset, tokens, hash_password(ADMIN_PASSWORD), Settings().analyst_seats)
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        counts = _write_sqlite(str(url.database), plan)
    else:
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        counts = await _write_postgres(dsn, plan)
    result = {
        "preset": preset,
        "seconds": round(time.perf_counter() - started, 2),
        "counts": counts,
        "viewers": plan.viewers,
        "groups": plan.groups,
        "admin": {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
    }
    if viewers_file is not None:
        write_viewers(viewers_file, result)
    return result


def write_viewers(path: Path, result: dict[str, Any]) -> None:
    """The tokens are credentials: the file is readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps(result, indent=2))
