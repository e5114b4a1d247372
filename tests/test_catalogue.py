"""The course catalogue each worker keeps in memory follows every write to courses and steps, whichever
process makes it: a second process sees a course created, renamed or given a step by the first on its
very next read."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from sqlalchemy import text

from tests.progress_helpers import course
from tests.site import Site

WORKER = """
import asyncio, json, sys
from app.settings import Settings
from app.store.db import Database
from dataloaders.courses import load_catalogue
from dataloaders.store import Store

async def main():
    database = Database(Settings(database_url=sys.argv[1]))
    last = None
    for line in sys.stdin:
        store = Store(database)
        database.counter.reset()
        catalogue = await load_catalogue(store)
        await store.close()
        names = sorted((b.course.name, len(b.steps)) for b in catalogue.courses.values())
        print(json.dumps({"names": names, "statements": database.counter.count, "same": catalogue is last}), flush=True)
        last = catalogue
    await database.dispose()

asyncio.run(main())
"""

PROJECT = str(Path(__file__).resolve().parents[1])
COURSES = "{ courses(first: 50) { edges { node { name stepCount } } } }"


async def test_a_second_process_sees_catalogue_changes_on_its_next_read(site: Site) -> None:
    admin = await site.user("Ada", "Admin", roles="ADMIN", kind="STAFF")
    await course(site, admin, "Algebra", [("LESSON", None)])
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WORKER, site.settings.database_url,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        cwd=PROJECT, env={**os.environ, "GROUPGRAPH_LOG_LEVEL": "WARNING"},
    )
    assert worker.stdin is not None and worker.stdout is not None

    async def read() -> dict:
        worker.stdin.write(b"read\n")  # type: ignore[union-attr]
        await worker.stdin.drain()  # type: ignore[union-attr]
        return json.loads(await asyncio.wait_for(worker.stdout.readline(), 60))  # type: ignore[union-attr]

    async def here() -> list[list]:
        body = await site.gql(COURSES, as_user=admin)
        assert "errors" not in body, body
        return sorted([e["node"]["name"], e["node"]["stepCount"]] for e in body["data"]["courses"]["edges"])

    try:
        first = await read()
        assert first["names"] == [["Algebra", 1]] and first["statements"] == 3  # the version, courses, steps
        again = await read()
        assert again["same"] and again["statements"] == 1  # from memory: the version only
        assert await here() == [["Algebra", 1]]

        await course(site, admin, "Biology", [("LESSON", None), ("QUIZ", 5)])  # createCourse, this process
        created = await read()
        assert created["names"] == [["Algebra", 1], ["Biology", 2]] and not created["same"]

        async with site.database.transaction() as session:  # a course renamed and a step added, any writer
            await session.execute(text("UPDATE course SET name = 'Algebra I' WHERE name = 'Algebra'"))
            await session.execute(text(
                "INSERT INTO step (course_id, title, position, kind) "
                "SELECT id, 'Algebra 2', 2, 'LESSON' FROM course WHERE name = 'Algebra I'"
            ))
        changed = await read()
        assert changed["names"] == [["Algebra I", 2], ["Biology", 2]]
        assert await here() == [["Algebra I", 2], ["Biology", 2]]

        async with site.database.transaction() as session:  # a rolled-back change is never seen
            await session.execute(text("UPDATE course SET name = 'Nothing'"))
            await session.rollback()
        assert (await read())["names"] == [["Algebra I", 2], ["Biology", 2]]

        async with site.database.transaction() as session:
            await session.execute(text("DELETE FROM course WHERE name = 'Biology'"))
        assert (await read())["names"] == [["Algebra I", 2]]
        assert await here() == [["Algebra I", 2]]
    finally:
        worker.stdin.close()
        await asyncio.wait_for(worker.wait(), 60)
