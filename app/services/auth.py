"""Passwords (argon2) and opaque bearer tokens (only their SHA-256 is stored)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import ColumnElement, Select, and_, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import object_session

from app.runtime.errors import Conflict
from app.store.models import ApiToken, Session, User, utcnow

SESSION_PREFIX = "ggs_"
API_TOKEN_PREFIX = "gga_"

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("an unknown account still costs one verification")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Always runs one argon2 verification, so unknown accounts take as long as known ones."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Credential:
    user: User
    session_id: int | None = None
    api_token_id: int | None = None


def session_live(now: Any) -> ColumnElement[bool]:
    """A session token that still signs in: not revoked, not expired."""
    return and_(Session.revoked_at.is_(None), Session.expires_at > now)


def api_token_live(now: Any) -> ColumnElement[bool]:
    """An API token that still signs in: not revoked, and not expired when it has an expiry."""
    return and_(ApiToken.revoked_at.is_(None), ApiToken.expires_at.is_(None) | (ApiToken.expires_at > now))


@cache
def _credential_statements() -> dict[str, Select[Any]]:
    """Built once per process (building them cost about as much as running them): the token's digest and the
    instant are bound at execution."""
    digest, now = bindparam("digest"), bindparam("now")
    return {
        SESSION_PREFIX: select(User, Session.id)
        .join(Session, Session.user_id == User.id)
        .where(Session.token_hash == digest, session_live(now)),
        API_TOKEN_PREFIX: select(User, ApiToken.id)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(ApiToken.token_hash == digest, api_token_live(now)),
    }


def credential_statement(token: str) -> tuple[Select[Any], dict[str, Any]] | None:
    """The one query that finds a bearer token's user (ACTIVE or not) and its session or API token id, with its
    parameters; None for a token of no known kind."""
    for prefix, statement in _credential_statements().items():
        if token.startswith(prefix):
            return statement, {"digest": token_hash(token), "now": utcnow()}
    return None


def credential_of(token: str, row: Any) -> Credential | None:
    """The credential from credential_statement's row: only for an ACTIVE account. The user is detached from
    the session that read it, so that a rollback of that session (a mutation that failed) cannot expire it."""
    if not row:
        return None
    user = row[0]
    owner = object_session(user)
    if owner is not None:
        owner.expunge(user)
    if user.status != "ACTIVE":
        return None
    if token.startswith(SESSION_PREFIX):
        return Credential(user, session_id=row[1])
    return Credential(user, api_token_id=row[1])


async def authenticate(session: AsyncSession, token: str) -> Credential | None:
    """The signed-in user for a bearer token: one query, and only ACTIVE accounts."""
    found = credential_statement(token)
    if found is None:
        return None
    statement, params = found
    return credential_of(token, (await session.execute(statement, params)).first())


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


async def end_credentials(session: AsyncSession, user_id: int) -> int:
    """Revoke every unrevoked session and API token of the user (a new password, a denied or deleted
    account): the next request with any of them is anonymous. Returns how many were ended."""
    return await end_credentials_of(session, [user_id])


async def end_credentials_of(session: AsyncSession, user_ids: Sequence[int]) -> int:
    """end_credentials for many users: one UPDATE per table (and per 10,000 users)."""
    now = utcnow()
    ended = 0
    for start in range(0, len(user_ids), 10_000):
        chunk = list(user_ids[start : start + 10_000])
        for table in (Session, ApiToken):
            result = await session.execute(
                update(table).where(table.user_id.in_(chunk), table.revoked_at.is_(None)).values(revoked_at=now)
            )
            ended += int(result.rowcount or 0)
    return ended


# the last owner
OWNER_LOCK = 6_000_007  # PostgreSQL advisory lock key serializing changes that take an owner away


async def keep_an_owner(session: AsyncSession, leaving: Sequence[int], field: str = "userIds") -> None:
    """CONFLICT when taking these owners away (demoted, denied or deleted) would leave the site without an
    ACTIVE owner: nobody could then make an owner again over the API. Two owners demoting each other at the
    same moment wait for each other (an advisory lock on PostgreSQL; SQLite serializes writers)."""
    if not leaving:
        return
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(OWNER_LOCK)))
    owners = set(
        await session.scalars(
            select(User.id).where(User.site_roles.like("%OWNER%"), User.status == "ACTIVE")
        )
    )
    if owners and owners <= set(leaving):
        raise Conflict("This is the site's last owner: make another owner first.", field=field)
