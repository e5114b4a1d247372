"""The User type, who may see whom, and the admin user mutations."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import strawberry
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from strawberry.types import Info

from app.runtime import cursors
from app.runtime.errors import BadInput, Conflict, Forbidden, NotFound
from app.runtime.ids import decode_id, require_id, to_global_id
from app.runtime.subtrees import decided_by_class, preloaded_in, side_effect_free
from app.services.audit import audit
from app.services.auth import end_credentials, hash_password, keep_an_owner
from app.services.events import reach_changed
from app.store.models import Group as GroupRow
from app.store.models import Membership as MembershipRow
from app.store.models import User as UserRow
from dataloaders.users import UserSearch, count_users, search_users, user_order
from permissions.classes import Subjects, authenticated, authenticated_requires, forbid_unless, requires
from permissions.filters import user_visible
from permissions.reach import ACCOUNT_ROLES, Permission, Reach
from resolvers.common import (
    After,
    Before,
    First,
    Last,
    Node,
    PageInfo,
    clean_text,
    paging,
)
from resolvers.enums import AccountStatus, LicenceType, OrderDirection, SiteRole, SubmissionStatus, UserKind
from resolvers.guardians import GuardianLink, guardian_links_of
from resolvers.memberships import Membership, memberships_of_user
from resolvers.progress import (
    ActivityConnection,
    CourseProgress,
    activity_of,
    course_progress_of,
    usage_minutes_of,
)
from resolvers.reviews import SubmissionConnection, pending_review_count_of, submissions_of_user
from resolvers.views import (
    GroupType,
    UserView,
    check_email,
    normalize_email,
    prepare_users,
    require_visible_group,
    require_visible_user,
    user_by_id,
    visible_group,
    visible_groups,
    visible_user,
)


@strawberry.type
class User(Node):
    """Resolved from `resolvers.views.UserView` objects, whatever domain hands them out."""

    row: strawberry.Private[UserRow]
    group_ids: strawberry.Private[frozenset[int] | None]
    progress: strawberry.Private[list[CourseProgress] | None]

    @classmethod
    @decided_by_class
    def is_type_of(cls, obj: object, info: Info) -> bool:
        return isinstance(obj, UserView)

    @strawberry.field
    @side_effect_free
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("User", self.row.id))  # type: ignore[arg-type]

    database_id: int

    external_id: str | None = strawberry.field(description="Set by the rostering system (SIS) or an import; unique when present.")

    @strawberry.field
    @side_effect_free
    def kind(self) -> UserKind:
        return UserKind(self.row.kind)

    first_name: str

    last_name: str

    title: str | None

    email: str | None = strawberry.field(extensions=[requires(Permission.VIEW_CONTACT)])

    company: str | None = strawberry.field(extensions=[requires(Permission.VIEW_CONTACT)])

    @strawberry.field
    @side_effect_free
    def roles(self) -> list[SiteRole]:
        return [SiteRole(r) for r in self.row.site_roles.split(",") if r]

    @strawberry.field(extensions=[requires(Permission.SITE_ADMIN)])
    @side_effect_free
    def status(self) -> AccountStatus | None:
        return AccountStatus(self.row.status)

    synced: bool = strawberry.field(
        description="True for users managed by the rostering sync: only synced groups may hold them."
    )

    @strawberry.field(
        description="The group (district, school, branch, company) that owns this account; its LEADERs, and those "
        "of its ancestors, administer it (MANAGE_ACCOUNT). Null: the site owns it (or the caller may not see "
        "the group)."
    )
    async def home_group(self, info: Info) -> GroupType | None:
        if self.row.home_group_id is None:
            return None
        return await visible_group(info, self.row.home_group_id)

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
    @side_effect_free
    @preloaded_in("progress")
    def course_progress(
        self, info: Info, course_ids: list[strawberry.ID] | None = None
    ) -> list[CourseProgress] | None:
        # Synchronous when the list that produced this user loaded the page's cards (no future per user);
        # else the coroutine, which graphql-core awaits. The permission class runs first either way.
        if course_ids is None and self.progress is not None:
            return self.progress
        return course_progress_of(info, self, course_ids)  # type: ignore[return-value]

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
        extensions=[requires(Permission.VIEW_PROGRESS)],
        description="The user's submitted work, newest first; status filters it (for example REVIEWED, to grade again).",
    )
    async def submissions(
        self, info: Info, status: SubmissionStatus | None = None, first: int | None = 50, after: str | None = None
    ) -> SubmissionConnection | None:
        return await submissions_of_user(info, self, status, first, after)

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
    home_group_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="The group that owns the account (see User.homeGroup). A LEADER creating an account must give "
        "a group they lead.",
    )
    site_roles: list[SiteRole] | None = strawberry.field(
        default=None,
        description="Site roles given at creation (site admins only); GROUP_ANALYST only while seats remain.",
    )
    synced: bool | None = strawberry.field(default=None, description="Managed by the rostering sync (see User.synced).")


@strawberry.input(description="Only the fields given change.")
class UpdateUserInput:
    email: str | None = strawberry.UNSET
    first_name: str | None = strawberry.UNSET
    last_name: str | None = strawberry.UNSET
    title: str | None = strawberry.UNSET
    company: str | None = strawberry.UNSET
    external_id: str | None = strawberry.UNSET
    home_group_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET,
        description="Move the account to another home group (MANAGE_ACCOUNT is needed over the new one too); "
        "null: the site owns it (site admins only).",
    )
    synced: bool | None = strawberry.field(
        default=strawberry.UNSET, description="Managed by the rostering sync (site admins only)."
    )
    password: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="Sets a new password; the user's existing sessions end (and their API tokens).",
    )


def check_password(password: str | None, field: str = "password") -> None:
    if password is not None and len(password) < 8:
        raise BadInput("password must be at least 8 characters", field=field)


async def check_unique(session, email: str | None, external_id: str | None, but: int | None = None) -> None:  # type: ignore[no-untyped-def]
    """CONFLICT when another account (not `but`) has this email or external id."""
    others = [UserRow.id != but] if but is not None else []
    if email is not None and await session.scalar(
        select(func.count()).select_from(UserRow).where(UserRow.email_normalized == normalize_email(email), *others)
    ):
        raise Conflict("A user with this email already exists.", field="email")
    if external_id is not None and await session.scalar(
        select(func.count()).select_from(UserRow).where(UserRow.external_id == external_id, *others)
    ):
        raise Conflict("A user with this external id already exists.", field="externalId")


def site_roles_text(roles: Sequence[str]) -> str:
    order = ["OWNER", "ADMIN", "GROUP_ANALYST"]
    return ",".join(r for r in order if r in set(roles))


async def create_user_row(
    session, *, email: str, first_name: str, last_name: str, kind: str, password: str | None = None,  # type: ignore[no-untyped-def]
    title: str | None = None, company: str | None = None, external_id: str | None = None,
    roles: Sequence[str] = (), synced: bool = False, home_group_id: int | None = None,
) -> UserRow:
    """Validate and insert one user (CONFLICT on a taken email or external id)."""
    email = check_email(email)
    first = clean_text(first_name, "firstName")
    last = clean_text(last_name, "lastName")
    check_password(password)
    if external_id is not None:
        external_id = clean_text(external_id, "externalId")
    await check_unique(session, email, external_id)
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
        home_group_id=home_group_id,
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

    @strawberry.field(description="Null for an id the caller may not see, exactly as for a missing one.")
    async def user(self, info: Info, id: strawberry.ID) -> User | None:
        user_id = decode_id(id, "User")
        if user_id is None:
            return None
        return await user_by_id(info, user_id)

    @strawberry.field(extensions=[requires(Permission.SITE_ADMIN)], description="GROUP_ANALYST seats: used and the plan's limit.")
    async def analyst_seats(self, info: Info) -> SeatUsage:
        used = await info.context.store.scalar(
            select(func.count()).select_from(UserRow).where(UserRow.site_roles.like("%GROUP_ANALYST%"))
        )
        return SeatUsage(used=int(used), limit=info.context.settings.analyst_seats)


@strawberry.type
class SeatUsage:
    used: int = strawberry.field(description="Users holding GROUP_ANALYST.")
    limit: int = strawberry.field(description="The plan's limit (setting).")


async def home_group_target(info: Info, global_id: strawberry.ID | None, field: str) -> Subjects:
    """MANAGE_ACCOUNT is judged on the home group an account gets: a group the caller must see (NOT_FOUND
    otherwise), or, for none, the site (site admins only)."""
    if global_id is None:
        return Subjects(site=True)
    return Subjects(groups=[(await require_visible_group(info, global_id, field)).row.id])  # type: ignore[list-item]


async def create_user_target(info: Info, kwargs: dict[str, Any]) -> Subjects:
    home = kwargs["input"].home_group_id
    reach: Reach = await info.context.load_reach()
    if home is None and not reach.is_admin and reach.staff_groups(ACCOUNT_ROLES):
        raise BadInput("Give homeGroupId: a group you lead owns the accounts you create.", field="homeGroupId")
    return await home_group_target(info, home, "homeGroupId")


async def update_user_target(info: Info, kwargs: dict[str, Any]) -> Subjects:
    """The account (NOT_FOUND when the caller may not see it), and its new home group when it moves."""
    user = await require_visible_user(info, kwargs["id"], "id")
    home = kwargs["input"].home_group_id
    subjects = Subjects(users=[user.user_subject])
    if home is not strawberry.UNSET:
        moved = await home_group_target(info, home, "homeGroupId")
        subjects.groups, subjects.site = moved.groups, moved.site
    return subjects


async def create_user(info: Info, input: CreateUserInput) -> User:
    ctx = info.context
    reach: Reach = await ctx.load_reach()
    roles = sorted({r.value for r in input.site_roles or []})
    forbid_unless(reach.is_admin or not roles, "Only site admins give site roles.")
    forbid_unless(reach.is_admin or not input.synced, "Only site admins and the rostering sync create synced accounts.")
    if roles and not reach.may_administer_site_roles((), roles):
        raise Forbidden("Only an owner may make another owner.")
    home_group_id = require_id(input.home_group_id, "Group", "homeGroupId") if input.home_group_id else None
    async with ctx.store.transaction() as session:
        if "GROUP_ANALYST" in roles:
            await take_analyst_seat(session, ctx.settings.analyst_seats, field="siteRoles")
        row = await create_user_row(
            session, email=input.email, first_name=input.first_name, last_name=input.last_name,
            kind=input.kind.value, password=input.password, title=input.title, company=input.company,
            external_id=input.external_id, roles=roles, synced=bool(input.synced), home_group_id=home_group_id,
        )
        audit(
            session, ctx.viewer_id, "user.create", "user", row.id, email=row.email, kind=row.kind,
            home_group_id=home_group_id, site_roles=roles, synced=row.synced,
        )
    return (await prepare_users(info, [row]))[0]


TEXT_FIELDS = {  # input name -> (column, the error field, max length, required)
    "first_name": ("first_name", "firstName", 200, True),
    "last_name": ("last_name", "lastName", 200, True),
    "title": ("title", "title", 50, False),
    "company": ("company", "company", 200, False),
}


async def update_user(info: Info, id: strawberry.ID, input: UpdateUserInput) -> User:
    """One transaction; the audit event names the changed fields, never a password."""
    ctx = info.context
    reach: Reach = await ctx.load_reach()
    user_id = require_id(id, "User", "id")
    given = {name: getattr(input, name) for name in vars(input) if getattr(input, name) is not strawberry.UNSET}
    forbid_unless(reach.is_admin or "synced" not in given, "Only site admins and the rostering sync change synced.")
    password_hash = None
    if "password" in given:
        if given["password"] is None:
            raise BadInput("password cannot be removed; give a new one", field="password")
        check_password(given["password"])
        # argon2 is slow on purpose: hashed in a worker thread, before the write transaction opens
        password_hash = await asyncio.to_thread(hash_password, given["password"])
    changed: list[str] = []
    ended = 0
    async with ctx.store.transaction() as session:
        row = await session.get(UserRow, user_id)
        if row is None:
            raise NotFound("No such user.", field="id")
        for name, (column, field, max_length, required) in TEXT_FIELDS.items():
            if name in given:
                value = clean_text(given[name], field, max_length=max_length, required=required)
                value = value if required else (value or None)
                if value != getattr(row, column):
                    setattr(row, column, value)
                    changed.append(field)
        if "last_name" in given:
            row.last_name_normalized = row.last_name.lower()
        email = external_id = None
        if "email" in given:
            if given["email"] is None:
                raise BadInput("email cannot be removed", field="email")
            email = check_email(given["email"])
            if email != row.email:
                changed.append("email")
        if "external_id" in given:
            external_id = clean_text(given["external_id"], "externalId", required=False)
            if external_id != row.external_id:
                changed.append("externalId")
        await check_unique(session, email if "email" in changed else None, external_id if "externalId" in changed else None, but=row.id)
        if "email" in changed:
            row.email, row.email_normalized = email, normalize_email(email)  # type: ignore[arg-type]
        if "externalId" in changed:
            row.external_id = external_id
        if "home_group_id" in given:
            home = require_id(given["home_group_id"], "Group", "homeGroupId") if given["home_group_id"] else None
            if home != row.home_group_id:
                row.home_group_id = home
                changed.append("homeGroupId")
        if "synced" in given and given["synced"] is not None and given["synced"] != row.synced:
            mismatched = await session.scalar(
                select(func.count()).select_from(MembershipRow).join(GroupRow, GroupRow.id == MembershipRow.group_id)
                .where(MembershipRow.user_id == row.id, GroupRow.synced != given["synced"])
            )
            if mismatched:
                raise BadInput(
                    "Synced users join synced groups only, and the others non-synced ones: remove the user's "
                    f"{mismatched} membership(s) that would break this first.", field="synced",
                )
            row.synced = given["synced"]
            changed.append("synced")
        if password_hash is not None:
            row.password_hash = password_hash
            ended = await end_credentials(session, row.id)  # type: ignore[arg-type]
            changed.append("password")
        session.add(row)
        try:
            await session.flush()
        except IntegrityError:
            raise Conflict("A user with this email or external id already exists.", field="email") from None
        if changed:
            audit(session, ctx.viewer_id, "user.update", "user", row.id, fields=changed, credentials_ended=ended)
            ctx.store.publish(reach_changed([row.id]))  # a new status or password ends their subscriptions now
    return (await prepare_users(info, [row]))[0]


@strawberry.type
class UserMutations:
    @strawberry.mutation(
        extensions=[authenticated_requires(Permission.MANAGE_ACCOUNT, create_user_target)],
        description="Site admins: any account. A LEADER: accounts homed in a group they lead (homeGroupId "
        "required), never with site roles.",
    )
    async def create_user(self, info: Info, input: CreateUserInput) -> User:
        return await create_user(info, input)

    @strawberry.mutation(extensions=[requires(Permission.MANAGE_ACCOUNT, target=update_user_target)])
    async def update_user(self, info: Info, id: strawberry.ID, input: UpdateUserInput) -> User:
        return await update_user(info, id, input)

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
            if "OWNER" in before and "OWNER" not in wanted and row.status == "ACTIVE":
                await keep_an_owner(session, [row.id], "userId")  # type: ignore[list-item]
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
            ctx.store.publish(reach_changed([row.id]))
        ctx.forget_reach()
        return (await prepare_users(info, [row]))[0]


# Group Analyst seats
ANALYST_SEAT_LOCK = 6_000_006  # PostgreSQL advisory lock key serializing seat grants


async def take_analyst_seat(session, seats: int, field: str = "roles") -> None:  # type: ignore[no-untyped-def]
    """CONFLICT when every seat is taken. Counted inside the write transaction: SQLite's writers are
    serialized by BEGIN IMMEDIATE; on PostgreSQL a transaction-scoped advisory lock serializes concurrent
    grants, so two admins cannot both take the last seat."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(ANALYST_SEAT_LOCK)))
    taken = await session.scalar(
        select(func.count()).select_from(UserRow).where(UserRow.site_roles.like("%GROUP_ANALYST%"))
    )
    if taken >= seats:
        raise Conflict(f"All {seats} Group Analyst seats are taken.", field=field)


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
    search: str | None = strawberry.field(
        default=None,
        description="Case-insensitive: a prefix of the first name, the last name or the email, or of the full name "
        "'First Last'.",
    )
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
    home_group_id: strawberry.ID | None = strawberry.field(
        default=None, description="Accounts whose home group is this group or one of its descendants."
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
    visible: strawberry.Private[Any]
    contact: strawberry.Private[Any]

    @strawberry.field
    async def total_count(self, info: Info) -> int:
        return await count_users(info.context.store, self.search, self.visible, self.contact)


def user_search(filter: UserFilter | None) -> UserSearch:
    if filter is None:
        return UserSearch()
    search = filter.search.strip() if filter.search else None
    if search is not None and len(search) > 320:
        raise BadInput("search must be at most 320 characters", field="filter.search")
    group_id = home_group_id = None
    if filter.analyst_of_group_id is not None:
        group_id = require_id(filter.analyst_of_group_id, "Group", "filter.analystOfGroupId")
    if filter.home_group_id is not None:
        home_group_id = require_id(filter.home_group_id, "Group", "filter.homeGroupId")
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
        home_group_id=home_group_id,
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


# filters on what only site admins read (status, sign-ins, licences and guardian links)
ADMIN_FILTERS = {
    "status": "filter.status", "last_login_before": "filter.lastLoginBefore", "licence_type": "filter.licenceType",
    "no_pupils": "filter.noPupils",
}


async def check_filter(info: Info, reach: Reach, search: UserSearch) -> None:
    """Groups a filter names must be visible (NOT_FOUND otherwise); filters on admin data are FORBIDDEN to
    anyone else, who could otherwise read those fields through the list."""
    named = {
        "filter.homeGroupId": search.home_group_id, "filter.analystOfGroupId": search.analyst_of_group_id,
    }
    wanted = [(f, g) for f, g in named.items() if g is not None]
    shown = await visible_groups(info, [g for _, g in wanted]) if wanted else []
    for (field, _), group in zip(wanted, shown, strict=True):
        if group is None:
            raise NotFound("No such group.", field=field)
    if not reach.is_admin:
        for name, field in ADMIN_FILTERS.items():
            if getattr(search, name) is not None:
                raise Forbidden(f"Only site admins filter users by {field.split('.')[1]}.", field=field)


@strawberry.type
class UserListQueries:
    @strawberry.field(
        extensions=[authenticated()],
        description="Site admins: every account. Anyone else: the accounts they administer (MANAGE_ACCOUNT, "
        "unassigned ones included) and the users they may see (VIEW_PROFILE).",
    )
    async def users(
        self, info: Info, filter: UserFilter | None = None, order_by: UserOrder | None = None,
        first: First = 50, after: After = None, last: Last = None, before: Before = None,
    ) -> UserConnection:
        field = order_by.field if order_by is not None else UserOrderField.LAST_NAME
        descending = order_by is not None and order_by.direction == OrderDirection.DESC
        kinds = (cursors.TEXT if field == UserOrderField.LAST_NAME else
                 cursors.INSTANT if field == UserOrderField.CREATED_AT else cursors.INSTANT + "?", cursors.ID)
        pages = paging(info, f"users:{field.value}:{'DESC' if descending else 'ASC'}", kinds, first, after, last, before)
        reach: Reach = await info.context.load_reach()
        search = user_search(filter)
        await check_filter(info, reach, search)
        account = (UserRow.home_group_id, UserRow.site_roles)
        visible = user_visible(reach, UserRow.id, Permission.VIEW_PROFILE, account=account)
        contact = user_visible(reach, UserRow.id, Permission.VIEW_CONTACT, account=account) if search.search else None
        order = user_order(field.value, descending)
        rows = await search_users(info.context.store, search, order, pages.window, visible, contact)
        page, made, info_ = pages.page(rows, lambda r: (getattr(r, ORDER_COLUMNS[field]), r.id))
        users = await prepare_users(info, page)
        return UserConnection(
            edges=[UserEdge(cursor=c, node=u) for c, u in zip(made, users, strict=True)],
            page_info=info_,
            search=search,
            visible=visible,
            contact=contact,
        )
