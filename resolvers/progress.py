"""Progress cards, group summaries, the activity feed, usage minutes, and recordProgress (ingestion).

Everything below `User.courseProgress` is synchronous: the resolver loads the cards of every user on the
page in one batch (dataloaders.progress), the courses with their steps in another, and, only when the
query asks for `steps`, the step records in a third; then it hands plain objects down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from functools import lru_cache
from typing import Any

import strawberry
from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode, SelectionSetNode
from strawberry.types import Info

from app.runtime import cursors
from app.runtime.errors import BadInput
from app.runtime.ids import require_id
from app.services.events import progress_changed, review_changed
from app.services.ingest import RawEvent, prepare, record_progress
from app.store.models import ActivityEvent as ActivityRow
from dataloaders.batch import load_all
from dataloaders.progress import (
    CARD_ACTIVATED_AT,
    CARD_COMPLETED,
    CARD_COMPLETED_AT,
    CARD_COURSE,
    CARD_EXPIRES_AT,
    CARD_POINTS,
    CARD_POINTS_AVAILABLE,
    CARD_VIEWED,
    Card,
    StepRecord,
)
from permissions.classes import decide, requires
from permissions.filters import member_rows_admitted, member_rows_visible
from permissions.reach import Permission
from resolvers.common import PageInfo, paging
from resolvers.courses import Course, Step, course_views, step_view
from resolvers.reviews import Submission, latest_submission
from resolvers.views import GroupView, UserView


def percent(part: int | None, whole: int | None) -> float:
    if not whole:
        return 0.0
    return _percent(part or 0, whole)


@lru_cache(maxsize=8192)
def _percent(part: int, whole: int) -> float:
    """Remembered: a page asks the same few (part, whole) pairs thousands of times, and `round` to 2 digits is
    slow."""
    return round(min(100.0, 100.0 * part / whole), 2)


@strawberry.type
class StepProgress:
    step: Step
    viewed_at: datetime | None
    completed_at: datetime | None
    points: int | None = strawberry.field(description="Points earned on a graded step; null until graded.")
    user_id: strawberry.Private[int | None] = None

    @strawberry.field(description="The latest submission for this step (assignments), so a card links to its review.")
    async def submission(self, info: Info) -> Submission | None:
        if self.user_id is None or self.step.kind.value != "ASSIGNMENT":
            return None
        return await latest_submission(info, self.user_id, self.step.row.id)  # type: ignore[arg-type]


@strawberry.type(description="A learner's progress card for one course.")
class CourseProgress:
    """Computed when built: plain attributes resolve far faster than resolver methods (thousands per page)."""

    course: Course
    activated_at: datetime | None = strawberry.field(description="Enrollment date.")
    expires_at: datetime | None = strawberry.field(description="When access to the course ends.")
    completed_at: datetime | None = strawberry.field(
        description="When every step was completed (never, for a course with no steps)."
    )
    percent_viewed: float = strawberry.field(
        description="Share of steps viewed, 0..100 (a completed or submitted step counts as viewed; 0 for a course "
        "with no steps)."
    )
    percent_completed: float = strawberry.field(description="Share of steps completed, 0..100 (0 for a course with no steps).")
    grade_percent: float | None = strawberry.field(
        description="Points earned over points available on graded steps, 0..100; null when nothing is graded yet. "
        "Only graded steps that have points (reviewed, or scored by the platform) count."
    )
    steps_completed: int
    step_count: int
    steps: list[StepProgress] = strawberry.field(description="One entry per step of the course, in position order.")


@dataclass(slots=True)
class CardView:
    """A learner's card as the `CourseProgress` type reads it (its fields are plain attributes and it has no
    `is_type_of`): slotted, a third of the cost of the Strawberry type's keyword-only constructor and no
    `__dict__` (a members page makes ~1,000)."""

    course: Course
    activated_at: datetime | None
    expires_at: datetime | None
    completed_at: datetime | None
    percent_viewed: float
    percent_completed: float
    grade_percent: float | None
    steps_completed: int
    step_count: int
    steps: Sequence[StepProgress]


_NO_STEPS: tuple[StepProgress, ...] = ()  # a card without its steps asked (never changed: shared)


def card_of(card: Card, course: Course, steps: Sequence[StepProgress], shares: Sequence[float] | None = None) -> CardView:
    """`shares`: percent(n, the course's step count) for n = 0..count (course_shares), to look up."""
    count = course.step_count
    viewed, completed, available = card[CARD_VIEWED], card[CARD_COMPLETED], card[CARD_POINTS_AVAILABLE]
    if shares is not None and 0 <= viewed <= count and 0 <= completed <= count:
        percent_viewed, percent_completed = shares[viewed], shares[completed]
    else:
        percent_viewed, percent_completed = percent(viewed, count), percent(completed, count)
    return CardView(
        course, card[CARD_ACTIVATED_AT], card[CARD_EXPIRES_AT], card[CARD_COMPLETED_AT], percent_viewed,
        percent_completed, percent(card[CARD_POINTS], available) if available else None, completed, count, steps,
    )


def course_shares(course: Course) -> list[float]:
    """percent(n, step count) for every n from 0 to the course's step count."""
    count = course.step_count
    return [percent(n, count) for n in range(count + 1)]


def asks_for(info: Info, name: str) -> bool:
    """Whether the query selects `name` directly under this field (through fragments too). Decided once per
    field of the query, not once per user: every user of a list shares the same field nodes."""
    raw = info._raw_info
    key = ("asks_for", name, id(raw.field_nodes[0]))
    cache: dict[Any, bool] = info.context.extra
    if key not in cache:

        def walk(selection_set: SelectionSetNode | None, seen: frozenset[str]) -> bool:
            for selection in selection_set.selections if selection_set else ():
                if isinstance(selection, FieldNode) and selection.name.value == name:
                    return True
                if isinstance(selection, InlineFragmentNode) and walk(selection.selection_set, seen):
                    return True
                if isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
                    fragment = raw.fragments.get(selection.name.value)
                    if fragment is not None and walk(fragment.selection_set, seen | {selection.name.value}):
                        return True
            return False

        cache[key] = any(walk(node.selection_set, frozenset()) for node in raw.field_nodes)
    return cache[key]


async def course_progress_of(info: Info, user: UserView, course_ids: Sequence[strawberry.ID] | None) -> list[CourseProgress]:
    loaders = info.context.loaders
    user_id: int = user.row.id  # type: ignore[assignment]
    wanted = None if course_ids is None else {require_id(c, "Course", "courseIds") for c in course_ids}
    cards = [c for c in await loaders.progress.cards.load(user_id) if wanted is None or c[CARD_COURSE] in wanted]
    courses = await course_views(info, [c[CARD_COURSE] for c in cards])
    with_steps = asks_for(info, "steps")
    records: dict[int, StepRecord] = await loaders.progress.step_records.load(user_id) if with_steps and cards else {}
    return progress_cards(info, user_id, cards, courses, records, with_steps)


async def preload_course_progress(info: Info, users: Sequence[UserView], with_steps: bool) -> None:
    """The course cards (all courses) of every user of a page, for `User.courseProgress` to answer without
    waiting: one batch of cards, the catalogue, and with `with_steps` one batch of step records. Only users
    whose progress the caller may see (the field's own permission class decides; it checks again on each)."""
    reach = await info.context.load_reach()
    shown = [u for u in users if decide(reach, Permission.VIEW_PROGRESS, u)]
    if not shown:
        return
    loaders = info.context.loaders
    ids: list[int] = [u.row.id for u in shown]  # type: ignore[misc]
    all_cards = await load_all(loaders.progress.cards, ids)
    courses = await course_views(info, sorted({c[CARD_COURSE] for cards in all_cards for c in cards}))
    all_records: list[dict[int, StepRecord]] = (
        await load_all(loaders.progress.step_records, ids) if with_steps else [{} for _ in ids]
    )
    order = CourseOrder(courses)
    for user, cards, records in zip(shown, all_cards, all_records, strict=True):
        user.progress = progress_cards(info, user.row.id, cards, courses, records, with_steps, order)  # type: ignore[arg-type]


class CourseOrder:
    """The courses of a page of cards in the order a learner's cards are listed (by name, then id), each with
    its rank and its table of percentages (course_shares): decided once per page, not once per learner."""

    def __init__(self, courses: dict[int, Course]) -> None:
        ordered = sorted(courses.values(), key=lambda c: (c.name, c.row.id))
        self.rank = {c.row.id: n for n, c in enumerate(ordered)}
        self.shares = {c.row.id: course_shares(c) for c in ordered}


def progress_cards(
    info: Info, user_id: int, cards: Sequence[Card], courses: dict[int, Course], records: dict[int, StepRecord],
    with_steps: bool, order: CourseOrder | None = None,
) -> list[CardView]:
    """The user's cards (by course name, then id); `order`: the page's CourseOrder when it has one."""
    if order is None:
        order = CourseOrder(courses)
    if len(cards) == 2:  # most learners: one comparison instead of a sort with a key function
        rank = order.rank
        first, second = cards
        if rank.get(second[CARD_COURSE], -1) < rank.get(first[CARD_COURSE], -1):
            cards = (second, first)
    elif len(cards) > 2:
        rank = order.rank
        cards = sorted(cards, key=lambda c: rank.get(c[CARD_COURSE], -1))
    shares = order.shares
    # a step nobody has touched reads the same for every learner: one object per step for the whole request
    untouched: dict[int, StepProgress] = info.context.extra.setdefault("untouched_steps", {}) if with_steps else {}
    out: list[CardView] = []
    for card in cards:
        course = courses.get(card[CARD_COURSE])
        if course is None:
            continue
        steps: Sequence[StepProgress] = _NO_STEPS
        if with_steps:
            steps = listed = []
            for step in course.steps:
                step_id: int = step.row.id  # type: ignore[assignment]
                record = records.get(step_id)
                if record is not None:
                    listed.append(StepProgress(
                        step=step, viewed_at=record.viewed_at, completed_at=record.completed_at, points=record.points,
                        user_id=user_id,
                    ))
                elif step.kind.value == "ASSIGNMENT":  # it may still hold a submission to link to
                    listed.append(StepProgress(step=step, viewed_at=None, completed_at=None, points=None, user_id=user_id))
                else:
                    if step_id not in untouched:
                        untouched[step_id] = StepProgress(step=step, viewed_at=None, completed_at=None, points=None)
                    listed.append(untouched[step_id])
        out.append(card_of(card, course, steps, shares.get(card[CARD_COURSE])))
    return out


async def usage_minutes_of(info: Info, user: UserView) -> int:
    return await info.context.loaders.progress.usage_minutes.load(user.row.id)


# --- summary -----------------------------------------------------------------------------------------------


@strawberry.type
class CourseSummary:
    course: Course
    enrolled_count: int
    completed_count: int
    average_percent_completed: float = strawberry.field(description="Mean of the enrolled learners' percentCompleted.")


@strawberry.type
class GroupProgressSummary:
    learner_count: int = strawberry.field(
        description="Distinct learners counted: users holding a MEMBER membership in the group (and its descendants "
        "when nested) whom the caller may see, as the members list shows them; ended memberships do not count."
    )
    courses: list[CourseSummary] = strawberry.field(description="Courses any of them is enrolled in, by name.")


async def progress_summary_of(info: Info, group: GroupView, include_nested: bool) -> GroupProgressSummary:
    reach = await info.context.load_reach()
    scope, visible = member_rows_visible(reach, group.row.id, Permission.VIEW_PROGRESS)
    admitted = member_rows_admitted(reach, group.row.id, Permission.VIEW_PROGRESS)
    summary = await info.context.loaders.progress.summary(scope, visible, admitted).load((group.row.id, include_nested is not False))
    courses = await course_views(info, [c.course_id for c in summary.courses])
    rows = [
        CourseSummary(
            course=courses[c.course_id], enrolled_count=c.enrolled, completed_count=c.completed,
            average_percent_completed=round(c.average_percent_completed, 2),
        )
        for c in summary.courses
        if c.course_id in courses
    ]
    rows.sort(key=lambda r: (r.course.row.name, r.course.row.id))
    return GroupProgressSummary(learner_count=summary.learner_count, courses=rows)


def first_day_from(moment: datetime) -> date:
    """The first UTC day that starts at or after `moment`."""
    at = moment.astimezone(UTC) if moment.utcoffset() is not None else moment
    day = at.date()
    if (at.hour, at.minute, at.second, at.microsecond) == (0, 0, 0, 0) or day == date.max:
        return day
    return day + timedelta(days=1)


async def group_usage_minutes(info: Info, group_id: int, start: datetime | None, end: datetime | None, nested: bool) -> int:
    if start is not None and end is not None and end < start:
        raise BadInput("to must not be before from", field="to")
    reach = await info.context.load_reach()
    scope, visible = member_rows_visible(reach, group_id, Permission.VIEW_PROGRESS)
    first = first_day_from(start) if start is not None else None
    last = first_day_from(end) if end is not None else None
    return await info.context.loaders.progress.group_usage(scope, visible, nested, first, last).load(group_id)


# --- activity ----------------------------------------------------------------------------------------------


@strawberry.enum
class ActivityKind(Enum):
    STEP_COMPLETED = "STEP_COMPLETED"
    DISCUSSION_POST = "DISCUSSION_POST"
    SUBMISSION = "SUBMISSION"
    REVIEW = "REVIEW"


@strawberry.type
class ActivityEvent:
    kind: ActivityKind
    occurred_at: datetime
    course: Course | None
    step: Step | None
    body: str | None = strawberry.field(description="Text of a discussion post or of review feedback.")


@strawberry.type
class ActivityEdge:
    cursor: str
    node: ActivityEvent


@strawberry.type
class ActivityConnection:
    edges: list[ActivityEdge]
    page_info: PageInfo


async def activity_of(
    info: Info, user: UserView, first: int | None, after: str | None, last: int | None = None,
    before: str | None = None,
) -> ActivityConnection:
    """Newest first; the cursors carry the keyset (occurredAt, id)."""
    pages = paging(info, "activity", (cursors.INSTANT, cursors.ID), first, after, last, before)
    fetched: list[ActivityRow] = await info.context.loaders.progress.activity.load((user.row.id, pages.window))
    rows, made, page_info_ = pages.page(fetched, lambda r: (r.occurred_at, r.id))
    await course_views(info, [r.course_id for r in rows if r.course_id is not None])
    views: dict[int, Course] = info.context.extra.get("course_views", {})
    edges = [
        ActivityEdge(
            cursor=c,
            node=ActivityEvent(
                kind=ActivityKind(r.kind), occurred_at=r.occurred_at,
                course=views.get(r.course_id) if r.course_id is not None else None,
                step=step_view(info, r.step_id) if r.step_id is not None else None,
                body=r.body,
            ),
        )
        for c, r in zip(made, rows, strict=True)
    ]
    return ActivityConnection(edges=edges, page_info=page_info_)


# --- ingestion ---------------------------------------------------------------------------------------------


@strawberry.enum
class ProgressEventKind(Enum):
    VIEWED = strawberry.enum_value("VIEWED", description="stepId required.")
    COMPLETED = strawberry.enum_value("COMPLETED", description="stepId required.")
    SUBMITTED = strawberry.enum_value(
        "SUBMITTED", description="stepId of an ASSIGNMENT required; body is the work. Creates a Submission NEEDS_REVIEW."
    )
    DISCUSSION_POST = strawberry.enum_value("DISCUSSION_POST", description="courseId required; body is the post.")
    USAGE = strawberry.enum_value("USAGE", description="minutes required: time spent using the product.")


@strawberry.input
class ProgressEventInput:
    user_id: strawberry.ID
    kind: ProgressEventKind
    step_id: strawberry.ID | None = None
    course_id: strawberry.ID | None = None
    body: str | None = None
    minutes: int | None = strawberry.field(default=None, description="USAGE: 0..1440, added to the user's day.")
    occurred_at: datetime | None = strawberry.field(default=None, description="Defaults to now.")
    points: int | None = strawberry.field(
        default=None, description="COMPLETED of a graded step scored by the platform (a QUIZ): 0..maxPoints."
    )


@strawberry.type
class ProgressMutations:
    @strawberry.mutation(
        extensions=[requires(Permission.SITE_ADMIN)],
        description="Batch ingestion from the learning platform; idempotent for the same (user, kind, step, "
        "occurredAt) (a DISCUSSION_POST: and the same text). All or nothing. Site admins and their API tokens (the learning platform) may record. "
        "At most `maxProgressBatch` events (setting, 10,000). Every event is checked first: unknown user or "
        "step, a step of a course the user is not enrolled in, missing or negative minutes, a time in the "
        "future beyond the clock skew allowed; any bad event gives BAD_USER_INPUT with "
        "extensions.invalidEvents [{index, field, message}] for every one of them, and nothing is recorded. "
        "Returns how many events were applied (repeats of events already recorded count 0). A VIEWED, "
        "COMPLETED or SUBMITTED step counts as viewed; completing the last step completes the enrollment.",
    )
    async def record_progress(self, info: Info, events: list[ProgressEventInput]) -> int:
        ctx = info.context
        limit = ctx.settings.max_progress_batch
        if len(events) > limit:
            raise BadInput(f"At most {limit} events in one batch.", field="events")
        raw = [
            RawEvent(
                user_id=e.user_id, kind=e.kind.value, step_id=e.step_id, course_id=e.course_id, body=e.body,
                minutes=e.minutes, points=e.points, occurred_at=e.occurred_at,
            )
            for e in events
        ]
        batch = await prepare(ctx.store, raw, skew=timedelta(seconds=ctx.settings.progress_clock_skew_seconds))
        async with ctx.store.transaction() as session:
            outcome = await record_progress(session, batch, actor_id=ctx.viewer_id)  # with its audit row
            announced: set[tuple[int, ...]] = set()

            def groups(user_id: int) -> set[int] | None:  # the learner's groups, when read (PostgreSQL)
                return batch.groups.get(user_id, set()) if batch.groups is not None else None

            for e in outcome.events:
                if e.kind == "SUBMITTED" and (0, e.user_id, e.step_id) not in announced:
                    announced.add((0, e.user_id, e.step_id))  # type: ignore[arg-type]
                    made = outcome.submitted.get((e.user_id, e.step_id))  # type: ignore[arg-type]
                    ctx.store.publish(review_changed(e.user_id, made, None if made is not None else e.step_id, groups(e.user_id)))
                if e.kind in ("VIEWED", "COMPLETED", "SUBMITTED") and (1, e.user_id, e.course_id) not in announced:
                    announced.add((1, e.user_id, e.course_id))  # type: ignore[arg-type]
                    ctx.store.publish(progress_changed(e.user_id, e.course_id, groups(e.user_id)))  # type: ignore[arg-type]
        return outcome.applied
