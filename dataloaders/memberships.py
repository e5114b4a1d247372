"""Memberships of groups: counts and keyset pages, batched over every group a response asks about.

A resolver names the row filter (a `Visible` from permissions.filters) and the list arguments; every group
asking with the same arguments shares one DataLoader, so a dashboard of 100 groups each asking
`memberCount` or `members(first: 50)` is one SQL statement. The page query brings the users and groups
of the memberships along and primes their loaders.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import ColumnElement, Integer, bindparam, func, literal_column, select, true
from sqlalchemy.orm import aliased
from strawberry.dataloader import DataLoader

from app.store import keyset
from app.store.keyset import Key, Window
from app.store.models import Group, GroupClosure, MemberRollup, Membership, User
from dataloaders.batch import answered
from dataloaders.groups import GroupLoaders
from dataloaders.records import (
    GroupRecord,
    ListedUserRecord,
    MembershipRecord,
    ShownGroupRecord,
    ShownUserRecord,
    as_read,
    columns_as_read,
    ids_in,
    once_per_dialect,
)
from dataloaders.store import Store
from dataloaders.users import UserLoaders, name_matches

# (membership.user_id, membership.group_id) -> the condition keeping memberships the viewer may see
Visible = Callable[[Any, Any], ColumnElement[bool]]


@dataclass(frozen=True)
class MemberFilter:
    """The arguments of `Group.members` that select rows (not the page)."""

    include_nested: bool = False
    roles: tuple[str, ...] | None = None
    search: str | None = None
    include_ended: bool = False


# one keyset page: (membership record, the user's normalized last name for the cursor), in fetch order
MemberPage = list[tuple[Any, str]]


@dataclass(frozen=True)
class PageColumns:
    """Whether a page reads its users and its groups as shown records (dataloaders.records: ShownUserRecord,
    ShownGroupRecord), kept in `MembershipLoaders.shown`, rather than whole records primed into the user and
    group loaders."""

    shown_users: bool = False
    shown_groups: bool = False


WHOLE = PageColumns()


@dataclass
class ShownRecords:
    """id -> the shown record a page read (PageColumns), for the page's own fields only."""

    users: dict[int, Any] = field(default_factory=dict)
    groups: dict[int, Any] = field(default_factory=dict)


def _rolls_up(filter: MemberFilter, admitted: str | None) -> bool:
    """Whether a count is read from member_rollup (see `MembershipLoaders.counts`)."""
    return admitted in ("all", "own") and filter.include_nested and filter.search is None and not filter.include_ended


def _total(by_role: dict[str, int], filter: MemberFilter) -> int:
    if filter.roles is None:
        return sum(by_role.values())
    return sum(by_role.get(role, 0) for role in filter.roles)


def _records(columns: PageColumns) -> tuple[Any, Any]:
    """The record types of a page's users and groups."""
    return (
        ShownUserRecord if columns.shown_users else ListedUserRecord,
        ShownGroupRecord if columns.shown_groups else GroupRecord,
    )


# made once: an alias rebuilt per statement costs a proxy per column each time
_CLOSURE = aliased(GroupClosure, name="member_closure")
# (last name, id) read from membership alone: sort_name is the member's last_name_normalized, kept by triggers
# (app.store.member_order), so a big subtree's page walks ix_membership_role_sort_name_id in order
_PAGE_KEYS = (Key(Membership.sort_name), Key(Membership.id))
# (one group or many, the filter, the window's shape) -> the page's statement, for callers who see everyone
# (building it and its cache key cost ~0.6 ms a request); a few dozen shapes at most
_PAGE_STATEMENTS: dict[Hashable, Any] = {}


@once_per_dialect
def _rolled_up_counts(postgres: bool):  # type: ignore[no-untyped-def]
    r = MemberRollup.__table__.c  # type: ignore[attr-defined]
    return select(r.group_id, r.role, r.memberships, r.on_consent).where(ids_in(r.group_id, postgres))


def like_prefix(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%"


class MembershipLoaders:
    def __init__(self, store: Store, users: UserLoaders, groups: GroupLoaders) -> None:
        self.store = store
        self.users = users
        self.groups = groups
        self._counts: dict[Hashable, DataLoader[int, int]] = {}
        # (scope, filter without roles) -> group id -> role -> memberships counted
        self._role_counts: dict[Hashable, dict[int, dict[str, int]]] = {}
        self._pages: dict[Hashable, DataLoader[int, MemberPage]] = {}
        self.shown = ShownRecords()
        self._of_user: dict[Hashable, DataLoader[int, list[Membership]]] = {}

    def of_user(self, scope: Hashable, visible: Visible) -> DataLoader[int, list[Membership]]:
        """user id -> that user's memberships (not ended) the viewer may see, oldest first (one statement per
        batch)."""
        loader = self._of_user.get(scope)
        if loader is None:

            async def load(user_ids: Sequence[int]) -> list[list[Membership]]:
                rows = await self.store.scalars(
                    select(Membership)
                    .where(
                        Membership.user_id.in_(sorted(set(user_ids))), Membership.ended_at.is_(None),
                        visible(Membership.user_id, Membership.group_id),
                    )
                    .order_by(Membership.id)
                )
                found: dict[int, list[Membership]] = defaultdict(list)
                for row in rows:
                    found[row.user_id].append(row)
                return [found.get(u, []) for u in user_ids]

            loader = self._of_user[scope] = DataLoader(load_fn=load)
        return loader

    # --- the shared FROM/WHERE ----------------------------------------------------------------

    def _where(self, query, closure, group_ids: Sequence[int] | None, filter: MemberFilter, visible: Visible):  # type: ignore[no-untyped-def]
        """Memberships of each asked group (with its subtree when nested) that the viewer may see; the groups
        are `group_ids`, or (None) bound as `asked_groups` at execution. They are written into the statement's
        text: PostgreSQL plans a prepared statement generically after five runs, and one generic plan cannot
        serve both a subtree of 10 memberships and one of 19,000 (the root's page took 41 ms on the plan made
        for small groups, 2.7 ms on its own)."""
        values = sorted(set(group_ids)) if group_ids is not None else None
        asked = bindparam("asked_groups", values, expanding=True, literal_execute=True)
        query = query.select_from(closure).join(Membership, Membership.group_id == closure.descendant_id).where(
            closure.ancestor_id.in_(asked), visible(Membership.user_id, Membership.group_id)
        )
        if not filter.include_nested:
            query = query.where(closure.depth == 0)
        if not filter.include_ended:
            query = query.where(Membership.ended_at.is_(None))
        if filter.roles is not None:  # written into the text too: a generic plan would guess 1/4 of memberships a role
            roles = bindparam("roles", sorted(filter.roles), expanding=True, literal_execute=True)
            query = query.where(Membership.role.in_(roles))
        if filter.search:
            query = query.join(User, User.id == Membership.user_id).where(name_matches(User, filter.search))
        return query

    # --- counts -------------------------------------------------------------------------------

    def counts(
        self, scope: Hashable, filter: MemberFilter, visible: Visible, admitted: str | None = None
    ) -> DataLoader[int, int]:
        """group id -> number of memberships the viewer may see (with `filter`).

        The statement counts per (group, role), and what it learns serves every roles filter with the same
        other arguments: a dashboard asking `memberCount` and `members(roles: [MEMBER]) { totalCount }` on
        the same group counts once. `admitted` (permissions.filters.member_rows_admitted) says whether `visible`
        admits every membership ("all") or every one that is not consent-based ("own"): then a nested count
        without search or ended memberships is read from member_rollup (app/store/rollup.py), one index
        lookup per group whatever its subtree's size; for "own", only for groups whose subtree holds no
        consent-based membership (the rolled-up row tells), the others being counted directly."""
        key = (scope, filter)
        loader = self._counts.get(key)
        if loader is None:
            known = self._role_counts.setdefault((scope, replace(filter, roles=None)), {})

            def total(group_id: int) -> int:
                return _total(known.get(group_id, {}), filter)

            async def load(group_ids: Sequence[int]) -> list[int]:
                # The children of the asked groups are counted in the same statement, so a dashboard asking
                # memberCount on a group and on its children costs one count statement whether the group
                # has children or not. The children come from the children loader (when the query asks for
                # Group.children, its very batch: awaiting its futures one by one, not through a gather, wakes
                # this task right after that field's, before the children's own memberCount asks).
                asked = [g for g in dict.fromkeys(group_ids) if g not in known]
                if not asked:
                    return [total(g) for g in group_ids]
                loader = self._counts[key]
                kids: list[int] = []
                if filter.roles is None and filter.search is None and not filter.include_ended:  # memberCount's
                    # not for a group asked with its parent (the children primed with `group(id:)` answer at
                    # once, so they can be in the batch of their parent): no grandchildren are counted
                    tops = [g for g in asked if self._parent_of(g) not in asked]
                    futures = [self.groups.children.load(g) for g in tops]  # one batch
                    for future in futures:
                        kids += [c.id for c in await future]
                pending: dict[int, asyncio.Future[int]] = {}
                for kid in kids:
                    if kid not in asked and kid not in known and loader.cache_map.get(kid) is None:
                        pending[kid] = asyncio.get_running_loop().create_future()
                        loader.cache_map.set(kid, pending[kid])
                counting = [*asked, *pending]
                try:
                    rows = await self._count_rows(counting, filter, visible, admitted)
                except BaseException as exc:
                    for future in pending.values():
                        future.set_exception(exc)
                    raise
                for group_id in counting:
                    known.setdefault(group_id, {})
                for owner, role, n in rows:
                    known[owner][role] = int(n)
                for kid, future in pending.items():
                    future.set_result(total(kid))
                return [total(g) for g in group_ids]

            loader = self._counts[key] = DataLoader(load_fn=load)
        return loader

    async def _count_rows(
        self, group_ids: list[int], filter: MemberFilter, visible: Visible, admitted: str | None
    ) -> list[tuple[int, str, int]]:
        """(group, role, memberships) rows: from member_rollup where it answers (see `counts`), else counted.
        The member_rollup rows read with the group (`GroupLoaders.load_with_tree`) need no statement."""
        direct = group_ids
        out: list[tuple[int, str, int]] = []
        if _rolls_up(filter, admitted):
            read = self.groups.rolled_up_members
            rolled = [(group, *row) for group in group_ids for row in read.get(group, ())]
            unread = [g for g in group_ids if g not in read]
            if unread:
                postgres = self.store.dialect == "postgresql"
                rolled += await self.store.rows(_rolled_up_counts(postgres), {"ids": sorted(unread)})
            on_consent = {group for group, _role, _n, consent in rolled if consent and admitted == "own"}
            out = [(group, role, n) for group, role, n, _consent in rolled if group not in on_consent]
            direct = [g for g in group_ids if g in on_consent]
        if direct:
            closure = _CLOSURE
            query = self._where(
                select(closure.ancestor_id, Membership.role, func.count()), closure, direct, filter, visible
            ).group_by(closure.ancestor_id, Membership.role)
            out += [tuple(row) for row in await self.store.all(query)]  # type: ignore[misc]
        return out

    def count_now(
        self, scope: Hashable, filter: MemberFilter, visible: Visible, admitted: str | None, group_id: int
    ) -> int | None:
        """What `counts(...).load(group_id)` answers, when it needs no wait: counted already, or read with the
        group (its member_rollup rows, `GroupLoaders.load_with_tree`: a dashboard's group and its children);
        else None."""
        future = self.counts(scope, filter, visible, admitted).cache_map.get(group_id)
        if future is not None and answered(future):
            return future.result()  # type: ignore[no-any-return]
        rows = self.groups.rolled_up_members.get(group_id) if _rolls_up(filter, admitted) else None
        if rows is None or (admitted == "own" and any(consent for _role, _n, consent in rows)):
            return None
        by_role = {role: int(n) for role, n, _consent in rows}
        return _total(by_role, filter)

    def _parent_of(self, group_id: int) -> int | None:
        """The parent of a group this request has loaded already (None when not known)."""
        future = self.groups.by_id.cache_map.get(group_id)
        if future is None or not future.done() or future.cancelled() or future.exception() is not None:
            return None
        group = future.result()
        return getattr(group, "parent_id", None)

    # --- pages --------------------------------------------------------------------------------

    def pages(
        self, scope: Hashable, filter: MemberFilter, visible: Visible, window: Window, admitted: str | None = None,
        columns: PageColumns = WHOLE,
    ) -> DataLoader[int, MemberPage]:
        """group id -> one keyset page of memberships (ordered by last name then id), in fetch order with up to
        `window.fetch` rows.

        One statement for all groups: ROW_NUMBER() per asked group, keeping `window.fetch` rows of each
        (for a single group, ORDER BY ... LIMIT). When `visible` admits every membership (`admitted` "all":
        a site admin) and nothing is searched, the statement is built once per process for each shape of
        the arguments, the groups, the page's size and the cursor bound at execution."""
        key = (scope, filter, window, columns)
        loader = self._pages.get(key)
        if loader is None:

            async def load(group_ids: Sequence[int]) -> list[MemberPage]:
                return await self._load_pages(group_ids, filter, visible, window, admitted == "all", columns)

            loader = self._pages[key] = DataLoader(load_fn=load)
        return loader

    async def _load_pages(
        self, group_ids: Sequence[int], filter: MemberFilter, visible: Visible, window: Window, everyone: bool = False,
        columns: PageColumns = WHOLE,
    ) -> list[MemberPage]:
        single = len(set(group_ids)) == 1
        bound, params, shape = keyset.parametrized(_PAGE_KEYS, window)
        params.update(asked_groups=sorted(set(group_ids)), fetch=window.fetch)
        read = self.store.all
        postgres = self.store.dialect == "postgresql"
        if everyone and filter.search is None:
            query = _PAGE_STATEMENTS.get((single, filter, shape, postgres, columns))
            if query is None:
                query = _PAGE_STATEMENTS[(single, filter, shape, postgres, columns)] = self._page_statement(
                    single, filter, visible, bound, postgres, columns
                )
            read = self.store.rows  # built once: it may run lean
        else:
            query = self._page_statement(single, filter, visible, bound, postgres, columns)
        pages: dict[int, MemberPage] = defaultdict(list)
        user_record, group_record = _records(columns)
        users_at = 1 + MembershipRecord.width
        groups_at = users_at + user_record.width
        user_into = self.shown.users.__setitem__ if columns.shown_users else self.users.by_id.prime
        group_into = self.shown.groups.__setitem__ if columns.shown_groups else self.groups.by_id.prime
        groups: set[int] = set()  # a page's members share a few groups: each group's record made once
        for row in await read(query, params):
            membership = MembershipRecord(*row[1:users_at])
            user = user_record(*row[users_at:groups_at])
            pages[row[0]].append((membership, membership.sort_name))  # the cursor's last name: membership's own
            user_into(user.id, user)
            if membership.group_id not in groups:
                groups.add(membership.group_id)
                group = group_record(*row[groups_at:])
                group_into(group.id, group)
        return [pages.get(group_id, []) for group_id in group_ids]

    def _page_statement(  # type: ignore[no-untyped-def]
        self, single: bool, filter: MemberFilter, visible: Visible, window: Window, postgres: bool = False,
        columns: PageColumns = WHOLE,
    ):
        """The page's statement for `window` (its cursor's values bind parameters: keyset.parametrized), the
        groups bound as `asked_groups` and the rows to fetch as `fetch`."""
        user_record, group_record = _records(columns)
        closure = _CLOSURE
        keys = _PAGE_KEYS
        order = keyset.ordering(keys, window)
        # the rows to fetch written into the text: a generic plan guesses a LIMIT parameter at a tenth of the rows
        # and walked the page's index for a subtree of 270 learners (7,159 entries) instead of sorting them
        fetch = bindparam("fetch", type_=Integer, literal_execute=True)
        # the membership's own columns come out of the ranked rows: joining membership again by id for them
        # made PostgreSQL hash the whole table (a sequential scan of 20,000 rows for a page of 100)
        m = Membership.__table__  # type: ignore[attr-defined]
        ranked_columns = [
            closure.ancestor_id.label("owner"),
            *[
                as_read(m.c[c.key], postgres).label("membership_id" if c.key == "id" else f"membership_{c.key}")
                for c in MembershipRecord.columns
            ],
        ]
        if not single:
            ranked_columns.append(func.row_number().over(partition_by=closure.ancestor_id, order_by=order).label("rank"))
        inner = self._where(select(*ranked_columns), closure, None, filter, visible).where(*keyset.conditions(keys, window))
        if single:  # one group: a plain ORDER BY ... LIMIT (a top-N sort) instead of ranking every row
            inner = inner.order_by(*order).limit(fetch)
        ranked = inner.subquery()
        u, g = User.__table__, Group.__table__  # type: ignore[attr-defined]
        membership_columns = [ranked.c["membership_id" if c.key == "id" else f"membership_{c.key}"] for c in MembershipRecord.columns]
        query = select(ranked.c.owner, *membership_columns, *columns_as_read(user_record, postgres))
        query = query.select_from(ranked).join(u, u.c.id == ranked.c.membership_user_id)
        if postgres:
            # the page's groups by primary key: joined plainly, PostgreSQL hashed all groups for the page's
            # 101 rows (a sequential scan of 2,000 at the bench); OFFSET 0 keeps the subquery a lookup per row
            # (backend CPU of the page at level 5 0.35 -> 0.1 ms, root 1.15 -> 0.9)
            page_group = (
                select(*columns_as_read(group_record, postgres))
                .where(g.c.id == ranked.c.membership_group_id)
                .offset(literal_column("0", Integer))
                .lateral("page_group")
            )
            query = query.add_columns(*page_group.c).join(page_group, true())
        else:
            query = query.add_columns(*columns_as_read(group_record, postgres)).join(g, g.c.id == ranked.c.membership_group_id)
        outer = keyset.ordering((Key(ranked.c.membership_sort_name), Key(ranked.c.membership_id)), window)
        if single:
            return query.order_by(*outer)
        return query.where(ranked.c.rank <= fetch).order_by(ranked.c.owner, ranked.c.rank)
