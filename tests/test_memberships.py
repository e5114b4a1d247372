"""Group.members / memberCount (visibility, pages, batching) and addMembers / changeMemberRole /
removeMembers, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from app.store.models import AccessRequest, AuditEvent, Group, Membership, User, utcnow
from tests.site import Site, errors_of, gid

BENCH = """query($id: ID!, $first: Int) { group(id: $id) {
  name depth ancestors { name } children { name memberCount(includeNested: true) }
  viewerRole viewerPermissions memberCount(includeNested: true)
  members(includeNested: true, roles: [MEMBER], first: $first) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { node { role group { name } user { firstName lastName email } } }
  }
} }"""


async def tree(site: Site, children: int, members_each: int) -> tuple[Group, User, list[Group]]:
    """A root under a top group, `children` child groups each with a grandchild, members everywhere."""
    top = await site.group("Top")
    root = await site.group("Root", top)
    leader = await site.user("Lea", kind="STAFF")
    await site.member(leader, root, "LEADER")
    kids = []
    for i in range(children):
        child = await site.group(f"Child {i}", root)
        grandchild = await site.group(f"Grand {i}", child)
        kids.append(child)
        for j in range(members_each):
            await site.member(await site.user(f"M{i}x{j}", f"Last{j:03d}"), child)
            await site.member(await site.user(f"G{i}x{j}", f"Last{j:03d}"), grandchild)
    return root, leader, kids


async def bench(site: Site, root: Group, leader: User, first: int) -> tuple[dict[str, Any], int]:
    await site.token(leader)
    with site.statements() as counted:
        body = await site.gql(BENCH, {"id": gid("Group", root), "first": first}, as_user=leader)
    assert "errors" not in body, body
    return body["data"]["group"], counted.count


async def test_dashboard_statements_do_not_grow(site: Site) -> None:
    root, leader, _ = await tree(site, 2, 2)
    small, small_count = await bench(site, root, leader, 3)
    assert small["memberCount"] == 2 * 2 * 2 + 1
    assert small["members"]["totalCount"] == 8
    assert len(small["members"]["edges"]) == 3 and small["members"]["pageInfo"]["hasNextPage"]
    for i in range(2, 12):
        child = await site.group(f"More {i}", root)
        grandchild = await site.group(f"MoreGrand {i}", child)
        for j in range(6):
            await site.member(await site.user(f"N{i}x{j}"), child)
            await site.member(await site.user(f"H{i}x{j}"), grandchild, "MENTOR" if j == 0 else "MEMBER")
    large, large_count = await bench(site, root, leader, 100)
    assert len(large["children"]) == 12
    assert large["memberCount"] == 8 + 10 * 12 + 1
    assert large["members"]["totalCount"] == 8 + 10 * 11
    assert len(large["members"]["edges"]) == 100
    # a leaf group (no children to count) costs the same: its children are counted with it when it has any
    leaf = await site.group("Leaf", root)
    await site.member(await site.user("Lone"), leaf)
    leaf_data, leaf_count = await bench(site, leaf, leader, 100)
    assert leaf_data["children"] == [] and leaf_data["memberCount"] == 1
    # the sign-in with the reach; the group with its ancestors, its children and the rolled-up member counts
    # memberCount and totalCount read (the group's and its children's): one; the page; its users' groups
    assert small_count == large_count == leaf_count == 4


DASHBOARD = """query($id: ID!) { group(id: $id) {
  name memberCount members(first: 50) { edges { node { user { firstName email } } } }
  children { name memberCount members(first: 50) { edges { node { user { firstName email } } } }
    children { name memberCount members(first: 50) { edges { node { user { firstName email } } } } } }
} }"""


async def test_two_level_dashboard_statements_do_not_grow(site: Site) -> None:
    """The leader's dashboard: a group, its children two levels down, each with members and memberCount."""
    counts = []
    for children, members_each in ((2, 1), (8, 5)):
        root, leader, _ = await tree(site, children, members_each)
        await site.token(leader)
        with site.statements() as counted:
            body = await site.gql(DASHBOARD, {"id": gid("Group", root)}, as_user=leader)
        assert "errors" not in body, body
        kids = body["data"]["group"]["children"]
        assert len(kids) == children and all(k["memberCount"] == members_each for k in kids)
        assert all(len(k["children"][0]["members"]["edges"]) == members_each for k in kids)
        assert all(e["node"]["user"]["email"] for k in kids for e in k["members"]["edges"])
        counts.append(counted.count)
    assert counts[0] == counts[1] == 12  # the root's children come with the root


MEMBERS = """query($id: ID!, $roles: [GroupRole!], $nested: Boolean, $search: String, $first: Int, $after: String) {
  group(id: $id) {
    memberCount(includeNested: $nested)
    members(roles: $roles, includeNested: $nested, search: $search, first: $first, after: $after) {
      totalCount pageInfo { hasNextPage endCursor } edges { cursor node { role user { firstName } group { name } } }
    }
  }
}"""
ADD = """mutation($g: ID!, $u: [ID!]!, $role: GroupRole) {
  addMembers(groupId: $g, userIds: $u, role: $role) { id role user { firstName } group { name } accessRequest { id } }
}"""
ADD_DEFAULT = "mutation($g: ID!, $u: [ID!]!) { addMembers(groupId: $g, userIds: $u) { role user { firstName } } }"
CHANGE = "mutation($m: ID!, $role: GroupRole!) { changeMemberRole(membershipId: $m, role: $role) { role user { firstName } } }"
REMOVE = "mutation($m: [ID!]!) { removeMembers(membershipIds: $m) }"


async def members(site: Site, viewer: User, group: Group, **variables: Any) -> tuple[list[str], int, int]:
    body = await site.gql(MEMBERS, {"id": gid("Group", group), **variables}, as_user=viewer)
    assert "errors" not in body, body
    found = body["data"]["group"]
    if found is None:
        return [], -1, -1
    names = [e["node"]["user"]["firstName"] for e in found["members"]["edges"]]
    return names, found["members"]["totalCount"], found["memberCount"]


async def test_members_show_what_the_viewer_may_see(site: Site) -> None:
    root = await site.group("Root")
    child = await site.group("Child", root)
    leader = await site.user("Leader", "A", kind="STAFF")
    await site.member(leader, root, "LEADER")
    mentor = await site.user("Mentor", "B", kind="STAFF")
    await site.member(mentor, child, "MENTOR")
    ann = await site.user("Ann", "Cole")
    await site.member(ann, root)
    bob = await site.user("Bob", "Dunn")
    await site.member(bob, child)
    outsider = await site.user("Out", "Zed")

    assert await members(site, leader, root) == (["Leader", "Ann"], 2, 2)
    assert await members(site, leader, root, nested=True) == (["Leader", "Mentor", "Ann", "Bob"], 4, 4)
    assert await members(site, leader, root, nested=True, roles=["MEMBER"]) == (["Ann", "Bob"], 2, 4)
    assert await members(site, leader, root, nested=True, search="du") == (["Bob"], 1, 4)
    assert await members(site, leader, root, nested=True, search="ANN") == (["Ann"], 1, 4)
    assert await members(site, leader, root, nested=True, search="%") == ([], 0, 4)
    # the mentor of the child sees the child's members; the root (not theirs) is invisible
    assert await members(site, mentor, child) == (["Mentor", "Bob"], 2, 2)
    assert await members(site, mentor, root) == ([], -1, -1)
    # a MEMBER sees the group and only themself in it: membership gives no view of the others
    assert await members(site, ann, root, nested=True) == (["Ann"], 1, 1)
    assert await members(site, bob, child) == (["Bob"], 1, 1)
    assert await members(site, outsider, root) == ([], -1, -1)


async def test_members_pages_by_keyset(site: Site) -> None:
    group = await site.group("Big")
    admin = await site.user("Admin", "Zz", kind="STAFF", roles="ADMIN")
    for n in range(7):
        await site.member(await site.user(f"P{n}", "Same" if n % 2 else f"Name{n}"), group)
    seen: list[str] = []
    after = None
    while True:
        body = await site.gql(MEMBERS, {"id": gid("Group", group), "first": 3, "after": after}, as_user=admin)
        page = body["data"]["group"]["members"]
        assert page["totalCount"] == 7
        seen += [e["node"]["user"]["firstName"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == ["P0", "P2", "P4", "P6", "P1", "P3", "P5"]
    assert errors_of(await site.gql(MEMBERS, {"id": gid("Group", group), "after": "xx"}, as_user=admin)) == ["BAD_USER_INPUT"]


async def test_add_members_is_all_or_nothing(site: Site) -> None:
    root = await site.group("Root")
    child = await site.group("Child", root)
    other = await site.group("Other")
    leader = await site.user("Leader", kind="STAFF")
    await site.member(leader, child, "LEADER")
    await site.member(leader, other, "MENTOR")
    mine = await site.user("Mine")
    await site.member(mine, child)
    mine2 = await site.user("Mine2")
    await site.member(mine2, child)
    mentored = await site.user("Mentored")
    await site.member(mentored, other)
    stranger = await site.user("Stranger")
    target = await site.group("Target", child)
    g = gid("Group", target)

    # an unknown or invisible user: NOT_FOUND naming it, nothing added
    body = await site.gql(ADD, {"g": g, "u": [gid("User", mine), gid("User", stranger)]}, as_user=leader)
    assert errors_of(body) == ["NOT_FOUND"] and gid("User", stranger) in body["errors"][0]["message"]
    assert body["errors"][0]["extensions"]["field"] == "userIds"
    # visible (mentored) but not reachable for placement: FORBIDDEN naming it, nothing added
    body = await site.gql(ADD, {"g": g, "u": [gid("User", mine), gid("User", mentored)]}, as_user=leader)
    assert errors_of(body) == ["FORBIDDEN"] and gid("User", mentored) in body["errors"][0]["message"]
    assert gid("User", mine) not in body["errors"][0]["message"]
    assert await site.count(Membership, Membership.group_id == target.id) == 0
    assert await site.count(AuditEvent) == 0
    # a group the caller does not manage
    body = await site.gql(ADD, {"g": gid("Group", other), "u": [gid("User", mine)]}, as_user=leader)
    assert errors_of(body) == ["FORBIDDEN"]
    assert await site.count(Membership, Membership.group_id == other.id) == 2
    # success, with the default role
    body = await site.gql(ADD_DEFAULT, {"g": g, "u": [gid("User", mine), gid("User", mine2), gid("User", mine)]}, as_user=leader)
    assert body == {"data": {"addMembers": [
        {"role": "MEMBER", "user": {"firstName": "Mine"}}, {"role": "MEMBER", "user": {"firstName": "Mine2"}},
    ]}}
    assert await site.count(AuditEvent, AuditEvent.action == "membership.add") == 2
    # one role per user per group: adding again is a CONFLICT naming the user
    body = await site.gql(ADD, {"g": g, "u": [gid("User", mine2)], "role": "MENTOR"}, as_user=leader)
    assert errors_of(body) == ["CONFLICT"] and gid("User", mine2) in body["errors"][0]["message"]
    assert await site.count(Membership, Membership.group_id == target.id) == 2


async def test_add_members_on_consent_and_synced_rule(site: Site) -> None:
    group = await site.group("Class")
    leader = await site.user("Leader", kind="STAFF")
    await site.member(leader, group, "LEADER")
    granting = await site.user("Granting")
    async with site.database.transaction() as session:
        request = AccessRequest(
            requester_id=leader.id, subject_email=granting.email, subject_email_normalized=granting.email_normalized,
            subject_user_id=granting.id, status="GRANTED", expires_at=utcnow() + timedelta(days=30),
        )
        session.add(request)
    as_mentor = await site.gql(ADD, {"g": gid("Group", group), "u": [gid("User", granting)], "role": "MENTOR"}, as_user=leader)
    assert errors_of(as_mentor) == ["FORBIDDEN"]
    body = await site.gql(ADD, {"g": gid("Group", group), "u": [gid("User", granting)]}, as_user=leader)
    assert "errors" not in body, body
    assert body["data"]["addMembers"][0]["accessRequest"] == {"id": gid("AccessRequest", request.id)}
    async with site.database.session() as session:
        row = (await session.scalars(select(Membership).where(Membership.user_id == granting.id))).one()
    assert row.access_request_id == request.id and row.role == "MEMBER"
    # consent-based memberships stay MEMBER
    body = await site.gql(CHANGE, {"m": gid("Membership", row.id), "role": "MENTOR"}, as_user=leader)
    assert errors_of(body) == ["BAD_USER_INPUT"]

    synced = await site.group("Synced", synced=True)
    admin = await site.user("Admin", kind="STAFF", roles="ADMIN")
    plain = await site.user("Plain")
    body = await site.gql(ADD, {"g": gid("Group", synced), "u": [gid("User", plain)]}, as_user=admin)
    assert errors_of(body) == ["BAD_USER_INPUT"] and gid("User", plain) in body["errors"][0]["message"]
    assert await site.count(Membership, Membership.group_id == synced.id) == 0
    rostered = await site.user("Rostered", synced=True)
    body = await site.gql(ADD, {"g": gid("Group", group), "u": [gid("User", rostered)]}, as_user=admin)
    assert errors_of(body) == ["BAD_USER_INPUT"] and gid("User", rostered) in body["errors"][0]["message"]
    body = await site.gql(ADD, {"g": gid("Group", synced), "u": [gid("User", rostered)]}, as_user=admin)
    assert body["data"]["addMembers"][0]["user"] == {"firstName": "Rostered"}


async def test_analyst_rules(site: Site) -> None:
    root = await site.group("Root")
    child = await site.group("Child", root)
    other = await site.group("Other")
    admin = await site.user("Admin", kind="STAFF", roles="ADMIN")
    leader = await site.user("Leader", kind="STAFF")
    await site.member(leader, root, "LEADER")
    seat = await site.user("Seat", kind="STAFF", roles="GROUP_ANALYST")
    await site.member(seat, other)
    no_seat = await site.user("NoSeat", kind="STAFF")
    pupil = await site.user("Pupil")
    await site.member(pupil, child)
    await site.member(no_seat, child)

    body = await site.gql(ADD, {"g": gid("Group", root), "u": [gid("User", no_seat)], "role": "ANALYST"}, as_user=admin)
    assert errors_of(body) == ["FORBIDDEN"] and "GROUP_ANALYST" in body["errors"][0]["message"]
    body = await site.gql(ADD, {"g": gid("Group", root), "u": [gid("User", no_seat)], "role": "ANALYST"}, as_user=leader)
    assert errors_of(body) == ["FORBIDDEN"]
    body = await site.gql(ADD, {"g": gid("Group", root), "u": [gid("User", seat)], "role": "ANALYST"}, as_user=admin)
    assert body["data"]["addMembers"][0]["role"] == "ANALYST"
    analyst_membership = (await site.count(Membership, Membership.role == "ANALYST"))
    assert analyst_membership == 1

    # the analyst sees the root's tree and its people, nothing else, and may not manage members
    assert await members(site, seat, child) == (["Pupil", "NoSeat"], 2, 2)  # same last name: by membership
    assert await members(site, seat, other) == (["Seat"], 1, 1)  # their own MEMBER group
    body = await site.gql(ADD, {"g": gid("Group", child), "u": [gid("User", pupil)]}, as_user=seat)
    assert errors_of(body) == ["FORBIDDEN"]
    async with site.database.session() as session:
        pupil_membership = (await session.scalars(select(Membership).where(Membership.user_id == pupil.id))).one()
        seat_membership = (await session.scalars(select(Membership).where(Membership.role == "ANALYST"))).one()
    body = await site.gql(REMOVE, {"m": [gid("Membership", pupil_membership.id)]}, as_user=seat)
    assert errors_of(body) == ["FORBIDDEN"]
    body = await site.gql(CHANGE, {"m": gid("Membership", pupil_membership.id), "role": "MENTOR"}, as_user=seat)
    assert errors_of(body) == ["FORBIDDEN"]
    # a leader may neither demote nor remove the analyst: ANALYST memberships are the site admins'
    body = await site.gql(CHANGE, {"m": gid("Membership", seat_membership.id), "role": "MEMBER"}, as_user=leader)
    assert errors_of(body) == ["FORBIDDEN"]
    body = await site.gql(REMOVE, {"m": [gid("Membership", seat_membership.id)]}, as_user=leader)
    assert errors_of(body) == ["FORBIDDEN"]
    assert await site.count(Membership) == 5


async def test_change_and_remove_take_effect_on_the_next_request(site: Site) -> None:
    group = await site.group("Class")
    leader = await site.user("Leader", kind="STAFF")
    await site.member(leader, group, "LEADER")
    helper = await site.user("Helper", kind="STAFF")
    helper_row = await site.member(helper, group)
    pupil = await site.user("Pupil")
    pupil_row = await site.member(pupil, group)
    outsider_group = await site.group("Elsewhere")
    hidden = await site.member(await site.user("Hidden"), outsider_group)

    # the helper, a MEMBER, sees only themself
    assert await members(site, helper, group) == (["Helper"], 1, 1)
    body = await site.gql(CHANGE, {"m": gid("Membership", helper_row.id), "role": "MENTOR"}, as_user=leader)
    assert body == {"data": {"changeMemberRole": {"role": "MENTOR", "user": {"firstName": "Helper"}}}}
    assert await members(site, helper, group) == (["Leader", "Helper", "Pupil"], 3, 3)
    # a mentor may not change roles
    body = await site.gql(CHANGE, {"m": gid("Membership", pupil_row.id), "role": "LEADER"}, as_user=helper)
    assert errors_of(body) == ["FORBIDDEN"]
    # an invisible membership among the ids: NOT_FOUND, nothing removed
    body = await site.gql(REMOVE, {"m": [gid("Membership", pupil_row.id), gid("Membership", hidden.id)]}, as_user=leader)
    assert errors_of(body) == ["NOT_FOUND"]
    assert await site.count(Membership, Membership.group_id == group.id) == 3
    for bad in ([], ["not-an-id"], [gid("User", pupil)]):
        body = await site.gql(REMOVE, {"m": bad}, as_user=leader)
        assert errors_of(body) == ["BAD_USER_INPUT"], bad
    empty = await site.gql(ADD, {"g": gid("Group", group), "u": []}, as_user=leader)
    assert errors_of(empty) == ["BAD_USER_INPUT"]
    body = await site.gql(REMOVE, {"m": [gid("Membership", pupil_row.id)]}, as_user=leader)
    assert body == {"data": {"removeMembers": 1}}
    assert await members(site, helper, group) == (["Leader", "Helper"], 2, 2)
    user = await site.gql("query($id: ID!) { user(id: $id) { firstName } }", {"id": gid("User", pupil)}, as_user=leader)
    assert user == {"data": {"user": None}}
    actions = await site.count(AuditEvent, AuditEvent.action.in_(["membership.role", "membership.remove"]))
    assert actions == 2


async def test_memberships_of_users_are_batched(site: Site) -> None:
    """members { user { memberships } }: the memberships of every listed user come in one statement."""
    leader = await site.user("Leader", "Aaa", kind="STAFF")
    query = """query($id: ID!) { group(id: $id) { members(roles: [MEMBER]) { edges { node { user {
      memberships { role group { name } } } } } } } }"""
    await site.token(leader)
    counts = []
    for size in (2, 6):
        group = await site.group(f"Class{size}")
        hidden = await site.group(f"Hidden{size}")
        await site.member(leader, group, "LEADER")
        for n in range(size):
            pupil = await site.user(f"P{n}")
            await site.member(pupil, group)
            await site.member(pupil, hidden)
        with site.statements() as counted:
            body = await site.gql(query, {"id": gid("Group", group)}, as_user=leader)
        assert "errors" not in body, body
        edges = body["data"]["group"]["members"]["edges"]
        assert len(edges) == size
        # only the memberships in groups the leader sees
        expected = [{"role": "MEMBER", "group": {"name": f"Class{size}"}}]
        assert all(e["node"]["user"]["memberships"] == expected for e in edges)
        counts.append(counted.count)
    assert counts[0] == counts[1]
