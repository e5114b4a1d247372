"""The permission matrix: for a fixture site, each viewer's exact visible groups, users and fields and the
group mutations allowed, as data tables; one FORBIDDEN error per denied field; every permission class
with a viewer who has it and one who does not; deny by default. SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
import strawberry

from app.schema import PUBLIC_FIELDS, SchemaNotDenyByDefault, check_deny_by_default, schema_sdl
from app.store.models import AccessRequest, Group, GuardianLink, User, utcnow
from dataloaders.loaders import Loaders
from dataloaders.store import Store
from permissions.classes import CLASSES, allowed_on_every_object
from permissions.reach import GROUP_PERMISSIONS, Permission, Reach, UserSubject
from resolvers.views import GroupView, UserView
from tests.site import Site, errors_of, gid

GROUPS = ("Root", "C1", "C11", "C2", "C21")
VIEWERS = ("owner", "admin", "rootlead", "c1lead", "mentor", "analyst", "m11", "m21", "mroot", "parent", "outsider")
ALL = frozenset(GROUPS)
EVERYONE = frozenset(VIEWERS)
IN_ROOT = frozenset({"rootlead", "c1lead", "mentor", "analyst", "m11", "m21", "mroot"})
FULL = ["VIEW_PROGRESS", "REVIEW_WORK", "MANAGE_GROUP", "EXPORT_GROUP", "MANAGE_ACCOUNT"]


@dataclass
class Fixture:
    groups: dict[str, Group]
    users: dict[str, User]


async def fixture_site(site: Site) -> Fixture:
    """Root > C1 > C11, Root > C2 > C21, and the people of the matrix."""
    root = await site.group("Root")
    c1 = await site.group("C1", root)
    c11 = await site.group("C11", c1)
    c2 = await site.group("C2", root)
    c21 = await site.group("C21", c2)
    groups = {"Root": root, "C1": c1, "C11": c11, "C2": c2, "C21": c21}
    kinds = {"parent": "EXTERNAL", "m11": "LEARNER", "m21": "LEARNER", "mroot": "LEARNER", "outsider": "LEARNER"}
    roles = {"owner": "OWNER", "admin": "ADMIN", "analyst": "GROUP_ANALYST"}
    users = {
        name: await site.user(name, kind=kinds.get(name, "STAFF"), roles=roles.get(name, ""), company="Acme")
        for name in VIEWERS
    }
    for user, group, role in (
        ("rootlead", "Root", "LEADER"),
        ("c1lead", "C1", "LEADER"),
        ("c1lead", "C21", "MEMBER"),  # a leader of one child who is a MEMBER elsewhere
        ("mentor", "C2", "MENTOR"),
        ("analyst", "C1", "ANALYST"),
        ("m11", "C11", "MEMBER"),
        ("m21", "C21", "MEMBER"),
        ("mroot", "Root", "MEMBER"),
        ("mroot", "C2", "MEMBER"),
    ):
        await site.member(users[user], groups[group], role)
    async with site.database.transaction() as session:
        # c1lead also holds a consent from m21; parent is m11's guardian
        m21 = users["m21"]
        session.add(AccessRequest(
            requester_id=users["c1lead"].id, subject_email=m21.email, subject_email_normalized=m21.email_normalized,
            subject_user_id=m21.id, status="GRANTED", expires_at=utcnow() + timedelta(days=30),
        ))
        session.add(GuardianLink(external_user_id=users["parent"].id, pupil_id=users["m11"].id, licence_type="PARENT_GUARDIAN"))
        # C1 owns m11's account: its LEADERs (c1lead, rootlead) administer it
        m11 = await session.get(User, users["m11"].id)
        m11.home_group_id = c1.id  # type: ignore[union-attr]
        users["m11"] = m11  # type: ignore[assignment]
    return Fixture(groups, users)


# viewer -> groups seen (groups list and group(id) agree)
SEES_GROUPS = {
    "owner": ALL, "admin": ALL, "rootlead": ALL, "mroot": ALL,  # a MEMBER of the root sees the tree, no people
    "c1lead": frozenset({"C1", "C11", "C21"}),
    "mentor": frozenset({"C2", "C21"}),
    "analyst": frozenset({"C1", "C11"}),
    "m11": frozenset({"C11"}),
    "m21": frozenset({"C21"}),
    "parent": frozenset(), "outsider": frozenset(),
}
# viewer -> users whose profile (firstName) shows
SEES_USERS = {
    "owner": EVERYONE, "admin": EVERYONE,
    "rootlead": IN_ROOT,
    "c1lead": frozenset({"c1lead", "analyst", "m11", "m21"}),  # m21 by consent only, not by the MEMBER path
    "mentor": frozenset({"mentor", "mroot", "m21", "c1lead"}),
    "analyst": frozenset({"analyst", "c1lead", "m11"}),
    # m21 granted c1lead access: the subject of a GRANTED request sees who asked (name and email)
    "m11": frozenset({"m11"}), "m21": frozenset({"m21", "c1lead"}), "mroot": frozenset({"mroot"}),
    "parent": frozenset({"parent", "m11"}),
    "outsider": frozenset({"outsider"}),
}
# viewer -> users whose email shows (a guardian link gives the profile, not the contact)
SEES_CONTACT = {**SEES_USERS, "parent": frozenset({"parent"})}
# (viewer, group) -> viewerRole, for groups the viewer sees; absent = null
ROLES = {
    ("rootlead", g): "LEADER" for g in GROUPS
} | {
    ("c1lead", "C1"): "LEADER", ("c1lead", "C11"): "LEADER", ("c1lead", "C21"): "MEMBER",
    ("mentor", "C2"): "MENTOR", ("mentor", "C21"): "MENTOR",
    ("analyst", "C1"): "ANALYST", ("analyst", "C11"): "ANALYST",
    ("m11", "C11"): "MEMBER", ("m21", "C21"): "MEMBER",
    ("mroot", "Root"): "MEMBER", ("mroot", "C2"): "MEMBER",  # MEMBER is not inherited
}
# (viewer, group) -> viewerPermissions; absent = []
PERMISSIONS = (
    {("owner", g): FULL for g in GROUPS}
    | {("admin", g): FULL for g in GROUPS}
    | {("rootlead", g): FULL for g in GROUPS}
    | {("c1lead", "C1"): FULL, ("c1lead", "C11"): FULL}
    | {("mentor", g): ["VIEW_PROGRESS", "REVIEW_WORK"] for g in ("C2", "C21")}
    | {("analyst", g): ["VIEW_PROGRESS", "EXPORT_GROUP"] for g in ("C1", "C11")}
)


def view_query(fixture: Fixture) -> str:
    users = " ".join(
        f'{name}: user(id: "{gid("User", u)}") {{ firstName email status }}' for name, u in fixture.users.items()
    )
    groups = " ".join(f'{name}: group(id: "{gid("Group", g)}") {{ name }}' for name, g in fixture.groups.items())
    listed = "groups(first: 100) { totalCount edges { node { name viewerRole viewerPermissions } } }"
    return f"{{ {users} {groups} {listed} }}"


async def test_permission_matrix_reads(site: Site) -> None:
    fixture = await fixture_site(site)
    query = view_query(fixture)
    for viewer in VIEWERS:
        body = await site.gql(query, as_user=fixture.users[viewer])
        data = body["data"]
        seen_users = {n for n in VIEWERS if data[n] is not None}
        assert seen_users == SEES_USERS[viewer], viewer
        assert {n for n in seen_users if data[n]["email"] is not None} == SEES_CONTACT[viewer], viewer
        admin = viewer in ("owner", "admin")
        assert {n for n in seen_users if data[n]["status"] is not None} == (seen_users if admin else set()), viewer
        # one FORBIDDEN error per denied field, on that field's path
        denied = sorted(
            [[n, "email"] for n in seen_users - SEES_CONTACT[viewer]] + ([] if admin else [[n, "status"] for n in seen_users])
        )
        assert sorted(e["path"] for e in body.get("errors", [])) == denied, viewer
        assert set(errors_of(body)) <= {"FORBIDDEN"}
        # check agrees with list
        listed = {e["node"]["name"]: e["node"] for e in data["groups"]["edges"]}
        assert set(listed) == SEES_GROUPS[viewer] == {g for g in GROUPS if data[g] is not None}, viewer
        assert data["groups"]["totalCount"] == len(SEES_GROUPS[viewer])
        for name, node in listed.items():
            assert node["viewerRole"] == ROLES.get((viewer, name)), (viewer, name)
            assert node["viewerPermissions"] == PERMISSIONS.get((viewer, name), []), (viewer, name)


UPDATE = 'mutation($id: ID!) { updateGroup(id: $id, input: {description: "changed"}) { description } }'
ADD = "mutation($g: ID!, $u: [ID!]!, $r: GroupRole) { addMembers(groupId: $g, userIds: $u, role: $r) { role } }"


async def test_permission_matrix_mutations(site: Site) -> None:
    fixture = await fixture_site(site)
    for viewer in VIEWERS:
        for name, group in fixture.groups.items():
            body = await site.gql(UPDATE, {"id": gid("Group", group)}, as_user=fixture.users[viewer])
            if "MANAGE_GROUP" in PERMISSIONS.get((viewer, name), []):
                assert body == {"data": {"updateGroup": {"description": "changed"}}}, (viewer, name)
            elif name in SEES_GROUPS[viewer]:
                assert errors_of(body) == ["FORBIDDEN"] and body["data"] is None, (viewer, name)
            else:
                assert errors_of(body) == ["NOT_FOUND"] and body["data"] is None, (viewer, name)  # as if missing


async def test_several_paths_do_not_combine(site: Site) -> None:
    """c1lead leads C1, is a MEMBER of C21 and holds m21's consent: each path gives only its own."""
    fixture = await fixture_site(site)
    c1lead, u, g = fixture.users["c1lead"], fixture.users, fixture.groups
    # the consent places m21 as MEMBER of a group c1lead manages, nothing more
    mentor_role = await site.gql(ADD, {"g": gid("Group", g["C1"]), "u": [gid("User", u["m21"])], "r": "MENTOR"}, as_user=c1lead)
    assert errors_of(mentor_role) == ["FORBIDDEN"]
    # the MEMBER path into C21 gives no right to place anyone there
    into_c21 = await site.gql(ADD, {"g": gid("Group", g["C21"]), "u": [gid("User", u["m11"])]}, as_user=c1lead)
    assert errors_of(into_c21) == ["FORBIDDEN"]
    # mroot (in C2 only) stays invisible: NOT_FOUND, as if missing
    mroot = await site.gql(ADD, {"g": gid("Group", g["C1"]), "u": [gid("User", u["mroot"])]}, as_user=c1lead)
    assert errors_of(mroot) == ["NOT_FOUND"]
    ok = await site.gql(ADD, {"g": gid("Group", g["C11"]), "u": [gid("User", u["m21"])]}, as_user=c1lead)
    assert ok == {"data": {"addMembers": [{"role": "MEMBER"}]}}
    # a consent-based membership gives nobody "over" reach: the analyst of C1 does not see m21 in C11
    listed = await site.gql(
        "query($id: ID!) { group(id: $id) { memberCount members { totalCount edges { node { user { firstName } } } } } }",
        {"id": gid("Group", g["C11"])}, as_user=u["analyst"],
    )
    assert listed["data"]["group"]["memberCount"] == 1
    assert [e["node"]["user"]["firstName"] for e in listed["data"]["group"]["members"]["edges"]] == ["m11"]
    hidden = await site.gql("query($id: ID!) { user(id: $id) { firstName } }", {"id": gid("User", u["m21"])}, as_user=u["analyst"])
    assert hidden == {"data": {"user": None}}
    # the consent-based membership in C11 gives the rootlead's and analyst's paths nothing new either way,
    # and gives c1lead no "over" reach: VIEW_ACTIVITY on m21 stays denied
    reach = await reach_of(site, c1lead)
    subject = SimpleNamespace(
        database_id=u["m21"].id, group_ids=frozenset({g["C21"].id}), home_group_id=None, site_roles=frozenset()
    )
    assert reach.may(Permission.VIEW_CONTACT, subject) and not reach.may(Permission.VIEW_ACTIVITY, subject)  # type: ignore[arg-type]
    members = await site.gql(
        "query($id: ID!) { group(id: $id) { members { edges { node { user { firstName } } } } } }",
        {"id": gid("Group", g["C21"])}, as_user=c1lead,
    )
    names = [e["node"]["user"]["firstName"] for e in members["data"]["group"]["members"]["edges"]]
    assert sorted(names) == ["c1lead", "m21"]


async def reach_of(site: Site, user: User) -> Reach:
    from dataloaders.reach import load_reach_rows

    store = Store(site.database)
    try:
        roles = [r for r in user.site_roles.split(",") if r]
        rows = [] if {"OWNER", "ADMIN"} & set(roles) else await load_reach_rows(store, user.id)  # type: ignore[arg-type]
        return Reach.from_rows(user.id, roles, rows)  # type: ignore[arg-type]
    finally:
        await store.close()


# each Permission: (a viewer who has it, one who does not, the subject: a user name or a group name)
HOLDERS = {
    Permission.SITE_ADMIN: ("admin", "rootlead", "m11"),
    Permission.VIEW_PROFILE: ("parent", "outsider", "m11"),
    Permission.VIEW_CONTACT: ("analyst", "parent", "m11"),
    Permission.VIEW_PROGRESS: ("mentor", "c1lead", "C21"),
    Permission.VIEW_ACTIVITY: ("mentor", "analyst", "m21"),
    Permission.REVIEW_WORK: ("mentor", "analyst", "mroot"),
    Permission.MANAGE_GROUP: ("c1lead", "analyst", "C11"),
    Permission.EXPORT_GROUP: ("analyst", "mentor", "C1"),
    Permission.MANAGE_ACCOUNT: ("c1lead", "analyst", "m11"),
}


async def test_every_permission_class_allows_and_denies(site: Site) -> None:
    """The classes that guard fields, called as Strawberry calls them, on a Reach loaded from the database."""
    fixture = await fixture_site(site)
    assert set(HOLDERS) == set(Permission) == set(CLASSES)
    for permission, (holder, other, subject_name) in HOLDERS.items():
        if subject_name in fixture.groups:
            source: Any = GroupView(row=fixture.groups[subject_name])
        else:
            row = fixture.users[subject_name]
            store = Store(site.database)
            own = await Loaders(store).users.own_groups.load(row.id)
            await store.close()
            source = UserView(row=row, group_ids=own.group_ids, staff_group_ids=own.staff_group_ids)
        for viewer, expected in ((holder, True), (other, False)):
            user = fixture.users[viewer]
            info = SimpleNamespace(context=SimpleNamespace(viewer=user, reach=await reach_of(site, user)))
            allowed = CLASSES[permission]().has_permission(source, info)  # type: ignore[arg-type]
            assert allowed is expected, (permission, viewer)


def test_deny_by_default() -> None:
    @strawberry.type
    class Leaky:
        @strawberry.field
        def secret(self) -> str:
            return "x"

        @strawberry.field
        def shown(self) -> str:
            return "y"

    with pytest.raises(SchemaNotDenyByDefault, match=r"Leaky\.secret"):
        check_deny_by_default({**PUBLIC_FIELDS, Leaky: {"shown"}})
    check_deny_by_default({**PUBLIC_FIELDS, Leaky: {"shown", "secret"}})
    from graphql import parse, print_ast

    sdl = schema_sdl()
    printed = {  # each Query/Mutation field's directives as printed (arguments may span lines)
        f"{t.name.value}.{f.name.value}": " ".join(print_ast(d) for d in f.directives or ())
        for t in parse(sdl).definitions if getattr(t, "name", None) and t.name.value in ("Query", "Mutation")
        for f in t.fields or ()
    }
    for mutation in ("updateGroup", "deleteGroup", "addMembers", "changeMemberRole", "removeMembers"):
        assert printed[f"Mutation.{mutation}"] == "@requires(permission: MANAGE_GROUP)", mutation
    assert printed["Query.groups"] == "@authenticated"


async def test_viewer_permissions_come_from_the_enforcing_classes(site: Site) -> None:
    """For every viewer and group of the matrix: viewerPermissions == the group permissions whose class allows."""
    fixture = await fixture_site(site)
    for viewer in VIEWERS:
        user = fixture.users[viewer]
        info = SimpleNamespace(context=SimpleNamespace(viewer=user, reach=await reach_of(site, user)))
        for name, row in fixture.groups.items():
            source = GroupView(row=row)
            allowed = [p.value for p in GROUP_PERMISSIONS if CLASSES[p]().has_permission(source, info)]  # type: ignore[arg-type]
            assert allowed == PERMISSIONS.get((viewer, name), []), (viewer, name)


# each Permission guarding a field: (field selection on a user or group, holder, non-holder, subject)
FIELDS = {
    Permission.SITE_ADMIN: ("user", "status", "admin", "rootlead", "m11"),
    Permission.VIEW_CONTACT: ("user", "email", "analyst", "parent", "m11"),
    Permission.VIEW_PROGRESS: ("group", "progressSummary { learnerCount }", "mentor", "c1lead", "C21"),
    Permission.VIEW_ACTIVITY: ("user", "activity { edges { cursor } }", "mentor", "analyst", "c1lead"),
    Permission.REVIEW_WORK: ("group", "reviewQueue { totalCount }", "mentor", "mroot", "C2"),
    Permission.EXPORT_GROUP: ("group", "progressExportUrl", "analyst", "mroot", "C1"),
}


async def test_denied_fields_are_null_with_one_forbidden_error(site: Site) -> None:
    """Over HTTP, per permission: the holder reads the field; the other viewer, who sees the object, gets
    null and exactly one FORBIDDEN error on that field's path. (VIEW_PROFILE is visibility itself: an
    object the viewer may not see is null without an error; MANAGE_GROUP guards mutations, see the matrix.)"""
    fixture = await fixture_site(site)
    for permission, (kind, selection, holder, other, subject) in FIELDS.items():
        field = selection.split(" ")[0]
        row = fixture.users[subject] if kind == "user" else fixture.groups[subject]
        query = f'{{ {kind}(id: "{gid(kind.capitalize(), row)}") {{ name: {"firstName" if kind == "user" else "name"} {selection} }} }}'
        allowed = await site.gql(query, as_user=fixture.users[holder])
        assert "errors" not in allowed and allowed["data"][kind][field] is not None, (permission, allowed)
        denied = await site.gql(query, as_user=fixture.users[other])
        assert denied["data"][kind] is not None, (permission, other, denied)
        assert denied["data"][kind]["name"] is not None, (permission, "the object itself is visible")
        assert denied["data"][kind][field] is None, permission
        assert [(e["extensions"]["code"], e["path"]) for e in denied["errors"]] == [("FORBIDDEN", [kind, field])], permission
    invisible = await site.gql(f'{{ user(id: "{gid("User", fixture.users["m21"])}") {{ firstName }} }}', as_user=fixture.users["analyst"])
    assert invisible == {"data": {"user": None}}


def test_what_a_page_may_decide_once_agrees_with_each_objects_decision() -> None:
    """`allowed_on_every_object` (a page of objects asks once) never allows what `Reach` would refuse on one of
    them: checked for every permission, over users of every kind (an OWNER's account among them) and groups."""
    users = [
        UserSubject(7, frozenset({3}), 3),
        UserSubject(8, frozenset(), None, frozenset({"OWNER"})),
        UserSubject(9, frozenset({4}), 4, frozenset({"ADMIN"}), frozenset({4})),
    ]
    reaches = [
        Reach(viewer_id=1, site_roles=frozenset({"ADMIN"})),
        Reach(viewer_id=1, site_roles=frozenset({"OWNER"})),
        Reach(viewer_id=1, group_roles={3: frozenset({"LEADER"})}, direct_roles={3: "LEADER"}),
        Reach.anonymous(),
    ]
    allowed = 0
    for reach in reaches:
        for permission in Permission:
            if not allowed_on_every_object(reach, permission):
                continue
            allowed += 1
            assert permission is not Permission.MANAGE_ACCOUNT
            if permission is Permission.SITE_ADMIN:
                assert reach.is_admin
                continue
            assert all(reach.may(permission, u) for u in users), (reach, permission)
            assert all(reach.may_on_group(permission, g) for g in (3, 4, 5)), (reach, permission)
    assert allowed == 2 * (len(Permission) - 1)  # the admin and the owner, every permission but MANAGE_ACCOUNT
