"""Progress cards, step records, usage minutes, the activity feed and group summaries, set-based.

A dashboard page of N learners costs the same few statements whatever N and however many courses: the
cards of every learner on the page in one aggregate statement, their step records in one more.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    bindparam,
    case,
    func,
    literal,
    select,
    union_all,
)
from strawberry.dataloader import DataLoader

from app.store import keyset
from app.store.bulk import one_of
from app.store.keyset import Key, Window
from app.store.models import (
    ActivityEvent,
    CourseRollup,
    Enrollment,
    GroupClosure,
    GroupRollup,
    Membership,
    Step,
    StepProgress,
    Usage,
)
from dataloaders.batch import Loader
from dataloaders.records import as_read, ids_in, once_per_dialect
from dataloaders.store import Store

LEARNER_ROLE = "MEMBER"

# (membership.user_id, membership.group_id) -> the condition keeping the members the caller may see
Visible = Callable[[Any, Any], ColumnElement[bool]]


# A learner's card: one enrollment with its counters, as the cards statement's row (`_cards_of`), read by
# position. A row, not an object made of it: an object per card (its __init__, the tuple of its arguments, its
# deallocation) cost more instructions than all the rest a dashboard does with the card, and a page of 500
# learners reads ~1,000 cards.
Card = Sequence[Any]
(
    CARD_USER, CARD_COURSE, CARD_ACTIVATED_AT, CARD_EXPIRES_AT, CARD_COMPLETED_AT, CARD_VIEWED, CARD_COMPLETED,
    CARD_POINTS, CARD_POINTS_AVAILABLE,  # 0: no step given points has points available
) = range(9)


@dataclass(frozen=True, slots=True)
class StepRecord:
    step_id: int
    viewed_at: datetime | None
    completed_at: datetime | None
    points: int | None


@dataclass(frozen=True, slots=True)
class CourseTotals:
    course_id: int
    enrolled: int
    completed: int
    average_percent_completed: float


@dataclass(frozen=True, slots=True)
class Summary:
    learner_count: int
    courses: tuple[CourseTotals, ...]


# (user id, the keyset window over (occurred_at, id), newest first)
ActivityKey = tuple[int, Window]
ACTIVITY_ORDER = (Key(ActivityEvent.occurred_at, descending=True), Key(ActivityEvent.id, descending=True))


@once_per_dialect
def _cards_of(postgres: bool):  # type: ignore[no-untyped-def]
    """The enrollments with their counters, kept by triggers (app.store.rollup, CARD_TRIGGERS): a page of 100
    learners read 2,100 step_progress rows per request to aggregate them (0.8 ms of PostgreSQL CPU at the bench
    root, against 0.17 for the enrollments alone)."""
    e = Enrollment.__table__.c  # type: ignore[attr-defined]
    return select(
        e.user_id, e.course_id, *[as_read(c, postgres) for c in (e.activated_at, e.expires_at, e.completed_at)],
        e.steps_viewed, e.steps_completed, e.points_earned, e.points_available,
    ).where(ids_in(e.user_id, postgres))


@once_per_dialect
def _step_records_of(postgres: bool):  # type: ignore[no-untyped-def]
    sp = StepProgress.__table__.c  # type: ignore[attr-defined]
    return select(sp.user_id, sp.step_id, sp.viewed_at, sp.completed_at, sp.points).where(ids_in(sp.user_id, postgres))


def rolled_up_head(group_id: Any, consent_matters: bool) -> list[Any]:
    """The first row of a rolled-up summary of the group `group_id` (a bind parameter, or a column when the
    statement reads several groups): (0, the subtree's distinct learners, whether one of them is there on a
    consent (1 or 0; always 0 unless `consent_matters`), 0.0)."""
    gr, gc, m = GroupRollup.__table__.c, GroupClosure.__table__.c, Membership.__table__.c  # type: ignore[attr-defined]
    learners = select(gr.learners).where(gr.group_id == group_id).scalar_subquery()
    flag: Any = literal(0)
    if consent_matters:
        on_consent = (
            select(literal(1))
            .select_from(Membership.__table__)  # type: ignore[attr-defined]
            .join(GroupClosure.__table__, gc.descendant_id == m.group_id)  # type: ignore[attr-defined]
            .where(
                gc.ancestor_id == group_id, m.access_request_id.is_not(None), m.role == LEARNER_ROLE,
                m.ended_at.is_(None),
            )
            .exists()
        )
        flag = case((on_consent, 1), else_=0)
    return [literal(0), func.coalesce(learners, 0), flag, literal(0.0)]


def rolled_up_courses() -> tuple[list[Any], ColumnElement[bool]]:
    """The per-course rows of a rolled-up summary, from course_rollup: the columns (course id, enrolled,
    completed, average percent completed) and the condition keeping the courses anyone is enrolled in (the
    caller adds which groups)."""
    cr, s = CourseRollup.__table__.c, Step.__table__.c  # type: ignore[attr-defined]
    step_count = select(func.count()).where(s.course_id == cr.course_id).scalar_subquery()
    # 0.0 for a course without steps; the steps counted once (a CASE on the count ran the subquery twice)
    average = func.coalesce(100.0 * cr.steps_completed / (cr.enrolled * func.nullif(step_count, 0)), literal(0.0))
    return [cr.course_id, cr.enrolled, cr.completed, average], cr.enrolled > 0


@cache
def _rolled_up_summary(consent_matters: bool):  # type: ignore[no-untyped-def]
    """rolled_up_summary's statement, built once per process (the group id bound as :group_id)."""
    group_id = bindparam("group_id", type_=Integer)
    columns, enrolled = rolled_up_courses()
    per_course = select(*columns).where(CourseRollup.__table__.c.group_id == group_id, enrolled)  # type: ignore[attr-defined]
    return union_all(select(*rolled_up_head(group_id, consent_matters)), per_course)


def summary_of_rolled_up(rows: Sequence[Sequence[Any]]) -> Summary | None:
    """A Summary from the rows of a rolled-up summary (`rolled_up_head`'s, then `rolled_up_courses`'); None
    when the head says a learner is there on a consent."""
    learner_count = 0
    courses: list[CourseTotals] = []
    for course_id, n, done, avg in rows:
        if course_id == 0:
            if done:
                return None
            learner_count = int(n)
        else:
            courses.append(CourseTotals(int(course_id), int(n), int(done), float(avg or 0.0)))
    return Summary(learner_count, tuple(courses))


class ProgressLoaders:
    def __init__(
        self, store: Store, read_with_groups: dict[tuple[int, bool], Sequence[Any]] | None = None,
    ) -> None:
        self.store = store
        # (group id, consent matters) -> the rows of its rolled-up summary, read with the group
        # (dataloaders.groups: GroupLoaders.rolled_up_summaries)
        self.read_with_groups = read_with_groups if read_with_groups is not None else {}
        self.cards = Loader(self._cards)
        self.step_records = DataLoader(load_fn=self._step_records)
        self.usage_minutes = DataLoader(load_fn=self._usage_minutes)
        self.activity = DataLoader(load_fn=self._activity)
        self._summaries: dict[Hashable, DataLoader[tuple[int, bool], Summary]] = {}
        self._group_usage: dict[Hashable, DataLoader[int, int]] = {}

    @property
    def postgres(self) -> bool:
        return self.store.dialect == "postgresql"

    async def _cards(self, user_ids: Sequence[int]) -> list[list[Card]]:
        """One statement for every user of the batch: their enrollments with the counters kept on them."""
        cards: dict[int, list[Card]] = defaultdict(list)
        for row in await self.store.rows(_cards_of(self.postgres), {"ids": sorted(set(user_ids))}):
            cards[row[CARD_USER]].append(row)
        return [cards.get(u, []) for u in user_ids]

    async def _step_records(self, user_ids: Sequence[int]) -> list[dict[int, StepRecord]]:
        rows = await self.store.rows(_step_records_of(self.postgres), {"ids": sorted(set(user_ids))})
        records: dict[int, dict[int, StepRecord]] = defaultdict(dict)
        for user_id, step_id, viewed_at, completed_at, points in rows:
            records[user_id][step_id] = StepRecord(step_id, viewed_at, completed_at, points)
        return [records.get(u, {}) for u in user_ids]

    async def _usage_minutes(self, user_ids: Sequence[int]) -> list[int]:
        u = Usage.__table__.c  # type: ignore[attr-defined]
        rows = await self.store.all(
            select(u.user_id, func.sum(u.minutes)).where(one_of(self.postgres, u.user_id, sorted(set(user_ids)))).group_by(u.user_id)
        )
        totals = {user_id: int(total or 0) for user_id, total in rows}
        return [totals.get(i, 0) for i in user_ids]

    async def _activity(self, keys: Sequence[ActivityKey]) -> list[list[ActivityEvent]]:
        """Newest first, one keyset window over (occurred_at, id), rows in fetch order. One user: ORDER BY ...
        LIMIT on the (user_id, occurred_at, id) index; many users with the same page: one ROW_NUMBER()
        statement for all."""
        a = ActivityEvent
        groups: dict[Window, list[int]] = defaultdict(list)
        for user_id, window in keys:
            groups[window].append(user_id)
        found: dict[ActivityKey, list[ActivityEvent]] = defaultdict(list)
        for window, users in groups.items():
            condition = keyset.conditions(ACTIVITY_ORDER, window)
            order = keyset.ordering(ACTIVITY_ORDER, window)
            if len(users) == 1:
                rows = await self.store.scalars(
                    select(a).where(a.user_id == users[0], *condition).order_by(*order).limit(window.fetch)
                )
            else:
                rank = func.row_number().over(partition_by=a.user_id, order_by=order).label("rank")
                ranked = select(a.id, rank).where(one_of(self.postgres, a.user_id, sorted(set(users))), *condition).subquery()
                rows = await self.store.scalars(
                    select(a).join(ranked, ranked.c.id == a.id).where(ranked.c.rank <= window.fetch)
                    .order_by(a.user_id, ranked.c.rank)
                )
            for row in rows:
                found[(row.user_id, window)].append(row)
        return [found.get(k, []) for k in keys]

    def group_usage(
        self, scope: Hashable, visible: Visible, nested: bool, first_day: date | None, end_day: date | None
    ) -> DataLoader[int, int]:
        """group id -> minutes of use on days in [first_day, end_day) by the distinct learners (MEMBER, not ended,
        whom the caller may see: `visible`) of the group, or of its subtree when `nested`. One statement for
        every group asking with the same arguments: the (group, learner) pairs from group_closure, deduplicated,
        joined to the per-day usage rows."""
        key = (scope, nested, first_day, end_day)
        loader = self._group_usage.get(key)
        if loader is None:

            async def load(group_ids: Sequence[int]) -> list[int]:
                m, gc, u = Membership.__table__.c, GroupClosure.__table__.c, Usage.__table__.c  # type: ignore[attr-defined]
                learners = (
                    select(gc.ancestor_id.label("group_id"), m.user_id)
                    .select_from(GroupClosure.__table__)  # type: ignore[attr-defined]
                    .join(Membership.__table__, m.group_id == gc.descendant_id)  # type: ignore[attr-defined]
                    .where(
                        gc.ancestor_id.in_(sorted(set(group_ids))), m.role == LEARNER_ROLE, m.ended_at.is_(None),
                        visible(m.user_id, m.group_id),
                    )
                    .distinct()
                )
                if not nested:
                    learners = learners.where(gc.depth == 0)
                pairs = learners.subquery("learners")
                query = (
                    select(pairs.c.group_id, func.sum(u.minutes))
                    .select_from(pairs)
                    .join(Usage.__table__, u.user_id == pairs.c.user_id)  # type: ignore[attr-defined]
                    .group_by(pairs.c.group_id)
                )
                if first_day is not None:
                    query = query.where(u.day >= first_day)
                if end_day is not None:
                    query = query.where(u.day < end_day)
                found = {g: int(n or 0) for g, n in await self.store.all(query)}
                return [found.get(g, 0) for g in group_ids]

            loader = self._group_usage[key] = DataLoader(load_fn=load)
        return loader

    def summary(
        self, scope: Hashable, visible: Visible, admitted: str | None = None
    ) -> DataLoader[tuple[int, bool], Summary]:
        """(group id, nested) -> the group's summary over the learners the caller may see (`visible`, the
        members list's rule): `scope` names that rule. `admitted` (permissions.filters.member_rows_admitted) says
        whether that rule admits every learner ("all") or every learner of an own membership ("own"): then a
        nested summary is read from the rollup (app/store/rollup.py), in one statement whatever the subtree's
        size; for "own", only when no learner of the subtree is there on a consent (the statement tells)."""
        loader = self._summaries.get(scope)
        if loader is None:

            async def load(keys: Sequence[tuple[int, bool]]) -> list[Summary]:
                out = []
                for group_id, nested in keys:
                    found = None
                    if nested and admitted in ("all", "own"):
                        found = await self.rolled_up_summary(group_id, consent_matters=admitted == "own")
                    out.append(found if found is not None else await self._one_summary(group_id, nested, visible))
                return out

            loader = self._summaries[scope] = DataLoader(load_fn=load)
        return loader

    async def rolled_up_summary(self, group_id: int, consent_matters: bool = False) -> Summary | None:
        """The nested summary of every learner of the subtree, from group_rollup and course_rollup: one
        statement reading one row per course. With `consent_matters`, None when a learner of the subtree holds a
        consent-based MEMBER membership (not ended), which the caller's filter may leave out."""
        read = self.read_with_groups.get((group_id, consent_matters))
        if read is not None:  # read with the group (`group(id:)` asking for its progressSummary)
            return summary_of_rolled_up(read)
        return summary_of_rolled_up(await self.store.rows(_rolled_up_summary(consent_matters), {"group_id": group_id}))

    async def _one_summary(self, group_id: int, nested: bool, visible: Visible) -> Summary:
        """One statement: the distinct learners (MEMBER memberships, not ended, of the group or of its whole
        subtree through group_closure, whose user the caller may see), then per course: enrolled, completed,
        and the average percent completed, which is 100 * (steps completed by all its learners) / (learners *
        steps of the course)."""
        m, gc = Membership.__table__.c, GroupClosure.__table__.c  # type: ignore[attr-defined]
        e, sp, s = Enrollment.__table__.c, StepProgress.__table__.c, Step.__table__.c  # type: ignore[attr-defined]
        if nested:
            members = select(m.user_id).join(GroupClosure.__table__, gc.descendant_id == m.group_id)  # type: ignore[attr-defined]
            members = members.where(gc.ancestor_id == group_id)
        else:
            members = select(m.user_id).where(m.group_id == group_id)
        members = members.where(m.ended_at.is_(None), visible(m.user_id, m.group_id))
        learners = members.where(m.role == LEARNER_ROLE).distinct().cte("learners")
        enrolled = (
            select(e.course_id, func.count().label("n"), func.count(e.completed_at).label("done"))
            .where(e.user_id.in_(select(learners.c.user_id)))
            .group_by(e.course_id)
            .cte("enrolled")
        )
        completed_steps = (
            select(sp.course_id, func.count().label("steps_done"))
            .where(sp.user_id.in_(select(learners.c.user_id)), sp.completed_at.is_not(None))
            .group_by(sp.course_id)
            .cte("completed_steps")
        )
        step_count = select(func.count()).where(s.course_id == enrolled.c.course_id).scalar_subquery()
        average = case(
            (step_count == 0, literal(0.0)),
            else_=100.0 * func.coalesce(completed_steps.c.steps_done, 0) / (enrolled.c.n * step_count),
        )
        per_course = select(enrolled.c.course_id, enrolled.c.n, enrolled.c.done, average).select_from(
            enrolled.outerjoin(completed_steps, completed_steps.c.course_id == enrolled.c.course_id)
        )
        head = select(literal(0), func.count(), literal(0), literal(0.0)).select_from(learners)
        rows = await self.store.all(union_all(head, per_course))
        learner_count = 0
        courses: list[CourseTotals] = []
        for course_id, n, done, avg in rows:
            if course_id == 0:
                learner_count = int(n)
            else:
                courses.append(CourseTotals(int(course_id), int(n), int(done), float(avg or 0.0)))
        return Summary(learner_count, tuple(courses))
