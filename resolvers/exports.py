"""Export jobs (reports written in the background) and export schedules, over GraphQL.

Starting a job checks the caller's permission on the report now (the worker checks the owner's again when
it runs, the download the reader's); a job's file is downloaded through a short-lived signed link
(downloadUrl). Jobs and schedules are seen by their owner, and by site admins (all: true).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from enum import Enum
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import strawberry
from strawberry.types import Info

from app.runtime.errors import BadInput, Forbidden, NotFound, RateLimited
from app.runtime.ids import require_id, to_global_id
from app.services.audit import audit
from app.services.export_jobs import FREQUENCIES, next_run, queue_job, reach_of, wake_worker
from app.services.links import link_key, link_seconds_from_now, sign
from app.services.reports import (
    EXTERNAL_USERS,
    GROUPS,
    MEMBERSHIPS,
    PROGRESS,
    PUPILS_WITH_LICENCE,
    PUPILS_WITHOUT_LICENCE,
    UNASSIGNED_STUDENTS,
    ExportRequest,
    authorize,
    may_export,
)
from app.store.models import ExportJob as ExportJobRow
from app.store.models import ExportSchedule as ExportScheduleRow
from app.store.models import User as UserRow
from app.store.models import utcnow
from dataloaders.exports import (
    active_job_count,
    export_job,
    export_job_page,
    export_schedule,
    export_schedule_page,
)
from permissions.classes import Subjects, authenticated, requires
from permissions.reach import Permission
from resolvers.common import Node, PageInfo, decode_cursor, encode_cursor, page_info, page_size
from resolvers.enums import ExportFormat, LicenceType
from resolvers.views import GroupType, UserType, require_visible_group, visible_group, visible_users

MAX_RECIPIENTS = 50
TIME_OF_DAY = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


@strawberry.enum(description="Where a background export stands.")
class ExportJobStatus(Enum):
    QUEUED = strawberry.enum_value("QUEUED", description="Waiting for a worker.")
    RUNNING = strawberry.enum_value("RUNNING", description="Being written (rowsWritten grows).")
    DONE = strawberry.enum_value("DONE", description="Written: downloadUrl gives the file.")
    FAILED = strawberry.enum_value("FAILED", description="Stopped with an error (see error); nothing to download.")
    EXPIRED = strawberry.enum_value("EXPIRED", description="The file was deleted after the retention period.")


@strawberry.enum(description="The reports an export job or schedule can write.")
class ExportReport(Enum):
    PROGRESS = strawberry.enum_value(PROGRESS, description="A group's progress report (EXPORT_GROUP on the group).")
    GROUPS = strawberry.enum_value(GROUPS, description="Every group (site admins).")
    MEMBERSHIPS = strawberry.enum_value(MEMBERSHIPS, description="Every membership (site admins).")
    UNASSIGNED_STUDENTS = strawberry.enum_value(
        UNASSIGNED_STUDENTS,
        description="Active learners in no group, ready for the importer (site admins; MANAGE_ACCOUNT in a scope).",
    )
    EXTERNAL_USERS = strawberry.enum_value(
        EXTERNAL_USERS, description="The gateway's external users and their pupils (site admins)."
    )
    PUPILS_WITHOUT_LICENCE = strawberry.enum_value(
        PUPILS_WITHOUT_LICENCE, description="The gateway's learners with no holder of a licence type (site admins)."
    )
    PUPILS_WITH_LICENCE = strawberry.enum_value(
        PUPILS_WITH_LICENCE,
        description="The gateway's learners with a holder of a licence type: the other half of PUPILS_WITHOUT_LICENCE "
        "(site admins).",
    )


@strawberry.enum(description="How CSV files write times (XLSX files always hold real date-time cells).")
class ExportDateFormat(Enum):
    RFC3339 = strawberry.enum_value("RFC3339", description="2026-03-02T09:30:00Z (UTC): the default.")
    SPREADSHEET = strawberry.enum_value(
        "SPREADSHEET", description="2026-03-02 09:30:00 (UTC), for spreadsheet tools that do not read the Z form."
    )


@strawberry.enum(description="How often a schedule runs.")
class ScheduleFrequency(Enum):
    DAILY = strawberry.enum_value("DAILY", description="Every day.")
    WEEKLY = strawberry.enum_value("WEEKLY", description="Once a week, on `weekday`.")
    MONTHLY = strawberry.enum_value(
        "MONTHLY", description="Once a month, on `dayOfMonth` (the month's last day when it is shorter)."
    )


@strawberry.enum(description="A day of the week.")
class Weekday(Enum):
    MONDAY = strawberry.enum_value("MONDAY", description="Monday.")
    TUESDAY = strawberry.enum_value("TUESDAY", description="Tuesday.")
    WEDNESDAY = strawberry.enum_value("WEDNESDAY", description="Wednesday.")
    THURSDAY = strawberry.enum_value("THURSDAY", description="Thursday.")
    FRIDAY = strawberry.enum_value("FRIDAY", description="Friday.")
    SATURDAY = strawberry.enum_value("SATURDAY", description="Saturday.")
    SUNDAY = strawberry.enum_value("SUNDAY", description="Sunday.")


WEEKDAYS = list(Weekday)


@strawberry.type(description="A report built in the background.")
class ExportJob(Node):
    row: strawberry.Private[ExportJobRow]

    @strawberry.field(description="Opaque global id (Relay). node(id:) returns null for ids the caller may not see.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("ExportJob", self.row.id))  # type: ignore[arg-type]

    @strawberry.field(description="Where the job stands.")
    def status(self) -> ExportJobStatus:
        return ExportJobStatus(self.row.status)

    @strawberry.field(description="The file's format.")
    def format(self) -> ExportFormat:
        return ExportFormat(self.row.format)

    @strawberry.field(description="Which report the job writes.")
    def report(self) -> ExportReport:
        return ExportReport(self.row.report)

    @strawberry.field(description="Rows written so far (all of them once DONE).")
    def rows_written(self) -> int:
        return self.row.rows_written

    @strawberry.field(description="The report's row count, once the job has started.")
    def rows_total(self) -> int | None:
        return self.row.rows_total

    @strawberry.field(description="0..100 when the total is known.")
    def progress_percent(self) -> float | None:
        if self.row.status == "DONE":
            return 100.0
        total = self.row.rows_total
        if not total:
            return None if total is None else 0.0
        return round(min(100.0, 100.0 * self.row.rows_written / total), 2)

    @strawberry.field(description="When the job was started.")
    def created_at(self) -> datetime:
        return self.row.created_at

    @strawberry.field(
        description="How many times a worker began writing it: more than 1 when a worker stopped mid-way "
        "(a restart, a crash) and another took the job over."
    )
    def attempts(self) -> int:
        return self.row.attempts

    @strawberry.field(description="When a worker began writing it (its latest attempt).")
    def started_at(self) -> datetime | None:
        return self.row.started_at

    @strawberry.field(description="When it was DONE or FAILED.")
    def finished_at(self) -> datetime | None:
        return self.row.finished_at

    @strawberry.field(description="When the file is (or was) deleted: DONE jobs only.")
    def expires_at(self) -> datetime | None:
        return self.row.expires_at

    @strawberry.field(description="The file's name, once DONE.")
    def file_name(self) -> str | None:
        return self.row.file_name

    @strawberry.field(
        description="A short-lived signed link to the file, when DONE; re-checked against the caller's "
        "permission at download. Works without an Authorization header (a plain link); valid for "
        "GROUPGRAPH_EXPORT_LINK_SECONDS."
    )
    async def download_url(self, info: Info) -> str | None:
        if self.row.status != "DONE":
            return None
        ctx = info.context
        key = await link_key(ctx.database, ctx.settings)
        return sign(key, f"/exports/jobs/{self.row.id}/file", {}, ctx.viewer_id, link_seconds_from_now(ctx.settings))

    @strawberry.field(description="Why the job FAILED.")
    def error(self) -> str | None:
        return self.row.error

    @strawberry.field(description="The schedule whose run started this job (null for jobs started by hand).")
    async def schedule(self, info: Info) -> ExportSchedule | None:
        if self.row.schedule_id is None:
            return None
        return await visible_schedule(info, self.row.schedule_id)


@strawberry.type(description="An export job in a list.")
class ExportJobEdge:
    cursor: str = strawberry.field(description="Pass as `after` to get the jobs after this one.")
    node: ExportJob = strawberry.field(description="The job.")


@strawberry.type(description="A page of export jobs, newest first.")
class ExportJobConnection:
    edges: list[ExportJobEdge] = strawberry.field(description="The jobs of this page.")
    page_info: PageInfo = strawberry.field(description="Whether more jobs follow, and the cursors.")


@strawberry.type(description="A report sent every day, week or month: each run is an export job, emailed to its owner and recipients.")
class ExportSchedule(Node):
    row: strawberry.Private[ExportScheduleRow]

    @property
    def request(self) -> ExportRequest:
        return ExportRequest.from_json(self.row.params)

    @strawberry.field(description="Opaque global id (Relay). node(id:) returns null for ids the caller may not see.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("ExportSchedule", self.row.id))  # type: ignore[arg-type]

    @strawberry.field(description="Which report each run writes.")
    def report(self) -> ExportReport:
        return ExportReport(self.row.report)

    @strawberry.field(description="The file's format.")
    def format(self) -> ExportFormat:
        return ExportFormat(self.request.format)

    @strawberry.field(description="How CSV files write times.")
    def date_format(self) -> ExportDateFormat:
        return ExportDateFormat(self.request.date_format)

    @strawberry.field(description="The group of a PROGRESS report (null when the caller may no longer see it).")
    async def group(self, info: Info) -> GroupType | None:
        group_id = self.request.group_id
        return None if group_id is None else await visible_group(info, group_id)

    @strawberry.field(description="The course a PROGRESS report is narrowed to (its global id), if any.")
    def course_id(self) -> strawberry.ID | None:
        course = self.request.course_id
        return None if course is None else strawberry.ID(to_global_id("Course", course))

    @strawberry.field(description="Whether a PROGRESS report takes in the nested groups.")
    def include_nested(self) -> bool:
        return self.request.include_nested

    @strawberry.field(description="The licence type the gateway's reports are narrowed to.")
    def licence_type(self) -> LicenceType | None:
        value = self.request.licence_type
        return None if value is None else LicenceType(value)

    @strawberry.field(description="UNASSIGNED_STUDENTS: the group whose homed accounts it lists (null: the site).")
    async def scope_group(self, info: Info) -> GroupType | None:
        group_id = self.request.scope_group_id
        return None if group_id is None else await visible_group(info, group_id)

    @strawberry.field(description="How often it runs.")
    def frequency(self) -> ScheduleFrequency:
        return ScheduleFrequency(self.row.frequency)

    @strawberry.field(description="The local time of day it runs at (HH:MM, 24-hour) in timeZone.")
    def time(self) -> str:
        return self.row.time_of_day

    @strawberry.field(description="An IANA time zone, such as Europe/London.")
    def time_zone(self) -> str:
        return self.row.time_zone

    @strawberry.field(description="The day of a WEEKLY schedule.")
    def weekday(self) -> Weekday | None:
        return None if self.row.weekday is None else WEEKDAYS[self.row.weekday]

    @strawberry.field(description="The day of a MONTHLY schedule (the month's last day when it is shorter).")
    def day_of_month(self) -> int | None:
        return self.row.day_of_month

    @strawberry.field(description="Who gets the link besides the owner (those the caller may see).")
    async def recipients(self, info: Info) -> list[UserType]:
        ids = json.loads(self.row.recipient_ids)
        return [u for u in await visible_users(info, ids) if u is not None]

    @strawberry.field(description="A paused schedule starts no jobs until it is resumed.")
    def paused(self) -> bool:
        return self.row.paused

    @strawberry.field(description="When it runs next (UTC).")
    def next_run_at(self) -> datetime:
        return self.row.next_run_at

    @strawberry.field(description="When it last ran.")
    def last_run_at(self) -> datetime | None:
        return self.row.last_run_at

    @strawberry.field(description="When it was created.")
    def created_at(self) -> datetime:
        return self.row.created_at


@strawberry.type(description="An export schedule in a list.")
class ExportScheduleEdge:
    cursor: str = strawberry.field(description="Pass as `after` to get the schedules after this one.")
    node: ExportSchedule = strawberry.field(description="The schedule.")


@strawberry.type(description="A page of export schedules, newest first.")
class ExportScheduleConnection:
    edges: list[ExportScheduleEdge] = strawberry.field(description="The schedules of this page.")
    page_info: PageInfo = strawberry.field(description="Whether more schedules follow, and the cursors.")


@strawberry.input(description="A new export schedule: the report and its filters, when it runs, who gets it.")
class CreateExportScheduleInput:
    report: ExportReport = strawberry.field(description="The report each run writes.")
    frequency: ScheduleFrequency = strawberry.field(description="How often it runs.")
    time: str = strawberry.field(description="The local time of day, HH:MM (24-hour), in timeZone.")
    time_zone: str = strawberry.field(description="An IANA time zone, such as Europe/London or America/New_York.")
    weekday: Weekday | None = strawberry.field(default=None, description="Required for WEEKLY.")
    day_of_month: int | None = strawberry.field(default=None, description="1..31, required for MONTHLY.")
    format: ExportFormat | None = strawberry.field(
        default=None, description="Default: XLSX for PROGRESS and the gateway's reports, CSV for the others."
    )
    date_format: ExportDateFormat | None = strawberry.field(default=None, description="For CSV files (default RFC3339).")
    group_id: strawberry.ID | None = strawberry.field(default=None, description="The group (PROGRESS only, required there).")
    course_id: strawberry.ID | None = strawberry.field(default=None, description="PROGRESS: one course only.")
    include_nested: bool | None = strawberry.field(default=True, description="PROGRESS: the nested groups too.")
    licence_type: LicenceType | None = strawberry.field(
        default=None, description="EXTERNAL_USERS (optional) and PUPILS_WITHOUT_LICENCE (required)."
    )
    scope_group_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="UNASSIGNED_STUDENTS: the accounts homed under this group (required but for site admins).",
    )
    recipient_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Users who also get the link; each must be allowed to export this report."
    )


@strawberry.input(description="Changes to an export schedule: only the fields given change.")
class UpdateExportScheduleInput:
    frequency: ScheduleFrequency | None = strawberry.field(default=None, description="How often it runs.")
    time: str | None = strawberry.field(default=None, description="The local time of day, HH:MM (24-hour).")
    time_zone: str | None = strawberry.field(default=None, description="An IANA time zone.")
    weekday: Weekday | None = strawberry.field(default=None, description="For WEEKLY.")
    day_of_month: int | None = strawberry.field(default=None, description="For MONTHLY, 1..31.")
    format: ExportFormat | None = strawberry.field(default=None, description="The file's format.")
    date_format: ExportDateFormat | None = strawberry.field(default=None, description="For CSV files.")
    recipient_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Replaces the recipients; each must be allowed to export this report."
    )


# --- lookups -------------------------------------------------------------------------------------------------


async def visible_export_job(info: Info, job_id: int) -> ExportJob | None:
    """For `node(id:)`: the owner's and site admins'; null for everyone else, as for a missing id."""
    reach = await info.context.load_reach()
    row = await export_job(info.context.store, job_id)
    if row is None or not (row.owner_id == info.context.viewer_id or reach.is_admin):
        return None
    return ExportJob(row=row)


async def visible_schedule(info: Info, schedule_id: int) -> ExportSchedule | None:
    reach = await info.context.load_reach()
    row = await export_schedule(info.context.store, schedule_id)
    if row is None or not (row.owner_id == info.context.viewer_id or reach.is_admin):
        return None
    return ExportSchedule(row=row)


async def _own_schedule(info: Info, global_id: str) -> ExportScheduleRow:
    found = await visible_schedule(info, require_id(global_id, "ExportSchedule", "id"))
    if found is None:
        raise NotFound("No such export schedule.", field="id")
    return found.row


# --- starting jobs -------------------------------------------------------------------------------------------


async def start_job(info: Info, request: ExportRequest) -> ExportJob:
    """The caller's permission now (NOT_FOUND / FORBIDDEN as for a download), a cap on the caller's unfinished
    jobs, then one QUEUED job, audited, in one transaction."""
    ctx = info.context
    reach = await ctx.load_reach()
    await authorize(ctx.store, reach, request)
    limit = ctx.settings.export_max_active_jobs
    if await active_job_count(ctx.store, ctx.viewer_id) >= limit:
        raise RateLimited(f"You have {limit} exports waiting or running: wait for one to finish.", limit=limit)
    async with ctx.store.transaction() as session:
        row = queue_job(session, ctx.viewer_id, request)
        await session.flush()
        audit(session, ctx.viewer_id, "export_job.start", "export_job", row.id, report=request.report,
              format=request.format, params=request.to_json())
    wake_worker()
    return ExportJob(row=row)


DateFormatArgument = Annotated[
    ExportDateFormat | None, strawberry.argument(description="How a CSV writes times (default RFC3339).")
]


def _date_format(value: ExportDateFormat | None) -> str:
    return (value or ExportDateFormat.RFC3339).value


def _format(value: ExportFormat | None, default: str) -> str:
    return value.value if value is not None else default


async def start_pupils_job(
    info: Info, report: str, licence_type: LicenceType, format: ExportFormat | None, date_format: ExportDateFormat | None
) -> ExportJob:
    """The pupils without, or with, a holder of the licence type: the two halves of one list."""
    request = ExportRequest(report, _format(format, "XLSX"), _date_format(date_format), licence_type=licence_type.value)
    return await start_job(info, request)


async def progress_target(info: Info, kwargs: dict[str, Any]) -> Subjects:
    return Subjects(groups=[(await require_visible_group(info, kwargs["group_id"], "groupId")).row.id])  # type: ignore[list-item]


@strawberry.type
class ExportQueries:
    @strawberry.field(
        extensions=[authenticated()],
        description="Export jobs: the caller's own, newest first (site admins: all=true lists everyone's).",
    )
    async def export_jobs(
        self, info: Info, all: bool | None = False, first: int | None = 20, after: str | None = None
    ) -> ExportJobConnection:
        reach = await info.context.load_reach()
        if all and not reach.is_admin:
            raise Forbidden("Only site admins list everyone's export jobs.")
        limit = page_size(info, first)
        cursor = decode_cursor(after, [int])
        owner = None if all else info.context.viewer_id
        rows = list(await export_job_page(info.context.store, owner, cursor[0] if cursor else None, limit + 1))
        edges = [ExportJobEdge(cursor=encode_cursor(r.id), node=ExportJob(row=r)) for r in rows[:limit]]
        return ExportJobConnection(edges=edges, page_info=page_info(len(rows) > limit, [e.cursor for e in edges]))

    @strawberry.field(
        extensions=[authenticated()],
        description="Export schedules: the caller's own, newest first (site admins: all=true lists everyone's).",
    )
    async def export_schedules(
        self, info: Info, all: bool | None = False, first: int | None = 20, after: str | None = None
    ) -> ExportScheduleConnection:
        reach = await info.context.load_reach()
        if all and not reach.is_admin:
            raise Forbidden("Only site admins list everyone's export schedules.")
        limit = page_size(info, first)
        cursor = decode_cursor(after, [int])
        owner = None if all else info.context.viewer_id
        rows = list(await export_schedule_page(info.context.store, owner, cursor[0] if cursor else None, limit + 1))
        edges = [ExportScheduleEdge(cursor=encode_cursor(r.id), node=ExportSchedule(row=r)) for r in rows[:limit]]
        return ExportScheduleConnection(edges=edges, page_info=page_info(len(rows) > limit, [e.cursor for e in edges]))


@strawberry.type
class ExportMutations:
    @strawberry.mutation(
        extensions=[requires(Permission.EXPORT_GROUP, target=progress_target)],
        description="Starts a background export of the group's progress report (same rows and columns as the "
        "streamed download); the owner is emailed the link when it is DONE.",
    )
    async def start_progress_export(
        self, info: Info, group_id: strawberry.ID, format: ExportFormat | None = ExportFormat.XLSX,
        course_id: strawberry.ID | None = None, include_nested: bool | None = True,
        date_format: DateFormatArgument = None,
        include_ended: Annotated[
            bool | None,
            strawberry.argument(description="true: also ended (archived) memberships, so a term's history stays."),
        ] = False,
    ) -> ExportJob:
        course = require_id(course_id, "Course", "courseId") if course_id is not None else None
        request = ExportRequest(
            PROGRESS, _format(format, "XLSX"), _date_format(date_format), require_id(group_id, "Group", "groupId"),
            course, include_nested is not False, include_ended=bool(include_ended),
        )
        return await start_job(info, request)

    @strawberry.mutation(
        extensions=[requires(Permission.SITE_ADMIN)],
        description="Starts a background export of every group (the columns of /exports/groups.csv).",
    )
    async def start_groups_export(
        self, info: Info, format: ExportFormat | None = ExportFormat.CSV,
        date_format: DateFormatArgument = None,
    ) -> ExportJob:
        return await start_job(info, ExportRequest(GROUPS, _format(format, "CSV"), _date_format(date_format)))

    @strawberry.mutation(
        extensions=[requires(Permission.SITE_ADMIN)],
        description="Starts a background export of every membership (the columns of /exports/memberships.csv).",
    )
    async def start_memberships_export(
        self, info: Info, format: ExportFormat | None = ExportFormat.CSV,
        date_format: DateFormatArgument = None,
    ) -> ExportJob:
        return await start_job(info, ExportRequest(MEMBERSHIPS, _format(format, "CSV"), _date_format(date_format)))

    @strawberry.mutation(
        extensions=[authenticated()],
        description="Starts a background export of the active learners in no group "
        "(the columns of /exports/unassigned-active-students.csv, ready for the importer): site admins, the "
        "whole site or a scope; MANAGE_ACCOUNT on scopeGroupId (required then): the accounts homed under it.",
    )
    async def start_unassigned_students_export(
        self, info: Info, format: ExportFormat | None = ExportFormat.CSV,
        date_format: DateFormatArgument = None,
        scope_group_id: Annotated[
            strawberry.ID | None, strawberry.argument(description="A group whose homed accounts to list.")
        ] = None,
    ) -> ExportJob:
        scope = require_id(scope_group_id, "Group", "scopeGroupId") if scope_group_id is not None else None
        request = ExportRequest(
            UNASSIGNED_STUDENTS, _format(format, "CSV"), _date_format(date_format), scope_group_id=scope
        )
        return await start_job(info, request)

    @strawberry.mutation(
        extensions=[requires(Permission.SITE_ADMIN)],
        description="Starts a background export of the gateway's external users (external-users.xlsx); "
        "licenceType keeps those holding that licence type.",
    )
    async def start_external_users_export(
        self, info: Info, licence_type: LicenceType | None = None, format: ExportFormat | None = ExportFormat.XLSX,
        date_format: DateFormatArgument = None,
    ) -> ExportJob:
        request = ExportRequest(
            EXTERNAL_USERS, _format(format, "XLSX"), _date_format(date_format),
            licence_type=licence_type.value if licence_type else None,
        )
        return await start_job(info, request)

    @strawberry.mutation(
        extensions=[requires(Permission.SITE_ADMIN)],
        description="Starts a background export of the learners with no holder of licenceType "
        "(pupils-without-licence.xlsx).",
    )
    async def start_pupils_without_licence_export(
        self, info: Info, licence_type: LicenceType, format: ExportFormat | None = ExportFormat.XLSX,
        date_format: DateFormatArgument = None,
    ) -> ExportJob:
        return await start_pupils_job(info, PUPILS_WITHOUT_LICENCE, licence_type, format, date_format)

    @strawberry.mutation(
        extensions=[requires(Permission.SITE_ADMIN)],
        description="Starts a background export of the learners with a holder of licenceType "
        "(pupils-with-licence.xlsx): the other half of startPupilsWithoutLicenceExport.",
    )
    async def start_pupils_with_licence_export(
        self, info: Info, licence_type: LicenceType, format: ExportFormat | None = ExportFormat.XLSX,
        date_format: DateFormatArgument = None,
    ) -> ExportJob:
        return await start_pupils_job(info, PUPILS_WITH_LICENCE, licence_type, format, date_format)

    @strawberry.mutation(
        extensions=[authenticated()],
        description="Sends a report every day, week or month at a local time: site admins, or anyone for a "
        "report they may export (NOT_FOUND / FORBIDDEN as for a download). Recipients must be allowed to "
        "export the report too; each run is an export job, emailed to the owner and the recipients.",
    )
    async def create_export_schedule(self, info: Info, input: CreateExportScheduleInput) -> ExportSchedule:
        ctx = info.context
        report = input.report.value
        default_format = "CSV" if report in (GROUPS, MEMBERSHIPS, UNASSIGNED_STUDENTS) else "XLSX"
        group_id = require_id(input.group_id, "Group", "groupId") if input.group_id is not None else None
        course_id = require_id(input.course_id, "Course", "courseId") if input.course_id is not None else None
        scope = require_id(input.scope_group_id, "Group", "scopeGroupId") if input.scope_group_id is not None else None
        request = ExportRequest(
            report, _format(input.format, default_format), _date_format(input.date_format), group_id, course_id,
            input.include_nested is not False, input.licence_type.value if input.licence_type else None, scope,
        )
        await authorize(ctx.store, await ctx.load_reach(), request)
        timing = _timing(input.frequency, input.time, input.time_zone, input.weekday, input.day_of_month)
        recipients = await _recipients(info, input.recipient_ids or [], request)
        now = utcnow()
        async with ctx.store.transaction() as session:
            row = ExportScheduleRow(
                owner_id=ctx.viewer_id, report=report, params=request.to_json(), recipient_ids=json.dumps(recipients),
                next_run_at=next_run(timing["frequency"], timing["time_of_day"], timing["time_zone"], now,
                                     timing["weekday"], timing["day_of_month"]),
                **timing,
            )
            session.add(row)
            await session.flush()
            audit(session, ctx.viewer_id, "export_schedule.create", "export_schedule", row.id, params=request.to_json(),
                  recipients=recipients, **timing)
        return ExportSchedule(row=row)

    @strawberry.mutation(
        extensions=[authenticated()],
        description="Changes when a schedule runs, its format or its recipients (its owner or a site admin).",
    )
    async def update_export_schedule(self, info: Info, id: strawberry.ID, input: UpdateExportScheduleInput) -> ExportSchedule:
        ctx = info.context
        row = await _own_schedule(info, id)
        request = ExportRequest.from_json(row.params)
        if input.format is not None or input.date_format is not None:
            request = request.with_changes(
                format=_format(input.format, request.format),
                date_format=input.date_format.value if input.date_format else request.date_format,
            )
        timing = _timing(
            input.frequency or ScheduleFrequency(row.frequency), input.time or row.time_of_day,
            input.time_zone or row.time_zone,
            input.weekday if input.weekday is not None else (WEEKDAYS[row.weekday] if row.weekday is not None else None),
            input.day_of_month if input.day_of_month is not None else row.day_of_month,
        )
        recipients = (
            await _recipients(info, input.recipient_ids, request) if input.recipient_ids is not None
            else json.loads(row.recipient_ids)
        )
        async with ctx.store.transaction() as session:
            fresh = await session.get(ExportScheduleRow, row.id)
            if fresh is None:
                raise NotFound("No such export schedule.", field="id")
            for name, value in timing.items():
                setattr(fresh, name, value)
            fresh.params = request.to_json()
            fresh.recipient_ids = json.dumps(recipients)
            fresh.updated_at = utcnow()
            fresh.next_run_at = next_run(fresh.frequency, fresh.time_of_day, fresh.time_zone, utcnow(), fresh.weekday,
                                         fresh.day_of_month)
            audit(session, ctx.viewer_id, "export_schedule.update", "export_schedule", row.id, params=fresh.params,
                  recipients=recipients, **timing)
        return ExportSchedule(row=fresh)

    @strawberry.mutation(
        extensions=[authenticated()],
        description="Pauses a schedule (paused: false resumes it from its next time); its owner or a site admin.",
    )
    async def pause_export_schedule(self, info: Info, id: strawberry.ID, paused: bool | None = True) -> ExportSchedule:
        ctx = info.context
        row = await _own_schedule(info, id)
        async with ctx.store.transaction() as session:
            fresh = await session.get(ExportScheduleRow, row.id)
            if fresh is None:
                raise NotFound("No such export schedule.", field="id")
            fresh.paused = paused is not False
            fresh.updated_at = utcnow()
            if not fresh.paused:
                fresh.next_run_at = next_run(fresh.frequency, fresh.time_of_day, fresh.time_zone, utcnow(),
                                             fresh.weekday, fresh.day_of_month)
            action = "export_schedule.pause" if fresh.paused else "export_schedule.resume"
            audit(session, ctx.viewer_id, action, "export_schedule", row.id)
        return ExportSchedule(row=fresh)

    @strawberry.mutation(
        extensions=[authenticated()],
        description="Deletes a schedule (its owner or a site admin); the jobs it started stay.",
    )
    async def delete_export_schedule(self, info: Info, id: strawberry.ID) -> bool:
        ctx = info.context
        row = await _own_schedule(info, id)
        async with ctx.store.transaction() as session:
            fresh = await session.get(ExportScheduleRow, row.id)
            if fresh is None:
                raise NotFound("No such export schedule.", field="id")
            await session.delete(fresh)
            audit(session, ctx.viewer_id, "export_schedule.delete", "export_schedule", row.id, report=row.report)
        return True


def _timing(
    frequency: ScheduleFrequency, time: str, time_zone: str, weekday: Weekday | None, day_of_month: int | None
) -> dict[str, Any]:
    """The schedule's timing columns, checked: BAD_USER_INPUT naming the field."""
    if frequency.value not in FREQUENCIES:
        raise BadInput("frequency must be DAILY, WEEKLY or MONTHLY", field="frequency")
    if not TIME_OF_DAY.match(time or ""):
        raise BadInput("time must be HH:MM (24-hour), such as 07:00", field="time")
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise BadInput(f"'{time_zone}' is not an IANA time zone (such as Europe/London)", field="timeZone") from None
    if frequency is ScheduleFrequency.WEEKLY and weekday is None:
        raise BadInput("A WEEKLY schedule needs a weekday.", field="weekday")
    if frequency is ScheduleFrequency.MONTHLY and (day_of_month is None or not 1 <= day_of_month <= 31):
        raise BadInput("A MONTHLY schedule needs a dayOfMonth between 1 and 31.", field="dayOfMonth")
    return {
        "frequency": frequency.value, "time_of_day": time, "time_zone": time_zone,
        "weekday": WEEKDAYS.index(weekday) if frequency is ScheduleFrequency.WEEKLY and weekday else None,
        "day_of_month": day_of_month if frequency is ScheduleFrequency.MONTHLY else None,
    }


async def _recipients(info: Info, global_ids: list[strawberry.ID], request: ExportRequest) -> list[int]:
    """Database ids of the recipients: each one the caller may see (NOT_FOUND otherwise, as for a missing
    user) and who may export the report now (BAD_USER_INPUT otherwise, naming them in userIds)."""
    if len(global_ids) > MAX_RECIPIENTS:
        raise BadInput(f"At most {MAX_RECIPIENTS} recipients.", field="recipientIds")
    ids = list(dict.fromkeys(require_id(g, "User", "recipientIds") for g in global_ids))
    users = await visible_users(info, ids)
    if any(u is None for u in users):
        raise NotFound("No such user.", field="recipientIds")
    refused: list[str] = []
    for user in users:
        row: UserRow = user.row  # type: ignore[union-attr]
        if not may_export(await reach_of(info.context.store, row), request):
            refused.append(to_global_id("User", row.id))  # type: ignore[arg-type]
    if refused:
        raise BadInput("These users may not export this report.", field="recipientIds", userIds=refused)
    return ids
