"""A plain-Python model of who may see what, written from the rules in the contract (the `Permission`
enum descriptions, field descriptions) and the documented decisions in permissions/reach.py, WITHOUT
importing any production permission code. The permission oracle (tests/test_oracle.py) checks the API
against it.

The rules, as written there:
- SITE_ADMIN: site OWNER or ADMIN.
- "Over a user": holds LEADER, MENTOR or ANALYST in a group where that user has a membership, or in any
  ancestor of such a group (inherited down, never up). Only the user's own memberships count, not those
  added on the strength of a consent (reach.py: UserRef).
- VIEW_PROFILE: self, admin, LEADER/MENTOR/ANALYST over them, a GRANTED consent from them, a guardian link.
- VIEW_CONTACT (email, company): self, admin, over them, a GRANTED consent.
- The subject of a PENDING (not expired) or GRANTED request sees the requester's name and email
  (VIEW_PROFILE, VIEW_CONTACT), never after DENIED, REVOKED or EXPIRED; it gives no progress.
- user/node/group return null for what the caller may not see; a protected field the caller may not
  read is null with a FORBIDDEN error.
- Groups the caller may see: all for a site admin; else those where the caller holds a role (any, MEMBER
  too), with their descendants.
- viewerRole: the effective role, staff roles inherited from ancestors; MEMBER only where held.
- viewerPermissions (on a group): VIEW_PROGRESS (L/M/A), REVIEW_WORK (L/M), MANAGE_GROUP (L),
  EXPORT_GROUP (L/A), held here or on an ancestor; all of them for a site admin.
- Memberships of a user: those the caller may see (the group visible), not ended; a membership by id shows
  where both its group and its user do, or where the caller holds a staff role on the group and the
  membership is an own one (the members list's history of ended memberships).
- An ended membership (endedAt set) gives no role and no access, and is left out of lists and aggregates.
- Guardian links: only where the caller may see both users.
- Access requests: seen by the requester, the subject and site admins; the subject is shown to the
  requester only once GRANTED; a PENDING request past its expiry reads EXPIRED.
- VIEW_PROGRESS (courseProgress, usageMinutes): self, admin, L/M/A over them, a GRANTED consent, a guardian
  link. VIEW_ACTIVITY (activity): self, admin, L/M over them. REVIEW_WORK (pendingReviewCount): admin,
  L/M over the submitter (not self).
- A group's members and memberCount: the memberships of the group (includeNested: of its subtree) whose
  user the caller may see. progressSummary: VIEW_PROGRESS on the group; reviewQueue: REVIEW_WORK on it,
  holding NEEDS_REVIEW submissions of its (nested) members by their own memberships, never the caller's
  own; progressReport and progressExportUrl: EXPORT_GROUP, the report holding one row per (MEMBER
  membership in the group or its subtree whose user the caller may see, enrolled course): every aggregate
  counts whom the members list shows. A submission by id:
  for whoever may see the submitter's progress.
- MANAGE_ACCOUNT over a user: site admin; LEADER of the account's home group or of an ancestor of it. An
  account holding a site role is administered by site admins only, an owner's by owners only, and one
  holding a staff role in a group the caller does not lead by site admins only (reach.py:
  Reach.administers). It gives
  VIEW_PROFILE and VIEW_CONTACT, placing the user into groups the caller manages (addMembers), updateUser;
  no progress or activity. On a group (viewerPermissions, a scope, a new home group): LEADER of it or of an
  ancestor, or site admin.
- users(...): site admins every account; anyone else the users they may see (VIEW_PROFILE, which holds the
  accounts they administer). filter.homeGroupId names a group the caller sees (NOT_FOUND otherwise).
- unassignedActiveStudentCount(scopeGroupId): learners with at least 1 minute of use and no membership at
  all, homed in the scope's subtree; no scope: the whole site for a site admin, BAD_USER_INPUT for anyone
  else; a scope the caller may not see: NOT_FOUND; one they see but may not administer: FORBIDDEN.
"""

from __future__ import annotations

from dataclasses import dataclass, field

STAFF = ("LEADER", "MENTOR", "ANALYST")
GROUP_PERMISSION_ROLES = {
    "VIEW_PROGRESS": {"LEADER", "MENTOR", "ANALYST"},
    "REVIEW_WORK": {"LEADER", "MENTOR"},
    "MANAGE_GROUP": {"LEADER"},
    "EXPORT_GROUP": {"LEADER", "ANALYST"},
    "MANAGE_ACCOUNT": {"LEADER"},
}


@dataclass(frozen=True)
class MUser:
    id: int
    kind: str
    roles: tuple[str, ...]
    email: str
    company: str | None
    first_name: str
    home: int | None = None  # the home group
    minutes: int = 0  # minutes of use


@dataclass(frozen=True)
class MGroup:
    id: int
    parent: int | None
    name: str


@dataclass(frozen=True)
class MMembership:
    id: int
    user: int
    group: int
    role: str
    consent: int | None
    ended: bool = False  # endedAt set: kept for history, gives no role and no access


@dataclass(frozen=True)
class MRequest:
    id: int
    requester: int
    subject_email: str
    subject_user: int | None
    status: str  # as it reads: PENDING, GRANTED, DENIED, REVOKED, EXPIRED


@dataclass(frozen=True)
class MLink:
    id: int
    external: int
    pupil: int


@dataclass(frozen=True)
class MSubmission:
    id: int
    user: int
    course: int
    step: int
    status: str


@dataclass
class World:
    users: dict[int, MUser] = field(default_factory=dict)
    groups: dict[int, MGroup] = field(default_factory=dict)
    memberships: dict[int, MMembership] = field(default_factory=dict)
    requests: dict[int, MRequest] = field(default_factory=dict)
    links: dict[int, MLink] = field(default_factory=dict)
    courses: list[int] = field(default_factory=list)
    enrollments: set[tuple[int, int]] = field(default_factory=set)  # (user, course)
    submissions: dict[int, MSubmission] = field(default_factory=dict)

    # --- the tree ---------------------------------------------------------------------------------

    def ancestors(self, group: int) -> list[int]:
        """Root first, the group itself excluded."""
        chain = []
        parent = self.groups[group].parent
        while parent is not None:
            chain.append(parent)
            parent = self.groups[parent].parent
        return list(reversed(chain))

    def roles_at(self, viewer: int, group: int) -> set[str]:
        """Roles the viewer holds on `group`, directly or on an ancestor (any of the viewer's memberships)."""
        line = {group, *self.ancestors(group)}
        return {m.role for m in self.memberships.values() if m.user == viewer and m.group in line and not m.ended}

    # --- people -----------------------------------------------------------------------------------

    def is_admin(self, viewer: int | None) -> bool:
        return viewer is not None and bool({"OWNER", "ADMIN"} & set(self.users[viewer].roles))

    def over(self, viewer: int, user: int, roles: set[str]) -> bool:
        own_groups = {m.group for m in self.memberships.values() if m.user == user and m.consent is None and not m.ended}
        return any(self.roles_at(viewer, g) & roles for g in own_groups)

    def granted(self, viewer: int, user: int) -> bool:
        return any(
            r.requester == viewer and r.subject_user == user and r.status == "GRANTED" for r in self.requests.values()
        )

    def guardian_of(self, viewer: int, user: int) -> bool:
        return any(link.external == viewer and link.pupil == user for link in self.links.values())

    def asked_by(self, viewer: int, user: int) -> bool:
        """The viewer is the subject of a PENDING or GRANTED request by `user`: they see who asks."""
        return any(
            r.requester == user and r.status in ("PENDING", "GRANTED") and self.is_subject(viewer, r)
            for r in self.requests.values()
        )

    def manage_account(self, viewer: int | None, user: int) -> bool:
        if viewer is None or user not in self.users:
            return False
        account = self.users[user]
        if self.is_admin(viewer):  # an owner's account: owners only
            return "OWNER" in self.users[viewer].roles or "OWNER" not in account.roles
        if account.home is None or account.roles or "LEADER" not in self.roles_at(viewer, account.home):
            return False
        # staff roles held elsewhere: whoever sets the password would hold them, so site admins only
        return all(
            "LEADER" in self.roles_at(viewer, m.group)
            for m in self.memberships.values()
            if m.user == user and not m.ended and m.role in STAFF and m.consent is None
        )

    def view_progress(self, viewer: int | None, user: int) -> bool:
        """VIEW_PROGRESS: self, admin, L/M/A over them, a GRANTED consent, a guardian link."""
        if viewer is None or user not in self.users:
            return False
        return (
            self.is_admin(viewer) or viewer == user or self.over(viewer, user, set(STAFF))
            or self.granted(viewer, user) or self.guardian_of(viewer, user)
        )

    def view_profile(self, viewer: int | None, user: int) -> bool:
        """VIEW_PROFILE: as VIEW_PROGRESS, the account's administrators (MANAGE_ACCOUNT), and the subject of a
        PENDING or GRANTED request sees its requester."""
        return self.view_progress(viewer, user) or (
            viewer is not None and (self.manage_account(viewer, user) or self.asked_by(viewer, user))
        )

    def view_contact(self, viewer: int | None, user: int) -> bool:
        if viewer is None:
            return False
        return (
            self.is_admin(viewer) or viewer == user or self.over(viewer, user, set(STAFF)) or self.granted(viewer, user)
            or self.asked_by(viewer, user) or self.manage_account(viewer, user)
        )

    # --- account administration -------------------------------------------------------------------

    def users_listed(self, viewer: int) -> list[int]:
        return [u for u in self.users if self.view_profile(viewer, u)]

    def unassigned_active(self, scope: int | None) -> list[int]:
        """Learners with use and no membership at all, homed in the scope's subtree (anywhere: no scope)."""
        placed = {m.user for m in self.memberships.values() if not m.ended}
        within = self.subtree(scope) if scope is not None else None
        return [
            u.id for u in self.users.values()
            if u.kind == "LEARNER" and u.minutes >= 1 and u.id not in placed
            and (within is None or u.home in within)
        ]

    def scope_outcome(self, viewer: int, scope: int | None) -> str:
        """unassignedActiveStudentCount's answer: "ok" or the error code."""
        if scope is None:
            return "ok" if self.is_admin(viewer) else "BAD_USER_INPUT"
        if not self.sees_group(viewer, scope):
            return "NOT_FOUND"
        return "ok" if self.may_on_group(viewer, "MANAGE_ACCOUNT", scope) else "FORBIDDEN"

    def update_outcome(self, viewer: int, user: int) -> str:
        if not self.view_profile(viewer, user):
            return "NOT_FOUND"
        return "ok" if self.manage_account(viewer, user) else "FORBIDDEN"

    def add_outcome(self, viewer: int, group: int, user: int) -> str:
        """addMembers(group, [user]) as a MEMBER, in the order its rules are checked."""
        if not self.sees_group(viewer, group):
            return "NOT_FOUND"
        if not self.may_on_group(viewer, "MANAGE_GROUP", group):
            return "FORBIDDEN"
        if not self.view_profile(viewer, user):
            return "NOT_FOUND"
        if any(m.user == user and m.group == group and not m.ended for m in self.memberships.values()):
            return "CONFLICT"
        placeable = (
            self.is_admin(viewer) or self.over(viewer, user, {"LEADER"}) or self.manage_account(viewer, user)
            or self.granted(viewer, user)
        )
        return "ok" if placeable else "FORBIDDEN"

    # --- groups -----------------------------------------------------------------------------------

    def sees_group(self, viewer: int | None, group: int) -> bool:
        if viewer is None or group not in self.groups:
            return False
        return self.is_admin(viewer) or bool(self.roles_at(viewer, group))

    def viewer_role(self, viewer: int | None, group: int) -> str | None:
        if viewer is None:
            return None
        held = self.roles_at(viewer, group)
        for role in STAFF:
            if role in held:
                return role
        direct = {m.role for m in self.memberships.values() if m.user == viewer and m.group == group and not m.ended}
        return "MEMBER" if "MEMBER" in direct else None

    def viewer_permissions(self, viewer: int | None, group: int) -> list[str]:
        if viewer is None:
            return []
        if self.is_admin(viewer):
            return sorted(GROUP_PERMISSION_ROLES)
        held = self.roles_at(viewer, group)
        return sorted(p for p, roles in GROUP_PERMISSION_ROLES.items() if held & roles)

    # --- requests ---------------------------------------------------------------------------------

    def is_subject(self, viewer: int | None, request: MRequest) -> bool:
        if viewer is None:
            return False
        if request.subject_user is not None:
            return request.subject_user == viewer
        return request.subject_email.lower() == self.users[viewer].email.lower()

    def sees_request(self, viewer: int | None, request: MRequest) -> bool:
        return viewer is not None and (
            self.is_admin(viewer) or request.requester == viewer or self.is_subject(viewer, request)
        )

    def shown_subject(self, viewer: int | None, request: MRequest) -> int | None:
        if self.is_subject(viewer, request):
            return viewer
        if self.is_admin(viewer) or (request.requester == viewer and request.status == "GRANTED"):
            return request.subject_user
        return None

    # --- progress, activity, review ----------------------------------------------------------------

    def view_activity(self, viewer: int | None, user: int) -> bool:
        if viewer is None:
            return False
        return self.is_admin(viewer) or viewer == user or self.over(viewer, user, {"LEADER", "MENTOR"})

    def review_work(self, viewer: int | None, user: int) -> bool:
        if viewer is None:
            return False
        return self.is_admin(viewer) or self.over(viewer, user, {"LEADER", "MENTOR"})

    def may_on_group(self, viewer: int | None, permission: str, group: int) -> bool:
        return permission in self.viewer_permissions(viewer, group)

    def subtree(self, group: int) -> set[int]:
        return {g for g in self.groups if g == group or group in self.ancestors(g)}

    def members(self, viewer: int | None, group: int, nested: bool) -> list[MMembership]:
        scope = self.subtree(group) if nested else {group}
        return [
            m for m in self.memberships.values() if m.group in scope and not m.ended and self.view_profile(viewer, m.user)
        ]

    def sees_membership(self, viewer: int | None, m: MMembership) -> bool:
        """By id: its group and its user visible; or, as the members list shows history, an own membership
        (ended or not) in a group where the viewer holds a staff role."""
        if not self.sees_group(viewer, m.group):
            return False
        staff = viewer is not None and (self.is_admin(viewer) or bool(self.roles_at(viewer, m.group) & set(STAFF)))
        return self.view_profile(viewer, m.user) or (staff and m.consent is None)

    def review_queue(self, viewer: int | None, group: int) -> list[MSubmission]:
        scope = self.subtree(group)
        members = {m.user for m in self.memberships.values() if m.group in scope and m.consent is None and not m.ended}
        return [
            s for s in self.submissions.values()
            if s.status == "NEEDS_REVIEW" and s.user in members and s.user != viewer
        ]

    def report_rows(self, viewer: int | None, group: int) -> list[tuple[int, int, int]]:
        """(group, user, course) rows of the group's progress report (nested, all courses): MEMBER memberships
        whose user the viewer may see, consent-based ones too, as the members list shows them."""
        scope = self.subtree(group)
        return [
            (m.group, m.user, c)
            for m in self.memberships.values()
            if m.group in scope and m.role == "MEMBER" and not m.ended and self.view_progress(viewer, m.user)
            for c in self.courses
            if (m.user, c) in self.enrollments
        ]
