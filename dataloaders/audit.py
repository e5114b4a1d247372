"""Audit events: one keyset page per query (newest first)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from app.store import keyset
from app.store.keyset import Key, Window
from app.store.models import AuditEvent
from dataloaders.store import Store

AUDIT_ORDER = (Key(AuditEvent.id, descending=True),)


async def audit_page(store: Store, action: str | None, window: Window) -> Sequence[AuditEvent]:
    """One keyset window of events, newest first, in fetch order; the index (action, id) serves the filtered
    case, the primary key the other."""
    query = select(AuditEvent).where(*keyset.conditions(AUDIT_ORDER, window))
    if action is not None:
        query = query.where(AuditEvent.action == action)
    return await store.scalars(query.order_by(*keyset.ordering(AUDIT_ORDER, window)).limit(window.fetch))


async def audit_event(store: Store, event_id: int) -> AuditEvent | None:
    rows = await store.scalars(select(AuditEvent).where(AuditEvent.id == event_id))
    return rows[0] if rows else None
