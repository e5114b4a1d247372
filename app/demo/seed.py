"""The demo data that `scripts/serve` seeds on an empty database (bench presets: app/demo/presets.py)."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.services.tree import attach
from app.store.db import Database
from app.store.models import (
    ActivityEvent,
    Course,
    Enrollment,
    Group,
    Membership,
    Step,
    StepProgress,
    Submission,
    Usage,
    User,
    utcnow,
)

PRESETS = ("demo",)
DEMO_OWNER_EMAIL = "owner@example.com"
DEMO_OWNER_PASSWORD = "groupgraph-demo"


async def run_seed(database: Database, preset: str, *, if_empty: bool = False) -> None:
    from resolvers.users import create_user_row

    started = time.perf_counter()
    try:
        async with database.transaction() as session:
            if if_empty and await session.scalar(select(func.count()).select_from(User)):
                print("database already has users; not seeding")
                return
            owner = await create_user_row(
                session, email=DEMO_OWNER_EMAIL, first_name="Olivia", last_name="Owner", kind="STAFF",
                password=DEMO_OWNER_PASSWORD, roles=["OWNER"],
            )
            groups: list[Group] = []
            for name, parent in (("Northfield District", None), ("Hillside School", 0), ("Class 5A", 1)):
                group = Group(
                    name=name, name_normalized=name.lower(), slug=name.lower().replace(" ", "-"),
                    parent_id=groups[parent].id if parent is not None else None,
                    depth=0 if parent is None else groups[parent].depth + 1,
                )
                session.add(group)
                await session.flush()
                await attach(session, group.id, group.parent_id)  # type: ignore[arg-type]
                groups.append(group)
            session.add(Membership(user_id=owner.id, group_id=groups[0].id, role="LEADER"))  # type: ignore[arg-type]
            mentor = await create_user_row(
                session, email="mentor@example.com", first_name="Max", last_name="Mentor", kind="STAFF",
                password=DEMO_OWNER_PASSWORD,
            )
            session.add(Membership(user_id=mentor.id, group_id=groups[1].id, role="MENTOR"))  # type: ignore[arg-type]
            # the school's leader administers the accounts homed in the school (MANAGE_ACCOUNT)
            school = groups[1].id
            leader = await create_user_row(
                session, email="leader@example.com", first_name="Lena", last_name="Leader", kind="STAFF",
                password=DEMO_OWNER_PASSWORD, home_group_id=school,
            )
            session.add(Membership(user_id=leader.id, group_id=school, role="LEADER"))  # type: ignore[arg-type]
            learners = []
            for n in range(1, 7):
                learner = await create_user_row(
                    session, email=f"learner{n}@example.com", first_name=f"Learner{n}", last_name="Demo",
                    kind="LEARNER", password=DEMO_OWNER_PASSWORD, home_group_id=school,
                )
                if n < 6:  # learner6 has used the product but is in no class yet: an unassigned active student
                    session.add(Membership(user_id=learner.id, group_id=groups[2].id, role="MEMBER"))  # type: ignore[arg-type]
                learners.append(learner)
            await _demo_progress(session, learners[:5])
            session.add(Usage(user_id=learners[5].id, day=utcnow().date(), minutes=12))  # type: ignore[arg-type]
    finally:
        await database.dispose()
    print(f"seeded preset {preset} in {time.perf_counter() - started:.1f}s")
    print(f"sign in as {DEMO_OWNER_EMAIL} / {DEMO_OWNER_PASSWORD}")


async def _demo_progress(session: AsyncSession, learners: list[User]) -> None:
    """Two courses; each learner a little further than the one before, one assignment awaiting review."""
    now = utcnow()
    courses = [Course(name="Fractions"), Course(name="Reading Club")]
    session.add_all(courses)
    await session.flush()
    steps: dict[int, list[Step]] = {}
    for course in courses:
        kinds = ["LESSON", "LESSON", "QUIZ", "ASSIGNMENT"]
        steps[course.id] = [  # type: ignore[index]
            Step(course_id=course.id, title=f"{course.name} {i + 1}", position=i + 1, kind=kind,  # type: ignore[arg-type]
                 max_points=10 if kind != "LESSON" else None)
            for i, kind in enumerate(kinds)
        ]
        session.add_all(steps[course.id])  # type: ignore[index]
    await session.flush()
    for n, learner in enumerate(learners):
        session.add(Usage(user_id=learner.id, day=(now - timedelta(days=1)).date(), minutes=15 * (n + 1)))  # type: ignore[arg-type]
        for course in courses:
            session.add(Enrollment(user_id=learner.id, course_id=course.id, activated_at=now - timedelta(days=30),  # type: ignore[arg-type]
                                   expires_at=now + timedelta(days=335)))
            for step in steps[course.id][: min(n, 3)]:  # type: ignore[index]
                at = now - timedelta(days=10 - step.position)
                points = 8 if step.kind == "QUIZ" else None
                session.add(StepProgress(user_id=learner.id, step_id=step.id, course_id=course.id,  # type: ignore[arg-type]
                                         viewed_at=at, completed_at=at, points=points))
                session.add(ActivityEvent(user_id=learner.id, kind="STEP_COMPLETED", occurred_at=at,  # type: ignore[arg-type]
                                          course_id=course.id, step_id=step.id))
    assignment = steps[courses[0].id][3]  # type: ignore[index]
    session.add(Submission(user_id=learners[-1].id, step_id=assignment.id, course_id=courses[0].id,  # type: ignore[arg-type]
                           body="My answers are attached.", submitted_at=now - timedelta(hours=5)))
    session.add(ActivityEvent(user_id=learners[-1].id, kind="SUBMISSION", occurred_at=now - timedelta(hours=5),  # type: ignore[arg-type]
                              course_id=courses[0].id, step_id=assignment.id, body="My answers are attached."))
