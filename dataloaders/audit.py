"""Audit events: one keyset page per query (newest first)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from app.store.models import AuditEvent
from dataloaders.store import Store


async def audit_page(store: Store, action: str | None, before_id: int | None, limit: int) -> Sequence[AuditEvent]:
    """Up to `limit` events older than `before_id` (all when None), newest first; the index
    (action, id) serves the filtered case, the primary key the other."""
    query = select(AuditEvent)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    return await store.scalars(query.order_by(AuditEvent.id.desc()).limit(limit))


async def audit_event(store: Store, event_id: int) -> AuditEvent | None:
    rows = await store.scalars(select(AuditEvent).where(AuditEvent.id == event_id))
    return rows[0] if rows else None
