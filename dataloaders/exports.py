"""Export jobs and schedules: one keyset page per query (newest first), and single rows by id."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select

from app.store.models import ExportJob, ExportSchedule
from dataloaders.store import Store


async def export_job_page(store: Store, owner_id: int | None, before_id: int | None, limit: int) -> Sequence[ExportJob]:
    """Up to `limit` jobs older than `before_id`, of `owner_id` (everyone's when None), newest first."""
    query = select(ExportJob)
    if owner_id is not None:
        query = query.where(ExportJob.owner_id == owner_id)
    if before_id is not None:
        query = query.where(ExportJob.id < before_id)
    return await store.scalars(query.order_by(ExportJob.id.desc()).limit(limit))


async def export_job(store: Store, job_id: int) -> ExportJob | None:
    rows = await store.scalars(select(ExportJob).where(ExportJob.id == job_id))
    return rows[0] if rows else None


async def export_schedule_page(
    store: Store, owner_id: int | None, before_id: int | None, limit: int
) -> Sequence[ExportSchedule]:
    query = select(ExportSchedule)
    if owner_id is not None:
        query = query.where(ExportSchedule.owner_id == owner_id)
    if before_id is not None:
        query = query.where(ExportSchedule.id < before_id)
    return await store.scalars(query.order_by(ExportSchedule.id.desc()).limit(limit))


async def export_schedule(store: Store, schedule_id: int) -> ExportSchedule | None:
    rows = await store.scalars(select(ExportSchedule).where(ExportSchedule.id == schedule_id))
    return rows[0] if rows else None


async def active_job_count(store: Store, owner_id: int) -> int:
    """The owner's jobs still QUEUED or RUNNING."""
    return int(
        await store.scalar(
            select(func.count()).select_from(ExportJob).where(
                ExportJob.owner_id == owner_id, ExportJob.status.in_(("QUEUED", "RUNNING"))
            )
        )
    )
