"""The Membership type and the membership mutations."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import strawberry
from graphql import FieldNode, GraphQLBoolean, value_from_ast
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from strawberry.types import Info

from app.runtime import cursors
from app.runtime.errors import BadInput, Conflict, Forbidden, NotFound
from app.runtime.ids import require_id, to_global_id
from app.runtime.subtrees import preloaded_in, side_effect_free
from app.services.audit import audit
from app.services.events import reach_changed
from app.store.models import AccessRequest as AccessRequestRow
from app.store.models import Membership as MembershipRow
from app.store.models import utcnow
from dataloaders.batch import load_all
from dataloaders.loaders import Loaders
from dataloaders.memberships import WHOLE, MemberFilter, PageColumns, Visible
from permissions.classes import Subjects, requires
from permissions.filters import group_visible, member_rows_admitted, member_rows_visible
from permissions.reach import (
    PLACED_ON_CONSENT,
    Permission,
    Reach,
    placement_basis,
    staff_sees_row,
)
from resolvers.common import (
    Node,
    PageInfo,
    asked_names,
    clean_text,
    paging,
    selected,
    sub_selected,
)
from resolvers.consent import AccessRequest, access_request_for_membership
from resolvers.enums import GroupRole
from resolvers.progress import preload_course_progress
from resolvers.views import (
    GroupType,
    GroupView,
    UserType,
    UserView,
    prepare_users,
    require_visible_group,
    visible_group,
    visible_groups,
    visible_user,
    visible_users,
)

_ROLES = {r.value: r for r in GroupRole}  # a dict look-up instead of the Enum class's call, once per member


@strawberry.type
class Membership(Node):
    row: strawberry.Private[MembershipRow]
    # set when the members list loaded the page's users and groups at once (members_of): then `user` and
    # `group` answer without waiting
    user_view: strawberry.Private[UserView | None] = None
    group_view: strawberry.Private[GroupView | None] = None

    @strawberry.field
    @side_effect_free
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Membership", self.row.id))  # type: ignore[arg-type]

    @strawberry.field
    @side_effect_free
    def database_id(self) -> int:
        return self.row.id  # type: ignore[return-value]

    @strawberry.field
    @side_effect_free
    def role(self) -> GroupRole:
        role = _ROLES.get(self.row.role)
        return role if role is not None else GroupRole(self.row.role)

    @strawberry.field
    @side_effect_free
    def created_at(self) -> datetime:
        return self.row.created_at

    @strawberry.field(
        description="When the membership was ended (archived) by the rostering sync or removeMembers(archive: true); "
        "an ended membership gives no access and no role, but keeps its history for reports."
    )
    @side_effect_free
    def ended_at(self) -> datetime | None:
        return self.row.ended_at

    @strawberry.field
    @side_effect_free
    @preloaded_in("user_view")
    def user(self, info: Info) -> UserType:
        if self.user_view is not None:
            return self.user_view
        return self._load_user(info)  # type: ignore[return-value]

    async def _load_user(self, info: Info) -> UserView:
        row = await info.context.loaders.users.by_id.load(self.row.user_id)
        return (await prepare_users(info, [row]))[0]

    @strawberry.field
    @side_effect_free
    @preloaded_in("group_view")
    def group(self, info: Info) -> GroupType:
        if self.group_view is not None:
            return self.group_view
        return self._load_group(info)  # type: ignore[return-value]

    async def _load_group(self, info: Info) -> GroupView:
        return GroupView(row=await info.context.loaders.groups.by_id.load(self.row.group_id))

    @strawberry.field(
        description="The consent that allowed this membership, when it was added on the strength of one. "
        "Shown to the consent's requester, its subject and site admins; null for everyone else."
    )
    async def access_request(self, info: Info) -> AccessRequest | None:
        if self.row.access_request_id is None:
            return None
        return await access_request_for_membership(info, self.row.access_request_id)


async def memberships_of_user(info: Info, user_id: int) -> list[Membership]:
    """The user's memberships in groups the viewer sees (the user is visible already)."""
    reach = await info.context.load_reach()
    loader = info.context.loaders.memberships.of_user(("of_user", id(reach)), lambda _u, g: group_visible(reach, g))
    return [Membership(row=r) for r in await loader.load(user_id)]


async def visible_membership(info: Info, membership_id: int) -> Membership | None:
    """A membership shows where its group and its user both do, or, as in the members list, where the caller
    holds a staff role on the group and the membership is an own one (an ended member's history)."""

    rows = await info.context.store.scalars(select(MembershipRow).where(MembershipRow.id == membership_id))
    if not rows:
        return None
    row = rows[0]
    if await visible_group(info, row.group_id) is None:
        return None
    reach = await info.context.load_reach()
    if not staff_sees_row(reach, row.group_id, row.access_request_id is not None) and await visible_user(info, row.user_id) is None:
        return None
    return Membership(row=row)


# the members list of a group (keyset pages, counts) and the membership mutations


@strawberry.type
class MembershipEdge:
    cursor: str
    node: Membership


@dataclass(slots=True)
class MemberEdge:
    """An edge of a members page as the `MembershipEdge` type reads it (plain attributes, no `is_type_of`):
    slotted, without the Strawberry type's keyword-only constructor and `__dict__`, one per member."""

    cursor: str
    node: Membership


@strawberry.type
class MembershipConnection:
    edges: list[MembershipEdge]  # MemberEdge objects
    page_info: PageInfo
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field
    async def total_count(self) -> int:
        return await self.count()


def member_visibility(reach: Reach, group_id: int) -> tuple[Hashable, Visible]:
    """The row filter for the memberships listed under `group_id`: permissions.filters.member_rows_visible."""
    return member_rows_visible(reach, group_id)


async def member_count(info: Info, group_id: int, include_nested: bool) -> int:
    reach = await info.context.load_reach()
    return await info.context.loaders.memberships.counts(*_count_of(reach, group_id, include_nested)).load(group_id)


def member_count_known(info: Info, group_id: int, include_nested: bool) -> int | None:
    """The count when the request holds it already (read with the group and its children, or counted), else
    None; never waits."""
    try:
        reach = info.context.reach
    except RuntimeError:  # not loaded yet
        return None
    return info.context.loaders.memberships.count_now(*_count_of(reach, group_id, include_nested), group_id)


async def count_before_fields(info: Info, group_id: int) -> None:
    """Counts what memberCount the query asks of this group and of its children (counted in the same
    statement) before their fields resolve, when it was not read with the group: the fields then answer at
    once (`member_count_known`) and the group and the list of its children complete in one pass each."""
    nodes = selected(info, "memberCount") + selected(info, "children", "memberCount")
    for nested in dict.fromkeys(_include_nested(info, node) for node in nodes):
        if member_count_known(info, group_id, nested) is None:
            await member_count(info, group_id, nested)


def _include_nested(info: Info, node: FieldNode) -> bool:
    for argument in node.arguments or ():
        if argument.name.value == "includeNested":
            return bool(value_from_ast(argument.value, GraphQLBoolean, info.variable_values))
    return False


def _count_of(reach: Reach, group_id: int, include_nested: bool) -> tuple[Hashable, MemberFilter, Visible, str | None]:
    """What the counts loader is keyed by for memberCount: (scope, filter, visible, admitted)."""
    scope, visible = member_visibility(reach, group_id)
    return scope, MemberFilter(include_nested), visible, member_rows_admitted(reach, group_id)


async def members_of(
    info: Info,
    group_id: int,
    roles: list[GroupRole] | None,
    include_nested: bool,
    search: str | None,
    first: int | None,
    after: str | None,
    last: int | None = None,
    before: str | None = None,
    include_ended: bool = False,
) -> MembershipConnection:
    pages = paging(info, "members", (cursors.TEXT, cursors.ID), first, after, last, before)
    reach = await info.context.load_reach()
    search = clean_text(search, "search", required=False) or None
    filter = MemberFilter(
        include_nested=include_nested,
        roles=tuple(sorted(r.value for r in roles)) if roles is not None else None,
        search=search.lower() if search else None,
        include_ended=include_ended,
    )
    scope, visible = member_visibility(reach, group_id)
    admitted = member_rows_admitted(reach, group_id)
    loaders = info.context.loaders.memberships
    columns = page_columns(info)
    fetched = await loaders.pages(scope, filter, visible, pages.window, admitted, columns).load(group_id)
    asks_cursors = bool(selected(info, "edges", "cursor"))
    rows, made, page_info_ = pages.page(fetched, lambda pair: (pair[1], pair[0].id), every=asks_cursors)
    memberships = [m for m, _name in rows]
    users, groups = await member_page_views(info, memberships, columns)
    edges = [
        MemberEdge(c, Membership(row=m, user_view=users.get(m.user_id), group_view=groups.get(m.group_id)))
        for c, m in zip(made, memberships, strict=True)
    ]

    async def count() -> int:
        return await loaders.counts(scope, filter, visible, admitted).load(group_id)

    return MembershipConnection(edges=edges, page_info=page_info_, count=count)


# the fields of a page's users and groups that read no column but those of the shown records
# (dataloaders.records: ShownUserRecord, ShownGroupRecord); `courseProgress` reads the user's id alone
SHOWN_USER_FIELDS = frozenset({"__typename", "id", "databaseId", "firstName", "lastName", "email", "courseProgress"})
SHOWN_GROUP_FIELDS = frozenset({"__typename", "id", "databaseId", "name"})


def page_columns(info: Info) -> PageColumns:
    """Shown records for the page's users (and groups) when the query asks nothing else of them: a dashboard's
    page then reads 8 user columns of 17 and 3 group columns of 16."""
    users, groups = selected(info, "edges", "node", "user"), selected(info, "edges", "node", "group")
    return PageColumns(
        shown_users=asked_names(info, users) <= SHOWN_USER_FIELDS,
        shown_groups=asked_names(info, groups) <= SHOWN_GROUP_FIELDS,
    )


async def member_page_views(
    info: Info, memberships: list[Any], columns: PageColumns = WHOLE
) -> tuple[dict[int, UserView], dict[int, GroupView]]:
    """What the query asks below a page of memberships, loaded for the whole page at once (the page query
    brought the users and groups along): the users with their group ids (one statement), their course cards
    when `user { courseProgress }` is asked without arguments (resolvers.progress.preload_course_progress),
    and the groups. The fields below then resolve synchronously."""
    users: dict[int, UserView] = {}
    groups: dict[int, GroupView] = {}
    if not memberships:
        return users, groups
    loaders = info.context.loaders
    user_nodes = selected(info, "edges", "node", "user")
    if user_nodes:
        user_ids = list(dict.fromkeys(m.user_id for m in memberships))
        if columns.shown_users:
            shown = loaders.memberships.shown.users
            rows = [shown.get(i) for i in user_ids]
        else:
            rows = await load_all(loaders.users.by_id, user_ids)
        # from_loader: shown records stay out of the user loader
        views = await prepare_users(info, [r for r in rows if r is not None], from_loader=True)
        users = {v.row.id: v for v in views}  # type: ignore[misc]
        progress_nodes = sub_selected(info, user_nodes, "course_progress") + sub_selected(info, user_nodes, "courseProgress")
        if progress_nodes and not any(n.arguments for n in progress_nodes):
            with_steps = any(sub_selected(info, progress_nodes, "steps"))
            await preload_course_progress(info, views, with_steps)
    if selected(info, "edges", "node", "group"):
        group_ids = list(dict.fromkeys(m.group_id for m in memberships))
        if columns.shown_groups:
            found = [loaders.memberships.shown.groups.get(i) for i in group_ids]
        else:
            found = await load_all(loaders.groups.by_id, group_ids)
        groups = {g.id: GroupView(row=g) for g in found if g is not None}
    return users, groups


MAX_ADD = 1000


def _named(ids: list[int]) -> str:
    return ", ".join(to_global_id("User", i) for i in ids)


async def add_members_target(info: Info, kwargs: dict[str, Any]) -> Subjects:
    return Subjects(groups=[(await require_visible_group(info, kwargs["group_id"], "groupId")).row.id])  # type: ignore[list-item]


async def visible_membership_rows(info: Info, global_ids: list[strawberry.ID], field: str) -> list[MembershipRow]:
    """The memberships named, each visible to the caller (NOT_FOUND naming the first that is not)."""
    ids = list(dict.fromkeys(require_id(g, "Membership", field) for g in global_ids))
    if not ids:
        raise BadInput(f"{field} must not be empty", field=field)
    if len(ids) > MAX_ADD:
        raise BadInput(f"at most {MAX_ADD} memberships at once", field=field)
    found = {r.id: r for r in await info.context.store.scalars(select(MembershipRow).where(MembershipRow.id.in_(ids)))}
    rows = [found.get(i) for i in ids]
    present = [r for r in rows if r is not None]
    groups = await visible_groups(info, [r.group_id for r in present])
    users = await visible_users(info, [r.user_id for r in present])
    reach = await info.context.load_reach()
    shown = {
        r.id for r, g, u in zip(present, groups, users, strict=True)
        if g is not None and (u is not None or staff_sees_row(reach, r.group_id, r.access_request_id is not None))
    }
    for membership_id, row in zip(ids, rows, strict=True):
        if row is None or row.id not in shown:
            raise NotFound(f"No such membership: {to_global_id('Membership', membership_id)}", field=field)
    return present


async def memberships_target(info: Info, kwargs: dict[str, Any]) -> Subjects:
    if "membership_ids" in kwargs:
        rows = await visible_membership_rows(info, kwargs["membership_ids"], "membershipIds")
    else:
        rows = await visible_membership_rows(info, [kwargs["membership_id"]], "membershipId")
    return Subjects(groups=sorted({r.group_id for r in rows}))


def refresh_after_change(info: Info) -> None:
    info.context.forget_reach()
    info.context.loaders = Loaders(info.context.store)


async def add_members(info: Info, group_gid: strawberry.ID, user_gids: list[strawberry.ID], role: GroupRole) -> list[Membership]:
    """All or nothing: every user must exist, be visible, not be in the group yet, and be placeable by the
    caller (`placement_basis`); the first failing rule names the users it refuses."""
    ctx = info.context
    reach: Reach = await ctx.load_reach()
    group = (await require_visible_group(info, group_gid, "groupId")).row
    ids = list(dict.fromkeys(require_id(u, "User", "userIds") for u in user_gids))
    if not ids:
        raise BadInput("userIds must not be empty", field="userIds")
    if len(ids) > MAX_ADD:
        raise BadInput(f"at most {MAX_ADD} users at once", field="userIds")
    users = await visible_users(info, ids)
    missing = [i for i, u in zip(ids, users, strict=True) if u is None]
    if missing:
        raise NotFound(f"No such user: {_named(missing)}", field="userIds", userIds=_named(missing).split(", "))
    present = [u for u in users if u is not None]
    present_rows = list(
        await ctx.store.scalars(
            select(MembershipRow).where(MembershipRow.group_id == group.id, MembershipRow.user_id.in_(ids))
        )
    )
    existing = {r.user_id for r in present_rows if r.ended_at is None}
    ended = {r.user_id: r.id for r in present_rows if r.ended_at is not None}  # archived: joining again revives it
    if existing:
        already = [i for i in ids if i in existing]
        raise Conflict(
            f"Already in the group (a user holds one role per group; use changeMemberRole): {_named(already)}",
            field="userIds", userIds=_named(already).split(", "),
        )
    mismatched = [u.row.id for u in present if u.row.synced != group.synced]
    if mismatched:  # the rostering sync owns synced users and synced groups: they only go together
        rule = "Only synced users may join a synced group" if group.synced else "Synced users join synced groups only"
        raise BadInput(
            f"{rule}: {_named(mismatched)}",  # type: ignore[arg-type]
            field="userIds", userIds=_named(mismatched).split(", "),  # type: ignore[arg-type]
        )
    bases: dict[int, str] = {}
    refused: list[int] = []
    for user in present:
        site_roles = [r for r in user.row.site_roles.split(",") if r]
        basis = placement_basis(reach, group.id, user.user_subject, role.value, site_roles)  # type: ignore[arg-type]
        if basis is None:
            refused.append(user.row.id)  # type: ignore[arg-type]
        else:
            bases[user.row.id] = basis  # type: ignore[index]
    if refused:
        why = (
            "ANALYST is given by site admins only, to users with the GROUP_ANALYST site role"
            if role is GroupRole.ANALYST
            else "You may not place these users in this group"
        )
        raise Forbidden(f"{why}: {_named(refused)}", field="userIds", userIds=_named(refused).split(", "))
    on_consent = [u for u, b in bases.items() if b == PLACED_ON_CONSENT]
    consents: dict[int, int] = {}
    if on_consent:
        consents = dict(
            await ctx.store.all(
                select(AccessRequestRow.subject_user_id, AccessRequestRow.id)
                .where(
                    AccessRequestRow.requester_id == reach.viewer_id,
                    AccessRequestRow.status == "GRANTED",
                    AccessRequestRow.subject_user_id.in_(on_consent),
                )
                .order_by(AccessRequestRow.id)
            )
        )
    async with ctx.store.transaction() as session:
        rows = []
        for i in ids:
            if i in ended:
                revived = await session.get(MembershipRow, ended[i])
                if revived is None or revived.ended_at is None:
                    raise Conflict("Some of these users joined the group meanwhile.", field="userIds")
                revived.role, revived.access_request_id, revived.ended_at = role.value, consents.get(i), None
                rows.append(revived)
            else:
                rows.append(MembershipRow(user_id=i, group_id=group.id, role=role.value, access_request_id=consents.get(i)))  # type: ignore[arg-type]
        session.add_all(rows)
        try:
            await session.flush()
        except IntegrityError:
            raise Conflict("Some of these users joined the group meanwhile.", field="userIds") from None
        for row in rows:
            audit(
                session, ctx.viewer_id, "membership.add", "membership", row.id, user_id=row.user_id,
                group_id=row.group_id, role=row.role, basis=bases[row.user_id], access_request_id=row.access_request_id,
            )
    refresh_after_change(info)
    await ctx.load_reach()
    return [Membership(row=r) for r in rows]


async def change_member_role(info: Info, membership_gid: strawberry.ID, role: GroupRole) -> Membership:
    """A new role as addMembers would give it; ANALYST memberships are given and changed by site admins only;
    memberships resting on a consent stay MEMBER."""
    ctx = info.context
    reach: Reach = await ctx.load_reach()
    row = (await visible_membership_rows(info, [membership_gid], "membershipId"))[0]
    if row.ended_at is not None:
        raise BadInput("This membership has ended; add the user to the group again instead.", field="membershipId")
    if row.role == role.value:
        return Membership(row=row)
    if row.access_request_id is not None:
        raise BadInput("A membership added on the strength of a consent is MEMBER only.", field="role")
    if row.role == "ANALYST" and not reach.is_admin:
        raise Forbidden("Only site admins change ANALYST memberships.")
    user = (await visible_users(info, [row.user_id]))[0]
    site_roles = [r for r in user.row.site_roles.split(",") if r]  # type: ignore[union-attr]
    if placement_basis(reach, row.group_id, user.user_subject, role.value, site_roles) is None:  # type: ignore[union-attr]
        if role is GroupRole.ANALYST:
            raise Forbidden("ANALYST is given by site admins only, to users with the GROUP_ANALYST site role.")
        raise Forbidden("You may not give this user that role here.")
    before = row.role
    async with ctx.store.transaction() as session:
        # locked as committed now: a removal at the same moment either goes first (NOT_FOUND) or waits
        fresh = await session.get(MembershipRow, row.id, with_for_update=True, populate_existing=True)
        if fresh is None:
            raise NotFound("No such membership.", field="membershipId")
        fresh.role = role.value
        session.add(fresh)
        audit(session, ctx.viewer_id, "membership.role", "membership", fresh.id, user_id=fresh.user_id,
              group_id=fresh.group_id, before=before, after=role.value)
        ctx.store.publish(reach_changed([fresh.user_id]))
    refresh_after_change(info)
    await ctx.load_reach()
    return Membership(row=fresh)


async def remove_members(info: Info, membership_gids: list[strawberry.ID], archive: bool = False) -> int:
    """Deletes the memberships, or with `archive` ends them (ended_at: no access, kept for history); archiving
    one already ended changes nothing and does not count."""
    ctx = info.context
    reach: Reach = await ctx.load_reach()
    rows = await visible_membership_rows(info, membership_gids, "membershipIds")
    if not reach.is_admin and any(r.role == "ANALYST" for r in rows):
        raise Forbidden("Only site admins remove ANALYST memberships.")
    ids = [r.id for r in rows if not (archive and r.ended_at is not None)]
    now = utcnow()
    async with ctx.store.transaction() as session:
        if archive:
            result = await session.execute(
                update(MembershipRow).where(MembershipRow.id.in_(ids), MembershipRow.ended_at.is_(None)).values(ended_at=now),
                execution_options={"synchronize_session": False},
            )
        else:
            result = await session.execute(delete(MembershipRow).where(MembershipRow.id.in_(ids)))
        for row in rows:
            if row.id in ids:
                audit(session, ctx.viewer_id, "membership.archive" if archive else "membership.remove", "membership",
                      row.id, user_id=row.user_id, group_id=row.group_id, role=row.role)
        ctx.store.publish(reach_changed(r.user_id for r in rows if r.id in ids))  # their subscriptions re-check at once
    refresh_after_change(info)
    return int(result.rowcount)


@strawberry.type
class MembershipMutations:
    @strawberry.mutation(
        extensions=[requires(Permission.MANAGE_GROUP, target=add_members_target)],
        description="Each user must be reachable: the caller is a site admin; or the user already has a (not "
        "consent-based)\nmembership in a group the caller manages; or the user GRANTED the caller access\n(the "
        "membership then records that consent). ANALYST is given by site admins only,\nto GROUP_ANALYST users. "
        "All or nothing. A user holds one role per group: one already in it is a CONFLICT.",
    )
    async def add_members(
        self,
        info: Info,
        group_id: strawberry.ID,
        user_ids: list[strawberry.ID],
        # the default is the enum's value: the sorted schema that prints schema.graphql cannot serialize members
        role: GroupRole | None = "MEMBER",  # type: ignore[assignment]
    ) -> list[Membership]:
        return await add_members(info, group_id, user_ids, GroupRole(role) if role else GroupRole.MEMBER)

    @strawberry.mutation(extensions=[requires(Permission.MANAGE_GROUP, target=memberships_target)])
    async def change_member_role(self, info: Info, membership_id: strawberry.ID, role: GroupRole) -> Membership:
        return await change_member_role(info, membership_id, role)

    @strawberry.mutation(
        extensions=[requires(Permission.MANAGE_GROUP, target=memberships_target)],
        description="archive: true ends the memberships (endedAt) instead of deleting them, so reports over past "
        "terms keep them.",
    )
    async def remove_members(
        self, info: Info, membership_ids: list[strawberry.ID], archive: bool | None = False
    ) -> int:
        return await remove_members(info, membership_ids, bool(archive))
