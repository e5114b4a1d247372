"""Mentor review: submissions, the review queue of a group, the red-dot count, and reviewSubmission.

A submission is seen by whoever may see the submitter's progress (VIEW_PROGRESS: self, site admin,
LEADER/MENTOR/ANALYST over them, a consent grantee, a guardian); reviewing takes REVIEW_WORK over the
submitter (site admin, LEADER/MENTOR over them), and nobody reviews their own work.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import strawberry
from sqlalchemy import and_, func, select, update
from strawberry.types import Info

from app.runtime import cursors
from app.runtime.errors import BadInput, Forbidden, NotFound
from app.runtime.ids import require_id, to_global_id
from app.services.audit import audit
from app.services.events import review_changed
from app.store.bulk import insert_rows
from app.store.models import ActivityEvent as ActivityRow
from app.store.models import Enrollment as EnrollmentRow
from app.store.models import Review as ReviewRow
from app.store.models import Step as StepRow
from app.store.models import StepProgress as StepProgressRow
from app.store.models import Submission as SubmissionRow
from app.store.models import utcnow
from dataloaders.reviews import REVIEWED
from permissions.classes import Subjects, requires
from permissions.reach import Permission, Reach
from resolvers.common import (
    Node,
    PageInfo,
    clean_text,
    decode_cursor,
    encode_cursor,
    page_info,
    page_size,
    paging,
)
from resolvers.courses import Course, Step, course_views, step_view
from resolvers.enums import SubmissionStatus
from resolvers.views import GroupView, UserType, UserView, prepare_users, visible_users

FEEDBACK_MAX_LENGTH = 10_000


@strawberry.type(description="One review of a submission: a regrade adds another, the history stays.")
class Review:
    reviewer: UserType | None = strawberry.field(
        description="Null where the caller may not see the reviewer, or the account is gone."
    )
    points: int | None
    feedback: str | None
    reviewed_at: datetime


@strawberry.type(description="Work a learner handed in on an ASSIGNMENT step.")
class Submission(Node):
    row: strawberry.Private[SubmissionRow]
    submitter: strawberry.Private[UserView]
    reviewer: strawberry.Private[UserView | None]
    step_obj: strawberry.Private[Step]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Submission", self.row.id))  # type: ignore[arg-type]

    @strawberry.field
    def database_id(self) -> int:
        return self.row.id  # type: ignore[return-value]

    @strawberry.field
    def user(self) -> UserType:
        return self.submitter

    @strawberry.field
    def step(self) -> Step:
        return self.step_obj

    @strawberry.field
    def course(self) -> Course:
        return self.step_obj.course

    @strawberry.field
    def body(self) -> str | None:
        return self.row.body

    @strawberry.field
    def submitted_at(self) -> datetime:
        return self.row.submitted_at

    @strawberry.field
    def status(self) -> SubmissionStatus:
        return SubmissionStatus(self.row.status)

    @strawberry.field
    def points(self) -> int | None:
        return self.row.points

    @strawberry.field
    def feedback(self) -> str | None:
        return self.row.feedback

    @strawberry.field(description="Null until reviewed, or where the caller may not see the reviewer.")
    def reviewed_by(self) -> UserType | None:
        return self.reviewer

    @strawberry.field
    def reviewed_at(self) -> datetime | None:
        return self.row.reviewed_at

    @strawberry.field(description="Every review of this submission, oldest first (a grade can be changed; the history stays).")
    async def reviews(self, info: Info) -> list[Review]:
        rows = await info.context.loaders.reviews.reviews.load(self.row.id)
        ids = sorted({r.reviewer_id for r in rows if r.reviewer_id is not None})
        reviewers = dict(zip(ids, await visible_users(info, ids), strict=True))
        return [
            Review(reviewer=reviewers.get(r.reviewer_id), points=r.points, feedback=r.feedback, reviewed_at=r.reviewed_at)  # type: ignore[arg-type]
            for r in rows
        ]


@strawberry.type
class SubmissionEdge:
    cursor: str
    node: Submission


@strawberry.type
class SubmissionConnection:
    edges: list[SubmissionEdge]
    page_info: PageInfo
    total_count: int


async def build_submissions(info: Info, rows: Sequence[SubmissionRow]) -> list[Submission]:
    """Submission objects for rows the caller may see: submitters, reviewers and courses in one batch each."""
    users = await info.context.loaders.users.many(sorted({r.user_id for r in rows}))
    submitters = {u.row.id: u for u in await prepare_users(info, [u for u in users if u is not None])}
    reviewer_ids = sorted({r.reviewer_id for r in rows if r.reviewer_id is not None})
    reviewers = dict(zip(reviewer_ids, await visible_users(info, reviewer_ids), strict=True))
    await course_views(info, [r.course_id for r in rows])
    out = []
    for r in rows:
        step = step_view(info, r.step_id)
        if step is None or r.user_id not in submitters:
            continue
        out.append(Submission(row=r, submitter=submitters[r.user_id], reviewer=reviewers.get(r.reviewer_id), step_obj=step))  # type: ignore[arg-type]
    return out


async def visible_submission(info: Info, submission_id: int) -> Submission | None:
    """node(id:): for those who may see the submitter's progress; null otherwise, as for a missing id."""
    reach: Reach = await info.context.load_reach()
    row = await info.context.loaders.reviews.by_id.load(submission_id)
    if row is None:
        return None
    built = await build_submissions(info, [row])
    if not built or not reach.may(Permission.VIEW_PROGRESS, built[0].submitter.user_subject):
        return None
    return built[0]


async def review_queue_of(
    info: Info, group: GroupView, first: int | None, after: str | None, last: int | None = None,
    before: str | None = None, status: SubmissionStatus = SubmissionStatus.NEEDS_REVIEW,
    user_id: strawberry.ID | None = None,
) -> SubmissionConnection:
    """NEEDS_REVIEW oldest first (submittedAt, id); REVIEWED newest reviewed first (reviewedAt, id). Each order
    has its own cursors, so one cannot be replayed in the other."""
    reviewed = status is SubmissionStatus.REVIEWED
    connection = "reviewQueue.reviewed" if reviewed else "reviewQueue"
    pages = paging(info, connection, (cursors.INSTANT, cursors.ID), first, after, last, before)
    member = require_id(user_id, "User", "userId") if user_id is not None else None
    fetched, total = await info.context.loaders.reviews.queue(
        group.row.id, info.context.viewer_id, pages.window, status.value, member  # type: ignore[arg-type]
    )
    rows, made, page_info_ = pages.page(fetched, lambda r: (r.reviewed_at if reviewed else r.submitted_at, r.id))
    built = {s.row.id: s for s in await build_submissions(info, rows)}
    edges = [SubmissionEdge(cursor=c, node=built[r.id]) for c, r in zip(made, rows, strict=True) if r.id in built]
    return SubmissionConnection(edges=edges, page_info=page_info_, total_count=total)


async def submissions_of_user(
    info: Info, user: UserView, status: SubmissionStatus | None, first: int | None, after: str | None
) -> SubmissionConnection:
    """User.submissions: newest first, keyset after (submittedAt, id); one statement for a page of users."""
    limit = page_size(info, first)
    keyset = decode_cursor(after, [datetime, int])
    position = (keyset[0], keyset[1]) if keyset else None
    loader = info.context.loaders.reviews.of_user(status.value if status else None, limit + 1, position)
    rows = await loader.load(user.row.id)
    rows, has_next = rows[:limit], len(rows) > limit
    built = await build_submissions(info, rows)
    edges = [SubmissionEdge(cursor=encode_cursor(s.row.submitted_at, s.row.id), node=s) for s in built]
    total = await info.context.loaders.reviews.counts(status.value if status else None).load(user.row.id)
    return SubmissionConnection(edges=edges, page_info=page_info(has_next, [e.cursor for e in edges]), total_count=total)


async def latest_submission(info: Info, user_id: int, step_id: int) -> Submission | None:
    """StepProgress.submission: the latest for the step (one statement for every card of the page's users)."""
    row = (await info.context.loaders.reviews.latest_per_step.load(user_id)).get(step_id)
    if row is None:
        return None
    built = await build_submissions(info, [row])
    return built[0] if built else None


async def pending_review_count_of(info: Info, user: UserView) -> int:
    return await info.context.loaders.reviews.pending_count.load(user.row.id)


async def _submitter(info: Info, kwargs: dict[str, Any]) -> Subjects:
    """The permission target of reviewSubmission: NOT_FOUND unless the caller may see the submission."""
    submission = await visible_submission(info, require_id(kwargs["id"], "Submission", "id"))
    if submission is None:
        raise NotFound("No such submission.", field="id")
    return Subjects(users=[submission.submitter.user_subject])


async def record_review_progress(session, row: SubmissionRow, points: int | None, completed_at: datetime | None) -> None:  # type: ignore[no-untyped-def]
    """The step's progress after a review: its points, and (when the course counts reviewed work) the step
    completed, and the enrollment with it once every step is. percentCompleted everywhere (cards, summary,
    report, exports) counts completed step_progress rows: this is its one definition."""
    sp = StepProgressRow.__table__  # type: ignore[attr-defined]
    updates: dict[str, Any] = {}
    if points is not None:
        updates["points"] = lambda s: s.excluded.points
    if completed_at is not None:
        updates["completed_at"] = lambda s: func.coalesce(sp.c.completed_at, s.excluded.completed_at)
    await insert_rows(
        session, sp, ["user_id", "step_id", "course_id", "viewed_at", "completed_at", "points"],
        [(row.user_id, row.step_id, row.course_id, row.submitted_at, completed_at, points)],
        lambda s: s.on_conflict_do_update(index_elements=["user_id", "step_id"], set_={k: f(s) for k, f in updates.items()}),
    )
    if completed_at is None:
        return
    e, p, st = EnrollmentRow.__table__.c, sp.c, StepRow.__table__.c  # type: ignore[attr-defined]
    mine = and_(p.user_id == e.user_id, p.course_id == e.course_id)
    steps = select(func.count()).where(st.course_id == e.course_id).scalar_subquery()
    done = select(func.count(p.completed_at)).where(mine).scalar_subquery()
    last = select(func.max(p.completed_at)).where(mine).scalar_subquery()
    await session.execute(
        update(EnrollmentRow.__table__)  # type: ignore[arg-type]
        .where(e.user_id == row.user_id, e.course_id == row.course_id, e.completed_at.is_(None), steps > 0, done == steps)
        .values(completed_at=last)
    )


@strawberry.type
class ReviewMutations:
    @strawberry.mutation(
        extensions=[requires(Permission.REVIEW_WORK, target=_submitter)],
        description="Grades a submission: site admin, LEADER/MENTOR over the submitter (analysts, consent grantees "
        "and guardians may see it but not review it; nobody reviews their own work). points: required on a graded "
        "step, 0..maxPoints; absent on an ungraded one; else BAD_USER_INPUT and nothing changes. The submission "
        "becomes REVIEWED with reviewer and time, its points count toward the learner's gradePercent, and the "
        "learner's activity gets a REVIEW event. A REVIEWED submission may be reviewed again (regrading): every "
        "review is kept (Submission.reviews). On an ASSIGNMENT of a course whose reviewedWorkCompletes is on (the "
        "default), the review completes the step, so percentCompleted counts it everywhere.",
    )
    async def review_submission(
        self, info: Info, id: strawberry.ID, points: int | None = None, feedback: str | None = None
    ) -> Submission:
        ctx = info.context
        submission_id = require_id(id, "Submission", "id")
        row = await ctx.loaders.reviews.by_id.load(submission_id)
        if row is None:
            raise NotFound("No such submission.", field="id")
        if row.user_id == ctx.viewer_id:
            raise Forbidden("You may not review your own work.")
        step = await ctx.loaders.courses.step_by_id.load(row.step_id)
        bundle = await ctx.loaders.courses.by_id.load(row.course_id)
        completes = (
            step is not None and step.kind == "ASSIGNMENT" and bundle is not None and bundle.course.reviewed_work_completes
        )
        max_points = step.max_points if step is not None else None
        if max_points is None and points is not None:
            raise BadInput("This step is not graded: give no points.", field="points")
        if max_points is not None and (points is None or not 0 <= points <= max_points):
            raise BadInput(f"points must be between 0 and {max_points}.", field="points")
        text = clean_text(feedback, "feedback", max_length=FEEDBACK_MAX_LENGTH, required=False) or None
        now = utcnow()
        async with ctx.store.transaction() as session:
            current = await session.get(SubmissionRow, submission_id)
            if current is None:
                raise NotFound("No such submission.", field="id")
            before = current.status
            current.status, current.points, current.feedback = REVIEWED, points, text
            current.reviewer_id, current.reviewed_at = ctx.viewer_id, now
            session.add(current)
            session.add(ReviewRow(submission_id=submission_id, reviewer_id=ctx.viewer_id, points=points, feedback=text, reviewed_at=now))
            if points is not None or completes:
                await record_review_progress(session, row, points, now if completes else None)
            session.add(
                ActivityRow(user_id=row.user_id, kind="REVIEW", occurred_at=now, course_id=row.course_id,
                            step_id=row.step_id, body=text)
            )
            audit(session, ctx.viewer_id, "submission.review", "submission", submission_id,
                  before=before, points=points, user_id=row.user_id)
            ctx.store.publish(review_changed(row.user_id, submission_id=submission_id))
        ctx.loaders.reviews.by_id.clear(submission_id)
        ctx.loaders.reviews.by_id.prime(submission_id, current)
        return (await build_submissions(info, [current]))[0]

