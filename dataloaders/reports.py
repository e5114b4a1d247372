"""The group progress report: one row per (member, enrolled course), for Group.progressReport and the
CSV/XLSX exports alike.

Rows are ordered by the keyset (group id, user id, course id): the first two follow the membership index
(group_id, role, user_id), and enrollments join on their own (user id, course id) index, so a page after
any cursor costs what the first page costs (no OFFSET, no sort of the whole group). Percentages are SQL
aggregates per row (correlated counts on the step_progress (user, course) index and on the course's
steps), computed only for the page's rows.

On PostgreSQL the progress CSV is one statement instead, csv_statement, for COPY: the same rows (_keys),
joins and order (_named), its cells formatted as text by the server exactly as app/services/reports.py writes them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    FromClause,
    Integer,
    Numeric,
    Select,
    Subquery,
    and_,
    case,
    cast,
    exists,
    func,
    literal_column,
    or_,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import aliased

from app.store.models import (
    Course,
    Enrollment,
    Group,
    GroupClosure,
    GuardianLink,
    Membership,
    Step,
    StepProgress,
    Usage,
    User,
)
from dataloaders.imports import has_no_membership, homed_in, is_active_learner
from dataloaders.store import Store

CHUNK_ROWS = 5_000

_m = Membership.__table__.c
_e = Enrollment.__table__.c
_u = User.__table__.c
_g = Group.__table__.c
_c = Course.__table__.c
_s = Step.__table__.c
_p = StepProgress.__table__.c
_closure = GroupClosure.__table__.c

Key = tuple[int, int, int]


# membership.user_id -> the condition keeping the members the caller may see (permissions.filters)
Visible = Callable[[Any, Any], ColumnElement[bool]]


@dataclass(frozen=True)
class ReportScope:
    """Which rows: the MEMBER memberships of the group (or of its subtree) whose user the caller may see
    (`visible`, the same rule as the members list; consent-based memberships included), and which are not
    ended (unless `include_ended`: a term's history, so a learner who left keeps their rows here)."""

    group_id: int
    include_nested: bool = True
    course_id: int | None = None
    visible: Visible = field(kw_only=True, compare=False)
    include_ended: bool = field(default=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class ReportRow:
    group_id: int
    user_id: int
    course_id: int
    first_name: str
    last_name: str
    email: str
    company: str | None
    group_name: str
    course_name: str
    activated_at: datetime | None
    percent_viewed: float
    percent_completed: float
    completed_at: datetime | None
    expires_at: datetime | None

    @property
    def key(self) -> Key:
        return (self.group_id, self.user_id, self.course_id)


def _scope_filter(scope: ReportScope) -> list[Any]:
    if scope.include_nested:
        groups = _m.group_id.in_(select(_closure.descendant_id).where(_closure.ancestor_id == scope.group_id))
    else:
        groups = _m.group_id == scope.group_id
    conditions = [groups, _m.role == "MEMBER", scope.visible(_m.user_id, _m.group_id)]
    if not scope.include_ended:
        conditions.append(_m.ended_at.is_(None))
    if scope.course_id is not None:
        conditions.append(_e.course_id == scope.course_id)
    return conditions


def _joined(statement: Select[Any]) -> Select[Any]:
    return statement.select_from(Membership.__table__).join(Enrollment.__table__, _e.user_id == _m.user_id)


def _keys(scope: ReportScope) -> Select[Any]:
    """The report's rows: (group, user, course) and the enrollment's times, for each MEMBER membership in
    scope x the member's enrollments. Pages and the whole report (the COPY export) both select these."""
    keys = _joined(select(_m.group_id, _m.user_id, _e.course_id, _e.activated_at, _e.completed_at, _e.expires_at))
    return keys.where(*_scope_filter(scope))


def _page(scope: ReportScope, after: Key | None, limit: int, before: Key | None = None, backward: bool = False) -> Subquery:
    """The keys of one page, picked along the (group, role, user) index: forwards, the `limit` rows after the
    keyset `after` (and before `before`, if given); backwards, the `limit` rows just before `before` (and
    after `after`, if given)."""
    keys = _keys(scope)
    columns = (_m.group_id, _m.user_id, _e.course_id)
    order = [c.desc() for c in columns] if backward else list(columns)
    start, bound = (before, after) if backward else (after, before)
    if bound is not None:  # the far end, when both cursors are given (rare: one plain row comparison)
        keys = keys.where(tuple_(*columns) > tuple_(*bound) if backward else tuple_(*columns) < tuple_(*bound))
    if start is None:
        return keys.order_by(*order).limit(limit).subquery("page")
    # (group, user, course) past the cursor, split so that no condition spans two tables (both planners then
    # estimate it from the membership index alone): the cursor's own member's other courses, then the
    # members past the cursor's
    group_id, user_id, course_id = start
    if backward:
        rest_of_member = keys.where(_m.group_id == group_id, _m.user_id == user_id, _e.course_id < course_id)
        other_members = keys.where(_m.group_id <= group_id, tuple_(_m.group_id, _m.user_id) < tuple_(group_id, user_id))
    else:
        rest_of_member = keys.where(_m.group_id == group_id, _m.user_id == user_id, _e.course_id > course_id)
        other_members = keys.where(_m.group_id >= group_id, tuple_(_m.group_id, _m.user_id) > tuple_(group_id, user_id))
    arms = [arm.order_by(*order).limit(limit).subquery() for arm in (rest_of_member, other_members)]
    both = union_all(*(select(arm) for arm in arms)).subquery("past_cursor")
    outer = (both.c.group_id, both.c.user_id, both.c.course_id)
    return select(both).order_by(*(c.desc() if backward else c for c in outer)).limit(limit).subquery("page")


def _named(statement: Select[Any], page: Subquery, course: FromClause | None = None) -> Select[Any]:
    """`statement` over the rows `page` with their user, group and course (`course`: the course table or a
    stand-in with its id and name), in the report's order (group id, user id, course id)."""
    k = page.c
    courses = Course.__table__ if course is None else course
    return (
        statement.select_from(page)
        .join(User.__table__, _u.id == k.user_id)
        .join(Group.__table__, _g.id == k.group_id)
        .join(courses, courses.c.id == k.course_id)
        .order_by(k.group_id, k.user_id, k.course_id)
    )


def _progress_of(k: Any) -> tuple[Any, ...]:
    """The step progress rows of the report row `k` (its user in its course)."""
    return _p.user_id == k.user_id, _p.course_id == k.course_id


_COMPLETED = _p.completed_at.is_not(None)
_VIEWED = or_(_p.viewed_at.is_not(None), _p.completed_at.is_not(None))


def rows_statement(
    scope: ReportScope, after: Key | None, limit: int, *, before: Key | None = None, backward: bool = False
) -> Select[Any]:
    """One page (or export chunk) of rows past the keyset (see _page), in the report's order: the columns
    to_row reads. Names and percentages (correlated counts on the step_progress (user, course) index and on
    the course's steps) are looked up for the page's rows only."""
    page = _page(scope, after, limit, before, backward)
    k = page.c
    steps = select(func.count()).where(_s.course_id == k.course_id).correlate(page).scalar_subquery()
    viewed = select(func.count()).where(*_progress_of(k), _VIEWED).correlate(page).scalar_subquery()
    completed = select(func.count()).where(*_progress_of(k), _COMPLETED).correlate(page).scalar_subquery()
    return _named(
        select(
            k.group_id, k.user_id, k.course_id, _u.first_name, _u.last_name, _u.email, _u.company, _g.name, _c.name,
            k.activated_at, steps, viewed, completed, k.completed_at, k.expires_at,
        ),
        page,
    )


def count_statement(scope: ReportScope) -> Select[Any]:
    return _joined(select(func.count())).where(*_scope_filter(scope))


def _percent(done: int, steps: int) -> float:
    """As CourseProgress has it (resolvers/progress.py): 0..100, two decimals, 0 for a course without steps."""
    if not steps:
        return 0.0
    return round(min(100.0, 100.0 * (done or 0) / steps), 2)


def to_row(raw: Any) -> ReportRow:
    (group_id, user_id, course_id, first, last, email, company, group_name, course_name, activated, steps,
     viewed, completed, completed_at, expires_at) = raw
    return ReportRow(
        group_id, user_id, course_id, first, last, email, company, group_name, course_name, activated,
        _percent(viewed, steps), _percent(completed, steps), completed_at, expires_at,
    )


async def report_page(
    store: Store, scope: ReportScope, after: Key | None, limit: int, *, before: Key | None = None,
    backward: bool = False,
) -> list[ReportRow]:
    """One page in fetch order: the report's order, reversed for a backward page."""
    rows = [to_row(r) for r in await store.all(rows_statement(scope, after, limit, before=before, backward=backward))]
    if backward:
        rows.reverse()
    return rows


async def report_count(store: Store, scope: ReportScope) -> int:
    return int(await store.scalar(count_statement(scope)))


async def report_chunks(store: Store, scope: ReportScope, chunk_rows: int = CHUNK_ROWS) -> AsyncIterator[list[ReportRow]]:
    """Every row, `chunk_rows` at a time: one keyset query per chunk, so at most one chunk is held."""
    after: Key | None = None
    while True:
        rows = await report_page(store, scope, after, chunk_rows)
        if rows:
            yield rows
        if len(rows) < chunk_rows:
            return
        after = rows[-1].key


# --- the same report as CSV text cells, formatted by PostgreSQL (the COPY export) ---------------------

_DOUBLE = postgresql.DOUBLE_PRECISION()


def _number(value: int, sql_type: str = "") -> ColumnElement[Any]:
    """A constant of our own written into the SQL text (no bind parameter), `sql_type` to cast it."""
    if sql_type:
        return literal_column(f"{int(value)}::{sql_type}", _DOUBLE if sql_type == "float8" else Numeric())
    return literal_column(str(int(value)), Integer())


def _quoted(value: str) -> ColumnElement[Any]:
    """A string constant of our own written into the SQL text."""
    return literal_column("'" + value.replace("'", "''") + "'")


def guarded_text(value: ColumnElement[Any]) -> ColumnElement[Any]:
    """app.services.sheets.guard in SQL (a text starting with = + - @ gets a leading '), and '' as NULL: COPY writes
    NULL as an empty field but an empty string as "", where Python's csv writes "" (and None, as "") as an
    empty field. (ascii() is the first character's code: cheaper than a substring per cell.)"""
    starts_formula = func.ascii(value).in_([_number(ord(c)) for c in "=+-@"])
    return case((starts_formula, _quoted("'").concat(value)), else_=func.nullif(value, _quoted("")))


def iso_text(value: ColumnElement[Any], spreadsheet: bool = False) -> ColumnElement[Any]:
    """app.services.sheets.iso in SQL: 2026-01-02T03:04:05Z (UTC, whole seconds: to_char drops the fraction as
    isoformat(timespec="seconds") does); with `spreadsheet`, sheets.spreadsheet_time: 2026-01-02 03:04:05.
    NULL stays NULL (an empty field)."""
    pattern = "YYYY-MM-DD HH24:MI:SS" if spreadsheet else 'YYYY-MM-DD"T"HH24:MI:SS"Z"'
    return func.to_char(func.timezone(_quoted("UTC"), value), _quoted(pattern))


def percent_cents(done: ColumnElement[Any], steps: ColumnElement[Any]) -> ColumnElement[Any]:
    """100 x _percent(done, steps) as an exact integer: round(min(100.0, 100.0 * done / steps), 2) of Python
    floats, 0 without steps. Off a tie the quotient rounds to the nearest hundredth (the float's error,
    < 1e-14, is far smaller than the distance to a tie). On a tie (100 * done / steps = m / 200, m odd)
    Python rounds the double x = 100.0 * done / steps correctly: half to even when x is the tie exactly
    (steps = 32, 160, 800...), else towards the side x lies on (steps >= 4000). So x is compared with m / 200
    exactly: x split into its whole part and its fraction counted in units of 2**-60 (x >= 0.005 > 2**-8 and
    a double has 53 bits, so the fraction is a whole number of such units)."""
    scaled = done * _number(10_000)
    quotient = scaled // steps
    twice_remainder = (scaled % steps) * _number(2)
    x = cast(done, _DOUBLE) * _number(100, "float8") / cast(steps, _DOUBLE)
    whole = func.trunc(x)
    fraction_units = cast(cast((x - whole) * _number(2**60, "float8"), BigInteger()), Numeric())
    odd_tie = quotient * _number(2) + _number(1)
    above_tie = func.sign(
        fraction_units * _number(200) + (cast(whole, Numeric()) * _number(200) - odd_tie) * _number(2**60, "numeric")
    )
    tie = case((above_tie > _number(0), quotient + _number(1)), (above_tie < _number(0), quotient), else_=quotient + quotient % _number(2))
    return case(
        (steps == _number(0), _number(0)),
        (done >= steps, _number(10_000)),
        (twice_remainder < steps, quotient),
        (twice_remainder > steps, quotient + _number(1)),
        else_=tie,
    )


def percent_text(done: ColumnElement[Any], steps: ColumnElement[Any]) -> ColumnElement[Any]:
    """repr(_percent(done, steps)): the hundredths with trailing zeros dropped but one decimal kept (50.0,
    33.33, 0.5, 100.0, 0.0), as repr prints a float of at most two decimals up to 100."""
    return func.to_char(cast(percent_cents(done, steps), Numeric()) / _number(100), _quoted("FM9990.09"))


def csv_statement(scope: ReportScope, spreadsheet: bool = False) -> Select[Any]:
    """The export's CSV cells for every row of the report (the rows, joins and order of rows_statement,
    without a keyset), each cell as text exactly as app.services.reports.progress_csv_row writes it: Student First
    Name, Student Last Name, Student Email, Company, Group Name, Course Name, Activated At, % Completed,
    Completed Date, Expiry Date. PostgreSQL only (COPY).

    The same counts, evaluated for the whole report at once. A course's steps are counted once per course
    (joined), not once per row. The inner query, ordered, formats the other cells: PostgreSQL can run it in
    parallel workers. The completed steps are one lookup per row on the step_progress (user, course) index,
    a correlated subquery, which PostgreSQL runs in the leader only: so it sits in the outer query over the
    ordered rows, and formats % Completed inside (its count is computed once, however often the formatting
    names it)."""
    page = _keys(scope).subquery("page")
    k = page.c
    course = (
        select(_c.id, _c.name, func.count(_s.id).label("steps"))
        .select_from(Course.__table__)
        .outerjoin(Step.__table__, _s.course_id == _c.id)
        .group_by(_c.id)
        .subquery("course")
    )
    cells = _named(
        select(
            k.group_id, k.user_id, k.course_id, course.c.steps,
            guarded_text(_u.first_name).label("first_name"), guarded_text(_u.last_name).label("last_name"),
            guarded_text(_u.email).label("email"), guarded_text(_u.company).label("company"),
            guarded_text(_g.name).label("group_name"), guarded_text(course.c.name).label("course_name"),
            iso_text(k.activated_at, spreadsheet).label("activated_at"),
            iso_text(k.completed_at, spreadsheet).label("completed_at"),
            iso_text(k.expires_at, spreadsheet).label("expires_at"),
        ),
        page,
        course,
    ).subquery("report")
    r = cells.c
    percent = select(percent_text(func.count(), r.steps)).where(*_progress_of(r), _COMPLETED).scalar_subquery()
    return select(
        r.first_name, r.last_name, r.email, r.company, r.group_name, r.course_name, r.activated_at, percent,
        r.completed_at, r.expires_at,
    ).order_by(r.group_id, r.user_id, r.course_id)


async def copy_csv(
    store: Store, scope: ReportScope, output: Callable[[bytes], Awaitable[Any]], spreadsheet: bool = False
) -> None:
    """Every row of the report as CSV (no header, LF line ends), written by PostgreSQL's COPY and handed
    to `output` block by block as it arrives; the server waits while `output` waits. Without JIT: compiling
    this statement's expressions took ~0.6 s of a 1M-row export and saved nothing."""
    await store.copy_csv(csv_statement(scope, spreadsheet), output, local_settings={"jit": "off"})


async def course_exists(store: Store, course_id: int) -> bool:
    return bool(await store.scalar(select(func.count()).select_from(Course.__table__).where(_c.id == course_id)))



# --- the admin exports (groups, memberships, unassigned active students): keyset by one id ------------

_parent = Group.__table__.alias("parent")
_usage = Usage.__table__.c


def groups_statement(after: int | None, limit: int) -> Select[Any]:
    """Group ID, Group Name, Slug, Description, Created At, Parent Group ID, Parent Group Name."""
    statement = (
        select(_g.id, _g.name, _g.slug, _g.description, _g.created_at, _g.parent_id, _parent.c.name)
        .select_from(Group.__table__)
        .outerjoin(_parent, _parent.c.id == _g.parent_id)
    )
    if after is not None:
        statement = statement.where(_g.id > after)
    return statement.order_by(_g.id).limit(limit)


def memberships_statement(after: int | None, limit: int) -> Select[Any]:
    """Membership ID, User ID, First Name, Last Name, Email, Group ID, Group Name, Role, Group Parent ID,
    Membership Created At."""
    statement = (
        select(
            _m.id, _m.user_id, _u.first_name, _u.last_name, _u.email, _m.group_id, _g.name, _m.role,
            _g.parent_id, _m.created_at,
        )
        .select_from(Membership.__table__)
        .join(User.__table__, _u.id == _m.user_id)
        .join(Group.__table__, _g.id == _m.group_id)
        .where(_m.ended_at.is_(None))  # current memberships; ended ones are history (members(includeEnded))
    )
    if after is not None:
        statement = statement.where(_m.id > after)
    return statement.order_by(_m.id).limit(limit)


def _unassigned(scope_group_id: int | None = None) -> list[Any]:
    return [
        _u.kind == "LEARNER", has_no_membership(_u.id), is_active_learner(_u.id),
        homed_in(_u.home_group_id, scope_group_id),
    ]


def unassigned_students_statement(after: int | None, limit: int, scope_group_id: int | None = None) -> Select[Any]:
    """student_id (external id, else email: the importer takes either), first_name, last_name, email,
    usage_minutes; the learners unassignedActiveStudentCount counts (with a scope: those homed in its
    subtree)."""
    minutes = select(func.coalesce(func.sum(_usage.minutes), 0)).where(_usage.user_id == _u.id).scalar_subquery()
    statement = select(
        _u.id, func.coalesce(_u.external_id, _u.email), _u.first_name, _u.last_name, _u.email, minutes
    ).where(*_unassigned(scope_group_id))
    if after is not None:
        statement = statement.where(_u.id > after)
    return statement.order_by(_u.id).limit(limit)


async def id_chunks(
    store: Store, statement: Callable[[int | None, int], Select[Any]], chunk_rows: int = CHUNK_ROWS
) -> AsyncIterator[Sequence[Any]]:
    """Every row of `statement(after_id, limit)` (the id first in each row), one keyset query per chunk."""
    after: int | None = None
    while True:
        rows = await store.all(statement(after, chunk_rows))
        if rows:
            yield rows
        if len(rows) < chunk_rows:
            return
        after = rows[-1][0]


def admin_count_statement(report: str, scope_group_id: int | None = None) -> Select[Any]:
    """How many rows the admin export `report` (GROUPS, MEMBERSHIPS, UNASSIGNED_STUDENTS in a scope) has."""
    if report == "GROUPS":
        return select(func.count()).select_from(Group.__table__)
    if report == "MEMBERSHIPS":
        return select(func.count()).select_from(Membership.__table__)
    return select(func.count()).select_from(User.__table__).where(*_unassigned(scope_group_id))


# --- the gateway's exports (external users, pupils without a licence): one row per user --------------------

_link = GuardianLink.__table__.c


def _external_users(licence: str | None) -> list[Any]:
    conditions: list[Any] = [_u.kind == "EXTERNAL"]
    if licence is not None:
        link = aliased(GuardianLink)  # not a joined one: the subquery must correlate on User only
        conditions.append(exists().where(link.external_user_id == _u.id, link.licence_type == licence))
    return conditions


def external_users_statement(licence: str | None) -> Select[Any]:
    """External users with each of their links' pupil names and licence type, ordered by user id (a user's
    rows are consecutive); `licence`: only users holding that licence type."""
    pupil = User.__table__.alias("pupil")
    return (
        select(
            _u.id, _u.title, _u.last_name, _u.first_name, _u.email, _u.created_at, _u.agreed_to_download_reports,
            _u.status, _u.last_login_at, pupil.c.first_name, pupil.c.last_name, _link.licence_type,
        )
        .select_from(User.__table__)
        .outerjoin(GuardianLink.__table__, _link.external_user_id == _u.id)
        .outerjoin(pupil, pupil.c.id == _link.pupil_id)
        .where(*_external_users(licence))
        .order_by(_u.id, _link.id)
    )


def _licence_held(licence: str) -> Any:
    link = aliased(GuardianLink)  # not the joined one: the subquery must correlate on User only
    return exists().where(and_(link.pupil_id == _u.id, link.licence_type == licence))


def _pupils_without(licence: str) -> list[Any]:
    return [_u.kind == "LEARNER", ~_licence_held(licence)]


def _pupils_with(licence: str) -> list[Any]:
    return [_u.kind == "LEARNER", _licence_held(licence)]


def pupils_without_licence_statement(licence: str, held: bool = False) -> Select[Any]:
    """Learners with no holder of `licence` (held: learners who have one), with the licence types of the links
    they do have, by user id."""
    return (
        select(_u.id, _u.external_id, _u.first_name, _u.last_name, _u.email, _link.licence_type)
        .select_from(User.__table__)
        .outerjoin(GuardianLink.__table__, _link.pupil_id == _u.id)
        .where(*(_pupils_with(licence) if held else _pupils_without(licence)))
        .order_by(_u.id, _link.id)
    )


def gateway_count_statement(report: str, licence: str | None) -> Select[Any]:
    if report == "EXTERNAL_USERS":
        return select(func.count()).select_from(User.__table__).where(*_external_users(licence))
    if report == "PUPILS_WITH_LICENCE":
        return select(func.count()).select_from(User.__table__).where(*_pupils_with(licence or ""))
    return select(func.count()).select_from(User.__table__).where(*_pupils_without(licence or ""))


async def rows_by_user(store: Store, statement: Select[Any], chunk_users: int = 1000) -> AsyncIterator[list[list[Any]]]:
    """The rows of `statement` (ordered by user id first) grouped per user, `chunk_users` users at a time:
    a streamed one-to-many join."""
    chunk: list[list[Any]] = []
    user: list[Any] = []
    async for row in store.stream(statement):
        if user and user[0][0] != row[0]:
            chunk.append(user)
            user = []
            if len(chunk) >= chunk_users:
                yield chunk
                chunk = []
        user.append(row)
    if user:
        chunk.append(user)
    if chunk:
        yield chunk


async def group_slug(store: Store, group_id: int) -> str | None:
    return await store.scalar(select(_g.slug).where(_g.id == group_id))
