"""Courses and their steps: the catalogue, createCourse and enroll.

Course and Step objects are built once per request from the course loader (a course with all its steps),
so every field below them is synchronous.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry
from sqlalchemy import func, select, update
from strawberry.types import Info

from app.runtime import cursors
from app.runtime.errors import BadInput, NotFound
from app.runtime.ids import require_id, to_global_id
from app.runtime.subtrees import side_effect_free
from app.services.audit import audit
from app.store import keyset
from app.store.bulk import insert_rows, is_postgres, one_of, value_chunks
from app.store.keyset import Key
from app.store.models import Course as CourseRow
from app.store.models import Enrollment as EnrollmentRow
from app.store.models import Step as StepRow
from app.store.models import User as UserRow
from app.store.models import utcnow
from dataloaders.courses import CourseBundle
from permissions.classes import authenticated, requires
from permissions.reach import Permission
from resolvers.common import After, Before, First, Last, Node, PageInfo, clean_text, paging

MAX_STEPS = 1000
MAX_POINTS = 100_000


@strawberry.enum
class StepKind(Enum):
    LESSON = "LESSON"
    QUIZ = "QUIZ"
    ASSIGNMENT = "ASSIGNMENT"


@strawberry.type
class Course(Node):
    """Plain attributes rather than resolver methods where a dashboard reads them thousands of times:
    graphql-core's default resolver costs a fraction of a Strawberry method resolver."""

    row: strawberry.Private[CourseRow]
    name: str
    steps: list[Step] = strawberry.field(description="In position order.")
    step_count: int

    @strawberry.field
    @side_effect_free
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Course", self.row.id))  # type: ignore[arg-type]

    @strawberry.field(
        description="Whether a reviewed ASSIGNMENT counts as completed (reviewed work counts toward progress; default "
        "true): percentCompleted follows it on cards, summaries, reports and exports alike."
    )
    @side_effect_free
    def reviewed_work_completes(self) -> bool:
        return self.row.reviewed_work_completes

    @strawberry.field
    @side_effect_free
    def database_id(self) -> int:
        return self.row.id  # type: ignore[return-value]


@strawberry.type
class Step(Node):
    row: strawberry.Private[StepRow]
    course: Course
    title: str
    position: int = strawberry.field(description="1-based order within the course.")
    kind: StepKind
    max_points: int | None = strawberry.field(description="Points available when graded; null when the step is not graded.")

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Step", self.row.id))  # type: ignore[arg-type]

    @strawberry.field
    def database_id(self) -> int:
        return self.row.id  # type: ignore[return-value]


def course_view(info: Info, bundle: CourseBundle) -> Course:
    """The Course object of a course (and one Step object per step), built once per version of the catalogue
    in this process (dataloaders.courses), not once per request: nothing in them depends on the caller."""
    view: Course | None = bundle.built.get("view")
    if view is None:
        course = bundle.course
        view = Course(row=course, name=course.name, steps=[], step_count=len(bundle.steps))
        view.steps.extend(
            Step(row=s, course=view, title=s.title, position=s.position, kind=StepKind(s.kind), max_points=s.max_points)
            for s in bundle.steps
        )
        bundle.built["view"] = view
        bundle.built["steps"] = {step.row.id: step for step in view.steps}
    views: dict[int, Course] = info.context.extra.setdefault("course_views", {})
    if views.get(bundle.course.id) is not view:
        views[bundle.course.id] = view
        info.context.extra.setdefault("step_views", {}).update(bundle.built["steps"])
    return view


async def course_views(info: Info, ids: Sequence[int]) -> dict[int, Course]:
    """Courses by id (missing ones left out), through the request's course cache."""
    courses = info.context.loaders.courses
    await courses.catalogue()  # once per request; no statement when its version came with the sign-in
    bundles = courses.at_hand(ids)
    if bundles is None:
        bundles = await courses.by_id.load_many(list(ids))
    return {b.course.id: course_view(info, b) for b in bundles if b is not None}


def step_view(info: Info, step_id: int) -> Step | None:
    """A Step of a course already loaded in this request."""
    return info.context.extra.get("step_views", {}).get(step_id)


async def visible_course(info: Info, course_id: int) -> Course | None:
    """Any signed-in user may see the catalogue."""
    if info.context.viewer is None:
        return None
    return (await course_views(info, [course_id])).get(course_id)


async def visible_step(info: Info, step_id: int) -> Step | None:
    if info.context.viewer is None:
        return None
    row = await info.context.loaders.courses.step_by_id.load(step_id)
    if row is None:
        return None
    await course_views(info, [row.course_id])
    return step_view(info, step_id)


@strawberry.input
class StepInput:
    title: str
    kind: StepKind
    max_points: int | None = strawberry.field(default=None, description="Null: not graded. Else 1..100000.")


@strawberry.type
class CourseEdge:
    cursor: str
    node: Course


@strawberry.type
class CourseConnection:
    edges: list[CourseEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type
class CourseQueries:
    @strawberry.field(extensions=[authenticated()], description="The course catalogue, by name.")
    async def courses(
        self, info: Info, first: First = 50, after: After = None, last: Last = None, before: Before = None
    ) -> CourseConnection:
        store = info.context.store
        pages = paging(info, "courses", (cursors.TEXT, cursors.ID), first, after, last, before)
        order = (Key(CourseRow.name), Key(CourseRow.id))
        window = pages.window
        query = select(CourseRow).where(*keyset.conditions(order, window))
        fetched = list(await store.scalars(query.order_by(*keyset.ordering(order, window)).limit(window.fetch)))
        total = int(await store.scalar(select(func.count()).select_from(CourseRow)))
        rows, made, page_info_ = pages.page(fetched, lambda r: (r.name, r.id))
        views = await course_views(info, [r.id for r in rows])  # type: ignore[misc]
        edges = [CourseEdge(cursor=c, node=views[r.id]) for c, r in zip(made, rows, strict=True)]  # type: ignore[index]
        return CourseConnection(edges=edges, page_info=page_info_, total_count=total)


@strawberry.type
class CourseMutations:
    @strawberry.mutation(
        extensions=[requires(Permission.SITE_ADMIN)],
        description="Site admins (and their API tokens) build the catalogue. Steps take positions 1..n in the "
        "order given; a course may have no steps yet.",
    )
    async def create_course(
        self, info: Info, name: str, steps: list[StepInput],
        reviewed_work_completes: Annotated[
            bool | None,
            strawberry.argument(description="Whether a reviewed ASSIGNMENT counts as completed (default true)."),
        ] = True,
    ) -> Course:
        ctx = info.context
        clean_name = clean_text(name, "name")
        if len(steps) > MAX_STEPS:
            raise BadInput(f"A course has at most {MAX_STEPS} steps.", field="steps")
        cleaned = []
        for n, step in enumerate(steps):
            title = clean_text(step.title, f"steps.{n}.title")
            if step.max_points is not None and not 1 <= step.max_points <= MAX_POINTS:
                raise BadInput(f"maxPoints must be between 1 and {MAX_POINTS}", field=f"steps.{n}.maxPoints")
            cleaned.append((title, step.kind.value, step.max_points))
        async with ctx.store.transaction() as session:
            course = CourseRow(name=clean_name, reviewed_work_completes=reviewed_work_completes is not False)  # type: ignore[arg-type]
            session.add(course)
            await session.flush()
            rows = [
                StepRow(course_id=course.id, title=title, position=n + 1, kind=kind, max_points=points)  # type: ignore[arg-type]
                for n, (title, kind, points) in enumerate(cleaned)
            ]
            session.add_all(rows)
            await session.flush()
            audit(session, ctx.viewer_id, "course.create", "course", course.id, name=clean_name, steps=len(rows))
        bundle = CourseBundle(course, tuple(rows))
        ctx.loaders.courses.prime([bundle])
        return course_view(info, bundle)

    @strawberry.mutation(
        extensions=[requires(Permission.SITE_ADMIN)],
        description="Enrolls users in a course: site admins and their API tokens (the learning platform); a group "
        "leader asks an admin. Returns how many users were newly enrolled. Users already enrolled keep their "
        "enrollment; when expiresAt is given their access end moves to it. Unknown users: BAD_USER_INPUT, "
        "nobody enrolled.",
    )
    async def enroll(
        self, info: Info, user_ids: list[strawberry.ID], course_id: strawberry.ID, expires_at: datetime | None = None
    ) -> int:
        ctx = info.context
        course_pk = require_id(course_id, "Course", "courseId")
        limit = ctx.settings.max_progress_batch
        if len(user_ids) > limit:
            raise BadInput(f"At most {limit} users at a time.", field="userIds")
        wanted = sorted({require_id(u, "User", "userIds") for u in user_ids})
        now = utcnow()
        if expires_at is not None:
            if expires_at.tzinfo is None:
                expires_at = expires_at.replace(tzinfo=now.tzinfo)
            if expires_at <= now:
                raise BadInput("expiresAt must be in the future.", field="expiresAt")
        async def work(session) -> int:  # type: ignore[no-untyped-def]
            postgres = is_postgres(session)
            if await session.get(CourseRow, course_pk) is None:
                raise NotFound("No such course.", field="courseId")
            found: set[int] = set()
            enrolled: set[int] = set()
            for chunk in value_chunks(postgres, wanted):
                found.update(await session.scalars(select(UserRow.id).where(one_of(postgres, UserRow.id, chunk))))
                enrolled.update(
                    await session.scalars(
                        select(EnrollmentRow.user_id).where(
                            EnrollmentRow.course_id == course_pk, one_of(postgres, EnrollmentRow.user_id, chunk)
                        )
                    )
                )
            missing = [u for u in wanted if u not in found]
            if missing:
                raise BadInput(
                    f"{len(missing)} of the users do not exist.", field="userIds",
                    userIds=[to_global_id("User", u) for u in missing],
                )
            new = [u for u in wanted if u not in enrolled]
            table = EnrollmentRow.__table__  # type: ignore[attr-defined]
            await insert_rows(
                session, table, ["user_id", "course_id", "activated_at", "expires_at"],
                [(u, course_pk, now, expires_at) for u in new],
            )
            if expires_at is not None and enrolled:
                for chunk in value_chunks(postgres, enrolled):
                    await session.execute(
                        update(EnrollmentRow)
                        .where(EnrollmentRow.course_id == course_pk, one_of(postgres, EnrollmentRow.user_id, chunk))
                        .values(expires_at=expires_at)
                    )
            audit(session, ctx.viewer_id, "course.enroll", "course", course_pk, enrolled=len(new),
                  extended=len(enrolled) if expires_at is not None else 0, expires_at=expires_at)
            return len(new)

        # the same users enrolled at the same moment by another call count as enrolled already on the next try
        return await ctx.store.run(work)
