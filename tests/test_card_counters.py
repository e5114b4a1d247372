"""The course cards' counters on enrollment (app.store.rollup, CARD_TRIGGERS) are exact, on SQLite and PostgreSQL.

A Hypothesis property: three learners, two courses of three steps, then random writes straight in the database,
each in its own transaction: progress rows inserted, updated (viewed, completed, points, moved to another learner
or step) and deleted, one by one and many in one statement; enrollments inserted, deleted, re-inserted (the old
progress is still there) and moved to another course; steps given other max points, added and deleted (their
progress goes with them); a learner deleted. After every write, each enrollment's counters equal the direct
aggregate over its progress rows; at the end, a rebuild changes nothing. Beside it: the cards read the counters.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.settings import Settings
from app.store import rollup
from app.store.db import Database
from app.store.migrate import upgrade
from dataloaders.progress import CARD_COURSE, CARD_USER, CARD_VIEWED, ProgressLoaders
from dataloaders.store import Store
from tests.conftest import PG_ADMIN_DSN
from tests.site import Site, empty_tables
from tests.test_member_order import _create, _downgrade

EXAMPLES_PER_ENGINE = int(os.environ.get("GROUPGRAPH_CARD_EXAMPLES", "25"))
OPS = ("progress", "progress", "progress", "progress", "unprogress", "enroll", "enroll", "unenroll", "move_enrollment",
       "max_points", "max_points", "add_step", "delete_step", "move_progress", "bulk_points", "bulk_delete",
       "delete_user")
POINTS = (4, None, 0, 3, 10)  # given points; 4 first, as Hypothesis tries 0 first
MAX_POINTS = (7, None, 0, 12)  # a step's max points: none of the first ones

DIRECT = (
    "SELECT e.id, count(sp.viewed_at), count(sp.completed_at), coalesce(sum(sp.points), 0), "
    "coalesce(sum(CASE WHEN sp.points IS NOT NULL THEN s.max_points END), 0) FROM enrollment e "
    "LEFT JOIN step_progress sp ON sp.user_id = e.user_id AND sp.course_id = e.course_id "
    "LEFT JOIN step s ON s.id = sp.step_id GROUP BY e.id ORDER BY e.id"
)
KEPT = f"SELECT id, {', '.join(rollup.CARD_COUNTS)} FROM enrollment ORDER BY id"
NOW = "'2026-01-01 10:00:00'"


async def setup(database: Database) -> None:
    await empty_tables(database)
    async with database.engine.begin() as conn:
        for u in (1, 2, 3):
            await conn.execute(text(
                'INSERT INTO "user" (id, email, email_normalized, kind, first_name, last_name, last_name_normalized, name_search, '
                "title, company, site_roles, status, synced, agreed_to_download_reports, created_at, login_count) "
                f"VALUES ({u}, 'u{u}@x.test', 'u{u}@x.test', 'PERSON', 'U', 'L{u}', 'l{u}', 'u l{u}', '', '', '', 'ACTIVE', "
                f"false, true, {NOW}, 0)"
            ))
        for c in (1, 2):
            await conn.execute(text(f"INSERT INTO course (id, name, created_at) VALUES ({c}, 'Course {c}', {NOW})"))
            for p in (1, 2, 3):
                await conn.execute(text(
                    f"INSERT INTO step (id, course_id, title, position, kind, max_points) "
                    f"VALUES ({(c - 1) * 3 + p}, {c}, 'Step {p}', {p}, 'QUIZ', {5 * p if p != 2 else 'NULL'})"
                ))
        await conn.execute(text(
            "INSERT INTO enrollment (user_id, course_id, activated_at) "
            f"VALUES (1, 1, {NOW}), (2, 1, {NOW}), (2, 2, {NOW}), (3, 1, {NOW})"
        ))


def sql_value(value: Any) -> str:
    return "NULL" if value is None else str(value)


async def apply(conn: Any, op: str, a: int, b: int, c: int) -> None:
    """One write; `a`, `b`, `c` pick its learner, course or step and values. Writes the database refuses (a
    duplicate, a step or learner gone) are skipped by the caller."""
    user, course = 1 + a % 3, 1 + b % 2
    steps = [r[0] for r in (await conn.execute(text("SELECT id, course_id FROM step ORDER BY id"))).all()]
    step_course = dict((await conn.execute(text("SELECT id, course_id FROM step"))).all())
    step = steps[c % len(steps)] if steps else None
    if op == "progress" and step is not None:
        exists = (await conn.execute(text(f"SELECT id FROM step_progress WHERE user_id = {user} AND step_id = {step}"))).first()
        viewed = "NULL" if b % 7 == 6 else NOW
        completed = "NULL" if b % 3 == 2 else NOW
        points = sql_value(POINTS[b % len(POINTS)])
        if exists:
            await conn.execute(text(
                f"UPDATE step_progress SET viewed_at = {viewed}, completed_at = {completed}, points = {points} "
                f"WHERE id = {exists[0]}"
            ))
        else:
            await conn.execute(text(
                "INSERT INTO step_progress (user_id, step_id, course_id, viewed_at, completed_at, points) "
                f"VALUES ({user}, {step}, {step_course[step]}, {viewed}, {completed}, {points})"
            ))
    elif op == "unprogress":
        await conn.execute(text(f"DELETE FROM step_progress WHERE user_id = {user} AND course_id = {course} AND step_id % 3 = {c % 3}"))
    elif op == "enroll":
        await conn.execute(text(f"INSERT INTO enrollment (user_id, course_id, activated_at) VALUES ({user}, {course}, {NOW})"))
    elif op == "unenroll":
        await conn.execute(text(f"DELETE FROM enrollment WHERE user_id = {user} AND course_id = {course}"))
    elif op == "move_enrollment":
        await conn.execute(text(f"UPDATE enrollment SET course_id = {3 - course} WHERE user_id = {user} AND course_id = {course}"))
    elif op == "max_points" and step is not None:
        await conn.execute(text(f"UPDATE step SET max_points = {sql_value(MAX_POINTS[b % len(MAX_POINTS)])} WHERE id = {step}"))
    elif op == "add_step":
        await conn.execute(text(
            "INSERT INTO step (course_id, title, position, kind, max_points) "
            f"VALUES ({course}, 'More', {10 + a * 10 + c}, 'QUIZ', {sql_value(MAX_POINTS[c % len(MAX_POINTS)])})"
        ))
    elif op == "delete_step" and step is not None:
        await conn.execute(text(f"DELETE FROM step WHERE id = {step}"))
    elif op == "move_progress" and step is not None:
        target = 1 + (a + 1) % 3
        other = steps[(c + 1) % len(steps)]
        await conn.execute(text(
            f"UPDATE step_progress SET user_id = {target}, step_id = {other}, course_id = {step_course[other]} "
            f"WHERE user_id = {user} AND step_id = {step}"
        ))
    elif op == "bulk_points":
        await conn.execute(text(
            f"UPDATE step_progress SET points = {sql_value(POINTS[b % len(POINTS)])}, "
            f"completed_at = CASE WHEN completed_at IS NULL THEN viewed_at END WHERE course_id = {course}"
        ))
    elif op == "bulk_delete":
        await conn.execute(text(f"DELETE FROM step_progress WHERE user_id = {user}"))
    elif op == "delete_user":
        await conn.execute(text(f'DELETE FROM "user" WHERE id = {user}'))


async def check(database: Database, where: str) -> None:
    async with database.engine.connect() as conn:
        direct = [tuple(r) for r in (await conn.execute(text(DIRECT))).all()]
        kept = [tuple(r) for r in (await conn.execute(text(KEPT))).all()]
    assert kept == direct, f"after {where}: kept {kept} != direct {direct}"


def test_card_counters_equal_direct_aggregate(engine: str) -> None:
    """Sync on purpose: Hypothesis drives the examples, each run on this test's own event loop."""
    loop = asyncio.new_event_loop()
    database = Database(Settings(database_url=engine))
    seen = {"writes": 0, "refused": 0}

    @settings(max_examples=EXAMPLES_PER_ENGINE, deadline=None, phases=(Phase.generate,),
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 99), st.integers(0, 99), st.integers(0, 99)),
                    min_size=3, max_size=16))
    def run(ops: list[tuple[str, int, int, int]]) -> None:
        async def go() -> None:
            await setup(database)
            await check(database, "setup")
            for n, (op, a, b, c) in enumerate(ops):
                seen["writes"] += 1
                try:
                    async with database.engine.begin() as conn:
                        await apply(conn, op, a, b, c)
                except Exception as exc:  # a duplicate or a row gone: nothing changed
                    if "unique" not in str(exc).lower() and "foreign key" not in str(exc).lower():
                        raise
                    seen["refused"] += 1
                await check(database, f"write {n} {op} {a} {b} {c}")
            async with database.engine.connect() as conn:
                trans = await conn.begin()
                assert await rollup.rebuild_and_compare(conn) == {t: 0 for t in rollup.TABLES}
                await trans.rollback()

        loop.run_until_complete(go())

    try:
        run()
    finally:
        loop.run_until_complete(database.dispose())
        loop.close()
    assert seen["writes"] > seen["refused"] > 0, seen  # most writes changed something, and refusals were met


async def test_cards_read_the_counters(site: Site) -> None:
    """A learner's cards carry the counters of their enrollments, in one statement for every learner asked."""
    database = site.database
    await setup(database)
    async with database.engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO step_progress (user_id, step_id, course_id, viewed_at, completed_at, points) VALUES "
            f"(2, 1, 1, {NOW}, {NOW}, 4), (2, 2, 1, {NOW}, NULL, NULL), (2, 3, 1, {NOW}, {NOW}, 0), (1, 4, 2, {NOW}, NULL, 2)"
        ))
    store = Store(database)
    try:
        loaders = ProgressLoaders(store)
        before = database.counter.count
        cards = await asyncio.gather(*(loaders.cards.load(u) for u in (1, 2)))
        by_course = {(c[CARD_USER], c[CARD_COURSE]): tuple(c[CARD_VIEWED:]) for cs in cards for c in cs}
    finally:
        await store.close()
    assert by_course == {(1, 1): (0, 0, 0, 0), (2, 1): (3, 2, 4, 20), (2, 2): (0, 0, 0, 0)}
    assert database.counter.count - before == 1


@pytest.mark.engines("postgres")  # SQLite runs one writer at a time
@pytest.mark.parametrize("changed_first", [False, True])
@pytest.mark.parametrize("write", ["progress", "enroll"])
async def test_max_points_changed_while_progress_is_written(site: Site, changed_first: bool, write: str) -> None:
    """A step's max points changed while another transaction gives a learner points on it (or enrolls a learner
    with points on it): whichever writes first, the other waits for it, and the counters come out exact."""
    database = site.database
    await setup(database)
    async with database.engine.begin() as conn:
        if write == "enroll":  # user 3's old progress in course 2, before the enrollment
            await conn.execute(text(
                f"INSERT INTO step_progress (user_id, step_id, course_id, viewed_at, completed_at, points) VALUES (3, 4, 2, {NOW}, {NOW}, 2)"
            ))
    change = text("UPDATE step SET max_points = 9 WHERE id = :s")
    if write == "progress":
        step, other = 1, text(
            "INSERT INTO step_progress (user_id, step_id, course_id, viewed_at, completed_at, points) "
            f"VALUES (1, :s, 1, {NOW}, {NOW}, 3)"
        )
    else:
        step, other = 4, text(f"INSERT INTO enrollment (user_id, course_id, activated_at) VALUES (3, 2, {NOW})")
    async with database.engine.connect() as changing, database.engine.connect() as writing:
        await changing.begin()
        await writing.begin()
        first, second = (changing, change), (writing, other)
        if not changed_first:
            first, second = second, first
        await first[0].execute(first[1], {"s": step})
        waiting = asyncio.create_task(second[0].execute(second[1], {"s": step}))
        await asyncio.sleep(0.3)  # room for the second to run ahead if nothing made it wait
        await first[0].commit()
        await waiting
        await second[0].commit()
    await check(database, f"{write}, the change {'first' if changed_first else 'second'}")
    async with database.engine.connect() as conn:
        available = (await conn.execute(text("SELECT max(points_available) FROM enrollment"))).scalar_one()
    assert available == 9


async def test_migration_fills_the_counters_and_goes_down_and_up_again(engine: str, tmp_path: Path) -> None:
    url, name = await _create(engine, tmp_path)
    database = create_async_engine(url)
    try:
        await upgrade(database, "0013_member_sort_name")
        async with database.begin() as connection:
            await connection.execute(text(
                "INSERT INTO \"user\" (id, email, email_normalized, kind, first_name, last_name, last_name_normalized, "
                "name_search, site_roles, status, synced, agreed_to_download_reports, created_at, login_count) "
                f"VALUES (1, 'k@x', 'k@x', 'LEARNER', 'Kim', 'Lee', 'lee', 'kim lee', '', 'ACTIVE', false, true, {NOW}, 0)"
            ))
            await connection.execute(text(f"INSERT INTO course (id, name, created_at) VALUES (1, 'C', {NOW})"))
            await connection.execute(text(
                "INSERT INTO step (id, course_id, title, position, kind, max_points) VALUES "
                "(1, 1, 'A', 1, 'QUIZ', 5), (2, 1, 'B', 2, 'LESSON', NULL)"
            ))
            await connection.execute(text(f"INSERT INTO enrollment (user_id, course_id, activated_at) VALUES (1, 1, {NOW})"))
            await connection.execute(text(
                "INSERT INTO step_progress (user_id, step_id, course_id, viewed_at, completed_at, points) VALUES "
                f"(1, 1, 1, {NOW}, {NOW}, 4), (1, 2, 1, {NOW}, NULL, NULL)"
            ))
        counted = [(1, 2, 1, 4, 5)]
        await upgrade(database)  # 0014 fills the existing enrollments
        async with database.connect() as connection:
            assert [tuple(r) for r in (await connection.execute(text(KEPT))).all()] == counted
            names = {t.name for t in rollup.CARD_TRIGGERS}
            assert await rollup.installed(connection, names) == names
        await _downgrade(url, "0013_member_sort_name")
        async with database.connect() as connection:
            assert await rollup.installed(connection, names) == set()
            columns = (await connection.execute(text("SELECT * FROM enrollment"))).keys()
            assert not set(rollup.CARD_COUNTS) & set(columns) and "user_id" in columns
            # the rollup's triggers on enrollment are still there (SQLite dropped the columns in place)
            assert await rollup.installed(connection) == set(rollup.TRIGGER_NAMES) - names
        await upgrade(database)
        async with database.connect() as connection:
            assert [tuple(r) for r in (await connection.execute(text(KEPT))).all()] == counted
    finally:
        await database.dispose()
        if name is not None:
            import asyncpg

            admin = await asyncpg.connect(PG_ADMIN_DSN)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
