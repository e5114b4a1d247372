"""The people and groups every domain hands out, as plain objects, and the lookups that hand them out.

Users and groups are reached from every domain (a membership's user, a review's submitter, a report row's
learner), so their loading and visibility live here, below the domain modules. Resolvers return these views
and Strawberry resolves them as the `User` and `Group` types, which are only ever named lazily
(`UserType`, `GroupType`): no domain module imports another at run time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import strawberry
from sqlalchemy import select
from strawberry.types import Info

from app.runtime.errors import BadInput, NotFound
from app.runtime.ids import require_id
from app.runtime.subtrees import never_pending
from app.store.models import Group as GroupRow
from app.store.models import User as UserRow
from dataloaders.batch import load_all
from permissions.filters import user_visible
from permissions.reach import Permission, Reach, UserSubject

# the Strawberry types by name only: the modules that define them sit above every other domain
UserType = Annotated["User", strawberry.lazy("resolvers.users")]  # noqa: F821
GroupType = Annotated["Group", strawberry.lazy("resolvers.groups")]  # noqa: F821


@never_pending
@dataclass(slots=True)
class UserView:
    """A user row (or record) with the ids of the groups of its own memberships (what decisions about it
    need; None when the viewer's Reach decides from the row alone, `Reach.decides_users_by_row`). `progress`:
    its course cards when a list resolver loaded them for the whole page at once
    (resolvers.progress.preload_course_progress); None: not loaded."""

    row: UserRow
    group_ids: frozenset[int] | None
    staff_group_ids: frozenset[int] | None = None
    progress: list[Any] | None = None
    subject: UserSubject | None = None  # made on first use: every check on the user reads it
    group_subject_id: ClassVar[None] = None  # decided on the user, not a group (read without a miss)

    def __getattr__(self, name: str) -> object:
        """The row's columns, so that plain fields of the User type resolve without a method."""
        return getattr(self.row, name)

    @property
    def database_id(self) -> int:
        return self.row.id  # type: ignore[return-value]

    # the columns a page of users reads most, without going through __getattr__
    first_name = property(lambda self: self.row.first_name)
    last_name = property(lambda self: self.row.last_name)
    email = property(lambda self: self.row.email)

    @property
    def user_subject(self) -> UserSubject:
        if self.subject is None:
            self.subject = UserSubject.of(self.row, self.group_ids, self.staff_group_ids)
        return self.subject


@never_pending
@dataclass(slots=True)
class GroupView:
    row: GroupRow

    def __getattr__(self, name: str) -> object:
        """The row's columns, so that plain fields of the Group type resolve without a method."""
        return getattr(self.row, name)

    # the column every page of members reads, without going through __getattr__
    name = property(lambda self: self.row.name)

    @property
    def database_id(self) -> int:
        return self.row.id  # type: ignore[return-value]

    @property
    def group_subject_id(self) -> int:
        return self.row.id  # type: ignore[return-value]


def subject_of(user: UserView) -> UserSubject:
    return user.user_subject


async def prepare_users(info: Info, rows: Sequence[UserRow], from_loader: bool = False) -> list[UserView]:
    """Wrap rows as users ready for synchronous permission checks (one batch of group ids, none when the
    viewer's Reach decides about users from their rows alone: a site admin). `from_loader`: the rows came
    from the user loader, which need not be primed with them again."""
    reach: Reach = await info.context.load_reach()
    if not from_loader:
        info.context.loaders.users.prime(rows)
    if reach.decides_users_by_row:
        return [UserView(row, None) for row in rows]
    own = await load_all(info.context.loaders.users.own_groups, [r.id for r in rows])
    return [UserView(row, groups.group_ids, groups.staff_group_ids) for row, groups in zip(rows, own, strict=True)]


async def visible_users(
    info: Info, ids: Sequence[int], permission: Permission = Permission.VIEW_PROFILE
) -> list[UserView | None]:
    """Users by id, None for those missing or not visible to the viewer (the two look the same)."""
    reach: Reach = await info.context.load_reach()
    rows = await info.context.loaders.users.many(ids)
    present = [r for r in rows if r is not None]
    users = {u.row.id: u for u in await prepare_users(info, present)}
    out: list[UserView | None] = []
    for user_id in ids:
        user = users.get(user_id)
        out.append(user if user is not None and reach.may(permission, subject_of(user)) else None)
    return out


async def visible_user(info: Info, user_id: int) -> UserView | None:
    return (await visible_users(info, [user_id]))[0]


async def user_by_id(info: Info, user_id: int) -> UserView | None:
    """`user(id:)` and `node(id:)`: decided in the query (the reach's row filter), so a hidden user and a
    missing id cost the same one statement that returns nothing: the answer's timing tells them no more
    apart than its content."""
    reach: Reach = await info.context.load_reach()
    visible = user_visible(reach, UserRow.id, account=(UserRow.home_group_id, UserRow.site_roles))
    row = await info.context.store.scalar(select(UserRow).where(UserRow.id == user_id, visible))
    if row is None:
        return None
    info.context.loaders.users.prime([row])
    return await visible_user(info, user_id)


async def require_visible_user(info: Info, global_id: str, field: str = "userId") -> UserView:
    user = await visible_user(info, require_id(global_id, "User", field))
    if user is None:
        raise NotFound("No such user.", field=field)
    return user


async def visible_groups(info: Info, ids: list[int]) -> list[GroupView | None]:
    reach: Reach = await info.context.load_reach()
    rows = await info.context.loaders.groups.by_id.load_many(ids)
    return [GroupView(row=r) if r is not None and reach.sees_group(r.id) else None for r in rows]  # type: ignore[arg-type]


async def visible_group(info: Info, group_id: int) -> GroupView | None:
    return (await visible_groups(info, [group_id]))[0]


async def require_visible_group(info: Info, global_id: str, field: str = "id") -> GroupView:
    """The group the argument names; NOT_FOUND alike for missing and invisible ones."""
    group = await visible_group(info, require_id(global_id, "Group", field))
    if group is None:
        raise NotFound("No such group.", field=field)
    return group


def normalize_email(email: str) -> str:
    return email.strip().lower()


def check_email(email: str, field: str = "email") -> str:
    email = email.strip()
    if len(email) > 320 or "@" not in email or email.startswith("@") or email.endswith("@") or " " in email:
        raise BadInput("email is not a valid address", field=field)
    return email
