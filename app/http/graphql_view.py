"""The GraphQL-over-HTTP endpoint: authentication, body limits, CSRF guard, error shape, media types."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import orjson
from cross_web import HTTPException
from graphql import GraphQLError, parse, validate
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.streaming import MultipartSubscriptionTransport, SSETransport
from strawberry.subscriptions import (
    GRAPHQL_SSE_PROTOCOL,
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    MULTIPART_SUBSCRIPTION_PROTOCOL,
)
from strawberry.types import ExecutionResult

from app.context import Context, LiveContext, signed_in
from app.http.live import LiveHandler, serve_websocket
from app.runtime.limits import BATCH_TOO_LARGE, PAYLOAD_TOO_LARGE, json_depth, limit_code, without_suggestions
from app.runtime.logs import REQUEST_ID
from app.schema import format_error
from app.services.auth import Credential, authenticate, bearer_token
from app.services.cookies import clear_session_cookie, has_csrf_header, session_cookie
from app.services.events import Broker
from app.services.persisted import PersistedQueries, PersistedQueryError, trusted_documents
from app.settings import Settings
from app.store.db import Database
from dataloaders.store import Store
from permissions.reach import Reach

GRAPHQL_RESPONSE = "application/graphql-response+json"


class BodyTooLarge(Exception):
    pass


def error_body(code: str, message: str, **extensions: Any) -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": code, **extensions}}]}


def request_token(request: Request) -> tuple[str | None, bool]:
    """The bearer token, else the session cookie's token; and whether it came from the cookie."""
    token = bearer_token(request.headers.get("authorization"))
    if token is not None:
        return token, False
    cookie = session_cookie(request)
    return cookie, cookie is not None


async def credential_for(request: Request, database: Database) -> Credential | bool | None:
    """The credential of a bearer token (False when one was sent but is not valid), else of the session
    cookie (an invalid cookie counts as none: the caller is anonymous and the cookie gets cleared). Read in a
    session of its own: for uploads, whose store writes."""
    token, from_cookie = request_token(request)
    if token is None:
        return None
    async with database.session() as session:
        credential = await authenticate(session, token)
        session.expunge_all()
    return judged(credential, from_cookie)


async def signed_in_store(
    request: Request, database: Database, members_see_groups: bool | None = None
) -> tuple[Credential | bool | None, Store, Reach | None]:
    """credential_for, read through the request's own Store (returned too: one checkout for the request); with
    `members_see_groups` (the site's default) the viewer's Reach too, in the same statement."""
    token, from_cookie = request_token(request)
    credential, store, reach = await signed_in(database, token, members_see_groups)
    return (judged(credential, from_cookie) if token is not None else None), store, reach


def judged(credential: Credential | None, from_cookie: bool) -> Credential | bool | None:
    if from_cookie:
        return credential
    return credential if credential is not None else False


def unauthenticated(request: Request) -> Response:
    """An unknown, expired or revoked token: 401 with the GraphQL error shape, in the media type asked for."""
    response = JSONResponse(
        error_body("UNAUTHENTICATED", "The token is not valid (unknown, expired or revoked)."),
        401,
        headers={"www-authenticate": "Bearer", "cache-control": "no-store"},
    )
    if GRAPHQL_RESPONSE in request.headers.get("accept", ""):
        response.headers["content-type"] = GRAPHQL_RESPONSE
    return response


def prefers_event_stream(accept: str) -> bool:
    """Whether a client asks for an event stream first: a graphql-sse client sends `text/event-stream` alone;
    clients that list it after JSON (urql's default Accept) want JSON for queries and mutations."""
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media == "text/event-stream":
            return True
        if media in ("application/graphql-response+json", "application/json", "application/graphql+json", "*/*"):
            return False
    return False


def wants_sse(request: Request) -> bool:
    return prefers_event_stream(request.headers.get("accept", ""))


class EventStreamWhenPreferred(SSETransport):
    def accepts(self, accept: str) -> bool:
        return prefers_event_stream(accept)


async def _forget_loaded(context: Context) -> None:
    """A coroutine: Starlette would run a plain function in a worker thread."""
    context.forget_loaded()


class GroupGraphView(GraphQL):
    graphql_transport_ws_handler_class = LiveHandler
    stream_transport_classes_by_protocol = {
        MULTIPART_SUBSCRIPTION_PROTOCOL: MultipartSubscriptionTransport,
        GRAPHQL_SSE_PROTOCOL: EventStreamWhenPreferred,
    }

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
        trusted = trusted_documents(settings.trusted_documents) if settings.trusted_documents else None
        self.persisted = PersistedQueries(
            database, trusted, lambda document: _valid(schema, document, settings.max_tokens),
            settings.max_persisted_queries,
        )

    async def render_graphql_ide(self, request: Request) -> Response:
        from app.http.graphiql import graphiql_page

        return graphiql_page(request)

    def should_render_graphql_ide(self, request: Any) -> bool:
        """Only a browser's page load: not a persisted query sent by GET without its text."""
        params = request.query_params
        if request.method != "GET" or any(params.get(k) is not None for k in ("query", "extensions", "documentId")):
            return False
        return "text/html" in request.headers.get("accept", "")

    async def parse_http_body(self, request: Any) -> GraphQLRequestData | list[GraphQLRequestData]:
        """The request, with each persisted operation's document filled in (or refused)."""
        data = await super().parse_http_body(request)
        items = data if isinstance(data, list) else [data]
        document_ids: list[Any] = [None] * len(items)
        if request.method == "GET":
            document_ids = [request.query_params.get("documentId")]
        elif "application/json" in (request.content_type or ""):
            raw = json.loads(await request.get_body())
            listed = raw if isinstance(raw, list) else [raw]
            document_ids = [item.get("documentId") if isinstance(item, dict) else None for item in listed]
        for item, document_id in zip(items, document_ids, strict=True):
            item.query = await self.persisted.document(item.query, item.extensions, document_id)
        return data

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            return await serve_websocket(self, scope, receive, send)
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)
        request_id = REQUEST_ID.get()  # app.http.observe gave every request one
        if request_id is None:
            request_id = uuid.uuid4().hex[:16]
            REQUEST_ID.set(request_id)
        request = Request(scope, receive)
        response = await self._respond(request, scope, receive, request_id)
        response.headers["x-request-id"] = request_id
        if not response.headers.get("content-type", "").startswith("text/html"):
            response.headers["cache-control"] = "no-store"  # answers hold tokens and private data
        await response(scope, receive, send)

    async def _respond(self, request: Request, scope: Scope, receive: Receive, request_id: str) -> Response:
        content_type = request.headers.get("content-type", "")
        multipart = content_type.startswith("multipart/form-data")
        limit = self.settings.max_upload_bytes if multipart else self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return JSONResponse(error_body(PAYLOAD_TOO_LARGE, f"Request body is over {limit} bytes.", limit=limit), 413)
        if multipart and not has_csrf_header(request):
            return JSONResponse(
                error_body(
                    "BAD_USER_INPUT",
                    "Multipart requests need an 'Apollo-Require-Preflight' or 'X-Requested-With' header.",
                ),
                400,
            )
        if wants_sse(request):  # a stream: not an operation that ends soon, so not admitted as one
            return await self._signed_in(request, scope, receive, request_id, limit)
        async with self.broker.admission:  # at most so many at once; live-update deliveries first
            return await self._signed_in(request, scope, receive, request_id, limit)

    async def _signed_in(self, request: Request, scope: Scope, receive: Receive, request_id: str, limit: int) -> Response:
        credential, store, reach = await signed_in_store(request, self.database, self.settings.members_see_groups)
        try:
            return await self._respond_as(request, scope, receive, request_id, credential, store, reach, limit)
        finally:
            await store.close()  # when the context took another (a mutation on SQLite), or none was made

    async def _respond_as(
        self, request: Request, scope: Scope, receive: Receive, request_id: str, credential: Credential | bool | None,
        store: Store, reach: Reach | None, limit: int,
    ) -> Response:
        if credential is False:
            return unauthenticated(request)
        via_cookie = session_cookie(request) is not None
        if via_cookie and credential and request.method == "POST" and not has_csrf_header(request):
            return JSONResponse(
                error_body(
                    "FORBIDDEN",
                    "A request signed in by the session cookie needs an 'X-CSRF-Token' (or "
                    "'Apollo-Require-Preflight') header.",
                ),
                403,
            )
        context: Context
        if wants_sse(request):  # a subscription over SSE: each event decided afresh, as on a WebSocket
            context = LiveContext(
                self.database, self.settings, self.broker, credential or None,
                bearer_token(request.headers.get("authorization")) or (session_cookie(request) if credential else None),
                request, request_id,
            )
        else:
            context = Context(
                self.database, self.settings, credential or None, request, request_id, store=store,
                reach=reach if credential else None,
            )
        context.via_cookie = via_cookie and bool(credential)
        if via_cookie and not credential:
            context.cookies.append(clear_session_cookie(request))
        limited = Request(scope, _limited(receive, limit))
        streaming = False
        try:
            response = await self.run(limited, context=context)
            if isinstance(response, StreamingResponse) and isinstance(context, LiveContext):
                response.background = BackgroundTask(context.close)  # the stream reads after this returns
                streaming = True
        except PersistedQueryError as refused:
            return JSONResponse(error_body(refused.code, refused.message), refused.status)
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
                await context.close()
        written = not isinstance(response, StreamingResponse)  # nothing reads the loaders any more
        response = self._negotiate(request, response)
        for cookie in context.cookies:
            response.headers.append("set-cookie", cookie)
        if written and response.background is None:  # let go once the answer is sent, not before
            response.background = BackgroundTask(_forget_loaded, context)
        elif written:
            context.forget_loaded()
        return response

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
        if b'"errors"' not in response.body:
            return response
        try:
            body = orjson.loads(bytes(response.body))
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

    def encode_json(self, data: object) -> str:
        """Responses and WebSocket messages: orjson (a 500-member page in 0.2 ms instead of 2.3), UTF-8 rather
        than ASCII escapes; a str, so WebSocket messages stay text frames. json.dumps for what orjson refuses."""
        try:
            return orjson.dumps(data).decode()
        except TypeError:
            return json.dumps(data, separators=(",", ":"))

    def decode_json(self, data: str | bytes) -> object:
        """A request body (or a GET's variables): an object or a list of objects, nested at most a few levels
        deeper than the variables may nest; anything else is a 400 with a code, never a 500."""
        try:
            value = json.loads(data)
        except RecursionError:
            raise HTTPException(400, "The JSON nests too deeply.") from None
        limit = self.settings.max_variable_depth + 3  # [batch] > {request} > {variables} > ...
        if json_depth(value) > limit:
            raise HTTPException(400, f"The JSON nests deeper than {limit} levels.")
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(item, dict) for item in items):
            raise HTTPException(400, "A GraphQL request is a JSON object (or a list of objects, for a batch).")
        for item in items if isinstance(value, list) else ():
            if not isinstance(item.get("query"), str | None) or not isinstance(item.get("variables"), dict | None):
                raise HTTPException(400, "Each operation of a batch has a string query and object variables.")
            if not isinstance(item.get("extensions"), dict | None):
                raise HTTPException(400, "Each operation of a batch has object extensions.")
        for item in items:
            if not isinstance(item.get("operationName"), str | None):
                raise HTTPException(400, "operationName must be a string or null.")
        return value

    def _handle_errors(self, errors: Any, response_data: Any) -> None:
        """Errors are logged once, by the schema's process_errors."""


def _valid(schema: Any, document: str, max_tokens: int) -> bool:
    try:
        return not validate(schema._schema, parse(document, max_tokens=max_tokens))
    except GraphQLError:
        return False


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
