"""Export jobs and schedules: one keyset page per query (newest first), and single rows by id."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from sqlalchemy import func, select

from app.store.models import ExportJob, ExportSchedule
from dataloaders.store import Store

Owned = TypeVar("Owned", ExportJob, ExportSchedule)


async def _owned_page(
    store: Store, table: type[Owned], owner_id: int | None, before_id: int | None, limit: int
) -> Sequence[Owned]:
    """Up to `limit` rows older than `before_id`, of `owner_id` (everyone's when None), newest first."""
    query = select(table)
    if owner_id is not None:
        query = query.where(table.owner_id == owner_id)
    if before_id is not None:
        query = query.where(table.id < before_id)  # type: ignore[operator]
    return await store.scalars(query.order_by(table.id.desc()).limit(limit))  # type: ignore[union-attr]


async def _by_id(store: Store, table: type[Owned], row_id: int) -> Owned | None:
    rows = await store.scalars(select(table).where(table.id == row_id))
    return rows[0] if rows else None


async def export_job_page(store: Store, owner_id: int | None, before_id: int | None, limit: int) -> Sequence[ExportJob]:
    return await _owned_page(store, ExportJob, owner_id, before_id, limit)


async def export_job(store: Store, job_id: int) -> ExportJob | None:
    return await _by_id(store, ExportJob, job_id)


async def export_schedule_page(
    store: Store, owner_id: int | None, before_id: int | None, limit: int
) -> Sequence[ExportSchedule]:
    return await _owned_page(store, ExportSchedule, owner_id, before_id, limit)


async def export_schedule(store: Store, schedule_id: int) -> ExportSchedule | None:
    return await _by_id(store, ExportSchedule, schedule_id)


async def active_job_count(store: Store, owner_id: int) -> int:
    """The owner's jobs still QUEUED or RUNNING."""
    return int(
        await store.scalar(
            select(func.count()).select_from(ExportJob).where(
                ExportJob.owner_id == owner_id, ExportJob.status.in_(("QUEUED", "RUNNING"))
            )
        )
    )
