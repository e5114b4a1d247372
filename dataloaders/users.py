"""Users by id, and the groups each user belongs to (for "over" decisions)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, and_, exists, false, func, not_, or_, select, true

from app.store import keyset
from app.store.keyset import Key, Window
from app.store.models import GroupClosure, Membership, User, fold
from dataloaders.batch import Loader
from dataloaders.records import UserRecord, columns_as_read, ids_in, once_per_dialect, records
from dataloaders.store import Store


class OwnGroups(NamedTuple):
    """The groups of a user's own memberships, and those of them where the user holds a staff role."""

    group_ids: frozenset[int]
    staff_group_ids: frozenset[int]


def own_groups_of(memberships: Iterable[tuple[int, int, str]], user_ids: Iterable[int]) -> dict[int, OwnGroups]:
    """Each user's OwnGroups from their own (not consent-based, not ended) memberships as (user id, group id,
    role) rows."""
    groups: dict[int, set[int]] = defaultdict(set)
    staff: dict[int, set[int]] = defaultdict(set)
    for user_id, group_id, role in memberships:
        groups[user_id].add(group_id)
        if role != "MEMBER":
            staff[user_id].add(group_id)
    return {i: OwnGroups(frozenset(groups.get(i, ())), frozenset(staff.get(i, ()))) for i in user_ids}


@once_per_dialect
def _users_by_id(postgres: bool):  # type: ignore[no-untyped-def]
    return select(*columns_as_read(UserRecord, postgres)).where(ids_in(User.__table__.c.id, postgres))  # type: ignore[attr-defined]


@once_per_dialect
def _group_ids_of_users(postgres: bool):  # type: ignore[no-untyped-def]
    m = Membership.__table__.c  # type: ignore[attr-defined]
    return select(m.user_id, m.group_id, m.role).where(
        ids_in(m.user_id, postgres), m.access_request_id.is_(None), m.ended_at.is_(None)
    )


class UserLoaders:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.by_id = Loader(self._users_by_id)
        self.own_groups = Loader(self._own_groups)

    @property
    def postgres(self) -> bool:
        return self.store.dialect == "postgresql"

    async def _users_by_id(self, ids: Sequence[int]) -> list[Any]:
        """Plain records (dataloaders.records), not ORM rows."""
        rows = await self.store.rows(_users_by_id(self.postgres), {"ids": sorted(set(ids))})
        found = {u.id: u for u in records(UserRecord, rows)}
        return [found.get(i) for i in ids]

    async def _own_groups(self, ids: Sequence[int]) -> list[OwnGroups]:
        """Groups of each user's own memberships; consent-based and ended ones give nobody reach over the user."""
        rows = await self.store.rows(_group_ids_of_users(self.postgres), {"ids": sorted(set(ids))})
        found = own_groups_of(rows, ids)
        return [found[i] for i in ids]

    async def many(self, ids: Sequence[int]) -> list[Any]:
        return list(await self.by_id.load_many(list(ids)))

    def prime(self, users: Sequence[Any]) -> None:
        for user in users:
            self.by_id.prime(user.id, user)


# the user list (users(filter:, orderBy:)), keyset-ordered by the chosen column, then id


@dataclass(frozen=True)
class UserSearch:
    """UserFilter with ids decoded and enums as their values."""

    search: str | None = None
    kinds: tuple[str, ...] | None = None
    roles: tuple[str, ...] | None = None
    analyst_of_group_id: int | None = None
    no_groups: bool | None = None
    active: bool | None = None
    status: str | None = None
    licence_type: str | None = None
    no_pupils: bool | None = None
    last_login_before: datetime | None = None
    home_group_id: int | None = None


_AFTER_EVERY_CHARACTER = "\U0010ffff"


def starts_with(column: ColumnElement[str], prefix: str) -> ColumnElement[bool]:
    """`column` starts with `prefix`, as a range on the column's index (binary order: SQLite's default, and
    PostgreSQL's "C" collation), which LIKE 'x%' cannot use on both engines."""
    return and_(column >= prefix, column < prefix + _AFTER_EVERY_CHARACTER)


def name_matches(user: Any, text: str, contact: ColumnElement[bool] | None = None) -> ColumnElement[bool]:
    """The one search of people (users(filter: {search}), Group.members(search:)): a prefix of the first name,
    the last name, the email, or of "First Last"; case-insensitive, accents folded (Zoë = zoe), each on an
    index (user.name_search holds "first last" folded, user.last_name_normalized the folded last name).
    `contact`: the rows whose email the caller may read; the email prefix matches only there."""
    folded = fold(text)
    email = text.strip().lower()
    if not folded and not email:
        return true()
    by_email = starts_with(user.email_normalized, email)
    return or_(
        starts_with(user.name_search, folded),
        starts_with(user.last_name_normalized, folded),
        by_email if contact is None else and_(by_email, contact),
    )


def user_search_conditions(search: UserSearch, contact: ColumnElement[bool] | None = None) -> list[ColumnElement[bool]]:
    """`contact`: the rows whose email the caller may read (the email prefix matches only there, so a search
    cannot spell out an email the caller may not see)."""
    from dataloaders.guardians import has_no_pupils, holds_licence
    from dataloaders.imports import has_no_membership, is_active_learner

    conditions: list[ColumnElement[bool]] = []
    if search.search:
        conditions.append(name_matches(User, search.search, contact))
    if search.kinds is not None:
        conditions.append(User.kind.in_(search.kinds))
    if search.roles is not None:
        conditions.append(or_(false(), *(User.site_roles.like(f"%{role}%") for role in search.roles)))
    if search.analyst_of_group_id is not None:
        conditions.append(
            exists().where(
                Membership.user_id == User.id,
                Membership.group_id == search.analyst_of_group_id,
                Membership.role == "ANALYST",
                Membership.ended_at.is_(None),
            )
        )
    if search.no_groups is not None:
        lonely = has_no_membership(User.id)
        conditions.append(lonely if search.no_groups else not_(lonely))
    if search.active is not None:
        active = and_(User.kind == "LEARNER", is_active_learner(User.id))
        conditions.append(active if search.active else not_(active))
    if search.status is not None:
        conditions.append(User.status == search.status)
    if search.licence_type is not None:
        conditions.append(holds_licence(User.id, search.licence_type))
    if search.no_pupils is not None:
        without = and_(User.kind == "EXTERNAL", has_no_pupils(User.id))
        conditions.append(without if search.no_pupils else and_(User.kind == "EXTERNAL", not_(has_no_pupils(User.id))))
    if search.last_login_before is not None:
        conditions.append(func.coalesce(User.last_login_at, User.created_at) < search.last_login_before)
    if search.home_group_id is not None:
        conditions.append(User.home_group_id.in_(subtree(search.home_group_id)))
    return conditions


USER_ORDERS: dict[str, tuple[Key, ...]] = {
    "LAST_NAME": (Key(User.last_name_normalized), Key(User.id)),
    "CREATED_AT": (Key(User.created_at), Key(User.id)),
    "LAST_LOGIN_AT": (Key(User.last_login_at, nullable=True), Key(User.id)),
}


def user_order(field: str, descending: bool) -> tuple[Key, ...]:
    """The keyset of users(orderBy:); never-signed-in users last both ways."""
    return tuple(Key(k.column, descending=descending, nullable=k.nullable) for k in USER_ORDERS[field])


def subtree(group_id: int):  # type: ignore[no-untyped-def]
    """Ids of the group and of every group nested in it (the closure table)."""
    return select(GroupClosure.descendant_id).where(GroupClosure.ancestor_id == group_id)


async def search_users(
    store: Store, search: UserSearch, order: Sequence[Key], window: Window, visible: ColumnElement[bool],
    contact: ColumnElement[bool] | None = None,
) -> list[User]:
    """One keyset page (in fetch order, `window.fetch` rows at most). `visible` and `contact`: the caller's row
    filters (permissions.filters), applied with the search."""
    statement = select(User).where(visible, *user_search_conditions(search, contact), *keyset.conditions(order, window))
    return list(await store.scalars(statement.order_by(*keyset.ordering(order, window)).limit(window.fetch)))


async def count_users(
    store: Store, search: UserSearch, visible: ColumnElement[bool], contact: ColumnElement[bool] | None = None
) -> int:
    conditions = user_search_conditions(search, contact)
    return int(await store.scalar(select(func.count()).select_from(User).where(visible, *conditions)))
