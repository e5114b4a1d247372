"""Groups by id, the tree (children, subtree, ancestors) through the closure table, member counts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import select
from strawberry.dataloader import DataLoader

from app.store.models import Group, GroupClosure
from dataloaders.store import Store


class GroupLoaders:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.by_id = DataLoader(load_fn=self._by_id)
        self.children = DataLoader(load_fn=self._children)
        self.ancestors = DataLoader(load_fn=self._ancestors)
        self.subtree_ids = DataLoader(load_fn=self._subtree_ids)

    async def _by_id(self, ids: Sequence[int]) -> list[Group | None]:
        rows = await self.store.scalars(select(Group).where(Group.id.in_(list(set(ids)))))
        found = {g.id: g for g in rows}
        return [found.get(i) for i in ids]

    async def _children(self, parent_ids: Sequence[int]) -> list[list[Group]]:
        rows = await self.store.scalars(
            select(Group).where(Group.parent_id.in_(list(set(parent_ids)))).order_by(Group.name, Group.id)
        )
        children: dict[int, list[Group]] = defaultdict(list)
        for group in rows:
            children[group.parent_id].append(group)  # type: ignore[index]
            self.by_id.prime(group.id, group)
        return [children.get(i, []) for i in parent_ids]

    async def _ancestors(self, ids: Sequence[int]) -> list[list[Group]]:
        """Root first, the group itself excluded."""
        rows = await self.store.all(
            select(GroupClosure.descendant_id, Group)
            .join(Group, Group.id == GroupClosure.ancestor_id)
            .where(GroupClosure.descendant_id.in_(list(set(ids))), GroupClosure.depth > 0)
            .order_by(GroupClosure.descendant_id, GroupClosure.depth.desc())
        )
        ancestors: dict[int, list[Group]] = defaultdict(list)
        for descendant_id, group in rows:
            ancestors[descendant_id].append(group)
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
