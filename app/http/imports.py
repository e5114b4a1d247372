"""POST /imports/group-assignments: the CSV importer for tools that send `text/csv` (the same code as the
importGroupAssignments mutation). `?dryRun=true` validates only; `?scopeGroupId=` homes new accounts. 200 with the report when every row is
valid, 422 with the report (errors with line and column) when not, 413 over the byte or row limit."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.context import Context
from app.http.graphql_view import credential_for, error_body, signed_in_store
from app.runtime.errors import AppError
from app.runtime.ids import require_id
from app.services.cookies import has_csrf_header, session_cookie
from app.services.importer import import_group_assignments, read_limited
from app.services.rostering import run_import
from dataloaders.store import Store

CSV_TYPES = ("text/csv", "application/csv")
ZIP_TYPES = ("application/zip", "application/x-zip-compressed", "application/octet-stream")


async def request_context(request: Request, write: bool = False) -> Context | Response:
    """A Context for a bearer-authenticated request, or the 401 response to send instead."""
    database = request.app.state.database
    store: Store | None = None
    if write:  # an upload writes: the sign-in is read apart, so that its store begins as a writer (SQLite)
        credential = await credential_for(request, database)
    else:  # read through the request's own store: one checkout
        credential, store, _reach = await signed_in_store(request, database)
    if not credential:
        if store is not None:
            await store.close()
        return JSONResponse(
            error_body("UNAUTHENTICATED", "Send a valid 'Authorization: Bearer <token>' header."),
            401,
            headers={"www-authenticate": "Bearer"},
        )
    if request.method == "POST" and session_cookie(request) is not None and not has_csrf_header(request):
        if store is not None:
            await store.close()
        return JSONResponse(
            error_body("FORBIDDEN", "A request signed in by the session cookie needs an 'X-CSRF-Token' header."), 403
        )
    context = Context(database, request.app.state.settings, credential, request, store=store)
    context.store.write = write
    return context


def error_response(exc: AppError) -> Response:
    extensions = {k: v for k, v in (exc.extensions or {}).items() if k != "code"}
    return JSONResponse(error_body(exc.code, exc.message, **extensions), exc.http_status)


async def open_upload(request: Request, media_types: tuple[str, ...], wrong_type: str) -> tuple[Context, bool] | Response:
    """What every upload checks first: its media type (415), its declared size (413), the caller (401, or 403
    without the CSRF header on a cookie session); then the request's context and `?dryRun`."""
    settings = request.app.state.settings
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in media_types:
        return JSONResponse(error_body("BAD_USER_INPUT", wrong_type), 415)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > settings.max_upload_bytes:
        return JSONResponse(
            error_body("BAD_USER_INPUT", f"The file is over the limit of {settings.max_upload_bytes} bytes.", field="file"),
            413,
        )
    context = await request_context(request, write=True)
    if isinstance(context, Response):
        return context
    return context, request.query_params.get("dryRun", "false").strip().lower() in ("1", "true", "yes")


async def group_assignments(request: Request) -> Response:
    opened = await open_upload(request, CSV_TYPES, "Send the file with 'Content-Type: text/csv'.")
    if isinstance(opened, Response):
        return opened
    context, dry_run = opened
    raw_scope = (request.query_params.get("scopeGroupId") or "").strip()
    try:
        scope = (int(raw_scope) if raw_scope.isdigit() else require_id(raw_scope, "Group", "scopeGroupId")) if raw_scope else None
        result = await import_group_assignments(
            context.store, context.settings, await context.load_reach(), context.viewer_id, request.stream(), dry_run,
            source="http", scope_group_id=scope,
        )
    except AppError as exc:
        return error_response(exc)
    finally:
        await context.store.close()
    return JSONResponse(result.as_json(), 422 if result.errors else 200)


routes = [Route("/imports/group-assignments", group_assignments, methods=["POST"])]



async def oneroster(request: Request) -> Response:
    """POST /imports/oneroster: a OneRoster CSV bundle (zip body), as importOneRoster. Site admins (or their API
    tokens) only. 200 with the run (APPLIED, DRY_RUN), 202 when HELD, 422 when FAILED (errors with file,
    line and column), 413 over the byte limit."""
    settings = request.app.state.settings
    opened = await open_upload(request, ZIP_TYPES, "Send the bundle with 'Content-Type: application/zip'.")
    if isinstance(opened, Response):
        return opened
    context, dry_run = opened
    try:
        reach = await context.load_reach()
        if not reach.is_admin:
            return JSONResponse(error_body("FORBIDDEN", "Only site admins may run the rostering import."), 403)
        data = await read_limited(request.stream(), settings.max_upload_bytes)
        result = await run_import(context.store.transaction, settings, context.viewer_id, data, dry_run, "http")
    except AppError as exc:
        return error_response(exc)
    finally:
        await context.store.close()
    status = {"FAILED": 422, "HELD": 202}.get(result.sync.status, 200)
    return JSONResponse(result.as_json(), status)


routes.append(Route("/imports/oneroster", oneroster, methods=["POST"]))
