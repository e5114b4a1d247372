"""The GraphQL-over-HTTP endpoint: authentication, body limits, CSRF guard, error shape, media types."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import structlog
from graphql import GraphQLError
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.subscriptions import GRAPHQL_SSE_PROTOCOL, GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult

from app.context import Context, LiveContext
from app.http.live import LiveHandler, serve_websocket
from app.runtime.limits import BATCH_TOO_LARGE, PAYLOAD_TOO_LARGE, limit_code, without_suggestions
from app.runtime.logs import REQUEST_ID
from app.runtime.metrics import REQUESTS
from app.schema import format_error
from app.services.auth import Credential, authenticate, bearer_token
from app.services.events import Broker
from app.settings import Settings
from app.store.db import Database

GRAPHQL_RESPONSE = "application/graphql-response+json"
CSRF_HEADERS = ("apollo-require-preflight", "x-requested-with", "graphql-preflight")


class BodyTooLarge(Exception):
    pass


def error_body(code: str, message: str, **extensions: Any) -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": code, **extensions}}]}


async def credential_for(request: Request, database: Database) -> Credential | bool | None:
    """The credential of a bearer token; False when a token was sent but is not valid."""
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        return None
    async with database.session() as session:
        credential = await authenticate(session, token)
        session.expunge_all()
    return credential if credential is not None else False


def wants_sse(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


class GroupGraphView(GraphQL):
    graphql_transport_ws_handler_class = LiveHandler

    def __init__(self, schema: Any, database: Database, settings: Settings, broker: Broker) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.graphiql and not settings.production else None,
            multipart_uploads_enabled=True,
            # subscriptions: graphql-transport-ws on the WebSocket, graphql-sse (distinct connections) on POST
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_SSE_PROTOCOL),
            connection_init_wait_timeout=timedelta(seconds=settings.live_connection_init_seconds),
            max_subscriptions_per_connection=None,  # counted by the subscriptions themselves, with a code
        )
        self.database = database
        self.settings = settings
        self.broker = broker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            return await serve_websocket(self, scope, receive, send)
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)
        request_id = uuid.uuid4().hex[:16]
        structlog.contextvars.bind_contextvars(request_id=request_id)
        REQUEST_ID.set(request_id)
        request = Request(scope, receive)
        response = await self._respond(request, scope, receive, request_id)
        response.headers["x-request-id"] = request_id
        REQUESTS.labels(path="/graphql", status=str(response.status_code)).inc()
        structlog.contextvars.unbind_contextvars("request_id")
        await response(scope, receive, send)

    async def _respond(self, request: Request, scope: Scope, receive: Receive, request_id: str) -> Response:
        content_type = request.headers.get("content-type", "")
        multipart = content_type.startswith("multipart/form-data")
        limit = self.settings.max_upload_bytes if multipart else self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return JSONResponse(error_body(PAYLOAD_TOO_LARGE, f"Request body is over {limit} bytes.", limit=limit), 413)
        if multipart and not any(h in request.headers for h in CSRF_HEADERS):
            return JSONResponse(
                error_body(
                    "BAD_USER_INPUT",
                    "Multipart requests need an 'Apollo-Require-Preflight' or 'X-Requested-With' header.",
                ),
                400,
            )
        credential = await credential_for(request, self.database)
        if credential is False:
            return JSONResponse(
                error_body("UNAUTHENTICATED", "The token is not valid (unknown, expired or revoked)."),
                401,
                headers={"www-authenticate": "Bearer"},
            )
        context: Context
        if wants_sse(request):  # a subscription over SSE: each event decided afresh, as on a WebSocket
            context = LiveContext(
                self.database, self.settings, self.broker, credential or None,
                bearer_token(request.headers.get("authorization")), request, request_id,
            )
        else:
            context = Context(self.database, self.settings, credential or None, request, request_id)
        limited = Request(scope, _limited(receive, limit))
        streaming = False
        try:
            response = await self.run(limited, context=context)
            if isinstance(response, StreamingResponse) and isinstance(context, LiveContext):
                response.background = BackgroundTask(context.close)  # the stream reads after this returns
                streaming = True
        except BodyTooLarge:
            return JSONResponse(error_body(PAYLOAD_TOO_LARGE, f"Request body is over {limit} bytes.", limit=limit), 413)
        except Exception as exc:  # strawberry's HTTPException and friends: keep the JSON error shape
            status = getattr(exc, "status_code", None)
            if status is None:
                raise
            reason = getattr(exc, "reason", str(exc))
            if reason == "Too many operations":
                return JSONResponse(
                    error_body(
                        BATCH_TOO_LARGE,
                        f"A batch holds at most {self.settings.max_batch_size} operations.",
                        limit=self.settings.max_batch_size,
                    ),
                    status,
                )
            return JSONResponse(error_body("BAD_USER_INPUT", reason), status)
        finally:
            if not streaming:
                await (context.close() if isinstance(context, LiveContext) else context.store.close())
        return self._negotiate(request, response)

    async def serve_socket(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)

    async def get_context(self, request: Any, response: Any = None) -> Any:
        if isinstance(request, WebSocket):
            return LiveContext(self.database, self.settings, self.broker, request=request)
        return await super().get_context(request, response)

    async def on_ws_connect(self, context: Any) -> Any:
        """Sign-in from connection_init's payload (`{"Authorization": "Bearer ..."}`), else from the handshake's
        Authorization header; none: an anonymous connection (every subscription needs a sign-in). A token that
        is not valid closes the connection (4403)."""
        params = context.connection_params if isinstance(context.connection_params, dict) else {}
        header = params.get("Authorization") or params.get("authorization")
        if header is None and context.request is not None:
            header = context.request.headers.get("authorization")
        token = bearer_token(header) if isinstance(header, str) else None
        if token is not None:
            context.token = token
            context.base_credential = await context.credential_now()
            if context.base_credential is None:
                raise ConnectionRejectionError()
        return await super().on_ws_connect(context)

    def _negotiate(self, request: Request, response: Response) -> Response:
        """application/graphql-response+json when asked for; then a request error is a 4xx."""
        if response.media_type != "application/json" or GRAPHQL_RESPONSE not in request.headers.get("accept", ""):
            return response
        response.headers["content-type"] = GRAPHQL_RESPONSE
        try:
            body = json.loads(bytes(response.body))
        except ValueError:
            return response
        if isinstance(body, dict) and body.get("errors") and body.get("data") is None and "data" not in body:
            response.status_code = 400
        return response

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        request_id = REQUEST_ID.get()
        data: GraphQLHTTPResponse = {"data": result.data}  # type: ignore[typeddict-item]
        if result.errors:
            data["errors"] = [self._client_error(e, request_id) for e in result.errors]  # type: ignore[typeddict-item]
            if result.data is None and all(e.path is None for e in result.errors):
                data.pop("data")  # a request error: no execution happened
        if result.extensions:
            data["extensions"] = result.extensions
        return data

    def _client_error(self, error: GraphQLError, request_id: str | None) -> dict[str, Any]:
        code = limit_code(error)
        if code is not None:
            error.extensions = {**(error.extensions or {}), "code": code}
        formatted = format_error(error, request_id)
        if self.settings.production and "message" in formatted:
            formatted["message"] = without_suggestions(formatted["message"])
        return formatted

    def _handle_errors(self, errors: Any, response_data: Any) -> None:
        """Errors are logged once, by the schema's process_errors."""


def _limited(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge
        return message

    return wrapped
