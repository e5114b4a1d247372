"""JSON errors with a code for the whole HTTP surface (exports, imports, unknown paths), not only /graphql:
an unexpected exception is logged with a request id and answered 500 with that id and nothing else."""

from __future__ import annotations

import uuid

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.runtime.logs import REQUEST_ID, log

HTTP_CODES = {401: "UNAUTHENTICATED", 403: "FORBIDDEN", 404: "NOT_FOUND", 409: "CONFLICT", 429: "RATE_LIMITED"}


def _body(code: str, message: str, **extensions: object) -> dict[str, object]:
    return {"errors": [{"message": message, "extensions": {"code": code, **extensions}}]}


async def http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = HTTP_CODES.get(exc.status_code, "BAD_USER_INPUT" if exc.status_code < 500 else "INTERNAL_SERVER_ERROR")
    message = exc.detail if exc.status_code < 500 else "Internal server error."
    return JSONResponse(_body(code, message), exc.status_code, headers=exc.headers)


async def internal_error(request: Request, exc: Exception) -> Response:
    request_id = REQUEST_ID.get() or uuid.uuid4().hex[:16]
    log.error(
        "unexpected_error", request_id=request_id, path=request.url.path, message=str(exc),
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    return JSONResponse(
        _body("INTERNAL_SERVER_ERROR", "Internal server error.", requestId=request_id), 500,
        headers={"x-request-id": request_id},
    )


EXCEPTION_HANDLERS = {HTTPException: http_error, Exception: internal_error}
