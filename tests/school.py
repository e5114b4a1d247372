"""A hand-built school for the report and export tests: groups, members, staff, courses, progress."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

from app.store.models import Course, Enrollment, Step, StepProgress, User
from tests.site import Site

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


async def course(site: Site, name: str, steps: int) -> tuple[Course, list[Step]]:
    async with site.database.transaction() as session:
        row = Course(name=name)
        session.add(row)
        await session.flush()
        made = [Step(course_id=row.id, title=f"{name} {i}", position=i, kind="LESSON") for i in range(steps)]
        session.add_all(made)
    return row, made


async def enroll(
    site: Site, user: User, course_row: Course, *, completed_at: datetime | None = None,
    expires_at: datetime | None = None,
) -> None:
    async with site.database.transaction() as session:
        session.add(
            Enrollment(user_id=user.id, course_id=course_row.id, activated_at=T0, completed_at=completed_at, expires_at=expires_at)
        )


async def progress(site: Site, user: User, steps: list[Step], *, viewed: int, completed: int) -> None:
    async with site.database.transaction() as session:
        for i, step in enumerate(steps[:viewed]):
            session.add(
                StepProgress(
                    user_id=user.id, step_id=step.id, course_id=step.course_id, viewed_at=T0,
                    completed_at=T0 if i < completed else None,
                )
            )


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def parse(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))


async def school(site: Site) -> dict[str, Any]:
    """School > (Class A, Class B); Ann and Bob in A, Cid in B; a leader, an analyst of A, a mentor, a member."""
    admin = await site.user("Adm", kind="STAFF", roles="ADMIN")
    root = await site.group("School")
    class_a = await site.group("Class A", root)
    class_b = await site.group("Class B", root)
    ann = await site.user("Ann", "Archer", email="ann@example.com", company="=cmd|' /C calc'!A0")
    bob = await site.user("Bob", "Baker, Jr.", email="bob@example.com", company='Say "hi"')
    cid = await site.user("Cid", "Cole", email="cid@example.com")
    for user, group in ((ann, class_a), (bob, class_a), (cid, class_b)):
        await site.member(user, group)
    leader = await site.user("Lea", kind="STAFF")
    await site.member(leader, root, "LEADER")
    analyst = await site.user("Ana", kind="STAFF", roles="GROUP_ANALYST")
    await site.member(analyst, class_a, "ANALYST")
    mentor = await site.user("Men", kind="STAFF")
    await site.member(mentor, root, "MENTOR")
    maths, maths_steps = await course(site, "Maths", 4)
    art, art_steps = await course(site, "Art", 3)
    await enroll(site, ann, maths, completed_at=datetime(2026, 3, 9, 12, 0, tzinfo=UTC), expires_at=datetime(2027, 1, 1, tzinfo=UTC))
    await enroll(site, ann, art)
    await enroll(site, bob, maths)
    await enroll(site, cid, art)
    await progress(site, ann, maths_steps, viewed=4, completed=4)
    await progress(site, ann, art_steps, viewed=2, completed=1)
    await progress(site, bob, maths_steps, viewed=1, completed=0)
    return {
        "admin": admin, "root": root, "a": class_a, "b": class_b, "ann": ann, "bob": bob, "cid": cid,
        "leader": leader, "analyst": analyst, "mentor": mentor, "maths": maths, "art": art,
    }
