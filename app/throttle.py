"""Sign-in throttling from `login_event`, so it holds across worker processes."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import RateLimited
from app.models import LoginEvent, utcnow
from app.settings import Settings


async def check_login_allowed(session: AsyncSession, settings: Settings, email: str, address: str | None) -> None:
    """RATE_LIMITED after too many recent failures for the email or the client address; the same for
    emails with and without an account."""
    since = utcnow() - timedelta(seconds=settings.login_failure_window_seconds)
    by_email = await session.scalar(
        select(func.count()).select_from(LoginEvent).where(
            LoginEvent.email_normalized == email, LoginEvent.success.is_(False), LoginEvent.at > since
        )
    )
    if by_email >= settings.login_failures_per_email:
        raise RateLimited("Too many failed sign-ins. Try again later.")
    if address is not None:
        by_address = await session.scalar(
            select(func.count()).select_from(LoginEvent).where(
                LoginEvent.client_address == address, LoginEvent.success.is_(False), LoginEvent.at > since
            )
        )
        if by_address >= settings.login_failures_per_address:
            raise RateLimited("Too many failed sign-ins. Try again later.")
