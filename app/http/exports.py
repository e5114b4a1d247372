"""Streamed exports over HTTP, and the pieces every export shares (the gateway's XLSX exports too).

Authentication is the GraphQL endpoint's (session or API bearer tokens), decisions are the Reach's.
Rows come from dataloaders/reports.py in keyset-ordered chunks and are written as they arrive: a CSV is
streamed chunk by chunk (memory holds one chunk), except the progress CSV on PostgreSQL, which the server
writes itself (COPY of the same query, the same bytes, streamed through a bounded queue: CopyExport); an
XLSX is written by XlsxWriter in constant-memory mode to a temporary file (a workbook is whole only at
close()) and then streamed. Every download writes an audit event. CSV is RFC 4180 (CRLF, minimal quoting), UTF-8 without BOM, ISO 8601 UTC times, and text
cells starting with = + - @ are prefixed with ' (formula-injection guard); XLSX text cells are written
as strings, never as formulas.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import anyio
import xlsxwriter
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from app.context import Context
from app.http.graphql_view import error_body
from app.http.imports import error_response, request_context
from app.runtime.errors import AppError, BadInput, Forbidden, NotFound
from app.runtime.ids import parse_global_id
from app.services.audit import audit
from dataloaders.reports import (
    ReportRow,
    ReportScope,
    copy_csv,
    course_exists,
    groups_statement,
    id_chunks,
    memberships_statement,
    report_chunks,
    unassigned_students_statement,
)
from dataloaders.store import Store
from permissions.reach import Permission, Reach

CSV_TYPE = "text/csv; charset=utf-8"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MAX_SHEET_ROWS = 1_048_576

GROUP_COLUMNS = [
    "Group ID", "Group Name", "Slug", "Description", "Created At", "Parent Group ID", "Parent Group Name",
]
MEMBERSHIP_COLUMNS = [
    "Membership ID", "User ID", "First Name", "Last Name", "Email", "Group ID", "Group Name", "Role",
    "Group Parent ID", "Membership Created At",
]
PROGRESS_COLUMNS = [
    "Student First Name", "Student Last Name", "Student Email", "Company", "Group Name", "Course Name",
    "Activated At", "% Completed", "Completed Date", "Expiry Date",
]
UNASSIGNED_COLUMNS = ["student_id", "first_name", "last_name", "email", "usage_minutes", "groups"]

Cells = Sequence[Any]


class TooManyRows(Exception):
    pass


# --- cells ---------------------------------------------------------------------------------------------


def guard(text: str) -> str:
    """Spreadsheets run a cell starting with = + - @ as a formula: make it text."""
    return "'" + text if text and text[0] in "=+-@" else text


def iso(value: datetime) -> str:
    """ISO 8601 in UTC; stored times are UTC (naive ones read back from SQLite too)."""
    if value.tzinfo is UTC:
        return value.isoformat(timespec="seconds")[:-6] + "Z"
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="seconds") + "Z"


def csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str):
        return guard(value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return value


def naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


# --- writers ---------------------------------------------------------------------------------------------


def csv_header(columns: Sequence[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(columns)
    return buffer.getvalue().encode()


async def csv_lines(
    columns: Sequence[str], chunks: AsyncIterator[Sequence[Cells]], preformatted: bool = False
) -> AsyncIterator[bytes]:
    """The header, then one encoded block per chunk of rows (cells formatted by csv_cell unless the rows
    come `preformatted`, guarded and as text)."""
    yield csv_header(columns)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    async for rows in chunks:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(rows if preformatted else ([csv_cell(v) for v in row] for row in rows))
        yield buffer.getvalue().encode()


def disposition(filename: str) -> dict[str, str]:
    return {"content-disposition": f'attachment; filename="{filename}"'}


def csv_response(filename: str, body: AsyncIterator[bytes], on_close: Callable[[], Any] | None = None) -> Response:
    return StreamingResponse(
        body, media_type=CSV_TYPE, headers=disposition(filename),
        background=BackgroundTask(on_close) if on_close else None,
    )


class _Sheet:
    def __init__(self, path: str, sheet: str, columns: Sequence[str]) -> None:
        self.workbook = xlsxwriter.Workbook(path, {"constant_memory": True, "remove_timezone": True})
        self.worksheet = self.workbook.add_worksheet(sheet)
        self.when = self.workbook.add_format({"num_format": "yyyy-mm-dd hh:mm"})
        self.worksheet.write_row(0, 0, columns, self.workbook.add_format({"bold": True}))
        self.line = 0

    def write(self, rows: Sequence[Cells]) -> None:
        sheet, when = self.worksheet, self.when
        for row in rows:
            self.line += 1
            if self.line >= MAX_SHEET_ROWS:
                raise TooManyRows
            for column, value in enumerate(row):
                if value is None or value == "":
                    continue
                if isinstance(value, str):
                    sheet.write_string(self.line, column, value)
                elif isinstance(value, datetime):
                    sheet.write_datetime(self.line, column, naive_utc(value), when)
                elif isinstance(value, bool):
                    sheet.write_boolean(self.line, column, value)
                else:
                    sheet.write_number(self.line, column, value)


async def workbook_response(
    filename: str, sheet: str, columns: Sequence[str], chunks: AsyncIterator[Sequence[Cells]],
    too_many: str = "narrow the export",
) -> Response:
    """Write every chunk into a constant-memory workbook (in a worker thread, off the event loop), then
    stream the file. Past the sheet's row limit: 422, no file."""
    handle, path = tempfile.mkstemp(suffix=".xlsx")
    os.close(handle)
    try:
        book = _Sheet(path, sheet, columns)
        try:
            async for rows in chunks:
                await anyio.to_thread.run_sync(book.write, rows)
        finally:
            await anyio.to_thread.run_sync(book.workbook.close)
    except TooManyRows:
        os.unlink(path)
        return JSONResponse(error_body("BAD_USER_INPUT", f"More than {MAX_SHEET_ROWS - 1} rows: {too_many}."), 422)
    except BaseException:
        os.unlink(path)
        raise
    return FileResponse(path, media_type=XLSX, filename=filename, background=BackgroundTask(os.unlink, path))


# --- who may ---------------------------------------------------------------------------------------------


async def open_export(request: Request, admin_only: bool = False) -> tuple[Context, Reach] | Response:
    """The caller's Context and Reach; or the 401 (no/invalid token) or 403 (admin_only) to send.
    The caller closes `context.store` when done."""
    context = await request_context(request)
    if isinstance(context, Response):
        return context
    reach = await context.load_reach()
    if admin_only and not reach.is_admin:
        await context.store.close()
        return JSONResponse(error_body("FORBIDDEN", "Site admins only."), 403)
    return context, reach


async def record_download(context: Context, action: str, target_type: str, target_id: int | None, **detail: Any) -> None:
    """One audit event per download, in its own short transaction (the rows are read afterwards). If it
    fails, the request's session is closed here: the caller's stream never starts to close it, and on
    PostgreSQL its open read transaction would hold table locks until garbage collection."""
    try:
        async with context.database.transaction() as session:
            audit(session, context.viewer_id, action, target_type, target_id, **detail)
    except BaseException:
        await context.store.close()
        raise


def database_id(value: str, kind: str, field: str) -> int:
    """A database id ("12") or the global id of a `kind` object."""
    if value.isdigit():
        number = int(value)
        if 0 < number <= 2**31 - 1:
            return number
        raise BadInput(f"'{value}' is not a valid id", field=field)
    type_name, number = parse_global_id(value, field)
    if type_name != kind:
        raise BadInput(f"'{value}' is not a {kind} id", field=field)
    return number


def flag(request: Request, name: str, default: bool) -> bool:
    value = request.query_params.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise BadInput(f"{name} must be true or false", field=name)


# --- the admin CSV exports ---------------------------------------------------------------------------------


async def _admin_csv(
    request: Request, filename: str, action: str, columns: Sequence[str],
    statement: Callable[[int | None, int], Any], to_cells: Callable[[Any], Cells] | None = None,
) -> Response:
    opened = await open_export(request, admin_only=True)
    if isinstance(opened, Response):
        return opened
    context, _ = opened
    await record_download(context, action, "export", None, format="CSV")

    async def chunks() -> AsyncIterator[Sequence[Cells]]:
        try:
            async for rows in id_chunks(context.store, statement, context.settings.export_chunk_rows):
                yield [to_cells(r) for r in rows] if to_cells else rows
        finally:
            await context.store.close()

    return csv_response(filename, csv_lines(columns, chunks()), context.store.close)


async def groups_csv(request: Request) -> Response:
    return await _admin_csv(request, "groups.csv", "export.groups", GROUP_COLUMNS, groups_statement)


async def memberships_csv(request: Request) -> Response:
    return await _admin_csv(request, "memberships.csv", "export.memberships", MEMBERSHIP_COLUMNS, memberships_statement)


async def _account_scope(request: Request, context: Context, reach: Reach) -> int | None:
    """`?scopeGroupId=`: a group the caller administers accounts in (MANAGE_ACCOUNT: a LEADER of it or of an
    ancestor), NOT_FOUND when they may not see it; none: the whole site, for site admins only."""
    raw = request.query_params.get("scopeGroupId")
    if raw is None or not raw.strip():
        if not reach.is_admin:
            raise BadInput("Give scopeGroupId: a group you lead.", field="scopeGroupId")
        return None
    group_id = database_id(raw.strip(), "Group", "scopeGroupId")
    group = await context.loaders.groups.by_id.load(group_id)
    if group is None or not reach.sees_group(group_id):
        raise NotFound("No such group.", field="scopeGroupId")
    if not reach.may_on_group(Permission.MANAGE_ACCOUNT, group_id):
        raise Forbidden("You may not administer the accounts of this group.")
    return group_id


async def unassigned_active_students_csv(request: Request) -> Response:
    """Goes back into the importer (student_id, groups) once `groups` is filled in. Site admins: the whole
    site or a scope; a LEADER: the accounts homed under a group they lead (`?scopeGroupId=`, required)."""
    opened = await open_export(request)
    if isinstance(opened, Response):
        return opened
    context, reach = opened
    try:
        scope = await _account_scope(request, context, reach)
    except AppError as exc:
        await context.store.close()
        return error_response(exc)
    await record_download(
        context, "export.unassigned_active_students", "group" if scope else "export", scope, format="CSV"
    )

    def statement(after: int | None, limit: int) -> Any:
        return unassigned_students_statement(after, limit, scope)

    async def chunks() -> AsyncIterator[Sequence[Cells]]:
        try:
            async for rows in id_chunks(context.store, statement, context.settings.export_chunk_rows):
                yield [(*r[1:], "") for r in rows]
        finally:
            await context.store.close()

    return csv_response("unassigned-active-students.csv", csv_lines(UNASSIGNED_COLUMNS, chunks()), context.store.close)


# --- the group progress export ------------------------------------------------------------------------------


def progress_cells(row: ReportRow) -> Cells:
    return (
        row.first_name, row.last_name, row.email, row.company, row.group_name, row.course_name,
        row.activated_at, row.percent_completed, row.completed_at, row.expires_at,
    )


def progress_csv_row(row: ReportRow) -> Cells:
    """progress_cells as CSV text, without csv_cell's per-value type dispatch (the export's hot loop)."""
    return (
        guard(row.first_name), guard(row.last_name), guard(row.email), guard(row.company or ""),
        guard(row.group_name), guard(row.course_name), iso(row.activated_at) if row.activated_at else "",
        repr(row.percent_completed), iso(row.completed_at) if row.completed_at else "",
        iso(row.expires_at) if row.expires_at else "",
    )


# --- the progress CSV written by PostgreSQL (COPY) ---------------------------------------------------------

# Blocks of COPY output held between database and client. asyncpg hands over what it has read: ~8 kB each,
# at most ~90 kB seen in a 950,000-row export (coalescing them into bigger writes gained nothing).
COPY_QUEUE_BLOCKS = 4


class CrlfLines:
    """COPY ends each row with LF; RFC 4180, and the Python path, end them with CRLF. An LF inside a quoted
    field (a name with a line break) stays as it is: a byte is inside quotes when an odd number of quote
    characters precede it in the stream (a doubled quote inside a field counts twice), so the state carried
    from one block to the next is that parity."""

    def __init__(self) -> None:
        self.quoted = False

    def __call__(self, block: bytes | bytearray) -> bytes:
        if b'"' not in block:
            return bytes(block) if self.quoted else bytes(block.replace(b"\n", b"\r\n"))
        pieces = bytes(block).split(b'"')
        outside = 1 if self.quoted else 0
        pieces[outside::2] = [piece.replace(b"\n", b"\r\n") for piece in pieces[outside::2]]
        if len(pieces) % 2 == 0:  # an odd number of quotes
            self.quoted = not self.quoted
        return b'"'.join(pieces)


class CopyExport:
    """The progress CSV from `COPY (the report query) TO STDOUT`, the same bytes as csv_lines over
    report_chunks. A task runs the COPY and puts each block into a bounded queue; the response body takes
    them out. While the queue is full, the task waits, asyncpg reads no more from the socket and the server
    waits: memory holds at most COPY_QUEUE_BLOCKS blocks whatever the row count. A COPY that fails raises in
    the body (the response is cut short, never ended as if complete). close() (the body's end, and the
    response's background task after a client disconnect) stops the COPY and closes the store."""

    def __init__(self, store: Store, scope: ReportScope, queue_blocks: int = COPY_QUEUE_BLOCKS) -> None:
        self.store = store
        self.scope = scope
        self.blocks: asyncio.Queue[bytes | bytearray | Exception | None] = asyncio.Queue(queue_blocks)
        self.task: asyncio.Task[None] | None = None

    async def _copy(self) -> None:
        try:
            await copy_csv(self.store, self.scope, self.blocks.put)
        except Exception as exc:  # the body raises it
            await self.blocks.put(exc)
        else:
            await self.blocks.put(None)

    async def body(self) -> AsyncIterator[bytes]:
        try:
            self.task = asyncio.create_task(self._copy())
            yield csv_header(PROGRESS_COLUMNS)
            lines = CrlfLines()
            while (block := await self.blocks.get()) is not None:
                if isinstance(block, Exception):
                    raise block
                yield lines(block)
        finally:
            await self.close()

    async def close(self) -> None:
        """Idempotent. A COPY still running is cancelled (asyncpg asks the server to cancel it) and waited
        for, as it holds the store; then the store is closed (its transaction ended, the connection back)."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.wait([self.task])
        await self.store.close()


async def _progress_scope(request: Request, context: Context, reach: Reach) -> tuple[ReportScope, str]:
    group_id = database_id(request.path_params["id"], "Group", "id")
    group = await context.loaders.groups.by_id.load(group_id)
    if group is None or not reach.sees_group(group_id):
        raise NotFound("No such group.", field="id")
    if not reach.may_on_group(Permission.EXPORT_GROUP, group_id):
        raise Forbidden("You may not export this group's progress.")
    include_nested = flag(request, "includeNested", True)
    course_id = None
    raw_course = request.query_params.get("courseId")
    if raw_course is not None:
        course_id = database_id(raw_course, "Course", "courseId")
        if not await course_exists(context.store, course_id):
            raise NotFound("No such course.", field="courseId")
    return ReportScope(group_id, include_nested, course_id), group.slug


async def _progress(request: Request, format: str) -> Response:
    opened = await open_export(request)
    if isinstance(opened, Response):
        return opened
    context, reach = opened
    try:
        scope, slug = await _progress_scope(request, context, reach)
    except AppError as exc:
        await context.store.close()
        return error_response(exc)
    await record_download(
        context, "export.progress", "group", scope.group_id, format=format, include_nested=scope.include_nested,
        course_id=scope.course_id,
    )
    filename = re.sub(r"[^A-Za-z0-9._-]+", "-", slug) + f"-progress.{format.lower()}"
    if format == "CSV" and context.settings.export_use_copy and context.store.dialect == "postgresql":
        export = CopyExport(context.store, scope)
        return csv_response(filename, export.body(), export.close)

    chunk_rows = context.settings.export_chunk_rows
    cells = progress_csv_row if format == "CSV" else progress_cells

    async def chunks() -> AsyncIterator[Sequence[Cells]]:
        try:
            async for rows in report_chunks(context.store, scope, chunk_rows):
                yield [cells(r) for r in rows]
        finally:
            await context.store.close()

    if format == "CSV":
        return csv_response(filename, csv_lines(PROGRESS_COLUMNS, chunks(), preformatted=True), context.store.close)
    try:
        return await workbook_response(
            filename, "Progress", PROGRESS_COLUMNS, chunks(), "export one course at a time (courseId)"
        )
    finally:
        await context.store.close()


async def progress_csv(request: Request) -> Response:
    return await _progress(request, "CSV")


async def progress_xlsx(request: Request) -> Response:
    return await _progress(request, "XLSX")


routes = [
    Route("/exports/groups.csv", groups_csv, methods=["GET"]),
    Route("/exports/memberships.csv", memberships_csv, methods=["GET"]),
    Route("/exports/unassigned-active-students.csv", unassigned_active_students_csv, methods=["GET"]),
    Route("/exports/groups/{id}/progress.csv", progress_csv, methods=["GET"]),
    Route("/exports/groups/{id}/progress.xlsx", progress_xlsx, methods=["GET"]),
]
