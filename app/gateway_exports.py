"""External gateway exports (site admins): external-users.xlsx and pupils-without-licence.xlsx.

Rows are streamed from the database (`yield_per`) into an XlsxWriter workbook in constant-memory mode,
written to a temporary file (a workbook is whole only at close()), then streamed to the client. A sheet
holds at most 1,048,576 rows: past that the export is refused, never cut short.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any

import xlsxwriter
from sqlalchemy import Select, and_, exists, select
from sqlalchemy.orm import aliased
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from app.audit import record_export
from app.graphql_view import error_body
from app.imports import request_context
from app.models import GuardianLink, User

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MAX_SHEET_ROWS = 1_048_576
LICENCE_TYPES = ("PARENT_GUARDIAN", "PUPIL", "OTHER")
EXTERNAL_USER_COLUMNS = [
    "ID", "Title", "Surname", "First Name", "Email", "Account Created", "ADR", "Access", "Last Login",
    "Pupils", "Licence Types",
]
PUPIL_COLUMNS = ["ID", "Student ID", "First Name", "Surname", "Email", "Licence Types"]


class TooManyRows(Exception):
    pass


async def _admin_or_error(request: Request) -> Response | None:
    context = await request_context(request)
    if isinstance(context, Response):
        return context
    try:
        reach = await context.load_reach()
    finally:
        await context.store.close()
    if not reach.is_admin:
        return JSONResponse(error_body("FORBIDDEN", "Site admins only."), 403)
    request.state.viewer_id = context.viewer_id  # issue 9: for the audit event of the download
    return None


def _licence_type(request: Request, required: bool) -> str | Response | None:
    value = request.query_params.get("licenceType")
    if value is None and not required:
        return None
    if value not in LICENCE_TYPES:
        return JSONResponse(
            error_body("BAD_USER_INPUT", f"licenceType must be one of {', '.join(LICENCE_TYPES)}.", field="licenceType"),
            400,
        )
    return value


async def _grouped(request: Request, statement: Select[Any]) -> AsyncIterator[list[Any]]:
    """Rows of one user at a time (the statement orders by user id first): a streamed one-to-many join."""
    database = request.app.state.database
    async with database.session() as session:
        result = await session.stream(statement.execution_options(yield_per=1000))
        batch: list[Any] = []
        async for row in result:
            if batch and batch[0][0] != row[0]:
                yield batch
                batch = []
            batch.append(row)
        if batch:
            yield batch


async def _workbook_response(
    request: Request, filename: str, sheet: str, columns: Sequence[str], statement: Select[Any],
    to_cells: Callable[[list[Any]], list[Any]],
) -> Response:
    handle, path = tempfile.mkstemp(suffix=".xlsx")
    os.close(handle)
    try:
        workbook = xlsxwriter.Workbook(path, {"constant_memory": True, "remove_timezone": True})
        worksheet = workbook.add_worksheet(sheet)
        bold = workbook.add_format({"bold": True})
        when = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm"})
        worksheet.write_row(0, 0, columns, bold)
        line = 0
        async for rows in _grouped(request, statement):
            line += 1
            if line >= MAX_SHEET_ROWS:
                raise TooManyRows
            for column, value in enumerate(to_cells(rows)):
                if isinstance(value, datetime):
                    worksheet.write_datetime(line, column, value, when)
                elif value is not None:
                    worksheet.write(line, column, value)
        workbook.close()
        await record_export(
            request.app.state.database, getattr(request.state, "viewer_id", None), filename,
            rows=line, params=dict(request.query_params),
        )
    except TooManyRows:
        workbook.close()
        os.unlink(path)
        return JSONResponse(
            error_body("BAD_USER_INPUT", f"More than {MAX_SHEET_ROWS - 1} rows: narrow it with licenceType."), 422
        )
    except BaseException:
        os.unlink(path)
        raise
    return FileResponse(path, media_type=XLSX, filename=filename, background=BackgroundTask(os.unlink, path))


def _joined(values: Sequence[str | None]) -> str:
    return "; ".join(dict.fromkeys(v for v in values if v))


async def external_users(request: Request) -> Response:
    """ID, Title, Surname, First Name, Email, Account Created, ADR, Access, Last Login, Pupils, Licence Types;
    `?licenceType=` keeps the external users holding that licence type."""
    denied = await _admin_or_error(request)
    if denied is not None:
        return denied
    licence = _licence_type(request, required=False)
    if isinstance(licence, Response):
        return licence
    pupil = aliased(User)
    statement = (
        select(
            User.id, User.title, User.last_name, User.first_name, User.email, User.created_at,
            User.agreed_to_download_reports, User.status, User.last_login_at,
            pupil.first_name, pupil.last_name, GuardianLink.licence_type,
        )
        .outerjoin(GuardianLink, GuardianLink.external_user_id == User.id)
        .outerjoin(pupil, pupil.id == GuardianLink.pupil_id)
        .where(User.kind == "EXTERNAL")
        .order_by(User.id, GuardianLink.id)
    )
    if licence is not None:
        link = aliased(GuardianLink)  # not the joined one: the subquery must correlate on User only
        held = exists().where(link.external_user_id == User.id, link.licence_type == licence)
        statement = statement.where(held)

    def cells(rows: list[Any]) -> list[Any]:
        first = rows[0]
        pupils = [f"{r[9]} {r[10]}" for r in rows if r[9] is not None]
        return [
            first[0], first[1], first[2], first[3], first[4], first[5], "Yes" if first[6] else "No",
            "Allowed" if first[7] == "ACTIVE" else "Denied", first[8], _joined(pupils),
            _joined(sorted(r[11] for r in rows if r[11])),
        ]

    return await _workbook_response(
        request, "external-users.xlsx", "External users", EXTERNAL_USER_COLUMNS, statement, cells
    )


async def pupils_without_licence(request: Request) -> Response:
    """Learners with no holder of `?licenceType=` (required), with the licence types they do have."""
    denied = await _admin_or_error(request)
    if denied is not None:
        return denied
    licence = _licence_type(request, required=True)
    if isinstance(licence, Response):
        return licence
    link = aliased(GuardianLink)  # not the joined one: the subquery must correlate on User only
    held = exists().where(and_(link.pupil_id == User.id, link.licence_type == licence))
    statement = (
        select(User.id, User.external_id, User.first_name, User.last_name, User.email, GuardianLink.licence_type)
        .outerjoin(GuardianLink, GuardianLink.pupil_id == User.id)
        .where(User.kind == "LEARNER", ~held)
        .order_by(User.id, GuardianLink.id)
    )

    def cells(rows: list[Any]) -> list[Any]:
        first = rows[0]
        return [*first[:5], _joined(sorted(r[5] for r in rows if r[5]))]

    return await _workbook_response(
        request, "pupils-without-licence.xlsx", "Pupils without licence", PUPIL_COLUMNS, statement, cells
    )


routes = [
    Route("/exports/external-users.xlsx", external_users, methods=["GET"]),
    Route("/exports/pupils-without-licence.xlsx", pupils_without_licence, methods=["GET"]),
]
