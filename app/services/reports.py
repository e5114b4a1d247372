"""The exports' catalogue: for each report, its columns, who may export it, its rows and its row count. The
streamed downloads (app.http.exports) and the export jobs (app.services.export_jobs) both read it, so a
report is the same file whichever way it is asked for, and the same permission decides both."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from app.runtime.errors import BadInput, Forbidden, NotFound
from app.services.sheets import RFC3339, Cells, Column, guard, time_formatter
from dataloaders.reports import (
    ReportRow,
    ReportScope,
    admin_count_statement,
    count_statement,
    course_exists,
    external_users_statement,
    gateway_count_statement,
    group_slug,
    groups_statement,
    id_chunks,
    memberships_statement,
    pupils_without_licence_statement,
    report_chunks,
    rows_by_user,
    unassigned_students_statement,
)
from dataloaders.store import Store
from permissions.reach import Permission, Reach

PROGRESS = "PROGRESS"
GROUPS = "GROUPS"
MEMBERSHIPS = "MEMBERSHIPS"
UNASSIGNED_STUDENTS = "UNASSIGNED_STUDENTS"
EXTERNAL_USERS = "EXTERNAL_USERS"
PUPILS_WITHOUT_LICENCE = "PUPILS_WITHOUT_LICENCE"
REPORTS = (PROGRESS, GROUPS, MEMBERSHIPS, UNASSIGNED_STUDENTS, EXTERNAL_USERS, PUPILS_WITHOUT_LICENCE)
FORMATS = ("CSV", "XLSX")
LICENCE_TYPES = ("PARENT_GUARDIAN", "PUPIL", "OTHER")


def _id(name: str) -> Column:
    return Column(name, "int", 10)


def _when(name: str) -> Column:
    return Column(name, "datetime", 20)


COLUMNS: dict[str, list[Column]] = {
    GROUPS: [
        _id("Group ID"), Column("Group Name", width=30), Column("Slug", width=24), Column("Description", width=40),
        _when("Created At"), _id("Parent Group ID"), Column("Parent Group Name", width=30),
    ],
    MEMBERSHIPS: [
        _id("Membership ID"), _id("User ID"), Column("First Name", width=16), Column("Last Name", width=18),
        Column("Email", width=30), _id("Group ID"), Column("Group Name", width=30), Column("Role", width=10),
        _id("Group Parent ID"), _when("Membership Created At"),
    ],
    PROGRESS: [
        Column("Student First Name", width=16), Column("Student Last Name", width=18),
        Column("Student Email", width=30), Column("Company", width=20), Column("Group Name", width=24),
        Column("Course Name", width=24), _when("Activated At"), Column("% Completed", "percent", 12),
        _when("Completed Date"), _when("Expiry Date"),
    ],
    UNASSIGNED_STUDENTS: [
        Column("student_id", width=20), Column("first_name", width=16), Column("last_name", width=18),
        Column("email", width=30), Column("usage_minutes", "int", 14), Column("groups", width=30),
    ],
    EXTERNAL_USERS: [
        _id("ID"), Column("Title", width=8), Column("Surname", width=18), Column("First Name", width=16),
        Column("Email", width=30), _when("Account Created"), Column("ADR", width=6), Column("Access", width=10),
        _when("Last Login"), Column("Pupils", width=40), Column("Licence Types", width=30),
    ],
    PUPILS_WITHOUT_LICENCE: [
        _id("ID"), Column("Student ID", width=14), Column("First Name", width=16), Column("Surname", width=18),
        Column("Email", width=30), Column("Licence Types", width=30),
    ],
}
SHEETS = {
    GROUPS: "Groups", MEMBERSHIPS: "Memberships", PROGRESS: "Progress", UNASSIGNED_STUDENTS: "Unassigned students",
    EXTERNAL_USERS: "External users", PUPILS_WITHOUT_LICENCE: "Pupils without licence",
}
FILE_NAMES = {
    GROUPS: "groups", MEMBERSHIPS: "memberships", UNASSIGNED_STUDENTS: "unassigned-active-students",
    EXTERNAL_USERS: "external-users", PUPILS_WITHOUT_LICENCE: "pupils-without-licence",
}
TOO_MANY = {
    PROGRESS: "export one course at a time (courseId)",
    EXTERNAL_USERS: "narrow it with licenceType",
    PUPILS_WITHOUT_LICENCE: "narrow it with licenceType",
}


def column_names(report: str) -> list[str]:
    return [c.name for c in COLUMNS[report]]


@dataclass(frozen=True)
class ExportRequest:
    """One report, its filters, and the file's format: what a download, a job or a schedule asks for."""

    report: str
    format: str = "CSV"
    date_format: str = RFC3339
    group_id: int | None = None
    course_id: int | None = None
    include_nested: bool = True
    licence_type: str | None = None
    scope_group_id: int | None = None  # UNASSIGNED_STUDENTS: the accounts homed in this group's subtree
    include_ended: bool = False  # PROGRESS: ended memberships too (a term's history)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ExportRequest:
        return cls(**json.loads(text))

    def with_changes(self, **changes: Any) -> ExportRequest:
        return replace(self, **changes)

    @property
    def scope(self) -> ReportScope:
        assert self.group_id is not None
        return ReportScope(self.group_id, self.include_nested, self.course_id, self.include_ended)

    def describe(self) -> str:
        """For emails and logs: the report and its filters, in words."""
        words = {
            PROGRESS: "group progress report", GROUPS: "groups", MEMBERSHIPS: "memberships",
            UNASSIGNED_STUDENTS: "unassigned active students", EXTERNAL_USERS: "external users",
            PUPILS_WITHOUT_LICENCE: "pupils without licence",
        }[self.report]
        if self.licence_type:
            words += f" ({self.licence_type})"
        return f"{words} ({self.format})"


def check_request(request: ExportRequest) -> None:
    """Arguments that do not fit the report: BAD_USER_INPUT."""
    if request.report not in REPORTS:
        raise BadInput(f"report must be one of {', '.join(REPORTS)}", field="report")
    if request.format not in FORMATS:
        raise BadInput("format must be CSV or XLSX", field="format")
    if request.report == PROGRESS and request.group_id is None:
        raise BadInput("The progress report needs a group.", field="groupId")
    if request.report == PUPILS_WITHOUT_LICENCE and request.licence_type is None:
        raise BadInput("licenceType is required for this report.", field="licenceType")
    if request.licence_type is not None and request.licence_type not in LICENCE_TYPES:
        raise BadInput(f"licenceType must be one of {', '.join(LICENCE_TYPES)}.", field="licenceType")


def may_export(reach: Reach, request: ExportRequest) -> bool:
    """The permission alone (the group's existence is authorize's): EXPORT_GROUP on the group for the
    progress report; for the unassigned students in a scope, MANAGE_ACCOUNT on it; site admin for the rest."""
    if request.report == PROGRESS:
        return request.group_id is not None and reach.may_on_group(Permission.EXPORT_GROUP, request.group_id)
    if request.report == UNASSIGNED_STUDENTS and request.scope_group_id is not None:
        return reach.may_on_group(Permission.MANAGE_ACCOUNT, request.scope_group_id)
    return reach.is_admin


async def authorize(store: Store, reach: Reach, request: ExportRequest) -> str:
    """The file's name, once the caller may export this: NOT_FOUND for a group the caller may not see (as for
    one that does not exist) or a course that does not exist, FORBIDDEN without the permission."""
    if request.report == UNASSIGNED_STUDENTS:
        await _authorize_account_scope(store, reach, request.scope_group_id)
        check_request(request)
        return f"{FILE_NAMES[request.report]}.{request.format.lower()}"
    if request.report != PROGRESS:
        if not reach.is_admin:
            raise Forbidden("Site admins only.")
        check_request(request)
        return f"{FILE_NAMES[request.report]}.{request.format.lower()}"
    check_request(request)
    assert request.group_id is not None
    slug = await group_slug(store, request.group_id)
    if slug is None or not reach.sees_group(request.group_id):
        raise NotFound("No such group.", field="groupId")
    if not reach.may_on_group(Permission.EXPORT_GROUP, request.group_id):
        raise Forbidden("You may not export this group's progress.")
    if request.course_id is not None and not await course_exists(store, request.course_id):
        raise NotFound("No such course.", field="courseId")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", slug) + f"-progress.{request.format.lower()}"


async def _authorize_account_scope(store: Store, reach: Reach, scope_group_id: int | None) -> None:
    """A group the caller administers accounts in (MANAGE_ACCOUNT: a LEADER of it or of an ancestor),
    NOT_FOUND when they may not see it; none: the whole site, for site admins only."""
    if scope_group_id is None:
        if not reach.is_admin:
            raise BadInput("Give scopeGroupId: a group you lead.", field="scopeGroupId")
        return
    if await group_slug(store, scope_group_id) is None or not reach.sees_group(scope_group_id):
        raise NotFound("No such group.", field="scopeGroupId")
    if not reach.may_on_group(Permission.MANAGE_ACCOUNT, scope_group_id):
        raise Forbidden("You may not administer the accounts of this group.")


async def total_rows(store: Store, request: ExportRequest) -> int:
    if request.report == PROGRESS:
        return int(await store.scalar(count_statement(request.scope)))
    if request.report in (EXTERNAL_USERS, PUPILS_WITHOUT_LICENCE):
        return int(await store.scalar(gateway_count_statement(request.report, request.licence_type)))
    return int(await store.scalar(admin_count_statement(request.report, request.scope_group_id)))


# --- rows as cells ---------------------------------------------------------------------------------------


def progress_cells(row: ReportRow) -> Cells:
    return (
        row.first_name, row.last_name, row.email, row.company, row.group_name, row.course_name,
        row.activated_at, row.percent_completed, row.completed_at, row.expires_at,
    )


def progress_csv_row(row: ReportRow, when: Any) -> Cells:
    """progress_cells as CSV text, without csv_cell's per-value type dispatch (the export's hot loop)."""
    return (
        guard(row.first_name), guard(row.last_name), guard(row.email), guard(row.company or ""),
        guard(row.group_name), guard(row.course_name), when(row.activated_at) if row.activated_at else "",
        repr(row.percent_completed), when(row.completed_at) if row.completed_at else "",
        when(row.expires_at) if row.expires_at else "",
    )


def _joined(values: Sequence[str | None]) -> str:
    return "; ".join(dict.fromkeys(v for v in values if v))


def external_user_cells(rows: list[Any]) -> list[Any]:
    first = rows[0]
    pupils = [f"{r[9]} {r[10]}" for r in rows if r[9] is not None]
    return [
        first[0], first[1], first[2], first[3], first[4], first[5], "Yes" if first[6] else "No",
        "Allowed" if first[7] == "ACTIVE" else "Denied", first[8], _joined(pupils),
        _joined(sorted(r[11] for r in rows if r[11])),
    ]


def pupil_cells(rows: list[Any]) -> list[Any]:
    return [*rows[0][:5], _joined(sorted(r[5] for r in rows if r[5]))]


def csv_ready(request: ExportRequest) -> bool:
    """Whether row_chunks gives the rows already as CSV text (the progress CSV's fast path)."""
    return request.report == PROGRESS and request.format == "CSV"


async def row_chunks(store: Store, request: ExportRequest, chunk_rows: int) -> AsyncIterator[list[Cells]]:
    """Every row of the report as cells (typed values; CSV text when csv_ready), a chunk at a time."""
    if request.report == PROGRESS:
        if csv_ready(request):
            when = time_formatter(request.date_format)
            async for rows in report_chunks(store, request.scope, chunk_rows):
                yield [progress_csv_row(r, when) for r in rows]
        else:
            async for rows in report_chunks(store, request.scope, chunk_rows):
                yield [progress_cells(r) for r in rows]
    elif request.report == EXTERNAL_USERS:
        async for users in rows_by_user(store, external_users_statement(request.licence_type)):
            yield [external_user_cells(u) for u in users]
    elif request.report == PUPILS_WITHOUT_LICENCE:
        async for users in rows_by_user(store, pupils_without_licence_statement(request.licence_type or "")):
            yield [pupil_cells(u) for u in users]
    elif request.report == UNASSIGNED_STUDENTS:
        scope = request.scope_group_id

        def statement(after: int | None, limit: int) -> Any:
            return unassigned_students_statement(after, limit, scope)

        async for rows in id_chunks(store, statement, chunk_rows):
            yield [(*r[1:], "") for r in rows]
    else:
        statement = groups_statement if request.report == GROUPS else memberships_statement
        async for rows in id_chunks(store, statement, chunk_rows):
            yield list(rows)
