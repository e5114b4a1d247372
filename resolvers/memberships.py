"""The Membership type and the membership mutations."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry
from sqlalchemy import select
from strawberry.types import Info

from app.ids import to_global_id
from app.models import Membership as MembershipRow
from permissions.filters import group_visible
from resolvers.common import Node
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
