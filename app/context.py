"""Per-request context: the viewer, the request's Store and Loaders, and the lazily loaded Reach."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from starlette.requests import Request

from app.services.auth import Credential
from app.settings import Settings
from app.store.db import Database
from app.store.models import User
from dataloaders.loaders import Loaders
from dataloaders.reach import load_reach_rows
from dataloaders.store import Store
from permissions.reach import Reach


class Context:
    def __init__(
        self,
        database: Database,
        settings: Settings,
        credential: Credential | None = None,
        request: Request | None = None,
        request_id: str | None = None,
    ) -> None:
        self.database = database
        self.settings = settings
        self.credential = credential
        self.request = request
        self.request_id = request_id or uuid.uuid4().hex[:16]
        self.store = Store(database)
        self.loaders = Loaders(self.store)
        self._reach: Reach | None = None
        self._reach_lock = asyncio.Lock()
        self.response_headers: dict[str, str] = {}
        self.cookies: list[str] = []  # Set-Cookie values for the response (the cookie session mode)
        self.via_cookie = False  # the credential came from the session cookie, not a bearer token
        self.extra: dict[str, Any] = {}

    @property
    def viewer(self) -> User | None:
        return self.credential.user if self.credential else None

    @property
    def viewer_id(self) -> int | None:
        return self.credential.user.id if self.credential else None

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
                        roles = [r for r in viewer.site_roles.split(",") if r]
                        # admins too: their own roles still show (Group.viewerRole), one query either way
                        rows = await load_reach_rows(self.store, viewer.id)
                        self._reach = Reach.from_rows(viewer.id, roles, rows)  # type: ignore[arg-type]
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
