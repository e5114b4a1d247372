"""The Group type, the group tree queries and the group mutations."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Annotated, Any

import strawberry
from sqlalchemy import delete, false, func, or_, select, update
from strawberry.types import Info

from app.runtime import cursors
from app.runtime.errors import BadInput, Conflict, Forbidden, NotFound
from app.runtime.ids import decode_id, require_id, to_global_id
from app.runtime.memo import IdentityMemo
from app.runtime.subtrees import decided_by_class, side_effect_free
from app.services.audit import audit
from app.services.tree import attach, is_descendant, lock_tree, move, subtree_height
from app.store import keyset
from app.store.keyset import Key
from app.store.models import Group as GroupRow
from app.store.models import GroupClosure
from app.store.models import Membership as MembershipRow
from dataloaders.groups import TreeReads
from dataloaders.loaders import Loaders
from dataloaders.memberships import like_prefix
from permissions.classes import Subjects, authenticated, requires
from permissions.filters import group_visible, member_rows_admitted, user_visible
from permissions.reach import Permission, Reach
from resolvers.common import (
    After,
    Before,
    First,
    Last,
    Node,
    PageInfo,
    clean_text,
    paging,
    selected,
)
from resolvers.enums import ExportFormat, GroupRole, SubmissionStatus
from resolvers.memberships import (
    MembershipConnection,
    count_before_fields,
    member_count,
    member_count_known,
    members_of,
)
from resolvers.progress import GroupProgressSummary, group_usage_minutes, progress_summary_of
from resolvers.reports import ProgressReportConnection, progress_export_url, progress_report
from resolvers.reviews import SubmissionConnection, review_queue_of
from resolvers.views import GroupView, require_visible_group, visible_group


@strawberry.type(description="The term of a synced class: its academic sessions' titles and dates.")
class GroupTerm:
    title: str | None = strawberry.field(description="The sessions' titles (several joined with ', ').")
    starts_on: date | None = strawberry.field(description="The earliest startDate of the class's sessions.")
    ends_on: date | None = strawberry.field(description="The latest endDate of the class's sessions.")


@strawberry.type
class Group(Node):
    """Resolved from `resolvers.views.GroupView` objects, whatever domain hands them out."""

    row: strawberry.Private[GroupRow]

    @classmethod
    @decided_by_class
    def is_type_of(cls, obj: object, info: Info) -> bool:
        return isinstance(obj, GroupView)

    @strawberry.field
    @side_effect_free
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Group", self.row.id))  # type: ignore[arg-type]

    database_id: int

    name: str

    slug: str = strawberry.field(description="Unique across the site; used by imports and reports.")

    description: str | None

    synced: bool = strawberry.field(
        description="True for classes managed by the rostering sync: only synced users may join them."
    )

    created_at: datetime

    external_id: str | None = strawberry.field(
        description="Set by the rostering sync (the OneRoster sourcedId of the org or class); unique when present."
    )

    class_code: str | None = strawberry.field(description="A synced class's code (OneRoster classCode).")

    @strawberry.field(
        description="A synced class's term (its OneRoster academic sessions); null for other groups."
    )
    @side_effect_free
    def term(self) -> GroupTerm | None:
        row = self.row
        if row.term_title is None and row.term_starts_on is None and row.term_ends_on is None:
            return None
        return GroupTerm(title=row.term_title, starts_on=row.term_starts_on, ends_on=row.term_ends_on)

    depth: int = strawberry.field(description="0 for a root group.")

    @strawberry.field(description="Null for a root group, or where the caller may not see the parent.")
    async def parent(self, info: Info) -> Group | None:
        if self.row.parent_id is None:
            return None
        return await visible_group(info, self.row.parent_id)

    @strawberry.field(description="Root first; only those the caller may see.")
    async def ancestors(self, info: Info) -> list[Group]:
        reach: Reach = info.context.reach
        rows = await info.context.loaders.groups.ancestors.load(self.row.id)
        return [GroupView(row=r) for r in rows if reach.sees_group(r.id)]  # type: ignore[arg-type]

    @strawberry.field
    async def children(self, info: Info) -> list[Group]:
        reach: Reach = info.context.reach
        rows = await info.context.loaders.groups.children.load(self.row.id)
        return [GroupView(row=r) for r in rows if reach.sees_group(r.id)]  # type: ignore[arg-type]

    @strawberry.field(
        extensions=[requires(Permission.MANAGE_GROUP)],
        description="Whether MEMBERs of this group's tree see their groups (groups, viewer.memberships, group(id:)); "
        "when false a MEMBER sees nothing of the tree, only their own progress. Set on the root group by a site "
        "admin (updateGroup membersSeeGroups); unset, the site's default (GROUPGRAPH_MEMBERS_SEE_GROUPS).",
    )
    async def members_see_groups(self, info: Info) -> bool | None:
        ancestors = await info.context.loaders.groups.ancestors.load(self.row.id)
        root = ancestors[0] if ancestors else self.row
        if root.members_see_groups is None:
            return info.context.settings.members_see_groups
        return root.members_see_groups

    @strawberry.field(description="The caller's effective role here (inherited from ancestors); null if none.")
    def viewer_role(self, info: Info) -> GroupRole | None:
        role = info.context.reach.role_in(self.row.id)
        return GroupRole(role) if role else None

    @strawberry.field(description="What the caller may do here, so a client can show or hide its buttons.")
    def viewer_permissions(self, info: Info) -> list[Permission]:
        return info.context.reach.group_permissions(self.row.id)

    # members and member counts (batched over groups by dataloaders.memberships)
    @strawberry.field(description="includeNested: also memberships of all descendant groups.")
    async def members(
        self,
        info: Info,
        roles: list[GroupRole] | None = None,
        include_nested: bool | None = False,
        search: Annotated[
            str | None,
            strawberry.argument(
                description="Matches first name, last name or email (case-insensitive prefix), or the full name "
                "'First Last'; accents folded, as users(filter: {search}) does."
            ),
        ] = None,
        first: First = 50,
        after: After = None,
        last: Last = None,
        before: Before = None,
        include_ended: Annotated[
            bool | None,
            strawberry.argument(description="true: also memberships that were ended (archived); they give no access."),
        ] = False,
    ) -> MembershipConnection:
        return await members_of(
            info, self.row.id, roles, bool(include_nested), search, first, after, last, before,  # type: ignore[arg-type]
            bool(include_ended),
        )

    @strawberry.field(description="Memberships the caller may see (as members.totalCount without filters).")
    @side_effect_free
    def member_count(self, info: Info, include_nested: bool | None = False) -> int:
        """The count at once when the request holds it (a dashboard's children, counted with their parent): the
        list of children then completes in one pass; else an awaitable, which the executor awaits."""
        known = member_count_known(info, self.row.id, bool(include_nested))  # type: ignore[arg-type]
        if known is not None:
            return known
        return member_count(info, self.row.id, bool(include_nested))  # type: ignore[arg-type, return-value]
    # progress summary and review queue
    @strawberry.field(extensions=[requires(Permission.VIEW_PROGRESS)])
    async def progress_summary(
        self, info: Info, include_nested: bool | None = True
    ) -> GroupProgressSummary | None:
        return await progress_summary_of(info, self, include_nested)

    @strawberry.field(
        extensions=[requires(Permission.VIEW_PROGRESS)],
        description="Minutes of use by the group's members (includeNested: and nested groups' members) between from "
        "and to (absent: all time). Usage is kept per UTC day: a day counts when it starts in [from, to). Each learner "
        "counts once, and only the learners the caller may see (as the members list shows them).",
    )
    async def usage_minutes(
        self, info: Info,
        from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
        to: datetime | None = None,
        include_nested: bool | None = True,
    ) -> int | None:
        return await group_usage_minutes(info, self.row.id, from_, to, include_nested is not False)

    @strawberry.field(
        extensions=[requires(Permission.REVIEW_WORK)],
        description="Submissions by members (and nested members): by default those waiting for manual grading, "
        "oldest first; status REVIEWED lists graded work, newest reviewed first (to grade again); userId narrows it "
        "to one member. The caller's own work and consent-based members' work are not listed.",
    )
    async def review_queue(
        self, info: Info, first: First = 50, after: After = None, last: Last = None, before: Before = None,
        # the default is the enum's value: the sorted schema that prints schema.graphql cannot serialize members
        status: SubmissionStatus | None = "NEEDS_REVIEW",  # type: ignore[assignment]
        user_id: strawberry.ID | None = None,
    ) -> SubmissionConnection | None:
        wanted = SubmissionStatus(status) if status else SubmissionStatus.NEEDS_REVIEW
        return await review_queue_of(info, self, first, after, last, before, wanted, user_id)
    # the progress report and its export URL
    @strawberry.field(
        extensions=[requires(Permission.EXPORT_GROUP)],
        description="One row per (member, enrolled course): the group progress report.",
    )
    async def progress_report(
        self, info: Info, course_id: strawberry.ID | None = None, include_nested: bool | None = True,
        first: First = 100, after: After = None, last: Last = None, before: Before = None,
        include_ended: Annotated[
            bool | None,
            strawberry.argument(
                description="true: also members whose membership was ended (a student who moved class keeps their "
                "history in the old class's report)."
            ),
        ] = False,
    ) -> ProgressReportConnection | None:
        nested = include_nested is not False
        return await progress_report(
            info, self.row.id, course_id, nested, first, after, last, before, include_ended=bool(include_ended)  # type: ignore[arg-type]
        )

    @strawberry.field(
        extensions=[requires(Permission.EXPORT_GROUP)],
        description="Relative URL of the streamed CSV/XLSX progress export: a short-lived signed link "
        "(GROUPGRAPH_EXPORT_LINK_SECONDS) that works without an Authorization header, for the caller only, "
        "re-checked at download.",
    )
    async def progress_export_url(self, info: Info, format: ExportFormat | None = ExportFormat.CSV) -> str | None:
        return await progress_export_url(info, self.row.id, format or ExportFormat.CSV)  # type: ignore[arg-type]


SLUG_LOCK = 7  # pg_advisory_xact_lock(7, hashtext(slug)): one group at a time takes a slug and its -2, -3 ...


def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:200] or "group"


async def unique_slug(session, wanted: str) -> str:  # type: ignore[no-untyped-def]
    """`wanted`, or `wanted-2`, `wanted-3`, ... whichever is free (one query)."""
    taken = set(
        await session.scalars(
            select(GroupRow.slug).where((GroupRow.slug == wanted) | GroupRow.slug.like(f"{wanted}-%"))
        )
    )
    if wanted not in taken:
        return wanted
    n = 2
    while f"{wanted}-{n}" in taken:
        n += 1
    return f"{wanted}-{n}"


@strawberry.input
class CreateGroupInput:
    name: str
    description: str | None = None
    parent_id: strawberry.ID | None = strawberry.field(default=None, description="Absent: a root group.")
    slug: str | None = strawberry.field(default=None, description="Derived from the name when absent.")
    synced: bool | None = strawberry.field(
        default=None,
        description="Only synced users may join a synced group, and only synced groups may hold synced users "
        "(site admins and the rostering sync).",
    )


@strawberry.input
class UpdateGroupInput:
    name: str | None = None
    description: str | None = None
    parent_id: strawberry.ID | None = strawberry.field(
        default=None, description="Re-nest under another group; a cycle is refused."
    )
    make_root: bool | None = strawberry.field(default=None, description="true: make it a root group.")
    members_see_groups: bool | None = strawberry.field(
        default=None,
        description="On a root group (site admins): whether the MEMBERs of its tree see their groups "
        "(Group.membersSeeGroups).",
    )


async def group_target(info: Info, kwargs: dict[str, Any]) -> Subjects:
    """The group named by `id` (NOT_FOUND when missing or invisible)."""
    return Subjects(groups=[(await require_visible_group(info, kwargs["id"])).row.id])  # type: ignore[list-item]


async def update_target(info: Info, kwargs: dict[str, Any]) -> Subjects:
    """The group, and the new parent when re-nesting: the caller must manage both."""
    subjects = await group_target(info, kwargs)
    parent_id = kwargs["input"].parent_id
    if parent_id is not None:
        subjects.groups.append((await require_visible_group(info, parent_id, "parentId")).row.id)  # type: ignore[arg-type]
    return subjects


def refresh_tree(info: Info) -> None:
    """After the tree or roles change, later fields of the request read afresh."""
    ctx = info.context
    ctx.forget_reach()
    ctx.loaders = Loaders(ctx.store)


async def update_group(info: Info, id: strawberry.ID, input: UpdateGroupInput) -> Group:
    ctx = info.context
    reach: Reach = await ctx.load_reach()
    group_id = require_id(id, "Group")
    if input.parent_id is not None and input.make_root:
        raise BadInput("Give either parentId or makeRoot, not both.", field="parentId")
    name = clean_text(input.name, "name") if input.name is not None else None
    description = (
        clean_text(input.description, "description", max_length=5000, required=False)
        if input.description is not None
        else None
    )
    new_parent_id = require_id(input.parent_id, "Group", "parentId") if input.parent_id is not None else None
    if input.members_see_groups is not None and not reach.is_admin:
        raise Forbidden("Only site admins decide whether members see their groups.")
    may_make_root = reach.is_admin or (
        ctx.viewer.kind in ctx.settings.self_service_groups and reach.direct_roles.get(group_id) == "LEADER"
    )
    if input.make_root and not may_make_root:
        raise Forbidden("You may not make this a root group.")
    limit = ctx.settings.max_group_depth
    async with ctx.store.transaction() as session:
        if new_parent_id is not None or input.make_root:
            await lock_tree(session, exclusive=True)
        row = await session.get(GroupRow, group_id, populate_existing=True)  # as committed now
        if row is None:
            raise NotFound("No such group.", field="id")
        changes: dict[str, Any] = {}
        if name is not None and name != row.name:
            changes["name"] = [row.name, name]
            row.name, row.name_normalized = name, name.lower()
        if input.description is not None and (description or None) != row.description:
            changes["description"] = True
            row.description = description or None
        if input.members_see_groups is not None and input.members_see_groups != row.members_see_groups:
            if row.parent_id is not None or new_parent_id is not None:
                raise BadInput("Whether members see their groups is set on a root group.", field="membersSeeGroups")
            changes["members_see_groups"] = [row.members_see_groups, input.members_see_groups]
            row.members_see_groups = input.members_see_groups
        moving = (new_parent_id is not None and new_parent_id != row.parent_id) or (
            bool(input.make_root) and row.parent_id is not None
        )
        if moving:
            new_depth = 0
            if new_parent_id is not None:
                if not may_make_root and not await stays_under_own_leadership(session, reach, group_id, new_parent_id):
                    raise Forbidden(
                        "Moving a group out of the tree your LEADER role comes from needs what makeRoot needs (a "
                        "site admin, or with self-service groups a LEADER held directly in the group): its "
                        "leaders above would lose it."
                    )
                if await is_descendant(session, new_parent_id, group_id):
                    raise BadInput("A group cannot be nested under itself or one of its nested groups.", field="parentId")
                parent = await session.get(GroupRow, new_parent_id, populate_existing=True)
                if parent is None:  # deleted since the request began
                    raise NotFound("No such group.", field="parentId")
                new_depth = parent.depth + 1
            if new_depth + await subtree_height(session, group_id) > limit:
                raise BadInput(f"Groups nest at most {limit} levels deep.", field="parentId")
            changes["parent_id"] = [row.parent_id, new_parent_id]
            session.add(row)
            await session.flush()
            await move(session, group_id, new_parent_id)
        session.add(row)
        await session.flush()
        await session.refresh(row)
        if changes:
            audit(session, ctx.viewer_id, "group.update", "group", group_id, **changes)
    refresh_tree(info)
    await ctx.load_reach()
    return GroupView(row=row)


async def stays_under_own_leadership(session, reach: Reach, group_id: int, new_parent_id: int) -> bool:  # type: ignore[no-untyped-def]
    """Whether the new parent lies under a group above this one where the caller is LEADER directly: then the
    group stays in the tree the caller's role over it comes from, and nobody above that loses it."""
    above = await session.scalars(
        select(GroupClosure.ancestor_id).where(GroupClosure.descendant_id == group_id, GroupClosure.depth > 0)
    )
    sources = [a for a in above if reach.direct_roles.get(a) == "LEADER"]
    if not sources:
        return False
    inside = await session.scalar(
        select(func.count()).select_from(GroupClosure).where(
            GroupClosure.ancestor_id.in_(sources), GroupClosure.descendant_id == new_parent_id
        )
    )
    return bool(inside)


async def delete_group(info: Info, id: strawberry.ID, delete_nested: bool) -> bool:
    """The group (and with deleteNested its subtree), its memberships and closure rows, in one transaction."""
    ctx = info.context
    group_id = require_id(id, "Group")
    reach: Reach = await ctx.load_reach()  # before the transaction: both use the request's one session
    async with ctx.store.transaction() as session:
        await lock_tree(session, exclusive=True)
        row = await session.get(GroupRow, group_id, populate_existing=True)
        if row is None:
            raise NotFound("No such group.", field="id")
        subtree = list(await session.scalars(select(GroupClosure.descendant_id).where(GroupClosure.ancestor_id == group_id)))
        if len(subtree) > 1 and not delete_nested:
            raise Conflict(
                "The group has nested groups; pass deleteNested: true to delete them too.", field="deleteNested"
            )
        if not reach.is_admin:
            # deleting removes every membership in it: only those the caller could remove one by one
            beyond = await session.scalar(
                select(func.count()).select_from(MembershipRow).where(
                    MembershipRow.group_id.in_(subtree),
                    or_(MembershipRow.role == "ANALYST", ~user_visible(reach, MembershipRow.user_id)),
                )
            )
            if beyond:
                raise Forbidden(
                    "The group holds memberships you may not remove (ANALYST memberships, or members you cannot "
                    "see); ask a site admin to delete it."
                )
        removed = await session.execute(delete(MembershipRow).where(MembershipRow.group_id.in_(subtree)))
        await session.execute(delete(GroupClosure).where(GroupClosure.descendant_id.in_(subtree)))
        await session.execute(
            update(GroupRow).where(GroupRow.id.in_(subtree)).values(parent_id=None),
            execution_options={"synchronize_session": False},
        )
        await session.execute(
            delete(GroupRow).where(GroupRow.id.in_(subtree)), execution_options={"synchronize_session": False}
        )
        audit(
            session, ctx.viewer_id, "group.delete", "group", group_id, name=row.name, parent_id=row.parent_id,
            nested=sorted(g for g in subtree if g != group_id), memberships=removed.rowcount,
        )
    refresh_tree(info)
    return True


@strawberry.type
class GroupEdge:
    cursor: str
    node: Group


@strawberry.type
class GroupConnection:
    edges: list[GroupEdge]
    page_info: PageInfo
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field
    async def total_count(self) -> int:
        return await self.count()


GROUP_ORDER = (Key(GroupRow.name_normalized), Key(GroupRow.id))


async def list_groups(
    info: Info, roots: bool, search: str | None, first: int | None, after: str | None, last: int | None = None,
    before: str | None = None,
) -> GroupConnection:
    """Keyset pages by (lower-case name, id), filtered in SQL to the groups the viewer sees."""
    store = info.context.store
    pages = paging(info, "groups", (cursors.TEXT, cursors.ID), first, after, last, before)
    reach: Reach = await info.context.load_reach()
    search = clean_text(search, "search", required=False) or None
    conditions = [group_visible(reach, GroupRow.id)]
    if roots:
        parent_hidden = ~group_visible(reach, GroupRow.parent_id) if not reach.is_admin else false()
        conditions.append(or_(GroupRow.parent_id.is_(None), parent_hidden))
    if search:
        conditions.append(GroupRow.name_normalized.like(f"%{like_prefix(search.lower())}", escape="\\"))
    window = pages.window
    query = select(GroupRow).where(*conditions, *keyset.conditions(GROUP_ORDER, window))
    fetched = list(await store.scalars(query.order_by(*keyset.ordering(GROUP_ORDER, window)).limit(window.fetch)))
    rows, made, page_info_ = pages.page(fetched, lambda r: (r.name_normalized, r.id))
    for row in rows:
        info.context.loaders.groups.by_id.prime(row.id, row)
    edges = [GroupEdge(cursor=c, node=GroupView(row=r)) for c, r in zip(made, rows, strict=True)]

    async def count() -> int:
        return int(await store.scalar(select(func.count()).select_from(GroupRow).where(*conditions)))

    return GroupConnection(edges=edges, page_info=page_info_, count=count)


# the field nodes of `group(id:)` in a cached document -> what they select (ancestors, children, member counts,
# progressSummary): found once per document, not at every request
_ASKED: IdentityMemo[tuple[bool, bool, bool, bool]] = IdentityMemo(256)


def tree_reads(info: Info, reach: Reach, group_id: int) -> TreeReads:
    """What `group(id:)` reads with the group, from what the query selects: its ancestors and children, and
    the rolled-up rows its member counts (its own and its children's memberCount, members' totalCount) and its
    progressSummary read when the caller's row filter lets them (permissions.filters.member_rows_admitted)."""
    nodes = tuple(info._raw_info.field_nodes)
    asked = _ASKED.get(nodes, None)
    if asked is None:
        counts = selected(info, "memberCount") or selected(info, "members", "totalCount") or selected(
            info, "children", "memberCount"
        )
        asked = _ASKED.put(nodes, None, (
            bool(selected(info, "ancestors")), bool(selected(info, "children")), bool(counts),
            bool(selected(info, "progressSummary")),
        ))
    ancestors, children, counts, summary = asked
    progress = member_rows_admitted(reach, group_id, Permission.VIEW_PROGRESS) if summary else None
    return TreeReads(
        ancestors=ancestors, children=children,
        member_counts=counts and member_rows_admitted(reach, group_id) is not None,
        summary=progress is not None, consent_matters=progress == "own",
    )


@strawberry.type
class GroupQueries:
    @strawberry.field
    async def group(self, info: Info, id: strawberry.ID) -> Group | None:
        group_id = decode_id(id, "Group")
        if group_id is None:
            return None
        # what the query asks with it comes in the group's own statement (whether or not the caller may see
        # the group: the same statements for a missing group and a hidden one)
        reads = tree_reads(info, await info.context.load_reach(), group_id)
        await info.context.loaders.groups.load_with_tree(group_id, reads)
        group = await visible_group(info, group_id)
        if group is not None and reads.member_counts:
            await count_before_fields(info, group_id)
        return group

    # the list of visible groups
    @strawberry.field(
        extensions=[authenticated()],
        description="Groups the caller may see: all for a site admin; else those where the caller holds a role, "
        "with their descendants. roots: only the top of each visible tree.",
    )
    async def groups(
        self,
        info: Info,
        roots: bool | None = False,
        search: Annotated[str | None, strawberry.argument(description="Part of the name (case-insensitive).")] = None,
        first: First = 50,
        after: After = None,
        last: Last = None,
        before: Before = None,
    ) -> GroupConnection:
        return await list_groups(info, bool(roots), search, first, after, last, before)


@strawberry.type
class GroupMutations:
    @strawberry.mutation(
        extensions=[authenticated()],
        description="Root groups: site admins, and the kinds of account self-service groups allow (setting). "
        "Nested: MANAGE_GROUP on the parent. The creator becomes its LEADER, except a site admin, who manages "
        "every group already and becomes no member of it.",
    )
    async def create_group(self, info: Info, input: CreateGroupInput) -> Group:
        ctx = info.context
        reach: Reach = await ctx.load_reach()
        name = clean_text(input.name, "name")
        description = clean_text(input.description, "description", max_length=5000, required=False)
        parent: GroupRow | None = None
        if input.parent_id is not None:
            parent = (await require_visible_group(info, input.parent_id, "parentId")).row
            if not reach.may_on_group(Permission.MANAGE_GROUP, parent.id):  # type: ignore[arg-type]
                raise Forbidden("You may not add groups here.")
            if parent.depth + 1 > ctx.settings.max_group_depth:
                raise BadInput(f"Groups nest at most {ctx.settings.max_group_depth} levels deep.", field="parentId")
        elif not (reach.is_admin or ctx.viewer.kind in ctx.settings.self_service_groups):
            raise Forbidden("You may not create root groups.")
        synced = bool(input.synced)
        if synced and not reach.is_admin:
            raise Forbidden("Only site admins may create synced groups.")
        if input.slug is not None:
            wanted = slugify(clean_text(input.slug, "slug"))  # type: ignore[arg-type]
        else:
            wanted = slugify(name)  # type: ignore[arg-type]

        async def create(session) -> GroupRow:  # type: ignore[no-untyped-def]
            await lock_tree(session, exclusive=False)  # no re-nest of the parent's subtree meanwhile
            if session.get_bind().dialect.name == "postgresql":  # groups named alike take their slugs in turn
                await session.execute(select(func.pg_advisory_xact_lock(SLUG_LOCK, func.hashtext(wanted))))
            slug = await unique_slug(session, wanted)
            row = GroupRow(
                name=name,  # type: ignore[arg-type]
                name_normalized=name.lower(),  # type: ignore[union-attr]
                slug=slug,
                description=description,
                parent_id=parent.id if parent else None,
                depth=parent.depth + 1 if parent else 0,
                synced=synced,
            )
            session.add(row)
            await session.flush()
            await attach(session, row.id, row.parent_id)  # type: ignore[arg-type]
            # the depth the closure gives (the parent may have been re-nested since it was read)
            row.depth = await session.scalar(
                select(func.count()).select_from(GroupClosure).where(
                    GroupClosure.descendant_id == row.id, GroupClosure.depth > 0
                )
            )
            if not reach.is_admin:  # a site admin manages every group already: they do not become a member
                session.add(MembershipRow(user_id=ctx.viewer_id, group_id=row.id, role="LEADER"))  # type: ignore[arg-type]
            audit(
                session, ctx.viewer_id, "group.create", "group", row.id, name=name, parent_id=row.parent_id, slug=slug,
                **({"synced": True} if synced else {}),
            )
            return row

        # two groups named alike at the same moment: the one that loses the slug takes the next one
        row = await ctx.store.run(create)
        ctx.forget_reach()
        await ctx.load_reach()
        return GroupView(row=row)

    # updateGroup, deleteGroup
    @strawberry.mutation(
        extensions=[requires(Permission.MANAGE_GROUP, target=update_target)],
        description="Rename, describe, re-nest (MANAGE_GROUP on the new parent too; a cycle is refused) or make "
        "a root group (site admins, or with self-service groups a LEADER held directly in the group). Moving a "
        "group out of the tree the caller's LEADER role comes from needs what makeRoot needs.",
    )
    async def update_group(self, info: Info, id: strawberry.ID, input: UpdateGroupInput) -> Group:
        return await update_group(info, id, input)

    @strawberry.mutation(
        extensions=[requires(Permission.MANAGE_GROUP, target=group_target)],
        description="A group with nested groups is refused (CONFLICT) unless deleteNested is true. Its "
        "memberships go with it: a caller who could not remove one of them (an ANALYST membership, a member "
        "they cannot see) is refused (FORBIDDEN): a site admin deletes such a group.",
    )
    async def delete_group(self, info: Info, id: strawberry.ID, delete_nested: bool | None = False) -> bool:
        return await delete_group(info, id, bool(delete_nested))


async def count_members(session, group_id: int) -> int:  # type: ignore[no-untyped-def]
    return int(await session.scalar(select(func.count()).select_from(MembershipRow).where(MembershipRow.group_id == group_id)))
