"""The permission oracle (property-based, Hypothesis), on SQLite and PostgreSQL.

Each example is a random site: group trees up to 5 levels, users of every kind with random site roles,
home groups and minutes of use, memberships with every role, access requests in every state (some with
memberships added on their strength), guardian links. It is written straight into the database (one bulk
insert per table), then several viewers (anonymous too) each send one random query over the protected
fields, reached through `user`, `group`, `node` and nested lists, with `users(...)` and
`unassignedActiveStudentCount` over a random scope. The answer must equal what the plain-Python model in
tests/oracle_model.py allows, exactly: no value the model forbids, no null where it allows a value, one
FORBIDDEN error per protected field it refuses, and the error it predicts for a refused scope. Then one
viewer tries a random `updateUser` or `addMembers` (the outcome and the database must be the model's), and a
LEADER membership ends: at once, the viewer's answer is the model's again, and sees nothing it did not see
before (revoking never widens).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from app.runtime.ids import to_global_id
from app.server import create_app
from app.services.auth import token_hash
from app.settings import Settings
from app.store.db import Database
from app.store.models import (
    TABLES_IN_DELETE_ORDER,
    AccessRequest,
    Group,
    GroupClosure,
    GuardianLink,
    Membership,
    Session,
    Step,
    Submission,
    Usage,
    User,
    utcnow,
)
from app.store.models import Course as CourseRow
from app.store.models import Enrollment as EnrollmentRow
from tests.oracle_model import MGroup, MLink, MMembership, MRequest, MSubmission, MUser, World

EXAMPLES_PER_ENGINE = int(os.environ.get("GROUPGRAPH_ORACLE_EXAMPLES", "150"))
VIEWERS_PER_EXAMPLE = 3
KINDS = ("STAFF", "LEARNER", "EXTERNAL")
SITE_ROLES = ((), (), (), (), ("ADMIN",), ("OWNER",), ("GROUP_ANALYST",))
GROUP_ROLES = ("LEADER", "MENTOR", "ANALYST", "MEMBER")
STATUSES = ("PENDING", "GRANTED", "DENIED", "REVOKED", "EXPIRED")
USER_FIELDS = (
    "firstName", "email", "company", "status", "lastLoginAt", "loginCount", "memberships", "guardianLinks",
    "courseProgress", "usageMinutes", "activity", "pendingReviewCount", "homeGroup",
)
GROUP_FIELDS = (
    "name", "parent", "ancestors", "children", "viewerRole", "viewerPermissions", "members", "membersNested",
    "memberCount", "progressSummary", "reviewQueue", "progressReport", "progressExportUrl",
)
ADMIN_FIELDS = {"status": "ACTIVE", "lastLoginAt": None, "loginCount": 0}


@dataclass
class Example:
    world: World
    viewers: list[int | None]
    user_fields: list[str]
    group_fields: list[str]
    scopes: list[int | None]  # per viewer: the scope of unassignedActiveStudentCount and users(filter:)
    # (viewer, "update", user, 0) or (viewer, "add", user, group)
    mutation: tuple[int, str, int, int] | None = None
    revoked: int | None = None  # the LEADER membership that ends

@st.composite
def examples(draw: Callable[..., Any]) -> Example:
    world = World()
    n_users = draw(st.integers(2, 8))
    depth: dict[int, int] = {}
    for gid in range(1, draw(st.integers(1, 8)) + 1):
        candidates = [g for g, d in depth.items() if d < 4]  # depth 0..4: trees of up to 5 levels
        parent = draw(st.one_of(st.none(), st.sampled_from(candidates))) if candidates else None
        depth[gid] = 0 if parent is None else depth[parent] + 1
        world.groups[gid] = MGroup(id=gid, parent=parent, name=f"Group {gid}")
    homes = st.one_of(st.none(), st.sampled_from(sorted(world.groups)))
    for uid in range(1, n_users + 1):
        world.users[uid] = MUser(
            id=uid, kind=draw(st.sampled_from(KINDS)), roles=draw(st.sampled_from(SITE_ROLES)),
            email=f"u{uid}@example.com", company=draw(st.sampled_from((None, "Acme", "Globex"))),
            first_name=f"First{uid}", home=draw(homes), minutes=draw(st.sampled_from((0, 0, 3))),
        )
    users = st.sampled_from(sorted(world.users))
    groups = st.sampled_from(sorted(world.groups))
    pairs = draw(st.lists(st.tuples(users, groups, st.sampled_from(GROUP_ROLES)), max_size=14, unique_by=lambda t: t[:2]))
    for n, (uid, gid, role) in enumerate(pairs, 1):
        world.memberships[n] = MMembership(id=n, user=uid, group=gid, role=role, consent=None)
    taken = {(m.user, m.group) for m in world.memberships.values()}
    asks = draw(st.lists(st.tuples(users, st.one_of(st.none(), users), st.sampled_from(STATUSES), st.booleans()), max_size=6))
    for rid, (requester, subject, status, by_email) in enumerate(asks, 1):
        if subject == requester:
            continue
        email = world.users[subject].email if subject is not None else f"nobody{rid}@example.com"
        # an answered request always records its subject; a pending one may know it by email only
        known = subject if (status not in ("PENDING", "EXPIRED") or not by_email) else None
        world.requests[rid] = MRequest(id=rid, requester=requester, subject_email=email, subject_user=known, status=status)
        if status == "GRANTED" and subject is not None and draw(st.booleans()):
            gid = draw(groups)
            if (subject, gid) not in taken:
                taken.add((subject, gid))
                mid = len(world.memberships) + 1
                world.memberships[mid] = MMembership(id=mid, user=subject, group=gid, role="MEMBER", consent=rid)
    externals = [u for u in world.users.values() if u.kind == "EXTERNAL"]
    learners = [u for u in world.users.values() if u.kind == "LEARNER"]
    if externals and learners:
        linked = draw(st.lists(st.tuples(st.sampled_from(externals), st.sampled_from(learners)), max_size=4, unique=True))
        for lid, (external, pupil) in enumerate(linked, 1):
            world.links[lid] = MLink(id=lid, external=external.id, pupil=pupil.id)
    world.courses = list(range(1, draw(st.integers(1, 2)) + 1))
    world.enrollments = set(draw(st.lists(st.tuples(users, st.sampled_from(world.courses)), max_size=8)))
    for user, course_id in sorted(world.enrollments):
        if draw(st.booleans()):
            sid = len(world.submissions) + 1
            status = draw(st.sampled_from(("NEEDS_REVIEW", "NEEDS_REVIEW", "REVIEWED")))
            world.submissions[sid] = MSubmission(id=sid, user=user, course=course_id, step=2 * course_id, status=status)
    viewers = draw(st.lists(st.one_of(st.none(), users), min_size=VIEWERS_PER_EXAMPLE, max_size=VIEWERS_PER_EXAMPLE))
    user_fields = draw(st.lists(st.sampled_from(USER_FIELDS), min_size=1, max_size=6, unique=True))
    group_fields = draw(st.lists(st.sampled_from(GROUP_FIELDS), min_size=1, max_size=6, unique=True))
    scopes = draw(st.lists(st.one_of(st.none(), groups), min_size=VIEWERS_PER_EXAMPLE, max_size=VIEWERS_PER_EXAMPLE))
    example = Example(world, viewers, user_fields, group_fields, scopes)
    signed_in = [v for v in viewers if v is not None]
    if signed_in:
        kind = draw(st.sampled_from(("update", "add")))
        example.mutation = (draw(st.sampled_from(signed_in)), kind, draw(users), draw(groups) if kind == "add" else 0)
    leaders = [m.id for m in world.memberships.values() if m.role == "LEADER"]
    if leaders:
        example.revoked = draw(st.sampled_from(leaders))
    return example


# --- writing a world into the database -------------------------------------------------------------------


def token_of(uid: int) -> str:
    return f"ggs_oracle_{uid}"


async def write(database: Database, world: World) -> None:
    now = utcnow()
    async with database.transaction() as session:
        for table in TABLES_IN_DELETE_ORDER:
            await session.execute(text(f'DELETE FROM "{table}"'))
        session.add_all(
            Group(id=g.id, parent_id=g.parent, name=g.name, name_normalized=g.name.lower(), slug=f"g{g.id}",
                  depth=len(world.ancestors(g.id)))
            for g in world.groups.values()
        )
        await session.flush()
        session.add_all(
            User(
                id=u.id, email=u.email, email_normalized=u.email, first_name=u.first_name, last_name="Oracle",
                last_name_normalized="oracle", kind=u.kind, site_roles=",".join(u.roles), company=u.company,
                home_group_id=u.home,
            )
            for u in world.users.values()
        )
        await session.flush()
        session.add_all(
            Usage(user_id=u.id, day=date(2026, 3, 2), minutes=u.minutes) for u in world.users.values() if u.minutes
        )
        session.add_all(
            Session(user_id=u, token_hash=token_hash(token_of(u)), expires_at=now + timedelta(hours=1))
            for u in world.users
        )
        await session.flush()
        session.add_all(
            GroupClosure(ancestor_id=a, descendant_id=g, depth=len(chain) - i)
            for g in world.groups
            for chain in [[*world.ancestors(g), g]]
            for i, a in enumerate(chain, 1)
        )
        session.add_all(
            AccessRequest(
                id=r.id, requester_id=r.requester, subject_email=r.subject_email,
                subject_email_normalized=r.subject_email.lower(), subject_user_id=r.subject_user,
                status="PENDING" if r.status == "EXPIRED" else r.status, created_at=now - timedelta(days=40),
                expires_at=now - timedelta(days=10) if r.status == "EXPIRED" else now + timedelta(days=20),
                decided_at=None if r.status in ("PENDING", "EXPIRED") else now,
            )
            for r in world.requests.values()
        )
        await session.flush()
        await session.flush()
        session.add_all(
            Membership(id=m.id, user_id=m.user, group_id=m.group, role=m.role, access_request_id=m.consent)
            for m in world.memberships.values()
        )
        session.add_all(CourseRow(id=c, name=f"Course {c}") for c in world.courses)
        await session.flush()
        session.add_all(
            Step(id=2 * c - 1 + k, course_id=c, title=f"Step {k}", position=k + 1, kind=("LESSON", "ASSIGNMENT")[k])
            for c in world.courses
            for k in (0, 1)
        )
        session.add_all(EnrollmentRow(user_id=u, course_id=c) for u, c in world.enrollments)
        await session.flush()
        session.add_all(
            Submission(id=x.id, user_id=x.user, step_id=x.step, course_id=x.course, body="work", status=x.status)
            for x in world.submissions.values()
        )
        session.add_all(
            GuardianLink(id=link.id, external_user_id=link.external, pupil_id=link.pupil, licence_type="PARENT_GUARDIAN")
            for link in world.links.values()
        )


# --- the query and the answer the model expects -----------------------------------------------------------


def gid(kind: str, ident: int) -> str:
    return to_global_id(kind, ident)


def user_selection(fields: list[str]) -> str:
    parts = ["id"]
    for name in fields:
        if name == "memberships":
            parts.append("memberships { id role group { id } }")
        elif name == "courseProgress":
            parts.append("courseProgress { course { id } }")
        elif name == "activity":
            parts.append("activity { pageInfo { hasPreviousPage } }")
        elif name == "guardianLinks":
            parts.append("guardianLinks { id externalUser { id email } pupil { id } }")
        elif name == "homeGroup":
            parts.append("homeGroup { id }")
        else:
            parts.append(name)
    return " ".join(parts)


def group_selection(fields: list[str]) -> str:
    nested = {
        "parent": "parent { id }", "ancestors": "ancestors { id }", "children": "children { id }",
        "members": "members { totalCount edges { node { id user { id email } } } }",
        "membersNested": "membersNested: members(includeNested: true) { totalCount edges { node { id group { id } } } }",
        "memberCount": "memberCount nestedCount: memberCount(includeNested: true)",
        "progressSummary": "progressSummary { __typename }",
        "reviewQueue": "reviewQueue { totalCount edges { node { id } } }",
        "progressReport": "progressReport { totalCount edges { node { user { id email } groupName courseName } } }",
    }
    return " ".join(["id", *(nested.get(f, f) for f in fields)])


SCOPED_LIST = "users(filter: {{noGroups: true, active: true{home}}}, first: 100) {{ totalCount edges {{ node {{ id }} }} }}"


def scoped_parts(world: World, viewer: int | None, scope: int | None) -> tuple[list[str], list[str], list[str]]:
    """The account-administration root fields for a scope: (those the model lets through, those it refuses,
    the codes it refuses them with). A refused non-null root field nulls the whole answer (and the first
    one stops the others): each goes alone."""
    if viewer is None:
        return [], [], []
    arg = f'(scopeGroupId: "{gid("Group", scope)}")' if scope is not None else ""
    home = f', homeGroupId: "{gid("Group", scope)}"' if scope is not None else ""
    fields = [
        (f"unassigned: unassignedActiveStudentCount{arg}", world.scope_outcome(viewer, scope)),
        ("scoped: " + SCOPED_LIST.format(home=home), "ok" if scope is None or world.sees_group(viewer, scope) else "NOT_FOUND"),
    ]
    return [f for f, o in fields if o == "ok"], [f for f, o in fields if o != "ok"], sorted(o for _, o in fields if o != "ok")


def build_query(example: Example, viewer: int | None, scope: int | None = None) -> str:
    world = example.world
    parts = [f'u{u}: user(id: "{gid("User", u)}") {{ {user_selection(example.user_fields)} }}' for u in world.users]
    parts += [f'g{g}: group(id: "{gid("Group", g)}") {{ {group_selection(example.group_fields)} }}' for g in world.groups]
    parts += [
        f'm{m}: node(id: "{gid("Membership", m)}") {{ ... on Membership {{ id role user {{ id email }} group {{ id }} }} }}'
        for m in world.memberships
    ]
    parts += [
        f'r{r}: node(id: "{gid("AccessRequest", r)}") {{ ... on AccessRequest {{ id status requester {{ id }} subject {{ id }} }} }}'
        for r in world.requests
    ]
    parts += [
        f'l{link}: node(id: "{gid("GuardianLink", link)}") {{ ... on GuardianLink {{ id externalUser {{ id }} pupil {{ id }} }} }}'
        for link in world.links
    ]
    parts += [
        f's{x}: node(id: "{gid("Submission", x)}") {{ ... on Submission {{ id status user {{ id }} }} }}'
        for x in world.submissions
    ]
    parts.append(f'n: node(id: "{gid("User", 1)}") {{ id ... on User {{ firstName }} }}')
    parts.append("viewer { id }")
    if viewer is not None:  # @authenticated and non-null: an anonymous caller would lose the whole answer
        parts.append("groups(first: 100) { totalCount edges { node { id } } }")
        parts.append("users(first: 100) { totalCount edges { node { id } } }")
        parts += scoped_parts(world, viewer, scope)[0]
    return "{ " + " ".join(parts) + " }"


class Expected:
    def __init__(self, world: World, viewer: int | None) -> None:
        self.world = world
        self.viewer = viewer
        self.forbidden = 0

    def guarded(self, allowed: bool, value: Any) -> Any:
        if allowed:
            return value
        self.forbidden += 1
        return None

    def user(self, uid: int, fields: list[str]) -> dict[str, Any] | None:
        w, v = self.world, self.viewer
        if not w.view_profile(v, uid):
            return None
        user = w.users[uid]
        out: dict[str, Any] = {"id": gid("User", uid)}
        for name in fields:
            if name == "firstName":
                out[name] = user.first_name
            elif name in ("email", "company"):
                out[name] = self.guarded(w.view_contact(v, uid), user.email if name == "email" else user.company)
            elif name in ADMIN_FIELDS:
                out[name] = self.guarded(w.is_admin(v), ADMIN_FIELDS[name])
            elif name == "memberships":
                out[name] = [
                    {"id": gid("Membership", m.id), "role": m.role, "group": {"id": gid("Group", m.group)}}
                    for m in w.memberships.values()
                    if m.user == uid and w.sees_group(v, m.group)
                ]
            elif name == "guardianLinks":
                out[name] = [
                    {
                        "id": gid("GuardianLink", link.id),
                        "externalUser": {
                            "id": gid("User", link.external),
                            "email": self.guarded(w.view_contact(v, link.external), w.users[link.external].email),
                        },
                        "pupil": {"id": gid("User", link.pupil)},
                    }
                    for link in w.links.values()
                    if uid in (link.external, link.pupil) and w.view_profile(v, link.external) and w.view_profile(v, link.pupil)
                ]
            elif name == "courseProgress":
                courses = [{"course": {"id": gid("Course", c)}} for u, c in w.enrollments if u == uid]
                out[name] = self.guarded(w.view_progress(v, uid), courses)
            elif name == "usageMinutes":
                out[name] = self.guarded(w.view_progress(v, uid), user.minutes)
            elif name == "homeGroup":
                shown = user.home is not None and w.sees_group(v, user.home)
                out[name] = {"id": gid("Group", user.home)} if shown else None  # type: ignore[arg-type]
            elif name == "activity":
                out[name] = self.guarded(w.view_activity(v, uid), {"pageInfo": {"hasPreviousPage": False}})
            elif name == "pendingReviewCount":
                pending = sum(1 for x in w.submissions.values() if x.user == uid and x.status == "NEEDS_REVIEW")
                out[name] = self.guarded(w.review_work(v, uid), pending)
        return out

    def group(self, group_id: int, fields: list[str]) -> dict[str, Any] | None:
        w, v = self.world, self.viewer
        if not w.sees_group(v, group_id):
            return None
        group = w.groups[group_id]
        out: dict[str, Any] = {"id": gid("Group", group_id)}
        for name in fields:
            if name == "name":
                out[name] = group.name
            elif name == "parent":
                shown = group.parent is not None and w.sees_group(v, group.parent)
                out[name] = {"id": gid("Group", group.parent)} if shown else None  # type: ignore[arg-type]
            elif name == "ancestors":
                out[name] = [{"id": gid("Group", a)} for a in w.ancestors(group_id) if w.sees_group(v, a)]
            elif name == "children":
                out[name] = [
                    {"id": gid("Group", c.id)} for c in w.groups.values() if c.parent == group_id and w.sees_group(v, c.id)
                ]
            elif name == "viewerRole":
                out[name] = w.viewer_role(v, group_id)
            elif name == "viewerPermissions":
                out[name] = w.viewer_permissions(v, group_id)
            elif name == "members":
                rows = w.members(v, group_id, nested=False)
                out[name] = {
                    "totalCount": len(rows),
                    "edges": [
                        {"node": {"id": gid("Membership", m.id), "user": {
                            "id": gid("User", m.user),
                            "email": self.guarded(w.view_contact(v, m.user), w.users[m.user].email),
                        }}}
                        for m in rows
                    ],
                }
            elif name == "membersNested":
                rows = w.members(v, group_id, nested=True)
                out[name] = {
                    "totalCount": len(rows),
                    "edges": [{"node": {"id": gid("Membership", m.id), "group": {"id": gid("Group", m.group)}}} for m in rows],
                }
            elif name == "memberCount":
                out[name] = len(w.members(v, group_id, nested=False))
                out["nestedCount"] = len(w.members(v, group_id, nested=True))
            elif name == "progressSummary":
                allowed = w.may_on_group(v, "VIEW_PROGRESS", group_id)
                out[name] = self.guarded(allowed, {"__typename": "GroupProgressSummary"})
            elif name == "reviewQueue":
                queue = w.review_queue(v, group_id)
                shown = {"totalCount": len(queue), "edges": [{"node": {"id": gid("Submission", x.id)}} for x in queue]}
                out[name] = self.guarded(w.may_on_group(v, "REVIEW_WORK", group_id), shown)
            elif name == "progressReport":
                allowed = w.may_on_group(v, "EXPORT_GROUP", group_id)
                rows = w.report_rows(group_id) if allowed else []
                report = {
                    "totalCount": len(rows),
                    "edges": [
                        {"node": {
                            "user": {"id": gid("User", u), "email": self.guarded(w.view_contact(v, u), w.users[u].email)},
                            "groupName": w.groups[g].name, "courseName": f"Course {c}",
                        }}
                        for g, u, c in rows
                    ],
                }
                out[name] = self.guarded(allowed, report)
            elif name == "progressExportUrl":
                allowed = w.may_on_group(v, "EXPORT_GROUP", group_id)
                out[name] = self.guarded(allowed, f"/exports/groups/{group_id}/progress.csv")
        return out

    def membership(self, mid: int) -> dict[str, Any] | None:
        w, v = self.world, self.viewer
        m = w.memberships[mid]
        if not (w.sees_group(v, m.group) and w.view_profile(v, m.user)):
            return None
        return {
            "id": gid("Membership", mid), "role": m.role,
            "user": {"id": gid("User", m.user), "email": self.guarded(w.view_contact(v, m.user), w.users[m.user].email)},
            "group": {"id": gid("Group", m.group)},
        }

    def request(self, rid: int) -> dict[str, Any] | None:
        w, v = self.world, self.viewer
        r = w.requests[rid]
        if not w.sees_request(v, r):
            return None
        subject = w.shown_subject(v, r)
        return {
            "id": gid("AccessRequest", rid), "status": r.status, "requester": {"id": gid("User", r.requester)},
            "subject": {"id": gid("User", subject)} if subject is not None else None,
        }

    def link(self, lid: int) -> dict[str, Any] | None:
        w, v = self.world, self.viewer
        link = w.links[lid]
        if not (w.view_profile(v, link.external) and w.view_profile(v, link.pupil)):
            return None
        return {"id": gid("GuardianLink", lid), "externalUser": {"id": gid("User", link.external)}, "pupil": {"id": gid("User", link.pupil)}}

    def answer(self, example: Example, scope: int | None = None) -> dict[str, Any]:
        w, v = self.world, self.viewer
        data: dict[str, Any] = {}
        for u in w.users:
            data[f"u{u}"] = self.user(u, example.user_fields)
        for g in w.groups:
            data[f"g{g}"] = self.group(g, example.group_fields)
        for m in w.memberships:
            data[f"m{m}"] = self.membership(m)
        for r in w.requests:
            data[f"r{r}"] = self.request(r)
        for link in w.links:
            data[f"l{link}"] = self.link(link)
        for x in w.submissions.values():
            shown = w.view_progress(v, x.user)
            data[f"s{x.id}"] = {"id": gid("Submission", x.id), "status": x.status, "user": {"id": gid("User", x.user)}} if shown else None
        data["n"] = {"id": gid("User", 1), "firstName": w.users[1].first_name} if w.view_profile(v, 1) else None
        data["viewer"] = {"id": gid("User", v)} if v is not None else None
        if v is not None:
            shown = [g for g in w.groups if w.sees_group(v, g)]
            data["groups"] = {"totalCount": len(shown), "edges": [{"node": {"id": gid("Group", g)}} for g in shown]}
            data["users"] = connection("User", w.users_listed(v))
            allowed = scoped_parts(w, v, scope)[0]
            if any(f.startswith("unassigned:") for f in allowed):
                data["unassigned"] = len(w.unassigned_active(scope))
            if any(f.startswith("scoped:") for f in allowed):
                data["scoped"] = connection("User", [u for u in w.unassigned_active(scope) if w.view_profile(v, u)])
        return data


def connection(kind: str, ids: list[int]) -> dict[str, Any]:
    return {"totalCount": len(ids), "edges": [{"node": {"id": gid(kind, i)}} for i in ids]}


def normalized(value: Any) -> Any:
    """Lists compared as sets of their items (order is each list's own business, tested elsewhere)."""
    if isinstance(value, dict):
        return {k: normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [normalized(v) for v in value]
        return sorted(items, key=repr)
    if isinstance(value, str) and value.startswith("/exports/"):
        return value.split("?")[0]  # a download link is signed for the viewer: its path is what is decided
    return value


# --- the property -----------------------------------------------------------------------------------------


def check_answer(
    example: Example, viewer: int | None, scope: int | None, body: dict[str, Any], refused: list[dict[str, Any]]
) -> None:
    expected = Expected(example.world, viewer)
    data = expected.answer(example, scope)
    assert normalized(body.get("data")) == normalized(data), f"viewer {viewer}: {example}"
    codes = [e.get("extensions", {}).get("code") for e in body.get("errors", [])]
    assert codes == ["FORBIDDEN"] * expected.forbidden, f"viewer {viewer}: {codes} {example}"
    wanted = scoped_parts(example.world, viewer, scope)[2]
    assert all(r.get("data") is None for r in refused), f"viewer {viewer} scope {scope}: {refused} {example}"
    got = sorted(e.get("extensions", {}).get("code") for r in refused for e in r.get("errors", []))
    assert got == wanted, f"viewer {viewer} scope {scope}: {got} != {wanted} {example}"


def ids_in(value: Any) -> set[str]:
    """Every object id an answer shows (what the caller can see)."""
    if isinstance(value, dict):
        found = {value["id"]} if isinstance(value.get("id"), str) else set()
        for item in value.values():
            found |= ids_in(item)
        return found
    if isinstance(value, list):
        return set().union(*(ids_in(v) for v in value)) if value else set()
    return set()


MUTATIONS = {
    "update": 'mutation {{ updateUser(id: "{user}", input: {{company: "Changed"}}) {{ id company }} }}',
    "add": 'mutation {{ addMembers(groupId: "{group}", userIds: ["{user}"]) {{ id role }} }}',
}


# --- the property -----------------------------------------------------------------------------------------


def test_permission_oracle(engine: str) -> None:
    """Sync on purpose: Hypothesis drives the examples, each run on this test's own event loop."""
    loop = asyncio.new_event_loop()
    oracle_settings = Settings(
        database_url=engine, max_aliases=1000, max_query_cost=10**9, max_tokens=10**6, max_query_depth=30,
        max_body_bytes=10**7,
    )
    database = Database(oracle_settings)
    app = create_app(oracle_settings, database)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://oracle")
    seen = {"examples": 0, "queries": 0}

    async def post(viewer: int | None, query: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token_of(viewer)}"} if viewer is not None else {}
        seen["queries"] += 1
        return (await client.post("/graphql", json={"query": query}, headers=headers)).json()

    async def query_as(example: Example, viewer: int | None, scope: int | None) -> dict[str, Any]:
        """Ask, check against the model, and return the answer."""
        body = await post(viewer, build_query(example, viewer, scope))
        refused = [await post(viewer, "{ " + f + " }") for f in scoped_parts(example.world, viewer, scope)[1]]
        check_answer(example, viewer, scope, body, refused)
        return body

    async def mutate(example: Example) -> None:
        """One updateUser or addMembers: the outcome the model predicts, and the database the model's after."""
        from dataclasses import replace

        world = example.world
        viewer, kind, user, group = example.mutation  # type: ignore[misc]
        expected = world.update_outcome(viewer, user) if kind == "update" else world.add_outcome(viewer, group, user)
        body = await post(viewer, MUTATIONS[kind].format(user=gid("User", user), group=gid("Group", group)))
        codes = [e.get("extensions", {}).get("code") for e in body.get("errors", [])]
        assert codes == ([] if expected == "ok" else [expected]), f"{example.mutation}: {body} {example}"
        if kind == "update":
            if expected == "ok":
                world.users[user] = replace(world.users[user], company="Changed")
            async with database.session() as session:
                company = await session.scalar(text('SELECT company FROM "user" WHERE id = :u'), {"u": user})
            assert company == world.users[user].company, example
            return
        if expected == "ok":
            mid = int(body["data"]["addMembers"][0]["id"] and decode_membership(body["data"]["addMembers"][0]["id"]))
            consent = None
            placed = world.is_admin(viewer) or world.over(viewer, user, {"LEADER"}) or world.manage_account(viewer, user)
            if not placed:
                consent = max(
                    r.id for r in world.requests.values()
                    if r.requester == viewer and r.subject_user == user and r.status == "GRANTED"
                )
            world.memberships[mid] = MMembership(id=mid, user=user, group=group, role="MEMBER", consent=consent)
        async with database.session() as session:
            count = await session.scalar(text("SELECT count(*) FROM membership"))
        assert count == len(world.memberships), example

    async def revoke(example: Example) -> None:
        """A LEADER membership ends: its holder's very next answer is the model's, and shows nothing that the
        answer before did not."""
        world = example.world
        if example.revoked is None:
            return
        ended = world.memberships[example.revoked]
        scope = ended.group
        before = ids_in(Expected(world, ended.user).answer(example, scope))
        async with database.transaction() as session:
            await session.execute(text("DELETE FROM membership WHERE id = :m"), {"m": ended.id})
        del world.memberships[ended.id]
        after = await query_as(example, ended.user, scope)
        assert ids_in(after.get("data")) <= before, f"revoking {ended} widened: {example}"

    async def run(example: Example) -> None:
        await write(database, example.world)
        for viewer, scope in zip(example.viewers, example.scopes, strict=True):
            await query_as(example, viewer, scope)
        if example.mutation is not None:
            await mutate(example)
        await revoke(example)

    @settings(
        max_examples=EXAMPLES_PER_ENGINE, deadline=None, database=None, derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(examples())
    def holds(example: Example) -> None:
        loop.run_until_complete(run(example))
        seen["examples"] += 1

    try:
        holds()
    finally:
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(database.dispose())
        loop.close()
    print(f"\npermission oracle on {engine.split(':')[0]}: {seen['examples']} examples, {seen['queries']} requests")
    assert seen["examples"] >= EXAMPLES_PER_ENGINE


def decode_membership(global_id: str) -> int:
    from app.runtime.ids import decode_id

    ident = decode_id(global_id, "Membership")
    assert ident is not None
    return ident
