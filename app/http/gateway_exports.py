"""External gateway exports (site admins): external-users.xlsx, pupils-without-licence.xlsx and
pupils-with-licence.xlsx.

Rows are streamed from the database (`yield_per`) into the shared constant-memory workbook writer
(app.http.exports): a temporary file, then streamed to the client. A sheet holds at most 1,048,576 rows: past
that the export is refused, never cut short.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from sqlalchemy import Select, and_, exists, select
from sqlalchemy.orm import aliased
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.http.exports import open_export, record_download, workbook_response
from app.http.graphql_view import error_body
from app.store.models import GuardianLink, User

LICENCE_TYPES = ("PARENT_GUARDIAN", "PUPIL", "OTHER")
EXTERNAL_USER_COLUMNS = [
    "ID", "Title", "Surname", "First Name", "Email", "Account Created", "ADR", "Access", "Last Login",
    "Pupils", "Licence Types",
]
PUPIL_COLUMNS = ["ID", "Student ID", "First Name", "Surname", "Email", "Licence Types"]


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


async def _workbook(
    request: Request, filename: str, sheet: str, columns: Sequence[str], statement: Select[Any],
    to_cells: Callable[[list[Any]], list[Any]],
) -> Response:
    async def chunks() -> AsyncIterator[list[list[Any]]]:
        batch: list[list[Any]] = []
        async for rows in _grouped(request, statement):
            batch.append(to_cells(rows))
            if len(batch) >= 1000:
                yield batch
                batch = []
        if batch:
            yield batch

    return await workbook_response(filename, sheet, columns, chunks(), "narrow it with licenceType")


async def _admin_download(request: Request, action: str, required: bool) -> str | Response | None:
    """The licenceType parameter once the caller is known to be a site admin (401/403/400 otherwise);
    the download is audited."""
    opened = await open_export(request, admin_only=True)
    if isinstance(opened, Response):
        return opened
    context, _ = opened
    try:
        licence = _licence_type(request, required)
        if not isinstance(licence, Response):
            await record_download(context, action, "export", None, format="XLSX", licence_type=licence)
    finally:
        await context.store.close()
    return licence


def _joined(values: Sequence[str | None]) -> str:
    return "; ".join(dict.fromkeys(v for v in values if v))


async def external_users(request: Request) -> Response:
    """ID, Title, Surname, First Name, Email, Account Created, ADR, Access, Last Login, Pupils, Licence Types;
    `?licenceType=` keeps the external users holding that licence type."""
    licence = await _admin_download(request, "export.external_users", required=False)
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

    return await _workbook(
        request, "external-users.xlsx", "External users", EXTERNAL_USER_COLUMNS, statement, cells
    )


async def pupils_without_licence(request: Request) -> Response:
    """Learners with no holder of `?licenceType=` (required), with the licence types they do have."""
    licence = await _admin_download(request, "export.pupils_without_licence", required=True)
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

    return await _workbook(
        request, "pupils-without-licence.xlsx", "Pupils without licence", PUPIL_COLUMNS, statement, cells
    )


async def pupils_with_licence(request: Request) -> Response:
    """Learners who have a linked holder of `?licenceType=` (required), with every licence type they have: the
    other half of pupils-without-licence.xlsx, with the same columns."""
    licence = await _admin_download(request, "export.pupils_with_licence", required=True)
    if isinstance(licence, Response):
        return licence
    link = aliased(GuardianLink)  # not the joined one: the subquery must correlate on User only
    held = exists().where(and_(link.pupil_id == User.id, link.licence_type == licence))
    statement = (
        select(User.id, User.external_id, User.first_name, User.last_name, User.email, GuardianLink.licence_type)
        .outerjoin(GuardianLink, GuardianLink.pupil_id == User.id)
        .where(User.kind == "LEARNER", held)
        .order_by(User.id, GuardianLink.id)
    )

    def cells(rows: list[Any]) -> list[Any]:
        first = rows[0]
        return [*first[:5], _joined(sorted(r[5] for r in rows if r[5]))]

    return await _workbook(request, "pupils-with-licence.xlsx", "Pupils with licence", PUPIL_COLUMNS, statement, cells)


routes = [
    Route("/exports/external-users.xlsx", external_users, methods=["GET"]),
    Route("/exports/pupils-without-licence.xlsx", pupils_without_licence, methods=["GET"]),
    Route("/exports/pupils-with-licence.xlsx", pupils_with_licence, methods=["GET"]),
]
