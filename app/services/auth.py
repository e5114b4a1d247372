"""Passwords (argon2) and opaque bearer tokens (only their SHA-256 is stored)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

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


async def authenticate(session: AsyncSession, token: str) -> Credential | None:
    """The signed-in user for a bearer token: one query, and only ACTIVE accounts."""
    now: datetime = utcnow()
    digest = token_hash(token)
    if token.startswith(SESSION_PREFIX):
        row = (
            await session.execute(
                select(User, Session.id)
                .join(Session, Session.user_id == User.id)
                .where(Session.token_hash == digest, Session.revoked_at.is_(None), Session.expires_at > now)
            )
        ).first()
        return Credential(row[0], session_id=row[1]) if row and row[0].status == "ACTIVE" else None
    if token.startswith(API_TOKEN_PREFIX):
        row = (
            await session.execute(
                select(User, ApiToken.id)
                .join(ApiToken, ApiToken.user_id == User.id)
                .where(
                    ApiToken.token_hash == digest,
                    ApiToken.revoked_at.is_(None),
                    (ApiToken.expires_at.is_(None)) | (ApiToken.expires_at > now),
                )
            )
        ).first()
        return Credential(row[0], api_token_id=row[1]) if row and row[0].status == "ACTIVE" else None
    return None


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
