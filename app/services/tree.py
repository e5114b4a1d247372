"""Keeping `group_closure` and `group.depth` right, in the caller's transaction."""

from __future__ import annotations

from sqlalchemy import delete, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.store.models import Group, GroupClosure


async def attach(session: AsyncSession, group_id: int, parent_id: int | None) -> None:
    """Closure rows for a new leaf group: itself at depth 0, and each ancestor of the parent."""
    await session.execute(insert(GroupClosure).values(ancestor_id=group_id, descendant_id=group_id, depth=0))
    if parent_id is not None:
        await session.execute(
            insert(GroupClosure).from_select(
                ["ancestor_id", "descendant_id", "depth"],
                select(GroupClosure.ancestor_id, literal(group_id), GroupClosure.depth + 1).where(
                    GroupClosure.descendant_id == parent_id
                ),
            )
        )


async def is_descendant(session: AsyncSession, candidate_id: int, group_id: int) -> bool:
    """True when candidate is group itself or lies under it."""
    found = await session.scalar(
        select(func.count()).select_from(GroupClosure).where(
            GroupClosure.ancestor_id == group_id, GroupClosure.descendant_id == candidate_id
        )
    )
    return bool(found)


async def subtree_height(session: AsyncSession, group_id: int) -> int:
    return int(
        await session.scalar(select(func.coalesce(func.max(GroupClosure.depth), 0)).where(GroupClosure.ancestor_id == group_id))
    )


async def move(session: AsyncSession, group_id: int, new_parent_id: int | None) -> None:
    """Re-nest a subtree: drop the links from outside ancestors into it, then link it under the new parent.
    The caller has refused cycles already."""
    subtree = select(GroupClosure.descendant_id).where(GroupClosure.ancestor_id == group_id)
    outside = select(GroupClosure.ancestor_id).where(
        GroupClosure.descendant_id == group_id, GroupClosure.ancestor_id != group_id
    )
    await session.execute(
        delete(GroupClosure).where(
            GroupClosure.descendant_id.in_(subtree.scalar_subquery()),
            GroupClosure.ancestor_id.in_(outside.scalar_subquery()),
        )
    )
    if new_parent_id is not None:
        above = aliased(GroupClosure)
        below = aliased(GroupClosure)
        await session.execute(
            insert(GroupClosure).from_select(
                ["ancestor_id", "descendant_id", "depth"],
                select(above.ancestor_id, below.descendant_id, above.depth + below.depth + 1)
                .select_from(above)
                .join(below, literal(True))
                .where(above.descendant_id == new_parent_id, below.ancestor_id == group_id),
            )
        )
    await session.execute(update(Group).where(Group.id == group_id).values(parent_id=new_parent_id))
    # depth of every group in the subtree = its number of proper ancestors
    depth_of = (
        select(func.count())
        .select_from(GroupClosure)
        .where(GroupClosure.descendant_id == Group.id, GroupClosure.depth > 0)
        .scalar_subquery()
    )
    await session.execute(
        update(Group).where(Group.id.in_(subtree.scalar_subquery())).values(depth=depth_of),
        execution_options={"synchronize_session": False},
    )


# tree changes under a lock
TREE_LOCK = (3, 0)  # pg_advisory_xact_lock(3, 0): the group tree


async def lock_tree(session: AsyncSession, *, exclusive: bool) -> None:
    """On PostgreSQL, re-nesting and deleting (exclusive) wait for each other and for creates (shared), so a
    cycle check or a subtree's closure rows are never computed from a tree another transaction is changing.
    SQLite serializes writers already (BEGIN IMMEDIATE)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    lock = func.pg_advisory_xact_lock if exclusive else func.pg_advisory_xact_lock_shared
    await session.execute(select(lock(*TREE_LOCK)))
