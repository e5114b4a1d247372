"""Per-request context: the viewer, the request's Store and Loaders, and the lazily loaded Reach."""

from __future__ import annotations

import asyncio
import uuid
from contextvars import ContextVar
from typing import Any

from sqlalchemy.exc import DBAPIError
from starlette.requests import Request

from app.runtime.errors import Unauthenticated
from app.runtime.logs import REQUEST_ID, log, note_user
from app.services.auth import Credential, authenticate, credential_of, credential_statement
from app.services.events import SIGN_IN_ENDED, Broker
from app.services.viewers import Viewer, signed_in_with_reach
from app.settings import Settings
from app.store.db import Database
from app.store.models import User
from dataloaders.loaders import Loaders
from dataloaders.reach import load_reach_rows
from dataloaders.store import Store
from permissions.reach import Reach


class SignedIn:
    """Who a context acts for: its credential's user, if any."""

    credential: Credential | None

    @property
    def viewer(self) -> User | None:
        return self.credential.user if self.credential else None

    @property
    def viewer_id(self) -> int | None:
        return self.credential.user.id if self.credential else None


class Context(SignedIn):
    def __init__(
        self,
        database: Database,
        settings: Settings,
        credential: Credential | None = None,
        request: Request | None = None,
        request_id: str | None = None,
        store: Store | None = None,
        reach: Reach | None = None,
    ) -> None:
        self.database = database
        self.settings = settings
        self.credential = credential
        self.request = request
        self.request_id = request_id or REQUEST_ID.get() or uuid.uuid4().hex[:16]
        if credential is not None:
            note_user(credential.user.id)
        # the store's read session may be open before a mutation begins: the sign-in was read through it
        # (signed_in), or an earlier operation of the same batch read through it
        self._store_read = True
        self.store = store if store is not None else Store(database)
        self.loaders = Loaders(self.store)
        self._reach: Reach | None = reach  # read with the sign-in (signed_in), or loaded when first needed
        self._reach_lock = asyncio.Lock()
        self.response_headers: dict[str, str] = {}
        self.cookies: list[str] = []  # Set-Cookie values for the response (the cookie session mode)
        self.via_cookie = False  # the credential came from the session cookie, not a bearer token
        self.extra: dict[str, Any] = {}

    @property
    def client_address(self) -> str | None:
        if self.request is not None and self.request.client is not None:
            return self.request.client.host
        return None

    async def load_reach(self) -> Reach:
        if self._reach is None:
            async with self._reach_lock:
                if self._reach is None:
                    viewer = self.viewer
                    if viewer is None:
                        self._reach = Reach.anonymous()
                    else:
                        # admins too: their own roles still show (Group.viewerRole), one query either way
                        see = self.settings.members_see_groups
                        rows = await load_reach_rows(self.store, viewer.id, see)  # type: ignore[arg-type]
                        self._reach = Reach.of_user(viewer, rows, see)
        return self._reach

    @property
    def reach(self) -> Reach:
        """The Reach, which the resolver that produced the object being checked has loaded."""
        if self._reach is None:
            raise RuntimeError("Reach used before it was loaded")
        return self._reach

    def forget_reach(self) -> None:
        """After a mutation changes roles, later fields of the same request decide afresh."""
        self._reach = None

    async def begin_writing(self) -> None:
        """A mutation's statements go through the write engine. On PostgreSQL that is the same engine, and the
        session that read the sign-in carries on (one checkout). On SQLite writes begin IMMEDIATE on an engine
        of their own, so the read store (the sign-in, or an earlier query of a batch, read through it) is closed
        and a fresh store takes over."""
        if getattr(self, "_store_read", False) and self.database.write_engine is not self.database.engine:
            self._store_read = False
            used, self.store = self.store, Store(self.database)
            self.loaders = Loaders(self.store)
            await used.close()
        self.store.write = True

    async def close(self) -> None:
        await self.store.close()

    def forget_loaded(self) -> None:
        """Once the answer is written: what the request loaded goes as soon as nothing refers to it
        (`Loaders.forget`)."""
        self.loaders.forget()
        self.extra.clear()


async def signed_in(
    database: Database, token: str | None, members_see_groups: bool | None = None
) -> tuple[Credential | None, Store, Reach | None]:
    """The request's Store and the token's credential, read through that store: the sign-in and the request
    share one checkout. With `members_see_groups` (the site's default), the viewer's Reach
    is read in the same statement (app.services.viewers.signed_in_with_reach), else None (loaded when first
    needed). The pool pings no connection before use, so a pooled connection that died (the database
    restarted) fails the sign-in query; SQLAlchemy then drops it with the rest of the pool, and the query runs
    once more on a fresh connection (a read: safe to repeat)."""
    store = Store(database)
    found = credential_statement(token) if token is not None else None
    if token is None or found is None:
        return None, store, None
    statement, params = found
    for attempt in (1, 2):
        try:
            if members_see_groups is not None:
                credential, reach = await signed_in_with_reach(store, token, members_see_groups)
                return credential, store, reach
            rows = await store.all(statement, params)
            return credential_of(token, rows[0] if rows else None), store, None
        except BaseException as exc:
            await store.close()
            if attempt == 2 or not (isinstance(exc, DBAPIError) and exc.connection_invalidated):
                raise
            log.warning("database_connection_lost", retried="sign_in")
            store = Store(database)
    raise AssertionError("unreachable")


class _Scope:
    """What one operation, or one event of a subscription, reads through: nothing outlives it."""

    def __init__(self, owner: LiveContext, credential: Credential | None) -> None:
        self.owner = owner
        self.credential = credential
        self.store = Store(owner.database)
        self.loaders = Loaders(self.store)
        self.reach: Reach | None = None
        self.reach_lock = asyncio.Lock()
        self.extra: dict[str, Any] = {}
        self.published_at: float | None = None  # of the event being sent (delivery latency)
        self.slot: asyncio.Semaphore | None = None  # one of the broker's concurrent deliveries, while held


_SCOPE: ContextVar[_Scope | None] = ContextVar("live_scope", default=None)


class LiveContext(Context):
    """The context of a WebSocket connection or of an SSE stream. Each operation runs in its own task and
    reads through its own scope (store, loaders, Reach); a subscription renews the scope for every event,
    authenticating the token again, so that every event is decided on the database as it is then."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        broker: Broker,
        credential: Credential | None = None,
        token: str | None = None,
        request: Any = None,
        request_id: str | None = None,
    ) -> None:
        self.database = database
        self.settings = settings
        self.broker = broker
        self.request = request
        self.request_id = request_id or uuid.uuid4().hex[:16]
        self.response_headers = {}
        self.cookies: list[str] = []
        self.via_cookie = False
        self.connection_params: dict[str, Any] = {}
        self.base_credential = credential
        self.token = token
        self.subscriptions = 0  # open on this connection
        self.websocket = request is not None and getattr(request, "scope", {}).get("type") == "websocket"
        self._scopes: set[_Scope] = set()

    def _current(self) -> _Scope:
        scope = _SCOPE.get()
        if scope is None or scope.owner is not self:
            scope = _Scope(self, self.base_credential)
            self._scopes.add(scope)
            _SCOPE.set(scope)
        return scope

    @property  # type: ignore[override]
    def store(self) -> Store:
        return self._current().store

    @property  # type: ignore[override]
    def loaders(self) -> Loaders:
        return self._current().loaders

    @property  # type: ignore[override]
    def credential(self) -> Credential | None:
        return self._current().credential

    @property  # type: ignore[override]
    def _reach(self) -> Reach | None:
        return self._current().reach

    @_reach.setter
    def _reach(self, value: Reach | None) -> None:
        self._current().reach = value

    @property  # type: ignore[override]
    def extra(self) -> dict[str, Any]:
        return self._current().extra

    @property  # type: ignore[override]
    def _reach_lock(self) -> asyncio.Lock:
        return self._current().reach_lock

    @property
    def event_published_at(self) -> float | None:
        return self._current().published_at

    @event_published_at.setter
    def event_published_at(self, value: float | None) -> None:
        self._current().published_at = value

    @property
    def client_address(self) -> str | None:
        client = getattr(self.request, "client", None)
        return client.host if client is not None else None

    async def credential_now(self) -> Credential | None:
        """The token's credential as the database says now: None once it is revoked or expired, or the
        account is no longer ACTIVE."""
        if self.token is None:
            return None
        async with self.database.session() as session:
            credential = await authenticate(session, self.token)
            session.expunge_all()
        return credential

    async def renew(self, for_event: bool = False) -> None:
        """A fresh scope for the next operation or event: UNAUTHENTICATED when the sign-in is gone. An event
        on a WebSocket first waits for one of the broker's delivery slots, which the scope holds until the
        event's result is ready (the WebSocket handler ends the scope before sending)."""
        await self.end_scope()
        slot = self.broker.deliveries if for_event and self.websocket else None
        if slot is not None:
            await slot.acquire()
        try:
            credential = await self.credential_now()
            if self.token is not None and credential is None:
                raise Unauthenticated(SIGN_IN_ENDED)
        except BaseException:
            if slot is not None:
                slot.release()
            raise
        scope = _Scope(self, credential)
        scope.slot = slot
        self._scopes.add(scope)
        _SCOPE.set(scope)

    def adopt(self, viewer: Viewer) -> None:
        """A fresh scope for an event the broker decided: the sign-in and Reach read for that event (no
        statement of its own; its store opens only if the result's fields need more)."""
        scope = _Scope(self, viewer.credential)
        scope.reach = viewer.reach
        self._scopes.add(scope)
        _SCOPE.set(scope)

    def event_view(self, viewer: Viewer, loaders: Loaders) -> EventView:
        return EventView(self, viewer, loaders)

    async def end_scope(self) -> None:
        scope = _SCOPE.get()
        if scope is not None and scope.owner is self:
            _SCOPE.set(None)
            self._scopes.discard(scope)
            try:
                await scope.store.close()
            finally:
                if scope.slot is not None:
                    scope.slot.release()
                    scope.slot = None

    async def close(self) -> None:
        scopes, self._scopes = self._scopes, set()
        for scope in scopes:
            await scope.store.close()
            if scope.slot is not None:
                scope.slot.release()
                scope.slot = None


class EventView(SignedIn):
    """One subscriber's context while the broker decides a batch of events: its own sign-in and Reach, read
    for this event, and the batch's loaders (data only, shared by the subscribers of the batch, which all
    stay alive until it ends; every decision is made on this view's Reach)."""

    def __init__(self, owner: LiveContext, viewer: Viewer, loaders: Loaders) -> None:
        self.owner = owner
        self.credential = viewer.credential
        self._reach = viewer.reach
        self.loaders = loaders
        self.store = loaders.store
        self.extra: dict[str, Any] = {}

    @property
    def database(self) -> Database:
        return self.owner.database

    @property
    def settings(self) -> Settings:
        return self.owner.settings

    @property
    def request_id(self) -> str:
        return self.owner.request_id

    async def load_reach(self) -> Reach:
        return self._reach

    @property
    def reach(self) -> Reach:
        return self._reach
