"""The Membership type and the membership mutations."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry
from sqlalchemy import select
from strawberry.types import Info

from app.ids import to_global_id
from app.models import Membership as MembershipRow
from dataloaders.memberships import MemberFilter, Visible
from permissions.filters import group_visible, user_visible
from permissions.reach import Reach
from resolvers.common import Node, PageInfo, clean_text, decode_cursor, encode_cursor, page_info, page_size
from resolvers.enums import GroupRole

if TYPE_CHECKING:
    from resolvers.consent import AccessRequest
    from resolvers.groups import Group
    from resolvers.users import User


@strawberry.type
class Membership(Node):
    row: strawberry.Private[MembershipRow]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Membership", self.row.id))  # type: ignore[arg-type]

    @strawberry.field
    def database_id(self) -> int:
        return self.row.id  # type: ignore[return-value]

    @strawberry.field
    def role(self) -> GroupRole:
        return GroupRole(self.row.role)

    @strawberry.field
    def created_at(self) -> datetime:
        return self.row.created_at

    @strawberry.field
    async def user(self, info: Info) -> Annotated[User, strawberry.lazy("resolvers.users")]:
        from resolvers.users import prepare_users

        row = await info.context.loaders.users.by_id.load(self.row.user_id)
        return (await prepare_users(info, [row]))[0]

    @strawberry.field
    async def group(self, info: Info) -> Annotated[Group, strawberry.lazy("resolvers.groups")]:
        from resolvers.groups import Group

        return Group(row=await info.context.loaders.groups.by_id.load(self.row.group_id))

    @strawberry.field(
        description="The consent that allowed this membership, when it was added on the strength of one. "
        "Shown to the consent's requester, its subject and site admins; null for everyone else."
    )
    async def access_request(self, info: Info) -> Annotated[AccessRequest, strawberry.lazy("resolvers.consent")] | None:
        if self.row.access_request_id is None:
            return None
        from resolvers.consent import access_request_for_membership

        return await access_request_for_membership(info, self.row.access_request_id)


async def memberships_of_user(info: Info, user_id: int) -> list[Membership]:
    """The user's memberships in groups the viewer sees (the user is visible already)."""
    reach = await info.context.load_reach()
    rows = await info.context.store.scalars(
        select(MembershipRow)
        .where(MembershipRow.user_id == user_id, group_visible(reach, MembershipRow.group_id))
        .order_by(MembershipRow.id)
    )
    return [Membership(row=r) for r in rows]


async def visible_membership(info: Info, membership_id: int) -> Membership | None:
    """A membership shows where its group and its user both do."""
    from resolvers.groups import visible_group
    from resolvers.users import visible_user

    rows = await info.context.store.scalars(select(MembershipRow).where(MembershipRow.id == membership_id))
    if not rows:
        return None
    row = rows[0]
    if await visible_group(info, row.group_id) is None or await visible_user(info, row.user_id) is None:
        return None
    return Membership(row=row)


# issue 3: the members list of a group (keyset pages, counts) and the membership mutations


@strawberry.type
class MembershipEdge:
    cursor: str
    node: Membership


@strawberry.type
class MembershipConnection:
    edges: list[MembershipEdge]
    page_info: PageInfo
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field
    async def total_count(self) -> int:
        return await self.count()


def member_visibility(reach: Reach) -> Visible:
    """Memberships shown in a visible group's lists: those of users the viewer may see. (Visibility of
    groups is closed under subtrees, so every membership of a visible group's subtree is in a visible group.)"""
    return lambda user_id, _group_id: user_visible(reach, user_id)


async def member_count(info: Info, group_id: int, include_nested: bool) -> int:
    reach = await info.context.load_reach()
    loader = info.context.loaders.memberships.counts(id(reach), MemberFilter(include_nested), member_visibility(reach))
    return await loader.load(group_id)


async def members_of(
    info: Info,
    group_id: int,
    roles: list[GroupRole] | None,
    include_nested: bool,
    search: str | None,
    first: int | None,
    after: str | None,
) -> MembershipConnection:
    reach = await info.context.load_reach()
    size = page_size(info, first)
    cursor = decode_cursor(after, [str, int])
    search = clean_text(search, "search", required=False) or None
    filter = MemberFilter(
        include_nested=include_nested,
        roles=tuple(sorted(r.value for r in roles)) if roles is not None else None,
        search=search.lower() if search else None,
    )
    visible = member_visibility(reach)
    loaders = info.context.loaders.memberships
    page = await loaders.pages(id(reach), filter, visible, size, tuple(cursor) if cursor else None).load(group_id)  # type: ignore[arg-type]
    edges = [MembershipEdge(cursor=encode_cursor(name, m.id), node=Membership(row=m)) for m, name in page.rows]

    async def count() -> int:
        return await loaders.counts(id(reach), filter, visible).load(group_id)

    return MembershipConnection(edges=edges, page_info=page_info(page.has_next, [e.cursor for e in edges]), count=count)
