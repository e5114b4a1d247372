"""Plain read-only records for the hot loaders, and statements built once per process.

A record has the attribute names of its table's columns, so resolvers and permission checks read it as they
would read the SQLModel row; it costs a tuple unpacking instead of the ORM's identity map and instance state.
Writes never use records: they load their own rows in their transaction (`session.get`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import make_dataclass
from functools import cache
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, DateTime, Executable, TypeDecorator, any_, bindparam, type_coerce

from app.store.models import Course, Group, Membership, Step, Submission, User


def record_type(model: Any, name: str, leave_out: tuple[str, ...] = (), only: tuple[str, ...] | None = None) -> Any:
    """A slots dataclass with one attribute per column of `model`'s table (but `leave_out`; or just `only`), in
    table order (`columns`)."""
    columns = tuple(c for c in model.__table__.columns if c.key not in leave_out and (only is None or c.key in only))
    cls = make_dataclass(name, [c.key for c in columns], slots=True)
    cls.columns = columns
    cls.width = len(columns)
    cls.__doc__ = f"A {model.__tablename__} row, read-only."
    return cls


UserRecord = record_type(User, "UserRecord")
# a user as a page of members reads it: every column a User field or a permission check reads, without the
# ones only writes, sign-in and searches (in SQL) use; a members page of 100 decodes 300 values fewer
LISTED_USER_LEFT_OUT = ("email_normalized", "name_search", "password_hash")
ListedUserRecord = record_type(User, "UserRecord", leave_out=LISTED_USER_LEFT_OUT)
GroupRecord = record_type(Group, "GroupRecord")
# a page's users and groups when the query asks of them only what a dashboard shows
# (resolvers.memberships.SHOWN_USER_FIELDS, SHOWN_GROUP_FIELDS), with every column a permission decision
# reads: a page of 100 sends and decodes ~2,500 values fewer. Never primed into the shared loaders, whose
# other readers may ask any column.
ShownUserRecord = record_type(
    User, "ShownUserRecord", only=("id", "email", "first_name", "last_name", "kind", "status", "site_roles", "home_group_id")
)
ShownGroupRecord = record_type(Group, "ShownGroupRecord", only=("id", "parent_id", "name"))
MembershipRecord = record_type(Membership, "MembershipRecord")
CourseRecord = record_type(Course, "CourseRecord")
CourseStepRecord = record_type(Step, "CourseStepRecord")
SubmissionRecord = record_type(Submission, "SubmissionRecord")


_AS_READ = DateTime(timezone=True)


def as_read(column: Any, postgres: bool) -> Any:
    """The column as the driver reads it. asyncpg reads `timestamptz` as datetimes in UTC already, so on
    PostgreSQL an aware-datetime column's result processor (`astimezone(UTC)` again, ~0.25 us a value; a page
    of 500 learners with their cards reads ~5,500 of them) is left out; elsewhere the column itself."""
    kind = column.type
    if postgres and isinstance(kind, TypeDecorator) and isinstance(kind.impl, DateTime) and kind.impl.timezone:
        return type_coerce(column, _AS_READ).label(column.key)
    return column


def columns_as_read(cls: Any, postgres: bool) -> list[Any]:
    """A record type's columns, `as_read`."""
    return [as_read(c, postgres) for c in cls.columns]


def ids_in(column: Any, postgres: bool, name: str = "ids") -> ColumnElement[bool]:
    """`column` among the values bound as `name` at execution: `= ANY(:name)` on PostgreSQL (one statement
    text, so one prepared statement, whatever the number of values), an expanding IN on SQLite."""
    if postgres:
        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))


def once_per_dialect(build: Callable[[bool], Executable]) -> Callable[[bool], Executable]:
    """A statement built once per process and dialect: SQLAlchemy then keeps its cache key and compiled form,
    and no request rebuilds it."""
    return cache(build)


def records(cls: Any, rows: Sequence[Any], start: int = 0) -> list[Any]:
    end = start + cls.width
    return [cls(*row[start:end]) for row in rows]
