"""Sign-in throttling from `login_event`, so it holds across worker processes and hosts.

Failures are counted per email (whether or not an account has it) and per client address over a
sliding window (settings). From `login_slowdown_after` failures on, each attempt waits a little longer
(`login_slowdown_seconds` per failure past that point, capped); at the limit the attempt is refused
with RATE_LIMITED, before the password is even checked, so a correct password does not help either.
The answer is the same for known and unknown emails.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.runtime.errors import RateLimited
from app.settings import Settings
from app.store.db import Database
from app.store.models import LoginEvent, utcnow

LOCK_NAMESPACE = 5  # pg_advisory_xact_lock(namespace, hashtext(email)): one sign-in at a time per email
TOO_MANY = "Too many failed sign-ins. Try again later."


def failure_delay(settings: Settings, failures: int) -> float:
    """Seconds to wait before checking a password, after `failures` recent failures."""
    over = failures - settings.login_slowdown_after + 1
    if over <= 0:
        return 0.0
    return min(over * settings.login_slowdown_seconds, settings.login_slowdown_max_seconds)


async def recent_failures(session: AsyncSession, settings: Settings, email: str, address: str | None) -> tuple[int, int]:
    since = utcnow() - timedelta(seconds=settings.login_failure_window_seconds)
    failed = (LoginEvent.success.is_(False), LoginEvent.at > since)
    by_email = await session.scalar(
        select(func.count()).select_from(LoginEvent).where(LoginEvent.email_normalized == email, *failed)
    )
    by_address = 0
    if address is not None:
        by_address = await session.scalar(
            select(func.count()).select_from(LoginEvent).where(LoginEvent.client_address == address, *failed)
        )
    return int(by_email or 0), int(by_address or 0)


async def slow_down(database: Database, settings: Settings, email: str, address: str | None) -> None:
    """Before the sign-in transaction (never inside it: a sleeping SQLite writer would hold the database's
    write lock): RATE_LIMITED at the limit, else wait as `failure_delay` says. An address is slowed the
    same number of failures before its own limit as an email is."""
    async with database.session() as session:
        by_email, by_address = await recent_failures(session, settings, email, address)
    if by_email >= settings.login_failures_per_email or by_address >= settings.login_failures_per_address:
        raise RateLimited(TOO_MANY, retryAfterSeconds=settings.login_failure_window_seconds)
    address_on_email_scale = by_address - settings.login_failures_per_address + settings.login_failures_per_email
    delay = failure_delay(settings, max(by_email, address_on_email_scale))
    if delay > 0:
        await asyncio.sleep(delay)


async def check_login_allowed(session: AsyncSession, settings: Settings, email: str, address: str | None) -> None:
    """RATE_LIMITED after too many recent failures for the email or the client address, inside the
    transaction that records the attempt. On PostgreSQL the attempts for one email queue on an advisory
    lock held to the end of that transaction, so concurrent guesses cannot all slip under the limit;
    on SQLite the write transaction (BEGIN IMMEDIATE) already does that."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(LOCK_NAMESPACE, func.hashtext(email))))
    by_email, by_address = await recent_failures(session, settings, email, address)
    if by_email >= settings.login_failures_per_email or by_address >= settings.login_failures_per_address:
        raise RateLimited(TOO_MANY, retryAfterSeconds=settings.login_failure_window_seconds)
