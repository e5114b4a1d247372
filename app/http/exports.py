"""Streamed exports over HTTP, and the downloads of export jobs' files.

A download is authenticated like the GraphQL endpoint (session or API bearer tokens), or by a signed link
(app.services.links: `?u=..&exp=..&sig=..`, for a plain <a href> without a header); either way the decision
is the Reach's of that user as of this request, made by app.services.reports (the same catalogue the export
jobs use). Rows come in keyset-ordered chunks and are written as they arrive: a CSV is streamed chunk by
chunk (memory holds one chunk), except the progress CSV on PostgreSQL, which the server writes itself (COPY
of the same query, the same bytes, streamed through a bounded queue: CopyExport); an XLSX is written by
XlsxWriter in constant-memory mode to a temporary file (a workbook is whole only at close()) and then
streamed. Every download writes an audit event. Cells: app.services.sheets.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import anyio
from sqlalchemy import select
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from app.context import Context
from app.http.graphql_view import error_body
from app.http.imports import error_response, request_context
from app.runtime.errors import AppError, BadInput, NotFound
from app.runtime.ids import parse_global_id
from app.runtime.metrics import EXPORTS
from app.services.audit import audit
from app.services.auth import Credential
from app.services.export_jobs import DONE, EXPIRED, file_store
from app.services.links import BadLink, is_signed, link_key, verify
from app.services.reports import (
    COLUMNS,
    EXTERNAL_USERS,
    GROUPS,
    MEMBERSHIPS,
    PROGRESS,
    PUPILS_WITHOUT_LICENCE,
    SHEETS,
    TOO_MANY,
    UNASSIGNED_STUDENTS,
    ExportRequest,
    authorize,
    column_names,
    csv_ready,
    may_export,
    row_chunks,
)
from app.services.sheets import (
    MAX_SHEET_ROWS,
    RFC3339,
    SPREADSHEET,
    Cells,
    Column,
    CrlfLines,
    Sheet,
    TooManyRows,
    csv_header,
    csv_lines,
)
from app.store.models import ExportJob, ExportSchedule, User
from dataloaders.reports import ReportScope, copy_csv
from dataloaders.store import Store
from permissions.reach import Reach

CSV_TYPE = "text/csv; charset=utf-8"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MEDIA_TYPES = {"CSV": CSV_TYPE, "XLSX": XLSX}
__all__ = ["MAX_SHEET_ROWS", "CrlfLines", "TooManyRows"]


# --- writers ---------------------------------------------------------------------------------------------


NO_STORE = {"cache-control": "private, no-store"}  # personal data: kept by no cache, shared or not


def disposition(filename: str) -> dict[str, str]:
    return {"content-disposition": f'attachment; filename="{filename}"', **NO_STORE}


def csv_response(filename: str, body: AsyncIterator[bytes], on_close: Callable[[], Any] | None = None) -> Response:
    return StreamingResponse(
        body, media_type=CSV_TYPE, headers=disposition(filename),
        background=BackgroundTask(on_close) if on_close else None,
    )


async def workbook_response(
    filename: str, sheet: str, columns: Sequence[Column | str], chunks: AsyncIterator[Sequence[Cells]],
    too_many: str = "narrow the export",
) -> Response:
    """Write every chunk into a constant-memory workbook (in a worker thread, off the event loop), then
    stream the file. Past the sheet's row limit: 422, no file."""
    handle, path = tempfile.mkstemp(suffix=".xlsx")
    os.close(handle)
    try:
        book = Sheet(path, sheet, columns)
        try:
            async for rows in chunks:
                await anyio.to_thread.run_sync(book.write, rows)
        finally:
            await anyio.to_thread.run_sync(book.close)
    except TooManyRows:
        os.unlink(path)
        return JSONResponse(error_body("BAD_USER_INPUT", f"More than {MAX_SHEET_ROWS - 1} rows: {too_many}."), 422)
    except BaseException:
        os.unlink(path)
        raise
    return FileResponse(
        path, media_type=XLSX, filename=filename, headers=NO_STORE, background=BackgroundTask(os.unlink, path)
    )


# --- who may ---------------------------------------------------------------------------------------------


def forbidden(message: str) -> Response:
    return JSONResponse(error_body("FORBIDDEN", message), 403)


async def open_export(request: Request) -> tuple[Context, Reach] | Response:
    """The caller's Context and Reach, from a bearer token (when the header is sent) or a signed link; or the
    401 (no or invalid token) or 403 (a changed or expired link, an account no longer active) to send. The
    caller closes `context.store` when done."""
    params = list(request.query_params.multi_items())
    if "authorization" in request.headers or not is_signed(params):  # the header decides when it is sent
        context = await request_context(request)
        if isinstance(context, Response):
            return context
        return context, await context.load_reach()
    database, settings = request.app.state.database, request.app.state.settings
    try:
        user_id = verify(await link_key(database, settings), request.url.path, params)
    except BadLink as exc:
        return forbidden(str(exc))
    async with database.session() as session:
        user = await session.scalar(select(User).where(User.id == user_id))
        session.expunge_all()
    if user is None or user.status != "ACTIVE":
        return forbidden("This link is not valid.")
    context = Context(database, settings, Credential(user), request)
    return context, await context.load_reach()


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
    EXPORTS.labels(action, str(detail.get("format", "CSV"))).inc()


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


def date_format(request: Request) -> str:
    """`?dateFormat=spreadsheet` (YYYY-MM-DD HH:MM:SS, UTC) or `rfc3339` (the default: ...T...Z)."""
    value = request.query_params.get("dateFormat", RFC3339).strip().upper()
    if value not in (RFC3339, SPREADSHEET):
        raise BadInput("dateFormat must be rfc3339 or spreadsheet", field="dateFormat")
    return value


# --- the progress CSV written by PostgreSQL (COPY) ---------------------------------------------------------

# Blocks of COPY output held between database and client. asyncpg hands over what it has read: ~8 kB each,
# at most ~90 kB seen in a 950,000-row export (coalescing them into bigger writes gained nothing).
COPY_QUEUE_BLOCKS = 4


class CopyExport:
    """The progress CSV from `COPY (the report query) TO STDOUT`, the same bytes as csv_lines over
    report_chunks. A task runs the COPY and puts each block into a bounded queue; the response body takes
    them out. While the queue is full, the task waits, asyncpg reads no more from the socket and the server
    waits: memory holds at most COPY_QUEUE_BLOCKS blocks whatever the row count. A COPY that fails raises in
    the body (the response is cut short, never ended as if complete). close() (the body's end, and the
    response's background task after a client disconnect) stops the COPY and closes the store."""

    def __init__(
        self, store: Store, scope: ReportScope, queue_blocks: int = COPY_QUEUE_BLOCKS, spreadsheet: bool = False
    ) -> None:
        self.store = store
        self.scope = scope
        self.spreadsheet = spreadsheet
        self.blocks: asyncio.Queue[bytes | bytearray | Exception | None] = asyncio.Queue(queue_blocks)
        self.task: asyncio.Task[None] | None = None

    async def _copy(self) -> None:
        try:
            await copy_csv(self.store, self.scope, self.blocks.put, self.spreadsheet)
        except Exception as exc:  # the body raises it
            await self.blocks.put(exc)
        else:
            await self.blocks.put(None)

    async def body(self) -> AsyncIterator[bytes]:
        try:
            self.task = asyncio.create_task(self._copy())
            yield csv_header(column_names(PROGRESS))
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


ACTIONS = {
    PROGRESS: "export.progress", GROUPS: "export.groups", MEMBERSHIPS: "export.memberships",
    UNASSIGNED_STUDENTS: "export.unassigned_active_students", EXTERNAL_USERS: "export.external_users",
    PUPILS_WITHOUT_LICENCE: "export.pupils_without_licence",
}


async def stream_export(context: Context, export: ExportRequest, filename: str) -> Response:
    """The file, streamed as it is read (CSV) or once written (XLSX). Closes the store when done."""
    store = context.store
    if export.format == "CSV" and csv_ready(export) and context.settings.export_use_copy and store.dialect == "postgresql":
        copy = CopyExport(store, export.scope, spreadsheet=export.date_format == SPREADSHEET)
        return csv_response(filename, copy.body(), copy.close)

    async def chunks() -> AsyncIterator[Sequence[Cells]]:
        try:
            async for rows in row_chunks(store, export, context.settings.export_chunk_rows):
                yield rows
        finally:
            await store.close()

    if export.format == "CSV":
        body = csv_lines(column_names(export.report), chunks(), csv_ready(export), export.date_format)
        return csv_response(filename, body, store.close)
    try:
        return await workbook_response(
            filename, SHEETS[export.report], COLUMNS[export.report], chunks(),
            TOO_MANY.get(export.report, "narrow the export"),
        )
    finally:
        await store.close()


async def serve(request: Request, parse: Callable[[Request], ExportRequest]) -> Response:
    """Who the caller is, what they ask for (`parse`: BAD_USER_INPUT for a bad parameter), whether they may
    (403/404), an audit event, then the file."""
    opened = await open_export(request)
    if isinstance(opened, Response):
        return opened
    context, reach = opened
    try:
        export = parse(request)
        filename = await authorize(context.store, reach, export)
    except AppError as exc:
        await context.store.close()
        return error_response(exc)
    if export.report == PROGRESS:
        target: tuple[str, int | None] = ("group", export.group_id)
        detail: dict[str, Any] = {
            "include_nested": export.include_nested, "course_id": export.course_id,
            "include_ended": export.include_ended,
        }
    elif export.scope_group_id is not None:
        target, detail = ("group", export.scope_group_id), {}
    else:
        target, detail = ("export", None), {}
    if export.licence_type is not None:
        detail["licence_type"] = export.licence_type
    await record_download(context, ACTIONS[export.report], *target, format=export.format, **detail)
    return await stream_export(context, export, filename)


def _admin(report: str, format: str) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        return await serve(request, lambda r: ExportRequest(report, format, date_format(r)))

    return endpoint


def _unassigned(request: Request) -> ExportRequest:
    """`?scopeGroupId=`: the accounts homed under a group the caller administers (required but for admins)."""
    raw = (request.query_params.get("scopeGroupId") or "").strip()
    scope = database_id(raw, "Group", "scopeGroupId") if raw else None
    return ExportRequest(UNASSIGNED_STUDENTS, "CSV", date_format(request), scope_group_id=scope)


async def unassigned_active_students(request: Request) -> Response:
    """Goes back into the importer (student_id, groups) once `groups` is filled in."""
    return await serve(request, _unassigned)


def _progress(format: str) -> Callable[[Request], Any]:
    def parse(request: Request) -> ExportRequest:
        group_id = database_id(request.path_params["id"], "Group", "id")
        include_nested = flag(request, "includeNested", True)
        raw_course = request.query_params.get("courseId")
        course_id = database_id(raw_course, "Course", "courseId") if raw_course is not None else None
        include_ended = flag(request, "includeEnded", False)  # ended memberships too: history of learners who left
        return ExportRequest(
            PROGRESS, format, date_format(request), group_id, course_id, include_nested, include_ended=include_ended
        )

    async def endpoint(request: Request) -> Response:
        return await serve(request, parse)

    return endpoint


def gateway_endpoint(report: str) -> Callable[[Request], Any]:
    """The gateway's XLSX files; `?licenceType=` narrows external users (and is required for the pupils)."""

    def parse(request: Request) -> ExportRequest:
        return ExportRequest(report, "XLSX", RFC3339, licence_type=request.query_params.get("licenceType"))

    async def endpoint(request: Request) -> Response:
        return await serve(request, parse)

    return endpoint


# --- export jobs' files ------------------------------------------------------------------------------------


async def job_file(request: Request) -> Response:
    """The file of a DONE export job, for its owner, a recipient of its schedule or a site admin who may
    still export the report: 404 for a job the caller may not see, 410 once the file was deleted, 409 while
    it is not written yet."""
    opened = await open_export(request)
    if isinstance(opened, Response):
        return opened
    context, reach = opened
    try:
        job_id = database_id(request.path_params["id"], "ExportJob", "id")
        async with context.database.session() as session:
            job = await session.get(ExportJob, job_id)
            schedule = await session.get(ExportSchedule, job.schedule_id) if job and job.schedule_id else None
        viewer = context.viewer_id
        recipient = schedule is not None and viewer in json.loads(schedule.recipient_ids)
        if job is None or not (job.owner_id == viewer or recipient or reach.is_admin):
            return error_response(NotFound("No such export job.", field="id"))
        if job.status == EXPIRED:
            return JSONResponse(error_body("NOT_FOUND", "The file was deleted after the retention period."), 410)
        if job.status != DONE or not job.file_key:
            return JSONResponse(error_body("CONFLICT", f"The export is {job.status}: there is no file yet."), 409)
        if not may_export(reach, ExportRequest.from_json(job.params)):
            return forbidden("You may no longer export this report.")
        await record_download(context, "export.job_download", "export_job", job.id, format=job.format)
    except AppError as exc:
        return error_response(exc)
    finally:
        await context.store.close()
    files = file_store(context.settings)
    if not await files.exists(job.file_key):
        return JSONResponse(error_body("NOT_FOUND", "The file was deleted after the retention period."), 410)
    headers = disposition(job.file_name or f"export-{job.id}.{job.format.lower()}")
    if job.file_bytes is not None:
        headers["content-length"] = str(job.file_bytes)
    return StreamingResponse(files.chunks(job.file_key), media_type=MEDIA_TYPES[job.format], headers=headers)


routes = [
    Route("/exports/groups.csv", _admin(GROUPS, "CSV"), methods=["GET"]),
    Route("/exports/memberships.csv", _admin(MEMBERSHIPS, "CSV"), methods=["GET"]),
    Route("/exports/unassigned-active-students.csv", unassigned_active_students, methods=["GET"]),
    Route("/exports/groups/{id}/progress.csv", _progress("CSV"), methods=["GET"]),
    Route("/exports/groups/{id}/progress.xlsx", _progress("XLSX"), methods=["GET"]),
    Route("/exports/jobs/{id}/file", job_file, methods=["GET"]),
]
