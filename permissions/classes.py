"""One permission class per `Permission` value, each printing `@requires(permission: ...)`.

On object fields a class decides synchronously from the request's Reach (loaded by the resolver that
produced the object). On Query/Mutation fields it is given a `Target`: an async function that finds
the object named by the arguments, raising NOT_FOUND for what the caller may not see.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Protocol

import strawberry
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.schema_directive import Location
from strawberry.types import Info

from app.runtime.errors import Forbidden, Unauthenticated
from permissions.reach import Permission, Reach, UserRef


@strawberry.schema_directive(
    name="requires",
    locations=[Location.FIELD_DEFINITION, Location.OBJECT],
    description=(
        "The caller must hold this permission on the object (or, on Query/Mutation\nfields, on the object "
        "named by the arguments). Enforced by a permission class;\nprinted here so that clients can read the rules."
    ),
)
class Requires:
    permission: Permission


@strawberry.schema_directive(
    name="authenticated",
    locations=[Location.FIELD_DEFINITION, Location.OBJECT],
    description="The caller must be signed in (a session or API token).",
)
class AuthenticatedDirective:
    pass


class GroupSubject(Protocol):
    """Objects whose permissions are decided on a group (Group itself)."""

    group_subject_id: int


Target = Callable[[Info, dict[str, Any]], Awaitable["Subjects"]]


class Subjects:
    """What a root field's arguments name: groups and/or users, or the whole site (site admins only)."""

    def __init__(self, groups: list[int] | None = None, users: list[UserRef] | None = None, site: bool = False) -> None:
        self.groups = groups or []
        self.users = users or []
        self.site = site


def allowed_on_every_object(reach: Reach, permission: Permission) -> bool:
    """A site admin holds every permission on every user and group but MANAGE_ACCOUNT (decided per account, see
    `Reach.may`): what `decide` answers then needs no look at the object."""
    return permission is not Permission.MANAGE_ACCOUNT and reach.is_admin


def decide(reach: Reach, permission: Permission, source: Any) -> bool:
    if allowed_on_every_object(reach, permission):
        return True
    if permission is Permission.SITE_ADMIN:
        return reach.is_admin
    group_id = getattr(source, "group_subject_id", None)
    if group_id is not None:
        return reach.may_on_group(permission, group_id)
    user = getattr(source, "user_subject", source)
    return reach.may(permission, user)


class Authenticated(BasePermission):
    message = "Sign in first."
    error_extensions = {"code": "UNAUTHENTICATED"}
    _schema_directive = AuthenticatedDirective()

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        return info.context.viewer is not None


class RequiresPermission(BasePermission):
    permission: ClassVar[Permission]
    message = "You do not have permission to do this."
    error_extensions = {"code": "FORBIDDEN"}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "permission" in cls.__dict__:
            cls._schema_directive = Requires(permission=cls.permission)

    def __init__(self, target: Target | None = None) -> None:
        self.target = target

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool | Awaitable[bool]:
        if self.target is not None:
            return self._check_target(info, kwargs)
        if info.context.viewer is None:
            raise Unauthenticated("Sign in first.")
        return decide(info.context.reach, self.permission, source)

    def allows_every_object(self, info: Info) -> bool:
        """True when `has_permission` allows this field on every object for the request's viewer, so that a page
        of objects may ask once (`app.runtime.subtrees`). False: ask object by object."""
        if self.target is not None or info.context.viewer is None:
            return False
        return allowed_on_every_object(info.context.reach, self.permission)

    async def _check_target(self, info: Info, kwargs: dict[str, Any]) -> bool:
        if info.context.viewer is None:
            raise Unauthenticated("Sign in first.")
        reach = await info.context.load_reach()
        if self.permission is Permission.SITE_ADMIN:
            return reach.is_admin
        subjects = await self.target(info, kwargs)  # type: ignore[misc]
        if subjects.site and not reach.is_admin:
            return False
        return all(reach.may_on_group(self.permission, g) for g in subjects.groups) and all(
            reach.may(self.permission, u) for u in subjects.users
        )


class SiteAdmin(RequiresPermission):
    permission = Permission.SITE_ADMIN

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool | Awaitable[bool]:
        if source is None:  # Query/Mutation field: decided from the site roles alone
            return self._check_target(info, kwargs)
        return super().has_permission(source, info, **kwargs)


class ViewProfile(RequiresPermission):
    permission = Permission.VIEW_PROFILE


class ViewContact(RequiresPermission):
    permission = Permission.VIEW_CONTACT


class ViewProgress(RequiresPermission):
    permission = Permission.VIEW_PROGRESS


class ViewActivity(RequiresPermission):
    permission = Permission.VIEW_ACTIVITY


class ReviewWork(RequiresPermission):
    permission = Permission.REVIEW_WORK


class ManageGroup(RequiresPermission):
    permission = Permission.MANAGE_GROUP


class ExportGroup(RequiresPermission):
    permission = Permission.EXPORT_GROUP


class ManageAccount(RequiresPermission):
    """Over a user: its home group's LEADERs (and its ancestors'). On a group (a scope, a new home group):
    its LEADERs and its ancestors'. On the site (no group named): site admins."""

    permission = Permission.MANAGE_ACCOUNT


CLASSES: dict[Permission, type[RequiresPermission]] = {
    cls.permission: cls
    for cls in (
        SiteAdmin, ViewProfile, ViewContact, ViewProgress, ViewActivity, ReviewWork, ManageGroup, ExportGroup,
        ManageAccount,
    )
}


def requires(permission: Permission, target: Target | None = None) -> PermissionExtension:
    """The field extension that enforces `permission` and prints `@requires` for it."""
    return PermissionExtension([CLASSES[permission](target)])


def authenticated() -> PermissionExtension:
    return PermissionExtension([Authenticated()])


def authenticated_requires(permission: Permission, target: Target) -> PermissionExtension:
    """Both printed (`@authenticated @requires(...)`): for root fields whose arguments may name no object, in
    which case the target names the site (site admins only) or refuses the input."""
    return PermissionExtension([Authenticated(), CLASSES[permission](target)])


def forbid_unless(allowed: bool, message: str = "You do not have permission to do this.") -> None:
    if not allowed:
        raise Forbidden(message)
