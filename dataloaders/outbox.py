"""The email outbox as site admins read it: one keyset page per query, newest first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, func, select

from app.store.models import OutboxEmail
from dataloaders.store import Store

QUEUED, SENT, FAILED = "QUEUED", "SENT", "FAILED"


def status_condition(status: str, max_attempts: int) -> Any:
    """SENT: delivered; FAILED: given up (every attempt used, or a permanent refusal, which uses them all);
    QUEUED: waiting for its first or next attempt."""
    if status == SENT:
        return OutboxEmail.sent_at.is_not(None)
    if status == FAILED:
        return and_(OutboxEmail.sent_at.is_(None), OutboxEmail.attempts >= max_attempts)
    return and_(OutboxEmail.sent_at.is_(None), OutboxEmail.attempts < max_attempts)


async def outbox_page(
    store: Store, status: str | None, max_attempts: int, before_id: int | None, limit: int
) -> Sequence[OutboxEmail]:
    """Up to `limit` emails older than `before_id` (ids grow with time), newest first, on the primary key."""
    query = select(OutboxEmail)
    if status is not None:
        query = query.where(status_condition(status, max_attempts))
    if before_id is not None:
        query = query.where(OutboxEmail.id < before_id)
    return await store.scalars(query.order_by(OutboxEmail.id.desc()).limit(limit))


async def outbox_count(store: Store, status: str | None, max_attempts: int) -> int:
    query = select(func.count()).select_from(OutboxEmail)
    if status is not None:
        query = query.where(status_condition(status, max_attempts))
    return int(await store.scalar(query))
