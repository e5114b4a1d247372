"""Test helpers: make users, groups and memberships straight in the database, and call the API."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select, text

from app.runtime.ids import to_global_id
from app.services.auth import SESSION_PREFIX, hash_password, new_token, token_hash
from app.services.tree import attach
from app.settings import Settings
from app.store.db import Database
from app.store.models import TABLES_IN_DELETE_ORDER, Group, Membership, Session, User, utcnow

PASSWORD = "correct horse battery"
_PASSWORD_HASH = hash_password(PASSWORD)
_counter = itertools.count(1)


def gid(kind: str, row: Any) -> str:
    return to_global_id(kind, row if isinstance(row, int) else row.id)


@dataclass
class Site:
    database: Database
    settings: Settings
    client: httpx.AsyncClient
    app: Any
    tokens: dict[int, str] = field(default_factory=dict)

    async def user(
        self,
        first_name: str | None = None,
        last_name: str = "Tester",
        *,
        email: str | None = None,
        kind: str = "LEARNER",
        roles: str = "",
        status: str = "ACTIVE",
        external_id: str | None = None,
        company: str | None = None,
        synced: bool = False,
    ) -> User:
        n = next(_counter)
        first_name = first_name or f"User{n}"
        email = email or f"{first_name.lower()}.{n}@example.com"
        row = User(
            email=email, email_normalized=email.lower(), first_name=first_name, last_name=last_name,
            last_name_normalized=last_name.lower(), kind=kind, site_roles=roles, status=status,
            password_hash=_PASSWORD_HASH, external_id=external_id, company=company, synced=synced,
        )
        async with self.database.transaction() as session:
            session.add(row)
        return row

    async def group(self, name: str, parent: Group | None = None, *, synced: bool = False) -> Group:
        n = next(_counter)
        row = Group(
            name=name, name_normalized=name.lower(), slug=f"{name.lower().replace(' ', '-')}-{n}",
            parent_id=parent.id if parent else None, depth=parent.depth + 1 if parent else 0, synced=synced,
        )
        async with self.database.transaction() as session:
            session.add(row)
            await session.flush()
            await attach(session, row.id, row.parent_id)  # type: ignore[arg-type]
        return row

    async def member(self, user: User, group: Group, role: str = "MEMBER", access_request_id: int | None = None) -> Membership:
        row = Membership(user_id=user.id, group_id=group.id, role=role, access_request_id=access_request_id)  # type: ignore[arg-type]
        async with self.database.transaction() as session:
            session.add(row)
        return row

    async def token(self, user: User, *, expires_in: timedelta = timedelta(hours=1)) -> str:
        """A session token for `user`, made without a login round trip (argon2 is slow on purpose)."""
        if user.id in self.tokens:
            return self.tokens[user.id]
        token = new_token(SESSION_PREFIX)
        async with self.database.transaction() as session:
            session.add(Session(user_id=user.id, token_hash=token_hash(token), expires_at=utcnow() + expires_in))  # type: ignore[arg-type]
        self.tokens[user.id] = token
        return token

    async def gql(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        as_user: User | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """POST a GraphQL request and return the JSON body."""
        all_headers = dict(headers or {})
        if as_user is not None:
            token = await self.token(as_user)
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        response = await self.client.post("/graphql", json={"query": query, "variables": variables or {}}, headers=all_headers)
        return response.json()

    async def count(self, model: Any, *where: Any) -> int:
        async with self.database.session() as session:
            return int(await session.scalar(select(func.count()).select_from(model).where(*where)))

    def statements(self) -> Any:
        """Context manager counting SQL statements: `with site.statements() as counted: ...; counted.count`."""
        return _Counting(self.database)


class _Counting:
    def __init__(self, database: Database) -> None:
        self.counter = database.counter

    def __enter__(self) -> Any:
        self.counter.reset()
        self.counter.keep = True
        return self.counter

    def __exit__(self, *exc: object) -> None:
        self.counter.keep = False


def errors_of(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors", [])]


async def empty_tables(database: Database) -> None:
    """Every table emptied (and PostgreSQL's sequences restarted): a fresh database without migrating again."""
    async with database.engine.begin() as conn:
        if database.is_sqlite:
            for table in TABLES_IN_DELETE_ORDER:
                await conn.execute(text(f'DELETE FROM "{table}"'))
        else:
            tables = ", ".join(f'"{t}"' for t in TABLES_IN_DELETE_ORDER)
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


async def stale_sort_names(site: Site) -> list[tuple[int, str, str]]:
    """Memberships whose sort_name is not their user's last_name_normalized (app.store.member_order keeps none)."""
    async with site.database.session() as session:
        rows = await session.execute(
            select(Membership.id, Membership.sort_name, User.last_name_normalized)
            .join(User, User.id == Membership.user_id)
            .where(Membership.sort_name != User.last_name_normalized)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]
