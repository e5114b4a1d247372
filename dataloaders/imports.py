"""Rostering queries: learners with use and no group (the unassigned active students)."""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, exists, func, not_, select, true

from app.store.models import GroupClosure, Membership, Usage, User
from dataloaders.store import Store

ACTIVE_MINUTES = 1


def has_no_membership(user_id: ColumnElement[int]) -> ColumnElement[bool]:
    """No membership at all (consent-based ones count too)."""
    return not_(exists().where(Membership.user_id == user_id))


def is_active_learner(user_id: ColumnElement[int]) -> ColumnElement[bool]:
    """At least 1 minute of use in total (a learner who used the product)."""
    used = select(func.coalesce(func.sum(Usage.minutes), 0)).where(Usage.user_id == user_id).scalar_subquery()
    return used >= ACTIVE_MINUTES


def homed_in(home_group_id: ColumnElement[int | None], scope_group_id: int | None) -> ColumnElement[bool]:
    """Accounts homed in the scope's subtree (every account when there is no scope)."""
    if scope_group_id is None:
        return true()
    return home_group_id.in_(select(GroupClosure.descendant_id).where(GroupClosure.ancestor_id == scope_group_id))


async def unassigned_active_count(store: Store, scope_group_id: int | None = None) -> int:
    """Learners with use and no group; with a scope, those homed in its subtree."""
    return int(
        await store.scalar(
            select(func.count())
            .select_from(User)
            .where(
                and_(User.kind == "LEARNER", has_no_membership(User.id), is_active_learner(User.id)),
                homed_in(User.home_group_id, scope_group_id),
            )
        )
    )
