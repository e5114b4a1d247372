"""Group.progressReport: the rows of the progress export, keyset-paginated; and the export URLs."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from app.runtime import cursors
from app.runtime.errors import NotFound
from app.runtime.ids import require_id
from app.services.links import link_key, link_seconds_from_now, sign
from dataloaders.reports import ReportRow, ReportScope, course_exists, report_count, report_page
from permissions.filters import member_rows_visible
from permissions.reach import Permission
from resolvers.common import PageInfo, paging
from resolvers.enums import ExportFormat
from resolvers.views import UserType, prepare_users


@strawberry.type(description="One row of the group progress report (the analyst export).")
class ProgressReportRow:
    row: strawberry.Private[ReportRow]

    @strawberry.field
    async def user(self, info: Info) -> UserType:
        user = await info.context.loaders.users.by_id.load(self.row.user_id)
        return (await prepare_users(info, [user]))[0]

    @strawberry.field
    def first_name(self) -> str:
        return self.row.first_name

    @strawberry.field
    def last_name(self) -> str:
        return self.row.last_name

    @strawberry.field
    def email(self) -> str | None:
        return self.row.email

    @strawberry.field
    def company(self) -> str | None:
        return self.row.company

    @strawberry.field
    def group_name(self) -> str:
        return self.row.group_name

    @strawberry.field
    def course_name(self) -> str:
        return self.row.course_name

    @strawberry.field
    def activated_at(self) -> datetime | None:
        return self.row.activated_at

    @strawberry.field
    def percent_viewed(self) -> float:
        return self.row.percent_viewed

    @strawberry.field
    def percent_completed(self) -> float:
        return self.row.percent_completed

    @strawberry.field
    def completed_at(self) -> datetime | None:
        return self.row.completed_at

    @strawberry.field
    def expires_at(self) -> datetime | None:
        return self.row.expires_at


@strawberry.type
class ProgressReportEdge:
    cursor: str
    node: ProgressReportRow


@strawberry.type
class ProgressReportConnection:
    edges: list[ProgressReportEdge]
    page_info: PageInfo
    scope: strawberry.Private[ReportScope]

    @strawberry.field(description="Every row of the report (all pages).")
    async def total_count(self, info: Info) -> int:
        return await report_count(info.context.store, self.scope)


async def progress_report(
    info: Info, group_id: int, course_id: strawberry.ID | None, include_nested: bool, first: int | None,
    after: str | None, last: int | None = None, before: str | None = None, include_ended: bool = False,
) -> ProgressReportConnection:
    if first is None and last is None:
        first = 100
    pages = paging(info, "progressReport", (cursors.ID, cursors.ID, cursors.ID), first, after, last, before)
    course: int | None = None
    if course_id is not None:
        course = require_id(course_id, "Course", "courseId")
        if not await course_exists(info.context.store, course):
            raise NotFound("No such course.", field="courseId")
    reach = await info.context.load_reach()
    _, visible = member_rows_visible(reach, group_id, Permission.VIEW_PROGRESS)
    scope = ReportScope(group_id, include_nested, course, visible=visible, include_ended=include_ended)
    window = pages.window
    fetched = await report_page(
        info.context.store, scope, window.after, window.fetch, before=window.before, backward=window.backward
    )
    rows, made, page_info_ = pages.page(fetched, lambda r: r.key)
    return ProgressReportConnection(
        edges=[ProgressReportEdge(cursor=c, node=ProgressReportRow(row=r)) for c, r in zip(made, rows, strict=True)],
        page_info=page_info_,
        scope=scope,
    )


async def progress_export_url(info: Info, group_id: int, format: ExportFormat) -> str:
    """The download's path, signed for the caller (app.services.links)."""
    ctx = info.context
    key = await link_key(ctx.database, ctx.settings)
    path = f"/exports/groups/{group_id}/progress.{format.value.lower()}"
    return sign(key, path, {}, ctx.viewer_id, link_seconds_from_now(ctx.settings))
