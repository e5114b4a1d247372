"""Groups by id, the tree (children, subtree, ancestors) through the closure table, member counts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, literal_column, or_, select, union_all
from sqlalchemy.orm import aliased
from strawberry.dataloader import DataLoader

from app.store.models import Group, GroupClosure
from dataloaders.batch import Loader
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


GROUP, ANCESTOR, CHILD = 0, 1, 2


@once_per_dialect
def _groups_with_tree(postgres: bool, ancestors: bool, children: bool):  # type: ignore[no-untyped-def]
    """The groups by id with (as asked) their ancestors and their children, in one statement: rows of
    (kind, the asked id, rank, the group's columns), ordered as _ancestors_of (root first) and _children_of
    (by name) order theirs."""
    g, gc = Group.__table__, GroupClosure.__table__  # type: ignore[attr-defined]
    zero = literal_column("0")
    parts = [
        select(literal_column(str(GROUP)).label("kind"), g.c.id.label("asked"), zero.label("rank"), *GroupRecord.columns)
        .where(ids_in(g.c.id, postgres))
    ]
    if ancestors:
        parts.append(
            select(literal_column(str(ANCESTOR)), gc.c.descendant_id, -gc.c.depth, *GroupRecord.columns)
            .join_from(gc, g, g.c.id == gc.c.ancestor_id)
            .where(ids_in(gc.c.descendant_id, postgres), gc.c.depth > 0)
        )
    if children:
        parts.append(
            select(literal_column(str(CHILD)), g.c.parent_id, zero, *GroupRecord.columns).where(ids_in(g.c.parent_id, postgres))
        )
    tree = union_all(*parts).subquery("tree")
    return select(*tree.c).order_by(tree.c.kind, tree.c.asked, tree.c.rank, tree.c.name, tree.c.id)


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
        self.by_id = Loader(self._by_id)
        self.children = DataLoader(load_fn=self._children)
        self.ancestors = DataLoader(load_fn=self._ancestors)
        self.subtree_ids = DataLoader(load_fn=self._subtree_ids)
        self._with_tree: dict[tuple[bool, bool], DataLoader[int, Any]] = {}

    @property
    def postgres(self) -> bool:
        return self.store.dialect == "postgresql"

    async def _by_id(self, ids: Sequence[int]) -> list[Any]:
        """Plain records (dataloaders.records), not ORM rows; so are children and ancestors."""
        rows = await self.store.rows(_groups_by_id(self.postgres), {"ids": sorted(set(ids))})
        found = {g.id: g for g in records(GroupRecord, rows)}
        return [found.get(i) for i in ids]

    async def _children(self, parent_ids: Sequence[int]) -> list[list[Any]]:
        rows = await self.store.rows(_children_of(self.postgres), {"ids": sorted(set(parent_ids))})
        children: dict[int, list[Any]] = defaultdict(list)
        for group in records(GroupRecord, rows):
            children[group.parent_id].append(group)  # type: ignore[index]
            self.by_id.prime(group.id, group)
        return [children.get(i, []) for i in parent_ids]

    async def load_with_tree(self, group_id: int, ancestors: bool, children: bool) -> Any:
        """The group (its record or None), with its ancestors and children read in the same statement and
        primed into those loaders: for `group(id:)` when the query asks them (two statements less)."""
        if not (ancestors or children) or self.by_id.cache_map.get(group_id) is not None:
            return await self.by_id.load(group_id)
        loader = self._with_tree.get((ancestors, children))
        if loader is None:

            async def load(ids: Sequence[int]) -> list[Any]:
                return await self._load_with_tree(ids, ancestors, children)

            loader = self._with_tree[(ancestors, children)] = DataLoader(load_fn=load)
        return await loader.load(group_id)

    async def _load_with_tree(self, ids: Sequence[int], ancestors: bool, children: bool) -> list[Any]:
        statement = _groups_with_tree(self.postgres, ancestors, children)
        rows = await self.store.rows(statement, {"ids": sorted(set(ids))})
        found: dict[int, Any] = {}
        tree: tuple[dict[int, list[Any]], ...] = ({}, defaultdict(list), defaultdict(list))
        for row in rows:
            group = GroupRecord(*row[3:])
            if row[0] == GROUP:
                found[row[1]] = group
            else:
                tree[row[0]][row[1]].append(group)
            self.by_id.prime(group.id, group)
        for group_id in ids:
            if ancestors:
                self.ancestors.prime(group_id, tree[ANCESTOR].get(group_id, []))
            if children:
                self.children.prime(group_id, tree[CHILD].get(group_id, []))
            self.by_id.prime(group_id, found.get(group_id))
        return [found.get(i) for i in ids]

    async def _ancestors(self, ids: Sequence[int]) -> list[list[Any]]:
        """Root first, the group itself excluded."""
        rows = await self.store.rows(_ancestors_of(self.postgres), {"ids": sorted(set(ids))})
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
