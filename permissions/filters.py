"""Row-level filters: SQL conditions that keep every list to what the viewer may see.

They mirror `Reach.may` and `Reach.sees_group` path for path, but as subqueries, so that a list and
its totalCount never hold a row a single-object check would refuse.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_, select, true

from app.store.models import AccessRequest, GroupClosure, GuardianLink, Membership, User, utcnow
from dataloaders.groups import gives_sight
from dataloaders.reach import asked_of
from permissions.reach import (
    ACCOUNT_GIVES,
    ACCOUNT_ROLES,
    ASKED_GIVES,
    CONSENT_GIVES,
    GUARDIAN_GIVES,
    ROLES_GIVING,
    SELF_MAY,
    STAFF_ROLES,
    Permission,
    Reach,
    roles_over,
)


def viewer_groups(viewer_id: int, roles: Iterable[str] | None = None, members_see_groups: bool = True):  # type: ignore[no-untyped-def]
    """Ids of every group under a group where the viewer holds one of `roles` (any role if None), as the
    Reach counts them (dataloaders.groups.gives_sight: no ended membership, no MEMBER membership in a tree
    whose members do not see their groups)."""
    query = (
        select(GroupClosure.descendant_id)
        .join(Membership, Membership.group_id == GroupClosure.ancestor_id)
        .where(Membership.user_id == viewer_id)
    )
    if roles is not None and "MEMBER" not in roles:  # staff roles: only the ended ones drop out
        return query.where(Membership.role.in_(list(roles)), Membership.ended_at.is_(None))
    query = query.where(gives_sight(Membership, members_see_groups))
    if roles is not None:
        query = query.where(Membership.role.in_(list(roles)))
    return query


def users_under(viewer_id: int, roles: Iterable[str]):  # type: ignore[no-untyped-def]
    """Ids of users the viewer is "over" through one of `roles` (consent-based and ended memberships excluded)."""
    return select(Membership.user_id).where(
        Membership.access_request_id.is_(None),
        Membership.ended_at.is_(None),
        Membership.group_id.in_(viewer_groups(viewer_id, roles)),
    )


def administered_accounts(
    viewer_id: int, user_id: ColumnElement[int], home_group_id: ColumnElement[int], site_roles: ColumnElement[str]
) -> ColumnElement[bool]:
    """`Reach.administers` as SQL, on the user table's own columns: homed under a group the viewer leads,
    holding no site role, and no staff role in a group the viewer does not lead."""
    led = viewer_groups(viewer_id, ACCOUNT_ROLES)
    staff_elsewhere = (
        select(Membership.id)
        .where(
            Membership.user_id == user_id, Membership.role.in_(STAFF_ROLES), Membership.ended_at.is_(None),
            Membership.access_request_id.is_(None), Membership.group_id.not_in(led),
        )
        .exists()
    )
    return and_(home_group_id.in_(led), site_roles == "", ~staff_elsewhere)


def administered_by(viewer_id: int):  # type: ignore[no-untyped-def]
    """Ids of the accounts the viewer administers (MANAGE_ACCOUNT), for tables other than the user table."""
    return select(User.id).where(administered_accounts(viewer_id, User.id, User.home_group_id, User.site_roles))


def granted_by(viewer_id: int):  # type: ignore[no-untyped-def]
    return select(AccessRequest.subject_user_id).where(
        AccessRequest.requester_id == viewer_id,
        AccessRequest.status == "GRANTED",
        AccessRequest.subject_user_id.is_not(None),
    )


def pupils_of(viewer_id: int):  # type: ignore[no-untyped-def]
    return select(GuardianLink.pupil_id).where(GuardianLink.external_user_id == viewer_id)


def user_visible(
    reach: Reach,
    user_id: ColumnElement[int],
    permission: Permission = Permission.VIEW_PROFILE,
    account: tuple[ColumnElement[int], ColumnElement[str]] | None = None,
) -> ColumnElement[bool]:
    """`account`: the (home_group_id, site_roles) columns when the rows are the user table's own, so the
    MANAGE_ACCOUNT path is a condition on the row rather than a subquery."""
    if reach.viewer_id is None:
        return false()
    if reach.is_admin:
        return true()
    if permission is Permission.SITE_ADMIN:
        return false()
    viewer = reach.viewer_id
    paths: list[ColumnElement[bool]] = []
    if permission in SELF_MAY:
        paths.append(user_id == viewer)
    roles = roles_over(permission)
    if roles and reach.staff_groups(roles):
        paths.append(user_id.in_(users_under(viewer, roles)))
    if permission in ACCOUNT_GIVES and reach.staff_groups(ACCOUNT_ROLES):
        if account is not None:
            paths.append(administered_accounts(viewer, user_id, *account))
        else:
            paths.append(user_id.in_(administered_by(viewer)))
    if permission in CONSENT_GIVES and reach.granted:
        paths.append(user_id.in_(granted_by(viewer)))
    if permission in GUARDIAN_GIVES and reach.pupils:
        paths.append(user_id.in_(pupils_of(viewer)))
    if permission in ASKED_GIVES and reach.askers:
        paths.append(user_id.in_(select(AccessRequest.requester_id).where(asked_of(viewer, utcnow()))))
    return or_(*paths) if paths else false()


def group_visible(reach: Reach, group_id: ColumnElement[int]) -> ColumnElement[bool]:
    if reach.viewer_id is None:
        return false()
    if reach.is_admin:
        return true()
    if not reach.group_roles:
        return false()
    return group_id.in_(viewer_groups(reach.viewer_id, members_see_groups=reach.members_see_groups))


def group_allows(reach: Reach, permission: Permission, group_id: ColumnElement[int]) -> ColumnElement[bool]:
    if reach.viewer_id is None:
        return false()
    if reach.is_admin:
        return true()
    roles = ROLES_GIVING[permission]
    if not roles or not reach.staff_groups(roles):
        return false()
    return group_id.in_(viewer_groups(reach.viewer_id, roles))


# (membership.user_id, membership.group_id) -> the condition keeping the memberships the viewer may count
MemberRows = Callable[[Any, Any], ColumnElement[bool]]


def member_rows_visible(
    reach: Reach, group_id: int, permission: Permission = Permission.VIEW_PROFILE
) -> tuple[Hashable, MemberRows]:
    """The row filter for memberships listed or counted under `group_id` (a group the viewer sees): those whose
    user the viewer may see (`permission`), and a key naming it. Lists (members, memberCount) and aggregates
    (progressSummary, progressReport, usageMinutes) all count with it, so they always agree.

    Visibility of groups is closed under subtrees, so the groups need no filter. Where the viewer holds a
    role giving `permission` on the group (roles inherit down), every own (not consent-based) membership in
    its subtree is of a user the viewer is over: only consent-based ones need the user check, and the OR
    skips that subquery for all the others."""
    if reach.is_admin:
        return (id(reach), "all"), lambda _u, _g: true()
    staff = bool(reach.group_roles.get(group_id, frozenset()) & set(ROLES_GIVING[permission]))
    if staff:
        return (id(reach), "staff", permission), lambda user_id, _g: or_(
            Membership.access_request_id.is_(None), user_visible(reach, user_id, permission)
        )
    return (id(reach), "users", permission), lambda user_id, _g: user_visible(reach, user_id, permission)


def member_rows_admitted(reach: Reach, group_id: int, permission: Permission = Permission.VIEW_PROFILE) -> str | None:
    """What `member_rows_visible`'s filter admits under `group_id` without a look at the users: "all" (a site
    admin: every membership), "own" (a role giving `permission` on the group, which roles inherit down the
    subtree: every membership that is not consent-based; consent-based ones only when their user is visible),
    or None (it depends on each user). Aggregates rolled up over every learner may answer for "all", and for
    "own" where the subtree holds no consent-based learner membership."""
    if reach.is_admin:
        return "all"
    if reach.group_roles.get(group_id, frozenset()) & set(ROLES_GIVING[permission]):
        return "own"
    return None


def membership_visible(reach: Reach, user_id: ColumnElement[int], group_id: ColumnElement[int]) -> ColumnElement[bool]:
    """A membership shows where both its group and its user do."""
    return and_(group_visible(reach, group_id), user_visible(reach, user_id))
