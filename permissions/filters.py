"""Row-level filters: SQL conditions that keep every list to what the viewer may see.

They mirror `Reach.may` and `Reach.sees_group` path for path, but as subqueries, so that a list and
its totalCount never hold a row a single-object check would refuse.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, and_, false, or_, select, true

from app.store.models import AccessRequest, GroupClosure, GuardianLink, Membership, User
from permissions.reach import (
    ACCOUNT_GIVES,
    ACCOUNT_ROLES,
    CONSENT_GIVES,
    GUARDIAN_GIVES,
    ROLES_GIVING,
    SELF_MAY,
    Permission,
    Reach,
    roles_over,
)


def viewer_groups(viewer_id: int, roles: Iterable[str] | None = None):  # type: ignore[no-untyped-def]
    """Ids of every group under a group where the viewer holds one of `roles` (any role if None)."""
    query = (
        select(GroupClosure.descendant_id)
        .join(Membership, Membership.group_id == GroupClosure.ancestor_id)
        .where(Membership.user_id == viewer_id)
    )
    if roles is not None:
        query = query.where(Membership.role.in_(list(roles)))
    return query


def users_under(viewer_id: int, roles: Iterable[str]):  # type: ignore[no-untyped-def]
    """Ids of users the viewer is "over" through one of `roles` (consent-based memberships excluded)."""
    return select(Membership.user_id).where(
        Membership.access_request_id.is_(None),
        Membership.group_id.in_(viewer_groups(viewer_id, roles)),
    )


def administered_accounts(viewer_id: int, home_group_id: ColumnElement[int], site_roles: ColumnElement[str]) -> ColumnElement[bool]:
    """`Reach.administers` as SQL, on the user table's own columns: homed under a group the viewer leads,
    and holding no site role."""
    return and_(home_group_id.in_(viewer_groups(viewer_id, ACCOUNT_ROLES)), site_roles == "")


def administered_by(viewer_id: int):  # type: ignore[no-untyped-def]
    """Ids of the accounts the viewer administers (MANAGE_ACCOUNT), for tables other than the user table."""
    return select(User.id).where(administered_accounts(viewer_id, User.home_group_id, User.site_roles))


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
            paths.append(administered_accounts(viewer, *account))
        else:
            paths.append(user_id.in_(administered_by(viewer)))
    if permission in CONSENT_GIVES and reach.granted:
        paths.append(user_id.in_(granted_by(viewer)))
    if permission in GUARDIAN_GIVES and reach.pupils:
        paths.append(user_id.in_(pupils_of(viewer)))
    return or_(*paths) if paths else false()


def group_visible(reach: Reach, group_id: ColumnElement[int]) -> ColumnElement[bool]:
    if reach.viewer_id is None:
        return false()
    if reach.is_admin:
        return true()
    if not reach.group_roles:
        return false()
    return group_id.in_(viewer_groups(reach.viewer_id))


def group_allows(reach: Reach, permission: Permission, group_id: ColumnElement[int]) -> ColumnElement[bool]:
    if reach.viewer_id is None:
        return false()
    if reach.is_admin:
        return true()
    roles = ROLES_GIVING[permission]
    if not roles or not reach.staff_groups(roles):
        return false()
    return group_id.in_(viewer_groups(reach.viewer_id, roles))


def membership_visible(reach: Reach, user_id: ColumnElement[int], group_id: ColumnElement[int]) -> ColumnElement[bool]:
    """A membership shows where both its group and its user do."""
    return and_(group_visible(reach, group_id), user_visible(reach, user_id))
