"""Runs of the OneRoster import (roster_sync), newest first."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import defer

from app.store.models import RosterSync
from dataloaders.store import Store


async def roster_sync_page(store: Store, before_id: int | None, limit: int) -> Sequence[RosterSync]:
    """Up to `limit` runs older than `before_id` (all when None), newest first; the held bundle is not read."""
    query = select(RosterSync).options(defer(RosterSync.bundle))  # type: ignore[arg-type]
    if before_id is not None:
        query = query.where(RosterSync.id < before_id)  # type: ignore[operator]
    return await store.scalars(query.order_by(RosterSync.id.desc()).limit(limit))  # type: ignore[union-attr]


async def roster_sync(store: Store, sync_id: int) -> RosterSync | None:
    rows = await store.scalars(
        select(RosterSync).options(defer(RosterSync.bundle)).where(RosterSync.id == sync_id)  # type: ignore[arg-type]
    )
    return rows[0] if rows else None
