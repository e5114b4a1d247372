"""The Group type, the group tree queries and the group mutations."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry
from sqlalchemy import func, select
from strawberry.types import Info

from app.audit import audit
from app.errors import BadInput, Forbidden, NotFound
from app.ids import decode_id, require_id, to_global_id
from app.models import Group as GroupRow
from app.models import Membership as MembershipRow
from app.tree import attach
from permissions.classes import authenticated, requires
from permissions.reach import Permission, Reach
from resolvers.common import Node, clean_text
from resolvers.enums import ExportFormat, GroupRole

if TYPE_CHECKING:
    from resolvers.reports import ProgressReportConnection


@strawberry.type
class Group(Node):
    row: strawberry.Private[GroupRow]

    @property
    def group_subject_id(self) -> int:
        return self.row.id  # type: ignore[return-value]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Group", self.row.id))  # type: ignore[arg-type]

    @strawberry.field
    def database_id(self) -> int:
        return self.row.id  # type: ignore[return-value]

    @strawberry.field
    def name(self) -> str:
        return self.row.name

    @strawberry.field(description="Unique across the site; used by imports and reports.")
    def slug(self) -> str:
        return self.row.slug

    @strawberry.field
    def description(self) -> str | None:
        return self.row.description

    @strawberry.field(
        description="True for classes managed by the rostering sync: only synced users may join them."
    )
    def synced(self) -> bool:
        return self.row.synced

    @strawberry.field
    def created_at(self) -> datetime:
        return self.row.created_at

    @strawberry.field(description="0 for a root group.")
    def depth(self) -> int:
        return self.row.depth

    @strawberry.field(description="Null for a root group, or where the caller may not see the parent.")
    async def parent(self, info: Info) -> Group | None:
        if self.row.parent_id is None:
            return None
        return await visible_group(info, self.row.parent_id)

    @strawberry.field(description="Root first; only those the caller may see.")
    async def ancestors(self, info: Info) -> list[Group]:
        reach: Reach = info.context.reach
        rows = await info.context.loaders.groups.ancestors.load(self.row.id)
        return [Group(row=r) for r in rows if reach.sees_group(r.id)]  # type: ignore[arg-type]

    @strawberry.field
    async def children(self, info: Info) -> list[Group]:
        reach: Reach = info.context.reach
        rows = await info.context.loaders.groups.children.load(self.row.id)
        return [Group(row=r) for r in rows if reach.sees_group(r.id)]  # type: ignore[arg-type]

    @strawberry.field(description="The caller's effective role here (inherited from ancestors); null if none.")
    def viewer_role(self, info: Info) -> GroupRole | None:
        role = info.context.reach.role_in(self.row.id)
        return GroupRole(role) if role else None

    @strawberry.field(description="What the caller may do here, so a client can show or hide its buttons.")
    def viewer_permissions(self, info: Info) -> list[Permission]:
        return info.context.reach.group_permissions(self.row.id)

    # issue 6: the progress report and its export URL
    @strawberry.field(
        extensions=[requires(Permission.EXPORT_GROUP)],
        description="One row per (member, enrolled course): the group progress report.",
    )
    async def progress_report(
        self, info: Info, course_id: strawberry.ID | None = None, include_nested: bool | None = True,
        first: int | None = 100, after: str | None = None,
    ) -> Annotated[ProgressReportConnection, strawberry.lazy("resolvers.reports")] | None:
        from resolvers.reports import progress_report

        nested = include_nested is not False
        return await progress_report(info, self.row.id, course_id, nested, first, after)  # type: ignore[arg-type]

    @strawberry.field(
        extensions=[requires(Permission.EXPORT_GROUP)],
        description="Relative URL of the streamed CSV/XLSX progress export.",
    )
    def progress_export_url(self, format: ExportFormat | None = ExportFormat.CSV) -> str | None:
        from resolvers.reports import progress_export_url

        return progress_export_url(self.row.id, format or ExportFormat.CSV)  # type: ignore[arg-type]


async def visible_groups(info: Info, ids: list[int]) -> list[Group | None]:
    reach: Reach = await info.context.load_reach()
    rows = await info.context.loaders.groups.by_id.load_many(ids)
    return [Group(row=r) if r is not None and reach.sees_group(r.id) else None for r in rows]  # type: ignore[arg-type]


async def visible_group(info: Info, group_id: int) -> Group | None:
    return (await visible_groups(info, [group_id]))[0]


async def require_visible_group(info: Info, global_id: str, field: str = "id") -> Group:
    """The group the argument names; NOT_FOUND alike for missing and invisible ones."""
    group = await visible_group(info, require_id(global_id, "Group", field))
    if group is None:
        raise NotFound("No such group.", field=field)
    return group


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


@strawberry.type
class GroupQueries:
    @strawberry.field
    async def group(self, info: Info, id: strawberry.ID) -> Group | None:
        group_id = decode_id(id, "Group")
        return None if group_id is None else await visible_group(info, group_id)


@strawberry.type
class GroupMutations:
    @strawberry.mutation(
        extensions=[authenticated()],
        description="Root groups: site admins (and any signed-in staff or learner when self-service groups are on). "
        "Nested: MANAGE_GROUP on the parent. The creator becomes LEADER.",
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
        elif not (reach.is_admin or (ctx.settings.self_service_groups and ctx.viewer.kind in ("STAFF", "LEARNER"))):
            raise Forbidden("You may not create root groups.")
        if input.slug is not None:
            wanted = slugify(clean_text(input.slug, "slug"))  # type: ignore[arg-type]
        else:
            wanted = slugify(name)  # type: ignore[arg-type]
        async with ctx.store.transaction() as session:
            slug = await unique_slug(session, wanted)
            row = GroupRow(
                name=name,  # type: ignore[arg-type]
                name_normalized=name.lower(),  # type: ignore[union-attr]
                slug=slug,
                description=description,
                parent_id=parent.id if parent else None,
                depth=parent.depth + 1 if parent else 0,
            )
            session.add(row)
            await session.flush()
            await attach(session, row.id, row.parent_id)  # type: ignore[arg-type]
            session.add(MembershipRow(user_id=ctx.viewer_id, group_id=row.id, role="LEADER"))  # type: ignore[arg-type]
            audit(session, ctx.viewer_id, "group.create", "group", row.id, name=name, parent_id=row.parent_id, slug=slug)
        ctx.forget_reach()
        await ctx.load_reach()
        return Group(row=row)


async def count_members(session, group_id: int) -> int:  # type: ignore[no-untyped-def]
    return int(await session.scalar(select(func.count()).select_from(MembershipRow).where(MembershipRow.group_id == group_id)))
