"""Groups by id, the tree (children, subtree, ancestors) through the closure table, member counts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import aliased
from strawberry.dataloader import DataLoader

from app.store.models import Group, GroupClosure
from dataloaders.records import GroupRecord, ids_in, once_per_dialect, records
from dataloaders.store import Store


@once_per_dialect
def _groups_by_id(postgres: bool):  # type: ignore[no-untyped-def]
    return select(*GroupRecord.columns).where(ids_in(Group.__table__.c.id, postgres))  # type: ignore[attr-defined]


@once_per_dialect
def _children_of(postgres: bool):  # type: ignore[no-untyped-def]
    g = Group.__table__.c  # type: ignore[attr-defined]
    return select(*GroupRecord.columns).where(ids_in(g.parent_id, postgres)).order_by(g.name, g.id)


@once_per_dialect
def _ancestors_of(postgres: bool):  # type: ignore[no-untyped-def]
    g, gc = Group.__table__.c, GroupClosure.__table__.c  # type: ignore[attr-defined]
    return (
        select(gc.descendant_id, *GroupRecord.columns)
        .join_from(GroupClosure.__table__, Group.__table__, g.id == gc.ancestor_id)  # type: ignore[attr-defined]
        .where(ids_in(gc.descendant_id, postgres), gc.depth > 0)
        .order_by(gc.descendant_id, gc.depth.desc())
    )


def hidden_from_members(default: bool) -> Any:
    """Ids of the groups whose MEMBERs do not see them: every group of a tree whose root group turned
    `members_see_groups` off (or left it unset while the site default, `default`, is off)."""
    root, closure = aliased(Group), aliased(GroupClosure)
    hides = root.members_see_groups.is_(False)
    if not default:
        hides = or_(hides, root.members_see_groups.is_(None))
    return (
        select(closure.descendant_id)
        .join(root, root.id == closure.ancestor_id)
        .where(root.parent_id.is_(None), hides)
    )


def gives_sight(membership: Any, members_see_default: bool) -> ColumnElement[bool]:
    """The memberships (of `membership`, the table or an alias) that count in anyone's Reach: not ended, and
    not a MEMBER membership in a tree whose members do not see their groups."""
    return and_(
        membership.ended_at.is_(None),
        or_(membership.role != "MEMBER", membership.group_id.not_in(hidden_from_members(members_see_default))),
    )


class GroupLoaders:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.by_id = DataLoader(load_fn=self._by_id)
        self.children = DataLoader(load_fn=self._children)
        self.ancestors = DataLoader(load_fn=self._ancestors)
        self.subtree_ids = DataLoader(load_fn=self._subtree_ids)

    @property
    def postgres(self) -> bool:
        return self.store.dialect == "postgresql"

    async def _by_id(self, ids: Sequence[int]) -> list[Any]:
        """Plain records (dataloaders.records), not ORM rows; so are children and ancestors."""
        rows = await self.store.all(_groups_by_id(self.postgres), {"ids": sorted(set(ids))})
        found = {g.id: g for g in records(GroupRecord, rows)}
        return [found.get(i) for i in ids]

    async def _children(self, parent_ids: Sequence[int]) -> list[list[Any]]:
        rows = await self.store.all(_children_of(self.postgres), {"ids": sorted(set(parent_ids))})
        children: dict[int, list[Any]] = defaultdict(list)
        for group in records(GroupRecord, rows):
            children[group.parent_id].append(group)  # type: ignore[index]
            self.by_id.prime(group.id, group)
        return [children.get(i, []) for i in parent_ids]

    async def _ancestors(self, ids: Sequence[int]) -> list[list[Any]]:
        """Root first, the group itself excluded."""
        rows = await self.store.all(_ancestors_of(self.postgres), {"ids": sorted(set(ids))})
        ancestors: dict[int, list[Any]] = defaultdict(list)
        for row in rows:
            group = GroupRecord(*row[1:])
            ancestors[row[0]].append(group)
            self.by_id.prime(group.id, group)
        return [ancestors.get(i, []) for i in ids]

    async def _subtree_ids(self, ids: Sequence[int]) -> list[frozenset[int]]:
        rows = await self.store.all(
            select(GroupClosure.ancestor_id, GroupClosure.descendant_id).where(
                GroupClosure.ancestor_id.in_(list(set(ids)))
            )
        )
        subtree: dict[int, set[int]] = defaultdict(set)
        for ancestor_id, descendant_id in rows:
            subtree[ancestor_id].add(descendant_id)
        return [frozenset(subtree.get(i, ())) for i in ids]
