"""Who the viewer reaches: loaded once per request, then every decision is set membership."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

import strawberry

from app.store.models import User as UserRow

STAFF_ROLES = ("LEADER", "MENTOR", "ANALYST")
ROLE_RANK = {"LEADER": 4, "MENTOR": 3, "ANALYST": 2, "MEMBER": 1}


@strawberry.enum(
    description=(
        'Who may do what. "Over a user" means: holds LEADER, MENTOR or ANALYST in a group where that user '
        "has a membership, or in any ancestor of such a group\n(roles are inherited down the tree, never up)."
    )
)
class Permission(Enum):
    SITE_ADMIN = strawberry.enum_value("SITE_ADMIN", description="Site OWNER or ADMIN.")
    VIEW_PROFILE = strawberry.enum_value(
        "VIEW_PROFILE",
        description="See a user's name: self, site admin, any LEADER/MENTOR/ANALYST over them, "
        "a GRANTED consent from them, a guardian link to them, whoever administers the account (MANAGE_ACCOUNT).",
    )
    VIEW_CONTACT = strawberry.enum_value(
        "VIEW_CONTACT",
        description="See email and company: self, site admin, LEADER/MENTOR/ANALYST over them, "
        "a GRANTED consent from them, whoever administers the account (MANAGE_ACCOUNT).",
    )
    VIEW_PROGRESS = strawberry.enum_value(
        "VIEW_PROGRESS",
        description="See course progress and grades: self, site admin, LEADER/MENTOR/ANALYST over them, "
        "a GRANTED consent from them, a guardian link to them.",
    )
    VIEW_ACTIVITY = strawberry.enum_value(
        "VIEW_ACTIVITY", description="See the activity feed: self, site admin, LEADER/MENTOR over them."
    )
    REVIEW_WORK = strawberry.enum_value(
        "REVIEW_WORK",
        description="Grade and comment on submissions: site admin, LEADER/MENTOR over the submitter.",
    )
    MANAGE_GROUP = strawberry.enum_value(
        "MANAGE_GROUP",
        description="Rename, describe, re-nest or delete a group, manage its members and nested groups: "
        "site admin, LEADER of it or of an ancestor.",
    )
    EXPORT_GROUP = strawberry.enum_value(
        "EXPORT_GROUP",
        description="Read and export a group's progress reports: site admin, LEADER or ANALYST of it "
        "or of an ancestor.",
    )
    MANAGE_ACCOUNT = strawberry.enum_value(
        "MANAGE_ACCOUNT",
        description="Administer an account (edit its profile, set its password, place it in groups, deny or allow "
        "it, see it in user lists, however unassigned): site admin; LEADER of the account's home group or of an "
        "ancestor of it.",
    )


# Which group roles give each permission over a user (or on a group), besides the site admin.
ROLES_GIVING = {
    Permission.VIEW_PROFILE: ("LEADER", "MENTOR", "ANALYST"),
    Permission.VIEW_CONTACT: ("LEADER", "MENTOR", "ANALYST"),
    Permission.VIEW_PROGRESS: ("LEADER", "MENTOR", "ANALYST"),
    Permission.VIEW_ACTIVITY: ("LEADER", "MENTOR"),
    Permission.REVIEW_WORK: ("LEADER", "MENTOR"),
    Permission.MANAGE_GROUP: ("LEADER",),
    Permission.EXPORT_GROUP: ("LEADER", "ANALYST"),
    Permission.MANAGE_ACCOUNT: ("LEADER",),  # on a group only: over a user it follows the home group
    Permission.SITE_ADMIN: (),
}
SELF_MAY = {Permission.VIEW_PROFILE, Permission.VIEW_CONTACT, Permission.VIEW_PROGRESS, Permission.VIEW_ACTIVITY}
CONSENT_GIVES = {Permission.VIEW_PROFILE, Permission.VIEW_CONTACT, Permission.VIEW_PROGRESS}
GUARDIAN_GIVES = {Permission.VIEW_PROFILE, Permission.VIEW_PROGRESS}
# the subject of a PENDING (not expired) or GRANTED request sees who asks: the requester's name and email
ASKED_GIVES = {Permission.VIEW_PROFILE, Permission.VIEW_CONTACT}
GROUP_PERMISSIONS = (
    Permission.VIEW_PROGRESS, Permission.REVIEW_WORK, Permission.MANAGE_GROUP, Permission.EXPORT_GROUP,
    Permission.MANAGE_ACCOUNT,
)
# What administering an account (MANAGE_ACCOUNT: the LEADERs of its home group and of the ancestors) gives
ACCOUNT_GIVES = {Permission.VIEW_PROFILE, Permission.VIEW_CONTACT, Permission.MANAGE_ACCOUNT}
ACCOUNT_ROLES = ROLES_GIVING[Permission.MANAGE_ACCOUNT]


def roles_over(permission: Permission) -> tuple[str, ...]:
    """The group roles that give `permission` over a user through the user's memberships ("over them").
    MANAGE_ACCOUNT never comes that way: a class LEADER does not administer the accounts of the class."""
    return () if permission is Permission.MANAGE_ACCOUNT else ROLES_GIVING[permission]


class UserRef(Protocol):
    """What a user-level decision needs: the id, the groups of the user's own (not consent-based)
    memberships and those of them where the user holds a staff role, the account's home group, and its
    site roles."""

    database_id: int
    group_ids: frozenset[int] | None
    home_group_id: int | None
    site_roles: frozenset[str]
    staff_group_ids: frozenset[int] | None


class UserSubject:
    """A user as permission decisions see it."""

    __slots__ = ("database_id", "group_ids", "home_group_id", "site_roles", "staff_group_ids")

    def __init__(
        self, database_id: int, group_ids: frozenset[int] | None, home_group_id: int | None = None,
        site_roles: frozenset[str] = frozenset(), staff_group_ids: frozenset[int] | None = None,
    ) -> None:
        self.database_id = database_id
        self.group_ids = group_ids
        self.home_group_id = home_group_id
        self.site_roles = site_roles
        self.staff_group_ids = staff_group_ids

    @classmethod
    def of(
        cls, row: UserRow, group_ids: frozenset[int] | None, staff_group_ids: frozenset[int] | None = None
    ) -> UserSubject:
        """From a user row (anything with id, site_roles and home_group_id)."""
        roles = frozenset(r for r in row.site_roles.split(",") if r)
        return cls(row.id, group_ids, row.home_group_id, roles, staff_group_ids)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Reach:
    viewer_id: int | None
    site_roles: frozenset[str] = frozenset()
    # group id -> roles the viewer holds there, directly or inherited from an ancestor
    group_roles: dict[int, frozenset[str]] = field(default_factory=dict)
    direct_roles: dict[int, str] = field(default_factory=dict)
    granted: frozenset[int] = frozenset()
    pupils: frozenset[int] = frozenset()
    # requesters of the viewer's PENDING (not expired) or GRANTED access requests
    askers: frozenset[int] = frozenset()
    # the site's default for whether MEMBERs see their groups (the SQL filters need it; root groups override it)
    members_see_groups: bool = True

    @classmethod
    def anonymous(cls) -> Reach:
        return cls(viewer_id=None)

    @classmethod
    def of_user(
        cls, row: UserRow, rows: Iterable[tuple[str, int, str | None]], members_see_groups: bool = True
    ) -> Reach:
        """From a user row (anything with id and site_roles) and its Reach rows (`load_reach_rows`)."""
        roles = [r for r in row.site_roles.split(",") if r]
        return cls.from_rows(row.id, roles, rows, members_see_groups=members_see_groups)  # type: ignore[arg-type]

    @classmethod
    def from_rows(
        cls, viewer_id: int, site_roles: Iterable[str], rows: Iterable[tuple[str, int, str | None]],
        members_see_groups: bool = True,
    ) -> Reach:
        roles: dict[int, set[str]] = {}
        direct: dict[int, str] = {}
        granted: set[int] = set()
        pupils: set[int] = set()
        askers: set[int] = set()
        for kind, ident, role in rows:
            if kind == "group":
                roles.setdefault(ident, set()).add(role or "MEMBER")
            elif kind == "direct":
                direct[ident] = role or "MEMBER"
            elif kind == "granted":
                granted.add(ident)
            elif kind == "asker":
                askers.add(ident)
            else:
                pupils.add(ident)
        return cls(
            viewer_id=viewer_id,
            site_roles=frozenset(site_roles),
            group_roles={g: frozenset(r) for g, r in roles.items()},
            direct_roles=direct,
            granted=frozenset(granted),
            pupils=frozenset(pupils),
            askers=frozenset(askers),
            members_see_groups=members_see_groups,
        )

    @property
    def signed_in(self) -> bool:
        return self.viewer_id is not None

    @property
    def is_admin(self) -> bool:
        return bool(self.site_roles & {"OWNER", "ADMIN"})

    def may_administer_site_roles(self, target_roles: Iterable[str], new_roles: Iterable[str] = ()) -> bool:
        """Owners are above admins: only an OWNER grants or takes OWNER, or touches an owner's account at all
        (roles, status, profile, password, deletion)."""
        if "OWNER" in self.site_roles:
            return True
        return self.is_admin and "OWNER" not in set(target_roles) and "OWNER" not in set(new_roles)

    def staff_groups(self, roles: Iterable[str] = STAFF_ROLES) -> set[int]:
        wanted = set(roles)
        return {g for g, held in self.group_roles.items() if held & wanted}

    # --- groups -----------------------------------------------------------------------------

    def sees_group(self, group_id: int) -> bool:
        return self.is_admin or group_id in self.group_roles

    def role_in(self, group_id: int) -> str | None:
        """The effective role: staff roles inherit down the tree; MEMBER counts only where held."""
        held = self.group_roles.get(group_id, frozenset())
        for role in STAFF_ROLES:
            if role in held:
                return role
        return "MEMBER" if self.direct_roles.get(group_id) == "MEMBER" else None

    def may_on_group(self, permission: Permission, group_id: int) -> bool:
        if self.is_admin:
            return True
        if permission not in GROUP_PERMISSIONS:
            return False
        return bool(self.group_roles.get(group_id, frozenset()) & set(ROLES_GIVING[permission]))

    def group_permissions(self, group_id: int) -> list[Permission]:
        return [p for p in GROUP_PERMISSIONS if self.may_on_group(p, group_id)]

    # --- users ------------------------------------------------------------------------------

    def administers(self, user: UserRef) -> bool:
        """MANAGE_ACCOUNT: a site admin; or a LEADER of the account's home group or of an ancestor of it.
        Whoever sets an account's password holds its powers, so an account holding a site role (OWNER,
        ADMIN, GROUP_ANALYST) is administered by site admins only, an owner's by owners only, and one holding
        a staff role (LEADER, MENTOR, ANALYST) in a group the caller does not lead by site admins only: a
        school's leader runs the accounts of their school, never a way into another school's groups."""
        if self.is_admin:
            return self.may_administer_site_roles(user.site_roles)
        if user.home_group_id is None or user.site_roles:
            return False
        led = set(ACCOUNT_ROLES)
        if not self.group_roles.get(user.home_group_id, frozenset()) & led:
            return False
        if user.staff_group_ids is None:
            raise RuntimeError(f"staff groups of user {user.database_id} were not loaded before a decision")
        return all(self.group_roles.get(g, frozenset()) & led for g in user.staff_group_ids)

    def over(self, user: UserRef, roles: Iterable[str]) -> bool:
        if user.group_ids is None:
            raise RuntimeError(f"group ids of user {user.database_id} were not loaded before a decision")
        wanted = set(roles)
        return any(self.group_roles.get(g, frozenset()) & wanted for g in user.group_ids)

    @property
    def decides_users_by_row(self) -> bool:
        """Whether every decision about a user (`may`) needs no more than the user's row: a site admin's (only
        MANAGE_ACCOUNT looks at the user, at its site roles), so the groups of the user's memberships
        (`UserRef.group_ids`, `staff_group_ids`) need not be loaded for it."""
        return self.is_admin

    def may(self, permission: Permission, user: UserRef) -> bool:
        """Each path (self, admin, group role, consent, guardian link) is judged on its own."""
        if self.viewer_id is None:
            return False
        if self.is_admin:
            return permission is not Permission.MANAGE_ACCOUNT or self.administers(user)
        if permission is Permission.SITE_ADMIN:
            return False
        if user.database_id == self.viewer_id and permission in SELF_MAY:
            return True
        if permission in CONSENT_GIVES and user.database_id in self.granted:
            return True
        if permission in GUARDIAN_GIVES and user.database_id in self.pupils:
            return True
        if permission in ASKED_GIVES and user.database_id in self.askers:
            return True
        if permission in ACCOUNT_GIVES and self.administers(user):
            return True
        return self.over(user, roles_over(permission))


def staff_sees_row(reach: Reach, group_id: int, consent_based: bool, permission: Permission = Permission.VIEW_PROFILE) -> bool:
    """The shortcut of permissions.filters.member_rows_visible, for one membership: a holder of a role giving
    `permission` on the group sees every own (not consent-based) membership in it, ended ones too (history)."""
    if reach.is_admin:
        return True
    return not consent_based and bool(reach.group_roles.get(group_id, frozenset()) & set(ROLES_GIVING[permission]))


PLACED_AS_ADMIN = "admin"
PLACED_AS_MANAGER = "managed"
PLACED_ON_CONSENT = "consent"
PLACED_AS_ACCOUNT_ADMIN = "account"


def placement_basis(
    reach: Reach, group_id: int, user: UserRef, role: str, user_site_roles: Iterable[str]
) -> str | None:
    """On what ground the viewer may put `user` in `group_id` with `role` (addMembers, imports), or None.

    The viewer must manage the group. ANALYST is given by site admins only, to GROUP_ANALYST users.
    A user is reachable when the viewer is a site admin, when the user already has a (not consent-based)
    membership in a group the viewer leads, when the viewer administers the account (MANAGE_ACCOUNT: even
    while it has no membership at all), or when the user GRANTED the viewer access; that last ground places
    members only, and the membership records the consent.
    """
    if not reach.may_on_group(Permission.MANAGE_GROUP, group_id):
        return None
    if role == "ANALYST":
        return PLACED_AS_ADMIN if reach.is_admin and "GROUP_ANALYST" in set(user_site_roles) else None
    if reach.is_admin:
        return PLACED_AS_ADMIN
    if reach.over(user, ("LEADER",)):
        return PLACED_AS_MANAGER
    if reach.administers(user):
        return PLACED_AS_ACCOUNT_ADMIN
    if user.database_id in reach.granted and role == "MEMBER":
        return PLACED_ON_CONSENT
    return None
