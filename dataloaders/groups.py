"""Groups by id, the tree (children, subtree, ancestors) through the closure table, and what `group(id:)` reads
with the group in one statement."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    String,
    and_,
    bindparam,
    cast,
    literal_column,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import aliased
from strawberry.dataloader import DataLoader

from app.store.models import CourseRollup, Group, GroupClosure, MemberRollup
from dataloaders.batch import Loader
from dataloaders.progress import rolled_up_courses, rolled_up_head
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


GROUP, ANCESTOR, CHILD, MEMBER_ROLLUP, SUMMARY_ROLLUP = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class TreeReads:
    """What `group(id:)` reads in the group's own statement, as the query asks: its ancestors, its children,
    the rolled-up member counts (member_rollup) of the group and of its children when they are read, and its
    rolled-up progress summary (dataloaders.progress.rolled_up_head and rolled_up_courses), with the consent
    flag when `consent_matters`."""

    ancestors: bool = False
    children: bool = False
    member_counts: bool = False
    summary: bool = False
    consent_matters: bool = False

    def __bool__(self) -> bool:
        return self.ancestors or self.children or self.member_counts or self.summary


@cache
def _groups_with_tree(postgres: bool, reads: TreeReads, single: bool = False):  # type: ignore[no-untyped-def]
    """The groups by id with what `reads` asks, in one statement built once per process: rows of (kind, the
    asked id, rank, the group's columns), ordered as _ancestors_of (root first) and _children_of (by name)
    order theirs; with rolled-up rows asked, five columns more (label, n1, n2, n3, share), null in the groups'
    rows: a member_rollup row (the row's group as the asked id) is (role, memberships, on_consent), a summary
    row (course id or 0, n, done, average) as `rolled_up_summary` reads them.

    The ids are bound as `ids`; `single`: one id, bound as `id`. PostgreSQL plans a prepared statement
    generically once it is no worse than the plans made for each run's values, and the generic plan for
    `= ANY(:ids)` (guessing ten ids) hashes the whole group table; for `= :id` it is the plan each run would
    make, so `group(id:)` is planned once per connection instead of at every request (1.4 ms of PostgreSQL's
    CPU a request against 0.2, bench medium)."""
    g, gc = Group.__table__, GroupClosure.__table__  # type: ignore[attr-defined]
    one = bindparam("id", type_=Integer)

    def asked(column: Any) -> ColumnElement[bool]:
        return column == one if single else ids_in(column, postgres)

    zero = literal_column("0")
    rolled = reads.member_counts or reads.summary
    no_group = [null()] * GroupRecord.width
    no_extras = (
        [cast(null(), t).label(n) for n, t in (("label", String), ("n1", Integer), ("n2", Integer), ("n3", Integer), ("share", Float))]
        if rolled else []
    )

    def row(kind: int, owner: Any, rank: Any, group: Sequence[Any], extras: Sequence[Any] | None = None) -> list[Any]:
        return [literal_column(str(kind)), owner, rank, *group, *(no_extras if extras is None else extras)]

    parts = [
        select(literal_column(str(GROUP)).label("kind"), g.c.id.label("asked"), zero.label("rank"), *GroupRecord.columns, *no_extras)
        .where(asked(g.c.id))
    ]
    if reads.ancestors:
        parts.append(
            select(*row(ANCESTOR, gc.c.descendant_id, -gc.c.depth, GroupRecord.columns))
            .join_from(gc, g, g.c.id == gc.c.ancestor_id)
            .where(asked(gc.c.descendant_id), gc.c.depth > 0)
        )
    if reads.children:
        parts.append(select(*row(CHILD, g.c.parent_id, zero, GroupRecord.columns)).where(asked(g.c.parent_id)))
    if reads.member_counts:
        r = MemberRollup.__table__  # type: ignore[attr-defined]
        counted = [r.c.role, r.c.memberships, r.c.on_consent, null(), null()]
        parts.append(select(*row(MEMBER_ROLLUP, r.c.group_id, zero, no_group, counted)).where(asked(r.c.group_id)))
        if reads.children:
            parts.append(
                select(*row(MEMBER_ROLLUP, r.c.group_id, zero, no_group, counted))
                .join_from(r, g, g.c.id == r.c.group_id)
                .where(asked(g.c.parent_id))
            )
    if reads.summary:
        cr = CourseRollup.__table__  # type: ignore[attr-defined]
        head = rolled_up_head(g.c.id, reads.consent_matters)
        parts.append(select(*row(SUMMARY_ROLLUP, g.c.id, zero, no_group, [null(), *head])).where(asked(g.c.id)))
        columns, enrolled = rolled_up_courses()
        parts.append(
            select(*row(SUMMARY_ROLLUP, cr.c.group_id, zero, no_group, [null(), *columns]))
            .where(asked(cr.c.group_id), enrolled)
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
        self._with_tree: dict[TreeReads, DataLoader[int, Any]] = {}
        # read with a group (`load_with_tree`), for the loaders of other domains: group id -> its member_rollup
        # rows as (role, memberships, on_consent), for dataloaders.memberships' counts; (group id, consent
        # matters) -> its rolled-up summary's rows, for dataloaders.progress' summaries
        self.rolled_up_members: dict[int, list[tuple[str, int, int]]] = {}
        self.rolled_up_summaries: dict[tuple[int, bool], Sequence[Any]] = {}

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

    async def load_with_tree(self, group_id: int, reads: TreeReads) -> Any:
        """The group (its record or None), with what `reads` asks read in the same statement: its ancestors
        and children primed into those loaders, the rolled-up rows kept in `rolled_up_members` and
        `rolled_up_summaries` for the member counts and the progress summary: for `group(id:)`, one statement
        where each would cost one."""
        if not reads or self.by_id.cache_map.get(group_id) is not None:
            return await self.by_id.load(group_id)
        loader = self._with_tree.get(reads)
        if loader is None:

            async def load(ids: Sequence[int]) -> list[Any]:
                return await self._load_with_tree(ids, reads)

            loader = self._with_tree[reads] = DataLoader(load_fn=load)
        return await loader.load(group_id)

    async def _load_with_tree(self, ids: Sequence[int], reads: TreeReads) -> list[Any]:
        asked = sorted(set(ids))
        single = len(asked) == 1
        statement = _groups_with_tree(self.postgres, reads, single)
        rows = await self.store.rows(statement, {"id": asked[0]} if single else {"ids": asked})
        found: dict[int, Any] = {}
        tree: tuple[dict[int, list[Any]], ...] = ({}, defaultdict(list), defaultdict(list))
        # group id -> role -> (memberships, on_consent): a group both asked and a child of one asked comes twice
        counted: dict[int, dict[str, tuple[int, int]]] = defaultdict(dict)
        summaries: dict[int, list[Any]] = defaultdict(list)
        end = 3 + GroupRecord.width
        for row in rows:
            kind = row[0]
            if kind == MEMBER_ROLLUP:
                counted[row[1]][row[end]] = (row[end + 1], row[end + 2])
                continue
            if kind == SUMMARY_ROLLUP:
                summaries[row[1]].append(row[end + 1 : end + 5])
                continue
            group = GroupRecord(*row[3:end])
            if kind == GROUP:
                found[row[1]] = group
            else:
                tree[kind][row[1]].append(group)
            self.by_id.prime(group.id, group)
        for group_id in ids:
            if reads.ancestors:
                self.ancestors.prime(group_id, tree[ANCESTOR].get(group_id, []))
            if reads.children:
                self.children.prime(group_id, tree[CHILD].get(group_id, []))
            self.by_id.prime(group_id, found.get(group_id))
            if group_id not in found:
                continue
            if reads.member_counts:
                for owner in (group_id, *(c.id for c in tree[CHILD].get(group_id, ()))):
                    by_role = counted.get(owner, {})
                    self.rolled_up_members.setdefault(owner, [(role, *n) for role, n in by_role.items()])
            if reads.summary:
                self.rolled_up_summaries.setdefault((group_id, reads.consent_matters), summaries[group_id])
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
