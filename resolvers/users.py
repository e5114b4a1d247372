"""The User type, who may see whom, and the admin user mutations."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from enum import Enum

import strawberry
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from strawberry.types import Info

from app.runtime import cursors
from app.runtime.errors import BadInput, Conflict, Forbidden, NotFound
from app.runtime.ids import decode_id, require_id, to_global_id
from app.services.audit import audit
from app.services.auth import hash_password
from app.store.models import User as UserRow
from dataloaders.users import UserSearch, count_users, search_users, user_order
from permissions.classes import requires
from permissions.reach import Permission
from resolvers.common import After, Before, First, Last, Node, PageInfo, clean_text, paging
from resolvers.enums import AccountStatus, LicenceType, OrderDirection, SiteRole, UserKind
from resolvers.guardians import GuardianLink, guardian_links_of
from resolvers.memberships import Membership, memberships_of_user
from resolvers.progress import (
    ActivityConnection,
    CourseProgress,
    activity_of,
    course_progress_of,
    usage_minutes_of,
)
from resolvers.reviews import pending_review_count_of
from resolvers.views import UserView, check_email, normalize_email, prepare_users, visible_user


@strawberry.type
class User(Node):
    """Resolved from `resolvers.views.UserView` objects, whatever domain hands them out."""

    row: strawberry.Private[UserRow]
    group_ids: strawberry.Private[frozenset[int] | None]

    @classmethod
    def is_type_of(cls, obj: object, info: Info) -> bool:
        return isinstance(obj, UserView)

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("User", self.row.id))  # type: ignore[arg-type]

    database_id: int

    external_id: str | None = strawberry.field(description="Set by the rostering system (SIS) or an import; unique when present.")

    @strawberry.field
    def kind(self) -> UserKind:
        return UserKind(self.row.kind)

    first_name: str

    last_name: str

    title: str | None

    email: str | None = strawberry.field(extensions=[requires(Permission.VIEW_CONTACT)])

    company: str | None = strawberry.field(extensions=[requires(Permission.VIEW_CONTACT)])

    @strawberry.field
    def roles(self) -> list[SiteRole]:
        return [SiteRole(r) for r in self.row.site_roles.split(",") if r]

    @strawberry.field(extensions=[requires(Permission.SITE_ADMIN)])
    def status(self) -> AccountStatus | None:
        return AccountStatus(self.row.status)

    synced: bool = strawberry.field(
        description="True for users managed by the rostering sync: only synced groups may hold them."
    )

    agreed_to_download_reports: bool = strawberry.field(
        description="Always true for accounts created since the gateway's version 4 (reports are downloaded, "
        "not posted); not editable."
    )

    created_at: datetime

    last_login_at: datetime | None = strawberry.field(extensions=[requires(Permission.SITE_ADMIN)])

    login_count: int | None = strawberry.field(extensions=[requires(Permission.SITE_ADMIN)])

    @strawberry.field(description="Memberships the caller may see (for the caller themself: all of their own).")
    async def memberships(self, info: Info) -> list[Membership]:
        return await memberships_of_user(info, self.row.id)  # type: ignore[arg-type]

    @strawberry.field(
        extensions=[requires(Permission.VIEW_PROFILE)],
        description="For an EXTERNAL user: the pupils linked to the account. For a learner: the external users "
        "linked to them. Only links whose two users the caller may see.",
    )
    async def guardian_links(
        self, info: Info
    ) -> list[GuardianLink] | None:
        return await guardian_links_of(info, self)

    # progress cards, usage, activity feed, review count
    @strawberry.field(
        extensions=[requires(Permission.VIEW_PROGRESS)],
        description="One entry per enrolled course, or just the named ones; by course name.",
    )
    async def course_progress(
        self, info: Info, course_ids: list[strawberry.ID] | None = None
    ) -> list[CourseProgress] | None:
        return await course_progress_of(info, self, course_ids)

    @strawberry.field(
        extensions=[requires(Permission.VIEW_PROGRESS)],
        description="Minutes of use in total; a learner with at least 1 minute is active.",
    )
    async def usage_minutes(self, info: Info) -> int | None:
        return await usage_minutes_of(info, self)

    @strawberry.field(
        extensions=[requires(Permission.VIEW_ACTIVITY)],
        description="Newest first: steps completed, discussion posts, submissions, reviews received.",
    )
    async def activity(
        self, info: Info, first: First = 20, after: After = None, last: Last = None, before: Before = None
    ) -> ActivityConnection | None:
        return await activity_of(info, self, first, after, last, before)

    @strawberry.field(
        extensions=[requires(Permission.REVIEW_WORK)],
        description="Submissions of this user waiting for manual grading (the red dot on the Review icon).",
    )
    async def pending_review_count(self, info: Info) -> int | None:
        return await pending_review_count_of(info, self)


@strawberry.input
class CreateUserInput:
    email: str
    first_name: str
    last_name: str
    title: str | None = None
    company: str | None = None
    kind: UserKind
    external_id: str | None = None
    password: str | None = strawberry.field(
        default=None, description="When absent the user cannot sign in until a password is set."
    )


def site_roles_text(roles: Sequence[str]) -> str:
    order = ["OWNER", "ADMIN", "GROUP_ANALYST"]
    return ",".join(r for r in order if r in set(roles))


async def create_user_row(
    session, *, email: str, first_name: str, last_name: str, kind: str, password: str | None = None,  # type: ignore[no-untyped-def]
    title: str | None = None, company: str | None = None, external_id: str | None = None,
    roles: Sequence[str] = (), synced: bool = False,
) -> UserRow:
    """Validate and insert one user (CONFLICT on a taken email or external id)."""
    email = check_email(email)
    first = clean_text(first_name, "firstName")
    last = clean_text(last_name, "lastName")
    if password is not None and len(password) < 8:
        raise BadInput("password must be at least 8 characters", field="password")
    if external_id is not None:
        external_id = clean_text(external_id, "externalId")
    taken = await session.scalar(
        select(func.count()).select_from(UserRow).where(UserRow.email_normalized == normalize_email(email))
    )
    if taken:
        raise Conflict("A user with this email already exists.", field="email")
    if external_id is not None:
        if await session.scalar(select(func.count()).select_from(UserRow).where(UserRow.external_id == external_id)):
            raise Conflict("A user with this external id already exists.", field="externalId")
    row = UserRow(
        email=email,
        email_normalized=normalize_email(email),
        first_name=first,  # type: ignore[arg-type]
        last_name=last,  # type: ignore[arg-type]
        last_name_normalized=last.lower(),  # type: ignore[union-attr]
        kind=kind,
        title=clean_text(title, "title", max_length=50, required=False),
        company=clean_text(company, "company", required=False),
        external_id=external_id,
        site_roles=site_roles_text(roles),
        password_hash=hash_password(password) if password else None,
        synced=synced,
    )
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict("A user with this email or external id already exists.", field="email") from None
    return row


@strawberry.type
class UserQueries:
    @strawberry.field(description="The signed-in user; null when anonymous.")
    async def viewer(self, info: Info) -> User | None:
        if info.context.viewer is None:
            return None
        return await visible_user(info, info.context.viewer_id)

    @strawberry.field
    async def user(self, info: Info, id: strawberry.ID) -> User | None:
        user_id = decode_id(id, "User")
        return None if user_id is None else await visible_user(info, user_id)


@strawberry.type
class UserMutations:
    @strawberry.mutation(extensions=[requires(Permission.SITE_ADMIN)])
    async def create_user(self, info: Info, input: CreateUserInput) -> User:
        ctx = info.context
        async with ctx.store.transaction() as session:
            row = await create_user_row(
                session, email=input.email, first_name=input.first_name, last_name=input.last_name,
                kind=input.kind.value, password=input.password, title=input.title, company=input.company,
                external_id=input.external_id,
            )
            audit(session, ctx.viewer_id, "user.create", "user", row.id, email=row.email, kind=row.kind)
        return (await prepare_users(info, [row]))[0]

    @strawberry.mutation(
        extensions=[requires(Permission.SITE_ADMIN)],
        description="GROUP_ANALYST seats are limited (setting); over the limit: error CONFLICT, nothing changed.",
    )
    async def set_site_roles(self, info: Info, user_id: strawberry.ID, roles: list[SiteRole]) -> User:
        ctx = info.context
        target_id = require_id(user_id, "User", "userId")
        wanted = {r.value for r in roles}
        async with ctx.store.transaction() as session:
            row = await session.get(UserRow, target_id)
            if row is None:
                raise NotFound("No such user.", field="userId")
            before = set(filter(None, row.site_roles.split(",")))
            if not ctx.reach.may_administer_site_roles(before, wanted):
                raise Forbidden("Only an owner may change an owner's roles or make an owner.")
            if "GROUP_ANALYST" in wanted and "GROUP_ANALYST" not in before:
                await take_analyst_seat(session, ctx.settings.analyst_seats)
            row.site_roles = site_roles_text(sorted(wanted))
            session.add(row)
            dropped = 0
            if "GROUP_ANALYST" in before and "GROUP_ANALYST" not in wanted:
                dropped = await drop_analyst_memberships(session, row.id)  # type: ignore[arg-type]
            audit(
                session, ctx.viewer_id, "user.roles", "user", row.id, before=sorted(before), after=sorted(wanted),
                analyst_memberships_removed=dropped,
            )
        ctx.forget_reach()
        return (await prepare_users(info, [row]))[0]


# Group Analyst seats
ANALYST_SEAT_LOCK = 6_000_006  # PostgreSQL advisory lock key serializing seat grants


async def take_analyst_seat(session, seats: int) -> None:  # type: ignore[no-untyped-def]
    """CONFLICT when every seat is taken. Counted inside the write transaction: SQLite's writers are
    serialized by BEGIN IMMEDIATE; on PostgreSQL a transaction-scoped advisory lock serializes concurrent
    grants, so two admins cannot both take the last seat."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(ANALYST_SEAT_LOCK)))
    taken = await session.scalar(
        select(func.count()).select_from(UserRow).where(UserRow.site_roles.like("%GROUP_ANALYST%"))
    )
    if taken >= seats:
        raise Conflict(f"All {seats} Group Analyst seats are taken.", field="roles")


async def drop_analyst_memberships(session, user_id: int) -> int:  # type: ignore[no-untyped-def]
    """A user who loses GROUP_ANALYST loses the ANALYST memberships too: the freed seat takes the access
    with it (revoking never leaves access behind)."""
    from sqlalchemy import delete

    from app.store.models import Membership as MembershipRow

    result = await session.execute(
        delete(MembershipRow).where(MembershipRow.user_id == user_id, MembershipRow.role == "ANALYST")
    )
    return int(result.rowcount or 0)


# the admin user list


@strawberry.input
class UserFilter:
    search: str | None = strawberry.field(default=None, description="Case-insensitive prefix of last name, or of email.")
    kinds: list[UserKind] | None = None
    roles: list[SiteRole] | None = None
    analyst_of_group_id: strawberry.ID | None = strawberry.field(default=None, description="Users holding ANALYST in this group.")
    no_groups: bool | None = strawberry.field(default=None, description="true: users with no membership at all.")
    active: bool | None = strawberry.field(default=None, description="true: learners with at least 1 minute of use.")
    status: AccountStatus | None = None
    licence_type: LicenceType | None = None
    no_pupils: bool | None = strawberry.field(default=None, description="true: external users with no pupil linked.")
    last_login_before: datetime | None = strawberry.field(
        default=None, description="Users whose last sign-in (or creation, if never) is before this instant."
    )


@strawberry.type
class UserEdge:
    cursor: str
    node: User


@strawberry.type
class UserConnection:
    edges: list[UserEdge]
    page_info: PageInfo
    search: strawberry.Private[UserSearch]

    @strawberry.field
    async def total_count(self, info: Info) -> int:
        return await count_users(info.context.store, self.search)


def user_search(filter: UserFilter | None) -> UserSearch:
    if filter is None:
        return UserSearch()
    search = filter.search.strip() if filter.search else None
    if search is not None and len(search) > 320:
        raise BadInput("search must be at most 320 characters", field="filter.search")
    group_id = None
    if filter.analyst_of_group_id is not None:
        group_id = require_id(filter.analyst_of_group_id, "Group", "filter.analystOfGroupId")
    before = filter.last_login_before
    if before is not None:
        before = before.replace(tzinfo=UTC) if before.utcoffset() is None else before.astimezone(UTC)
    return UserSearch(
        search=search or None,
        kinds=tuple(k.value for k in filter.kinds) if filter.kinds is not None else None,
        roles=tuple(r.value for r in filter.roles) if filter.roles is not None else None,
        analyst_of_group_id=group_id,
        no_groups=filter.no_groups,
        active=filter.active,
        status=filter.status.value if filter.status else None,
        licence_type=filter.licence_type.value if filter.licence_type else None,
        no_pupils=filter.no_pupils,
        last_login_before=before,
    )


@strawberry.enum(description="What users(orderBy:) sorts by; ties are broken by id.")
class UserOrderField(Enum):
    LAST_NAME = strawberry.enum_value("LAST_NAME", description="Last name, case-insensitively.")
    CREATED_AT = strawberry.enum_value("CREATED_AT", description="When the account was created.")
    LAST_LOGIN_AT = strawberry.enum_value(
        "LAST_LOGIN_AT", description="The last sign-in; accounts that never signed in come last either way."
    )


ORDER_COLUMNS = {
    UserOrderField.LAST_NAME: "last_name_normalized",
    UserOrderField.CREATED_AT: "created_at",
    UserOrderField.LAST_LOGIN_AT: "last_login_at",
}


@strawberry.input(description="The order of users(orderBy:).")
class UserOrder:
    field: UserOrderField = strawberry.field(description="The column to sort by.")
    direction: OrderDirection | None = strawberry.field(default=OrderDirection.ASC, description="ASC or DESC.")


@strawberry.type
class UserListQueries:
    @strawberry.field(extensions=[requires(Permission.SITE_ADMIN)])
    async def users(
        self, info: Info, filter: UserFilter | None = None, order_by: UserOrder | None = None,
        first: First = 50, after: After = None, last: Last = None, before: Before = None,
    ) -> UserConnection:
        field = order_by.field if order_by is not None else UserOrderField.LAST_NAME
        descending = order_by is not None and order_by.direction == OrderDirection.DESC
        kinds = (cursors.TEXT if field == UserOrderField.LAST_NAME else
                 cursors.INSTANT if field == UserOrderField.CREATED_AT else cursors.INSTANT + "?", cursors.ID)
        pages = paging(info, f"users:{field.value}:{'DESC' if descending else 'ASC'}", kinds, first, after, last, before)
        search = user_search(filter)
        order = user_order(field.value, descending)
        rows = await search_users(info.context.store, search, order, pages.window)
        page, made, info_ = pages.page(rows, lambda r: (getattr(r, ORDER_COLUMNS[field]), r.id))
        users = await prepare_users(info, page)
        return UserConnection(
            edges=[UserEdge(cursor=c, node=u) for c, u in zip(made, users, strict=True)],
            page_info=info_,
            search=search,
        )
