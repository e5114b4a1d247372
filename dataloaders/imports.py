"""Rostering queries: learners with use and no group (the unassigned active students)."""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, exists, func, not_, select

from app.store.models import Membership, Usage, User
from dataloaders.store import Store

ACTIVE_MINUTES = 1


def has_no_membership(user_id: ColumnElement[int]) -> ColumnElement[bool]:
    """No membership at all (consent-based ones count too; ended ones do not: an archived learner is unassigned)."""
    return not_(exists().where(Membership.user_id == user_id, Membership.ended_at.is_(None)))


def is_active_learner(user_id: ColumnElement[int]) -> ColumnElement[bool]:
    """At least 1 minute of use in total (a learner who used the product)."""
    used = select(func.coalesce(func.sum(Usage.minutes), 0)).where(Usage.user_id == user_id).scalar_subquery()
    return used >= ACTIVE_MINUTES


async def unassigned_active_count(store: Store) -> int:
    return int(
        await store.scalar(
            select(func.count())
            .select_from(User)
            .where(and_(User.kind == "LEARNER", has_no_membership(User.id), is_active_learner(User.id)))
        )
    )
