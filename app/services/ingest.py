"""Progress ingestion: a batch of learning-platform events applied set-based, all or nothing, idempotently.

The batch costs about a dozen statements whatever its size: set-based lookups to validate every event,
one insert of idempotency keys (`ingested_event`, ON CONFLICT DO NOTHING) to drop events seen before,
then one multi-row upsert/insert per table and one UPDATE that completes enrollments.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    ARRAY,
    Integer,
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    insert,
    literal,
    null,
    select,
    true,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from app.runtime.errors import AppError, BadInput
from app.runtime.ids import require_id
from app.services.audit import audit_values
from app.store.bulk import (
    PAIRS_CHUNK,
    ROWS_CHUNK,
    chunks,
    column_arrays,
    existing_pairs,
    insert_rows,
    is_postgres,
    one_of,
    postgres_insert,
    unnest_pairs,
    value_chunks,
)
from app.store.models import (
    ActivityEvent,
    AuditEvent,
    Course,
    Enrollment,
    GroupClosure,
    IngestedEvent,
    Membership,
    Step,
    StepProgress,
    Submission,
    Usage,
    User,
    utcnow,
)
from dataloaders.records import ids_in
from dataloaders.store import Store

STEP_KINDS = ("VIEWED", "COMPLETED", "SUBMITTED")
MAX_MINUTES = 24 * 60
MAX_BODY = 20_000


@dataclass
class RawEvent:
    """One ProgressEventInput, ids still global."""

    user_id: str
    kind: str
    step_id: str | None = None
    course_id: str | None = None
    body: str | None = None
    minutes: int | None = None
    points: int | None = None
    occurred_at: datetime | None = None


@dataclass
class Event:
    index: int
    kind: str
    user_id: int
    at: datetime
    step_id: int | None = None
    course_id: int | None = None
    body: str | None = None
    minutes: int | None = None
    points: int | None = None

    @property
    def key(self) -> str:
        """Idempotency: the same (kind, user, step or course, occurredAt) counts once; for a discussion post
        the text too, so two different posts in the same instant are both kept."""
        target = self.step_id if self.step_id is not None else (self.course_id or "")
        key = f"{self.kind}|{self.user_id}|{target}|{self.at.astimezone(UTC).isoformat()}"
        if self.kind == "DISCUSSION_POST":
            key += "|" + hashlib.sha256((self.body or "").encode()).hexdigest()[:32]
        return key


@dataclass
class Outcome:
    applied: int = 0
    repeated: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)  # the ones applied (live updates announce them)
    # (user, step) -> the id of the latest submission this batch made there (PostgreSQL: from RETURNING; live
    # updates announce it, so that a delivery need not look it up)
    submitted: dict[tuple[int, int], int] = field(default_factory=dict)


class Problems:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, index: int, field_name: str, message: str) -> None:
        self.items.append({"index": index, "field": field_name, "message": message})

    def raise_if_any(self, total: int) -> None:
        if self.items:
            indexes = sorted({p["index"] for p in self.items})
            shown = ", ".join(str(i) for i in indexes[:20]) + (", ..." if len(indexes) > 20 else "")
            raise BadInput(
                f"{len(indexes)} of {total} events are invalid (indexes {shown}); nothing was recorded.",
                field="events",
                invalidEvents=self.items,
            )


Found = tuple[set[int], dict[int, tuple[int, str, int | None]], set[int], set[tuple[int, int]]]


@dataclass
class Batch:
    """A recordProgress batch parsed, and on PostgreSQL its lookups (`found`) read before the transaction."""

    size: int
    now: datetime
    events: list[Event]
    problems: Problems
    found: Found | None = None
    groups: dict[int, set[int]] | None = None  # user -> every group whose subtree holds them (PostgreSQL)


def parse(raw: Sequence[RawEvent], now: datetime, skew: timedelta, problems: Problems) -> list[Event]:
    """Shape checks that need no database."""
    events: list[Event] = []
    latest = now + skew
    for index, item in enumerate(raw):
        ok = True
        try:
            user_id = require_id(item.user_id, "User", "userId")
        except AppError as error:
            problems.add(index, "userId", error.message)
            ok, user_id = False, 0
        step_id = course_id = None
        for name, value, type_name in (("stepId", item.step_id, "Step"), ("courseId", item.course_id, "Course")):
            if value is None:
                continue
            try:
                if name == "stepId":
                    step_id = require_id(value, type_name, name)
                else:
                    course_id = require_id(value, type_name, name)
            except AppError as error:
                problems.add(index, name, error.message)
                ok = False
        at = item.occurred_at or now
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        if at > latest:
            problems.add(index, "occurredAt", "occurredAt is in the future.")
            ok = False
        kind = item.kind
        if kind in STEP_KINDS and item.step_id is None:
            problems.add(index, "stepId", f"stepId is required for {kind}.")
            ok = False
        if kind == "DISCUSSION_POST":
            if item.course_id is None:
                problems.add(index, "courseId", "courseId is required for DISCUSSION_POST.")
                ok = False
            if not (item.body or "").strip():
                problems.add(index, "body", "body (the post) is required for DISCUSSION_POST.")
                ok = False
        if item.body is not None and len(item.body) > MAX_BODY:
            problems.add(index, "body", f"body must be at most {MAX_BODY} characters.")
            ok = False
        if kind == "USAGE":
            if item.minutes is None:
                problems.add(index, "minutes", "minutes is required for USAGE.")
                ok = False
            elif not 0 <= item.minutes <= MAX_MINUTES:
                problems.add(index, "minutes", f"minutes must be between 0 and {MAX_MINUTES}.")
                ok = False
        if item.points is not None and kind != "COMPLETED":
            problems.add(index, "points", "points are given only with COMPLETED.")
            ok = False
        if ok:
            events.append(
                Event(index, kind, user_id, at, step_id, course_id, item.body if kind in ("SUBMITTED", "DISCUSSION_POST") else None,
                      item.minutes if kind == "USAGE" else None, item.points)
            )
    return events


_PROGRESS_COLUMNS = ("user_id", "step_id", "course_id", "viewed_at", "completed_at", "points")
_SUBMISSION_COLUMNS = ("user_id", "step_id", "course_id", "body", "submitted_at", "status")
_ACTIVITY_COLUMNS = ("user_id", "kind", "occurred_at", "course_id", "step_id", "body")


def _submission_row(e: Event) -> tuple[Any, ...]:
    """A SUBMITTED event's submission, as _SUBMISSION_COLUMNS."""
    return (e.user_id, e.step_id, e.course_id, e.body, e.at, "NEEDS_REVIEW")


def _activity_row(e: Event) -> tuple[Any, ...]:
    """A SUBMITTED or DISCUSSION_POST event's activity row, as _ACTIVITY_COLUMNS."""
    if e.kind == "SUBMITTED":
        return (e.user_id, "SUBMISSION", e.at, e.course_id, e.step_id, None)
    return (e.user_id, "DISCUSSION_POST", e.at, e.course_id, e.step_id, e.body)


def _earliest_of(column: Any, new: Any) -> Any:
    return case((new.is_(None), column), (column.is_(None), new), (new < column, new), else_=column)


def _upsert_progress(statement: Any) -> Any:
    """One row per (user, step): the earliest view and completion, the latest points."""
    x, c = statement.excluded, StepProgress.__table__.c  # type: ignore[attr-defined]
    return statement.on_conflict_do_update(
        index_elements=["user_id", "step_id"],
        set_={
            "viewed_at": _earliest_of(c.viewed_at, x.viewed_at),
            "completed_at": _earliest_of(c.completed_at, x.completed_at),
            "points": func.coalesce(x.points, c.points),
        },
    )


@cache
def _rows_statement(audited: bool = True) -> Any:
    """PostgreSQL, built once: the step progress upsert, the activity insert and the batch's audit row as
    data-modifying CTEs of the submissions' insert (RETURNING the new submissions); each table's rows are
    arrays, a column each (p0.., s0.., a0..; empty arrays insert nothing), the audit row's columns are
    `audit_<column>`. No trigger of one of these tables reads another of them."""

    progress, submission, activity = (StepProgress.__table__, Submission.__table__, ActivityEvent.__table__)  # type: ignore[attr-defined]
    upsert = _upsert_progress(postgres_insert(progress, _PROGRESS_COLUMNS, prefix="p"))
    logged = postgres_insert(activity, _ACTIVITY_COLUMNS, prefix="a")
    ctes = [upsert.cte("progress"), logged.cte("activity")]
    if audited:
        ctes.append(insert(AuditEvent.__table__).values(  # type: ignore[attr-defined]
            {name: bindparam(f"audit_{name}", type_=column.type) for name, column in AuditEvent.__table__.c.items() if name != "id"}  # type: ignore[attr-defined]
        ).cte("audit"))
    return postgres_insert(submission, _SUBMISSION_COLUMNS, _returning_submissions, prefix="s").add_cte(*ctes)


def _returning_submissions(statement: Any) -> Any:
    c = statement.table.c
    return statement.returning(c.id, c.user_id, c.step_id, c.submitted_at)


_STEPS = select(Step.id, Step.course_id, Step.kind, Step.max_points)
_STEPS_POSTGRES = _STEPS.where(ids_in(Step.id, True, "steps"))  # built once


def _asked(column: Any, name: str, one: bool) -> Any:
    """`column` among the array `name`, or for one event equal to the single value `name`."""
    return column == bindparam(name, type_=column.type) if one else ids_in(column, True, name)


@cache
def _lookup_statement(one: bool = False) -> Any:
    """PostgreSQL, built once: everything `validate` needs in one statement, as (part, id, course, kind, max
    points) rows: the steps asked ("step"), the courses asked ("course"), the users asked ("user"), and the
    enrollments of each event's user in the event's course ("enrolled": the step's course when the step
    exists, else the course the event names); and for the live updates every group whose subtree holds each
    user ("group": the user, the group), which the events name (app.services.events). Parameters: the arrays
    `steps`, `courses`, `users`, and one entry per event in `eu`, `es`, `ec` (its user, step, course).

    `one`: for a batch of one event, the same with single values (`steps`, `courses`, `users`; NULL for none):
    PostgreSQL plans the array form again on every call (~0.45 ms, custom plans for the arrays' lengths), the
    single-value form once per connection."""
    steps = (_STEPS.where(_asked(Step.id, "steps", True)) if one else _STEPS_POSTGRES).cte("steps")
    if one:
        asked = select(bindparam("users", type_=Integer).label("user_id"), bindparam("steps", type_=Integer).label("step_id"),
                       bindparam("courses", type_=Integer).label("course_id")).subquery("asked")
    else:
        asked = select(*(func.unnest(bindparam(name, type_=ARRAY(Integer))).label(label)
                         for name, label in (("eu", "user_id"), ("es", "step_id"), ("ec", "course_id")))).subquery("asked")
    wanted = (
        select(asked.c.user_id, func.coalesce(steps.c.course_id, asked.c.course_id).label("course_id"))
        .select_from(asked.outerjoin(steps, steps.c.id == asked.c.step_id))
        .subquery("wanted")
    )
    enrollment = Enrollment.__table__.c  # type: ignore[attr-defined]
    membership, closure = Membership.__table__.c, GroupClosure.__table__.c  # type: ignore[attr-defined]
    no_kind, no_number = cast(null(), String), cast(null(), Integer)
    return union_all(
        select(literal("group"), membership.user_id, closure.ancestor_id, no_kind, no_number)
        .join_from(Membership, GroupClosure, closure.descendant_id == membership.group_id)
        .where(_asked(membership.user_id, "users", one), membership.ended_at.is_(None)),
        select(literal("step"), steps.c.id, steps.c.course_id, steps.c.kind, steps.c.max_points),
        select(literal("course"), Course.id, no_number, no_kind, no_number).where(_asked(Course.id, "courses", one)),
        select(literal("user"), User.id, no_number, no_kind, no_number).where(_asked(User.id, "users", one)),
        select(literal("enrolled"), enrollment.user_id, enrollment.course_id, no_kind, no_number).join_from(
            Enrollment, wanted, and_(wanted.c.user_id == enrollment.user_id, wanted.c.course_id == enrollment.course_id)
        ),
    )


async def prepare(store: Store, raw: Sequence[RawEvent], *, skew: timedelta, now: datetime | None = None) -> Batch:
    """Parse the batch (shape checks need no database). On PostgreSQL also read what validation needs, in
    one statement run before the transaction (a lean read: under READ COMMITTED each statement of the
    transaction would read its own snapshot anyway); on SQLite the transaction reads it."""
    now = now or utcnow()
    problems = Problems()
    events = parse(raw, now, skew, problems)
    batch = Batch(len(raw), now, events, problems)
    if store.dialect == "postgresql" and events:
        if len(events) == 1:
            (event,) = events
            rows = await store.rows(_lookup_statement(True), {"steps": event.step_id, "courses": event.course_id,
                                                              "users": event.user_id})
        else:
            rows = await store.rows(_lookup_statement(), {
                "steps": sorted({e.step_id for e in events if e.step_id is not None}),
                "courses": sorted({e.course_id for e in events if e.course_id is not None}),
                "users": sorted({e.user_id for e in events}),
                "eu": [e.user_id for e in events], "es": [e.step_id for e in events], "ec": [e.course_id for e in events],
            })
        users: set[int] = set()
        steps: dict[int, tuple[int, str, int | None]] = {}
        courses: set[int] = set()
        enrolled: set[tuple[int, int]] = set()
        groups: dict[int, set[int]] = defaultdict(set)
        for part, ident, course_id, kind, max_points in rows:
            if part == "group":
                groups[ident].add(course_id)
            elif part == "step":
                steps[ident] = (course_id, kind, max_points)
                courses.add(course_id)
            elif part == "course":
                courses.add(ident)
            elif part == "user":
                users.add(ident)
            else:
                enrolled.add((ident, course_id))
        batch.found = (users, steps, courses, enrolled)
        batch.groups = groups
    return batch


async def _lookups(session: AsyncSession, events: list[Event]) -> Found:
    """Existing users, steps (id -> course, kind, max points), courses, and (user, course) enrollments. A user
    with an enrollment exists (its foreign key): only the users of the other events are looked up, so a batch
    of enrolled learners' events costs no statement for its users."""
    postgres = is_postgres(session)
    steps: dict[int, tuple[int, str, int | None]] = {}
    courses: set[int] = set()
    for chunk in value_chunks(postgres, (e.step_id for e in events if e.step_id is not None)):
        found = (
            await session.execute(_STEPS_POSTGRES, {"steps": chunk}) if postgres
            else await session.execute(_STEPS.where(Step.id.in_(chunk)))
        )
        for step_id, course_id, kind, max_points in found:
            steps[step_id] = (course_id, kind, max_points)
    for chunk in value_chunks(postgres, (e.course_id for e in events if e.course_id is not None)):
        courses.update(await session.scalars(select(Course.id).where(one_of(postgres, Course.id, chunk))))
    courses.update(course for course, _, _ in steps.values())
    wanted: set[tuple[int, int]] = set()
    for e in events:
        course_id = steps[e.step_id][0] if e.step_id in steps else e.course_id
        if course_id is not None:
            wanted.add((e.user_id, course_id))
    enrollment = Enrollment.__table__.c  # type: ignore[attr-defined]
    enrolled = await existing_pairs(session, enrollment.user_id, enrollment.course_id, wanted)
    users = {user_id for user_id, _ in enrolled}
    unknown = {e.user_id for e in events if e.user_id not in users}
    for chunk in value_chunks(postgres, sorted(unknown)):
        users.update(await session.scalars(select(User.id).where(one_of(postgres, User.id, chunk))))
    return users, steps, courses, enrolled


def validate(events: list[Event], users: set[int], steps: dict[int, tuple[int, str, int | None]], courses: set[int],
             enrolled: set[tuple[int, int]], problems: Problems) -> None:
    for e in events:
        if e.user_id not in users:
            problems.add(e.index, "userId", "No such user.")
            continue
        if e.step_id is not None:
            step = steps.get(e.step_id)
            if step is None:
                problems.add(e.index, "stepId", "No such step.")
                continue
            course_id, kind, max_points = step
            if e.course_id is not None and e.course_id != course_id:
                problems.add(e.index, "courseId", "The step is not in this course.")
                continue
            e.course_id = course_id
            if e.kind == "SUBMITTED" and kind != "ASSIGNMENT":
                problems.add(e.index, "stepId", "Only ASSIGNMENT steps take submissions.")
            if e.points is not None and (max_points is None or not 0 <= e.points <= max_points):
                problems.add(e.index, "points", "points must be between 0 and the step's maxPoints (graded steps only).")
        elif e.course_id is not None and e.course_id not in courses:
            problems.add(e.index, "courseId", "No such course.")
            continue
        if e.course_id is not None and (e.user_id, e.course_id) not in enrolled:
            problems.add(e.index, "stepId" if e.step_id is not None else "courseId", "The user is not enrolled in this course.")


_FRESH_COLUMNS = ("key", "user_id", "created_at")


def _keys_returned(statement: Any) -> Any:
    return statement.on_conflict_do_nothing(index_elements=["key"]).returning(statement.table.c.key)


async def _fresh(session: AsyncSession, events: list[Event], now: datetime) -> list[Event]:
    """The events not applied before (nor earlier in this batch), their keys recorded."""
    unique: dict[str, Event] = {}
    for e in events:
        unique.setdefault(e.key, e)
    keys = list(unique)
    table = IngestedEvent.__table__  # type: ignore[attr-defined]
    if is_postgres(session):
        returned = await insert_rows(
            session, table, _FRESH_COLUMNS, [(k, unique[k].user_id, now) for k in keys], _keys_returned, key="fresh",
        )
        new = {row[0] for row in returned}
    else:
        # SQLite writers hold the database lock from BEGIN IMMEDIATE: nobody inserts between read and write.
        seen: set[str] = set()
        for chunk in value_chunks(False, keys):
            seen.update(await session.scalars(select(table.c.key).where(table.c.key.in_(chunk))))
        new = set(keys) - seen
        await insert_rows(session, table, ["key", "user_id", "created_at"], [(k, unique[k].user_id, now) for k in keys if k in new],
                          lambda s: s.on_conflict_do_nothing(index_elements=["key"]))
    return [e for k, e in unique.items() if k in new]


def _earliest(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate < current else current


async def apply(
    session: AsyncSession, events: list[Event], now: datetime, submitted: dict[tuple[int, int], int] | None = None,
    audited: dict[str, Any] | None = None,
) -> None:
    """Apply the fresh events; on PostgreSQL `submitted` gets the id of the latest submission per (user, step).
    `audited`: the batch's audit row (app.services.audit.audit_values), written with the rows."""
    postgres = is_postgres(session)
    sp_table = StepProgress.__table__  # type: ignore[attr-defined]
    # one row per (user, step): first view (any step event counts as a view), first completion, latest points
    progress: dict[tuple[int, int], list[Any]] = {}
    for e in events:
        if e.kind not in STEP_KINDS:
            continue
        row = progress.setdefault((e.user_id, e.step_id), [e.course_id, None, None, None, None])  # type: ignore[arg-type]
        row[1] = _earliest(row[1], e.at)
        if e.kind == "COMPLETED":
            row[2] = _earliest(row[2], e.at)
            if e.points is not None and (row[4] is None or e.at >= row[4]):
                row[3], row[4] = e.points, e.at
    completions = {key for key, row in progress.items() if row[2] is not None}
    done_before = await existing_pairs(
        session, sp_table.c.user_id, sp_table.c.step_id, completions, sp_table.c.completed_at.is_not(None)
    )

    progress_rows = [(u, s, row[0], row[1], row[2], row[3]) for (u, s), row in progress.items()]

    activity: list[tuple[Any, ...]] = []
    submissions: list[tuple[Any, ...]] = []
    first_completion: dict[tuple[int, int], Event] = {}
    for e in events:
        if e.kind == "COMPLETED" and (e.user_id, e.step_id) not in done_before:
            key = (e.user_id, e.step_id)
            if key not in first_completion or e.at < first_completion[key].at:  # type: ignore[index]
                first_completion[key] = e  # type: ignore[index]
        elif e.kind == "SUBMITTED":
            submissions.append(_submission_row(e))
            activity.append(_activity_row(e))
        elif e.kind == "DISCUSSION_POST":
            activity.append(_activity_row(e))
    activity.extend((e.user_id, "STEP_COMPLETED", e.at, e.course_id, e.step_id, None) for e in first_completion.values())
    activity.sort(key=lambda row: row[2])
    if postgres and max(len(progress_rows), len(submissions), len(activity)) <= ROWS_CHUNK:
        # the three inserts in one statement (two of them data-modifying CTEs): one round trip, not three
        params = {
            **column_arrays(progress_rows, len(_PROGRESS_COLUMNS), "p"),
            **column_arrays(submissions, len(_SUBMISSION_COLUMNS), "s"),
            **column_arrays(activity, len(_ACTIVITY_COLUMNS), "a"),
        }
        if audited is not None:  # the audit row rides along (else a statement of its own)
            params.update({f"audit_{name}": value for name, value in audited.items()})
            audited = None
            made = list(await session.execute(_rows_statement(), params))
        else:
            made = list(await session.execute(_rows_statement(False), params))
    else:
        await insert_rows(session, sp_table, _PROGRESS_COLUMNS, progress_rows, _upsert_progress, key="progress")
        made = await insert_rows(session, Submission.__table__, _SUBMISSION_COLUMNS, submissions,  # type: ignore[attr-defined]
                                 _returning_submissions if postgres else None, key="returning")
        await insert_rows(session, ActivityEvent.__table__, _ACTIVITY_COLUMNS, activity)  # type: ignore[attr-defined]
    if audited is not None:
        session.add(AuditEvent(**audited))
    if submitted is not None:  # the latest per (user, step): submitted_at, then id
        for submission_id, user_id, step_id, _at in sorted(made, key=lambda r: (r[3], r[0])):
            submitted[(user_id, step_id)] = submission_id

    minutes: dict[tuple[int, Any], int] = defaultdict(int)
    for e in events:
        if e.kind == "USAGE":
            minutes[(e.user_id, e.at.astimezone(UTC).date())] += e.minutes or 0
    usage = Usage.__table__  # type: ignore[attr-defined]
    await insert_rows(
        session, usage, ["user_id", "day", "minutes"], [(u, d, m) for (u, d), m in minutes.items()],
        lambda s: s.on_conflict_do_update(index_elements=["user_id", "day"], set_={"minutes": usage.c.minutes + s.excluded.minutes}),
        key="usage",
    )

    # enrollments whose every step is now completed (courses with no steps never complete)
    touched = {(u, progress[(u, s)][0]) for u, s in completions}
    if touched:
        e_table, sp, st = Enrollment.__table__, sp_table.c, Step.__table__.c  # type: ignore[attr-defined]
        mine = and_(sp.user_id == e_table.c.user_id, sp.course_id == e_table.c.course_id)
        step_count = select(func.count()).where(st.course_id == e_table.c.course_id).scalar_subquery()
        done = select(func.count(sp.completed_at)).where(mine).scalar_subquery()
        completes = and_(e_table.c.completed_at.is_(None), step_count > 0, done == step_count)
        last = select(func.max(sp.completed_at)).where(mine).scalar_subquery()
        if postgres:  # UPDATE ... FROM unnest(pairs): a row IN list of thousands of pairs plans badly there
            pairs = unnest_pairs(sorted(touched))
            await session.execute(
                update(e_table).where(e_table.c.user_id == pairs.c.a, e_table.c.course_id == pairs.c.b, completes).values(completed_at=last)
            )
            return
        for chunk in chunks(sorted(touched), PAIRS_CHUNK):
            await session.execute(
                update(e_table).where(tuple_(e_table.c.user_id, e_table.c.course_id).in_(chunk), completes).values(completed_at=last)
            )

_ONE_KINDS = ("VIEWED", "SUBMITTED", "DISCUSSION_POST")  # one event's rows whatever was recorded before


def _insert_if(table: Any, names: Sequence[str], prefix: str, condition: Any) -> Any:
    """`INSERT INTO table (names) SELECT unnest(:<prefix>0), ... WHERE condition` (empty arrays: no row)."""
    source = select(*(func.unnest(bindparam(f"{prefix}{i}", type_=ARRAY(table.c[name].type))) for i, name in enumerate(names)))
    return postgresql.insert(table).from_select(list(names), source.where(condition))


@cache
def _one_statement() -> Any:
    """PostgreSQL, built once: one event (a VIEWED, SUBMITTED or DISCUSSION_POST) recorded in one statement,
    its idempotency key first: the step progress upsert, the submission, the activity row only when the key
    is new (`fresh`), the audit row either way (its detail `audit_fresh` or `audit_repeat`). Rows: whether
    the event was new (0 or 1), then the new submission's id, user, step and time (NULLs when none)."""
    fresh = postgres_insert(IngestedEvent.__table__, _FRESH_COLUMNS, _keys_returned, prefix="f").cte("fresh")  # type: ignore[attr-defined]
    new = select(fresh.c.key).exists()
    progress, submission, activity = (StepProgress.__table__, Submission.__table__, ActivityEvent.__table__)  # type: ignore[attr-defined]
    audit = AuditEvent.__table__  # type: ignore[attr-defined]
    audited = {name: bindparam(f"audit_{name}", type_=column.type) for name, column in audit.c.items() if name not in ("id", "detail")}
    audited["detail"] = case((new, bindparam("audit_fresh", type_=String)), else_=bindparam("audit_repeat", type_=String))
    made = _returning_submissions(_insert_if(submission, _SUBMISSION_COLUMNS, "s", new)).cte("made")
    applied = select(func.count()).select_from(fresh).scalar_subquery()
    one = select(literal(1).label("one")).subquery("one")
    return (
        select(applied, made.c.id, made.c.user_id, made.c.step_id, made.c.submitted_at)
        .select_from(one.outerjoin(made, true()))
        .add_cte(
            fresh, _upsert_progress(_insert_if(progress, _PROGRESS_COLUMNS, "p", new)).cte("progress"),
            _insert_if(activity, _ACTIVITY_COLUMNS, "a", new).cte("activity"), insert(audit).values(audited).cte("audit"),
        )
    )


def _progress_audit(actor_id: int | None, size: int, applied: int, repeated: int, kinds: dict[str, int]) -> dict[str, Any]:
    """The audit row of a recordProgress batch ("progress.record")."""
    return audit_values(actor_id, "progress.record", "user", None, events=size, applied=applied, repeated=repeated,
                        kinds=kinds)


async def _record_one(session: AsyncSession, e: Event, batch: Batch, actor_id: int | None) -> Outcome:
    """PostgreSQL: one VIEWED, SUBMITTED or DISCUSSION_POST event in one statement (`_one_statement`)."""
    audited = _progress_audit(actor_id, batch.size, 0, 1, {})
    params: dict[str, Any] = {
        **column_arrays([(e.key, e.user_id, batch.now)], len(_FRESH_COLUMNS), "f"),
        **column_arrays([(e.user_id, e.step_id, e.course_id, e.at, None, None)] if e.step_id is not None else [],
                        len(_PROGRESS_COLUMNS), "p"),
        **column_arrays([_submission_row(e)] if e.kind == "SUBMITTED" else [], len(_SUBMISSION_COLUMNS), "s"),
        **column_arrays([_activity_row(e)] if e.kind != "VIEWED" else [], len(_ACTIVITY_COLUMNS), "a"),
        **{f"audit_{name}": value for name, value in audited.items() if name != "detail"},
        "audit_repeat": audited["detail"],
        "audit_fresh": _progress_audit(actor_id, batch.size, 1, 0, {e.kind: 1})["detail"],
    }
    rows = list(await session.execute(_one_statement(), params))
    applied = int(rows[0][0]) if rows else 0
    submitted = {(r[2], r[3]): r[1] for r in rows if r[1] is not None}
    return Outcome(applied=applied, repeated=1 - applied, counts={e.kind: 1} if applied else {},
                   events=[e] if applied else [], submitted=submitted)


async def record_progress(session: AsyncSession, batch: Batch, *, actor_id: int | None = None) -> Outcome:
    """Validate every event (BAD_USER_INPUT listing each bad index; nothing applied), then apply the new ones
    and write the audit row ("progress.record", as `actor_id`)."""
    events, problems = batch.events, batch.problems
    users, steps, courses, enrolled = batch.found if batch.found is not None else await _lookups(session, events)
    validate(events, users, steps, courses, enrolled, problems)
    problems.raise_if_any(batch.size)
    if batch.found is not None and len(events) == 1 and events[0].kind in _ONE_KINDS:  # PostgreSQL
        return await _record_one(session, events[0], batch, actor_id)
    fresh = await _fresh(session, events, batch.now)
    counts: dict[str, int] = defaultdict(int)
    for e in fresh:
        counts[e.kind] += 1
    audited = _progress_audit(actor_id, batch.size, len(fresh), len(events) - len(fresh), dict(counts))
    submitted: dict[tuple[int, int], int] = {}
    await apply(session, fresh, batch.now, submitted, audited)
    return Outcome(
        applied=len(fresh), repeated=len(events) - len(fresh), counts=dict(counts), events=fresh, submitted=submitted
    )
