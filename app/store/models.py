"""SQLModel tables for the whole domain. Times are timezone-aware UTC (SQLModel stores them as UTC on both databases)."""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    text,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateTable
from sqlmodel import Field, SQLModel


@compiles(CreateTable, "sqlite")
def _create_table_autoincrement(element: CreateTable, compiler: Any, **kw: Any) -> str:
    """Ids are never reused: on SQLite every table keyed by an integer `id` is created AUTOINCREMENT (plain
    INTEGER PRIMARY KEY hands a deleted row's id to the next insert; PostgreSQL sequences never go back).
    Applied when any table is created, by the models or by a migration, so new tables get it too."""
    if has_integer_id(element.element):
        element.element.dialect_options["sqlite"]["autoincrement"] = True
    return compiler.visit_create_table(element, **kw)


def has_integer_id(table: Table) -> bool:
    key = list(table.primary_key.columns)
    return len(key) == 1 and key[0].name == "id" and isinstance(key[0].type, Integer)


def utcnow() -> datetime:
    return datetime.now(UTC)


def fold(text: str) -> str:
    """Names and searches as they are compared: accents dropped, case folded, spaces collapsed (Zoë -> zoe)."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.casefold().split())


def full_name_key(first_name: str, last_name: str) -> str:
    """user.name_search: "first last", folded; a prefix of it is a prefix of the first name or the full name."""
    return fold(f"{first_name} {last_name}")[:401]


def _name_search_default(context: Any) -> str:
    """The column default for Core inserts (the importer, bulk writers) that do not name it."""
    params = context.get_current_parameters()
    return full_name_key(params.get("first_name") or "", params.get("last_name") or "")


def fk(target: str, ondelete: str = "CASCADE", nullable: bool = False, index: bool = True) -> Column:
    return Column(Integer, ForeignKey(target, ondelete=ondelete), nullable=nullable, index=index)


class User(SQLModel, table=True):
    __tablename__ = "user"
    # users(orderBy: CREATED_AT | LAST_LOGIN_AT): keyset pages along an index
    __table_args__ = (
        Index("ix_user_created_at_id", "created_at", "id"),
        Index("ix_user_last_login_at_id", "last_login_at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320)
    email_normalized: str = Field(max_length=320, unique=True)
    external_id: str | None = Field(default=None, max_length=200, unique=True)
    kind: str = Field(max_length=16, index=True)
    first_name: str = Field(max_length=200)
    last_name: str = Field(max_length=200)
    last_name_normalized: str = Field(max_length=200, index=True)
    # "first last", folded (full_name_key): users(filter: {search}) and members(search:) match its prefix
    name_search: str = Field(
        default="", sa_column=Column(String(401), nullable=False, index=True, default=_name_search_default, server_default="")
    )
    title: str | None = Field(default=None, max_length=50)
    company: str | None = Field(default=None, max_length=200)
    site_roles: str = Field(default="", max_length=100)
    status: str = Field(default="ACTIVE", max_length=16)
    synced: bool = False
    home_group_id: int | None = Field(default=None, sa_column=fk("group.id", ondelete="SET NULL", nullable=True))
    agreed_to_download_reports: bool = True
    password_hash: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)
    last_login_at: datetime | None = None
    login_count: int = 0


class Session(SQLModel, table=True):
    __tablename__ = "session"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(sa_column=fk("user.id"))
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    revoked_at: datetime | None = None


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(sa_column=fk("user.id"))
    name: str = Field(max_length=200)
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


class Group(SQLModel, table=True):
    __tablename__ = "group"

    id: int | None = Field(default=None, primary_key=True)
    parent_id: int | None = Field(default=None, sa_column=fk("group.id", nullable=True))
    name: str = Field(max_length=200)
    name_normalized: str = Field(max_length=200, index=True)
    slug: str = Field(max_length=220, unique=True)
    description: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    synced: bool = False
    external_id: str | None = Field(default=None, max_length=200, unique=True)
    # set by the rostering sync: the OneRoster org type (district, school, ...) or "class"
    roster_kind: str | None = Field(default=None, max_length=16)
    class_code: str | None = Field(default=None, max_length=200)
    # a class's term (its academic sessions): title(s) and dates
    term_title: str | None = Field(default=None, max_length=200)
    term_starts_on: date | None = None
    term_ends_on: date | None = None
    depth: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    # on a root group: whether its MEMBERs see the groups of its tree (null: GROUPGRAPH_MEMBERS_SEE_GROUPS)
    members_see_groups: bool | None = Field(default=None, sa_column=Column(Boolean, nullable=True))


class GroupClosure(SQLModel, table=True):
    """Every (ancestor, descendant) pair, including (g, g) at depth 0."""

    __tablename__ = "group_closure"
    __table_args__ = (Index("ix_group_closure_descendant", "descendant_id", "ancestor_id"),)

    ancestor_id: int = Field(
        sa_column=Column(Integer, ForeignKey("group.id", ondelete="CASCADE"), primary_key=True)
    )
    descendant_id: int = Field(
        sa_column=Column(Integer, ForeignKey("group.id", ondelete="CASCADE"), primary_key=True)
    )
    depth: int


class AccessRequest(SQLModel, table=True):
    __tablename__ = "access_request"
    __table_args__ = (Index("ix_access_request_subject_email", "subject_email_normalized", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    requester_id: int = Field(sa_column=fk("user.id"))
    subject_email: str = Field(max_length=320)
    subject_email_normalized: str = Field(max_length=320)
    subject_user_id: int | None = Field(default=None, sa_column=fk("user.id", nullable=True))
    message: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    status: str = Field(default="PENDING", max_length=16)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    decided_at: datetime | None = None


class AccessRequestEmail(SQLModel, table=True):
    """Each invitation requestAccess sent, or held back (the recipient blocked the requester, or the address
    had its emails for the day): the daily caps and the re-request wait after a cancel count these, the same
    whether or not an account has the address."""

    __tablename__ = "access_request_email"
    __table_args__ = (
        Index("ix_access_request_email_requester", "requester_id", "sent_at"),
        Index("ix_access_request_email_address", "address_normalized", "sent_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    requester_id: int = Field(sa_column=fk("user.id", index=False))
    address_normalized: str = Field(max_length=320)
    sent_at: datetime = Field(default_factory=utcnow)
    delivered: bool = True
    cancelled_at: datetime | None = None  # the requester cancelled the request: the re-request wait starts


class AccessRequestBlock(SQLModel, table=True):
    """A user who wants no more access requests from a requester: theirs are recorded but neither emailed
    nor listed, and the requester cannot tell."""

    __tablename__ = "access_request_block"
    __table_args__ = (UniqueConstraint("blocker_id", "requester_id", name="uq_access_request_block"),)

    id: int | None = Field(default=None, primary_key=True)
    blocker_id: int = Field(sa_column=fk("user.id", index=False))
    requester_id: int = Field(sa_column=fk("user.id"))
    created_at: datetime = Field(default_factory=utcnow)


class Membership(SQLModel, table=True):
    __tablename__ = "membership"
    __table_args__ = (
        UniqueConstraint("user_id", "group_id", name="uq_membership_user_group"),
        Index("ix_membership_group_role", "group_id", "role"),
        # the progress report's keyset order (group, user) among a group's members
        Index("ix_membership_group_role_user", "group_id", "role", "user_id"),
        # members(...) pages in (last name, id) order: a big subtree's page walks this index and stops after
        # `first` rows (sort_name is the member's last_name_normalized, kept by app.store.member_order's triggers)
        Index(
            "ix_membership_role_sort_name_id", "role", "sort_name", "id",
            postgresql_where=text("ended_at IS NULL"), sqlite_where=text("ended_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(sa_column=fk("user.id"))
    group_id: int = Field(sa_column=fk("group.id", index=False))
    role: str = Field(max_length=16)
    access_request_id: int | None = Field(
        default=None, sa_column=fk("access_request.id", ondelete="CASCADE", nullable=True)
    )
    created_at: datetime = Field(default_factory=utcnow)
    ended_at: datetime | None = None
    # the member's user.last_name_normalized, written by the database's triggers (app.store.member_order) on
    # every insert and rename: the page order (last name, id) read from membership alone
    sort_name: str = Field(default="", sa_column=Column(String(200), nullable=False, server_default=""))


class GuardianLink(SQLModel, table=True):
    __tablename__ = "guardian_link"
    __table_args__ = (UniqueConstraint("external_user_id", "pupil_id", name="uq_guardian_link"),)

    id: int | None = Field(default=None, primary_key=True)
    external_user_id: int = Field(sa_column=fk("user.id"))
    pupil_id: int = Field(sa_column=fk("user.id"))
    licence_type: str = Field(max_length=20, index=True)
    created_at: datetime = Field(default_factory=utcnow)


class Course(SQLModel, table=True):
    __tablename__ = "course"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    # a reviewed ASSIGNMENT step counts as completed (percentCompleted everywhere follows step_progress)
    reviewed_work_completes: bool = Field(
        default=True, sa_column=Column(Boolean, nullable=False, default=True, server_default=true())
    )


class Step(SQLModel, table=True):
    __tablename__ = "step"
    __table_args__ = (UniqueConstraint("course_id", "position", name="uq_step_position"),)

    id: int | None = Field(default=None, primary_key=True)
    course_id: int = Field(sa_column=fk("course.id", index=False))
    title: str = Field(max_length=200)
    position: int
    kind: str = Field(max_length=16)
    max_points: int | None = None


class CatalogueVersion(SQLModel, table=True):
    """One row (id 1): a number that every write to `course` or `step` raises, through triggers made by the
    migration (so every writer counts: mutations, the importer, seeding, tests). Each worker keeps the
    catalogue in memory and reloads it when the number it read differs (dataloaders.courses)."""

    __tablename__ = "catalogue_version"

    id: int | None = Field(default=None, primary_key=True)
    version: int = 0


def _counter() -> Any:
    return Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))


class Enrollment(SQLModel, table=True):
    __tablename__ = "enrollment"
    __table_args__ = (
        UniqueConstraint("user_id", "course_id", name="uq_enrollment_user_course"),
        Index("ix_enrollment_course", "course_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(sa_column=fk("user.id", index=False))
    course_id: int = Field(sa_column=fk("course.id", index=False))
    activated_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    completed_at: datetime | None = None
    # over the learner's step_progress rows of the course, kept by triggers (app.store.rollup, CARD_TRIGGERS):
    # steps viewed, steps completed, points earned, and the max points of the steps given points
    steps_viewed: int = _counter()
    steps_completed: int = _counter()
    points_earned: int = _counter()
    points_available: int = _counter()


class StepProgress(SQLModel, table=True):
    __tablename__ = "step_progress"
    __table_args__ = (
        UniqueConstraint("user_id", "step_id", name="uq_step_progress_user_step"),
        Index("ix_step_progress_user_course", "user_id", "course_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(sa_column=fk("user.id", index=False))
    step_id: int = Field(sa_column=fk("step.id"))
    course_id: int = Field(sa_column=fk("course.id", index=False))
    viewed_at: datetime | None = None
    completed_at: datetime | None = None
    points: int | None = None


def _key() -> Any:
    return Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))


class LearnerRollup(SQLModel, table=True):
    """Per group: each user with a MEMBER membership (not ended) in its subtree, and how many such memberships.
    Written only by the rollup triggers (app/store/rollup.py)."""

    __tablename__ = "learner_rollup"
    __table_args__ = (Index("ix_learner_rollup_user", "user_id", "group_id"),)

    group_id: int = _key()
    user_id: int = _key()
    memberships: int = _counter()


class GroupRollup(SQLModel, table=True):
    """Per group: the distinct learners of its subtree. Written only by the rollup triggers."""

    __tablename__ = "group_rollup"

    group_id: int = _key()
    learners: int = _counter()


class CourseRollup(SQLModel, table=True):
    """Per (group, course): over the distinct learners of the group's subtree, enrollments, completed
    enrollments and completed steps of the course. Written only by the rollup triggers."""

    __tablename__ = "course_rollup"

    group_id: int = _key()
    course_id: int = _key()
    enrolled: int = _counter()
    completed: int = _counter()
    steps_completed: int = _counter()


class MemberRollup(SQLModel, table=True):
    """Per (group, role): the memberships (not ended) of that role in the group's subtree, and how many of
    them are consent-based. Written only by the rollup triggers (app/store/rollup.py)."""

    __tablename__ = "member_rollup"

    group_id: int = _key()
    role: str = Field(sa_column=Column(String(16), primary_key=True))
    memberships: int = _counter()
    on_consent: int = _counter()


class Submission(SQLModel, table=True):
    __tablename__ = "submission"
    __table_args__ = (
        Index("ix_submission_user_status", "user_id", "status"),
        Index("ix_submission_status_time", "status", "submitted_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(sa_column=fk("user.id", index=False))
    step_id: int = Field(sa_column=fk("step.id"))
    course_id: int = Field(sa_column=fk("course.id", index=False))
    body: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    submitted_at: datetime = Field(default_factory=utcnow)
    status: str = Field(default="NEEDS_REVIEW", max_length=16)
    points: int | None = None
    feedback: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    reviewer_id: int | None = Field(default=None, sa_column=fk("user.id", ondelete="SET NULL", nullable=True))
    reviewed_at: datetime | None = None


class Review(SQLModel, table=True):
    """Every review of a submission, kept: a regrade adds one (the submission holds the latest)."""

    __tablename__ = "review"

    id: int | None = Field(default=None, primary_key=True)
    submission_id: int = Field(sa_column=fk("submission.id"))
    reviewer_id: int | None = Field(default=None, sa_column=fk("user.id", ondelete="SET NULL", nullable=True, index=False))
    points: int | None = None
    feedback: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    reviewed_at: datetime = Field(default_factory=utcnow)


class ActivityEvent(SQLModel, table=True):
    __tablename__ = "activity_event"
    __table_args__ = (Index("ix_activity_user_time", "user_id", "occurred_at", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(sa_column=fk("user.id", index=False))
    kind: str = Field(max_length=20)
    occurred_at: datetime = Field(default_factory=utcnow)
    course_id: int | None = Field(default=None, sa_column=fk("course.id", nullable=True, index=False))
    step_id: int | None = Field(default=None, sa_column=fk("step.id", nullable=True, index=False))
    body: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class IngestedEvent(SQLModel, table=True):
    """Keys of progress events already applied, so a re-sent event counts once. They go with their user."""

    __tablename__ = "ingested_event"

    key: str = Field(primary_key=True, max_length=200)
    user_id: int | None = Field(default=None, sa_column=fk("user.id", nullable=True))
    created_at: datetime = Field(default_factory=utcnow)


class Usage(SQLModel, table=True):
    __tablename__ = "usage"

    user_id: int = Field(
        sa_column=Column(Integer, ForeignKey("user.id", ondelete="CASCADE"), primary_key=True)
    )
    day: date = Field(primary_key=True)
    minutes: int = 0


class LoginEvent(SQLModel, table=True):
    __tablename__ = "login_event"
    __table_args__ = (
        Index("ix_login_event_at", "at"),
        Index("ix_login_event_email_at", "email_normalized", "at"),
        Index("ix_login_event_address_at", "client_address", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int | None = Field(default=None, sa_column=fk("user.id", ondelete="SET NULL", nullable=True))
    email_normalized: str = Field(max_length=320)
    client_address: str | None = Field(default=None, max_length=64)
    success: bool
    at: datetime = Field(default_factory=utcnow)


class AuditEvent(SQLModel, table=True):
    """Kept when the actor or target is deleted: the actor becomes null (ids are never reused, but an id
    that names nobody tells nothing), the target id stays with the detail the event recorded."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_action", "action", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    actor_id: int | None = Field(default=None, sa_column=fk("user.id", ondelete="SET NULL", nullable=True))
    action: str = Field(max_length=64)
    target_type: str = Field(max_length=64)
    target_id: int | None = None
    occurred_at: datetime = Field(default_factory=utcnow)
    detail: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class OutboxEmail(SQLModel, table=True):
    __tablename__ = "outbox_email"
    __table_args__ = (Index("ix_outbox_pending", "sent_at", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)
    to_address: str = Field(max_length=320)
    subject: str = Field(max_length=300)
    body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class PersistedQuery(SQLModel, table=True):
    """Automatic persisted queries: a document by its SHA-256, shared by every worker and host."""

    __tablename__ = "persisted_query"

    sha256: str = Field(max_length=64, primary_key=True)
    document: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class RosterSync(SQLModel, table=True):
    """One run of the OneRoster import: its counts, errors, and (while HELD) the bundle and the digest of
    the plan it was held with, so that approval applies exactly that plan."""

    __tablename__ = "roster_sync"

    id: int | None = Field(default=None, primary_key=True)
    status: str = Field(max_length=16)
    source: str = Field(default="graphql", max_length=16)
    actor_id: int | None = Field(default=None, sa_column=fk("user.id", ondelete="SET NULL", nullable=True))
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    held_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    groups_created: int = 0
    groups_updated: int = 0
    users_created: int = 0
    users_updated: int = 0
    users_denied: int = 0
    memberships_created: int = 0
    memberships_updated: int = 0
    memberships_ended: int = 0
    guardian_links_created: int = 0
    unchanged: int = 0
    errors: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    plan_digest: str | None = Field(default=None, max_length=64)
    bundle: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    decided_by_id: int | None = Field(default=None, sa_column=fk("user.id", ondelete="SET NULL", nullable=True))
    decided_at: datetime | None = None


class ExportSchedule(SQLModel, table=True):
    """A report sent every day, week or month at a local time in a time zone: each run is an export job."""

    __tablename__ = "export_schedule"
    __table_args__ = (Index("ix_export_schedule_due", "paused", "next_run_at"),)

    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = Field(sa_column=fk("user.id"))
    report: str = Field(max_length=32)
    params: str = Field(sa_column=Column(Text, nullable=False))  # JSON: format, dateFormat, group, course...
    frequency: str = Field(max_length=16)  # DAILY, WEEKLY, MONTHLY
    time_of_day: str = Field(max_length=5)  # HH:MM, local
    weekday: int | None = None  # 0 = Monday (WEEKLY)
    day_of_month: int | None = None  # 1..31, the month's last day when shorter (MONTHLY)
    time_zone: str = Field(max_length=64)
    recipient_ids: str = Field(default="[]", sa_column=Column(Text, nullable=False))  # JSON list of user ids
    paused: bool = False
    next_run_at: datetime
    last_run_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class ExportJob(SQLModel, table=True):
    """A report written in the background to the file store. A RUNNING job whose heartbeat is older than
    the lease is taken over by another worker (attempts + 1)."""

    __tablename__ = "export_job"
    __table_args__ = (
        Index("ix_export_job_claim", "status", "heartbeat_at"),
        Index("ix_export_job_owner", "owner_id", "id"),
        Index("ix_export_job_expiry", "status", "expires_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = Field(sa_column=fk("user.id", index=False))
    schedule_id: int | None = Field(default=None, sa_column=fk("export_schedule.id", ondelete="SET NULL", nullable=True))
    report: str = Field(max_length=32)
    format: str = Field(max_length=8)
    params: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="QUEUED", max_length=16)
    rows_written: int = 0
    rows_total: int | None = None
    attempts: int = 0
    worker: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime | None = None
    file_key: str | None = Field(default=None, max_length=200)
    file_name: str | None = Field(default=None, max_length=255)
    file_bytes: int | None = None
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class SigningKey(SQLModel, table=True):
    """Keys made by the server itself and shared by every worker (the export link key when no setting
    gives one)."""

    __tablename__ = "signing_key"

    id: int | None = Field(default=None, primary_key=True)
    purpose: str = Field(max_length=32, unique=True)
    secret: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow)


TABLES_IN_DELETE_ORDER = [
    "persisted_query", "export_job", "export_schedule", "signing_key",
    "roster_sync", "outbox_email", "audit_event", "login_event", "usage", "ingested_event", "activity_event",
    "review", "submission", "step_progress", "enrollment", "step", "course", "guardian_link", "membership",
    "access_request_email", "access_request_block", "access_request", "group_closure", "group", "api_token", "session", "user",
    # last: deleting the rows above brings them to nothing through the triggers already
    "course_rollup", "group_rollup", "learner_rollup", "member_rollup",
]


@event.listens_for(User, "before_insert")
@event.listens_for(User, "before_update")
def _fold_names(_mapper: Any, _connection: Any, user: User) -> None:
    """Whoever writes a user through the ORM (createUser, updateUser, the CLI, tests), the search keys follow
    the names."""
    user.name_search = full_name_key(user.first_name or "", user.last_name or "")
    user.last_name_normalized = fold(user.last_name or "")[:200]
