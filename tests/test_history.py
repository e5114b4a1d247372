"""Membership history: removeMembers(archive: true) ends memberships instead of deleting them; ended ones give
no role and no access, are hidden from lists and aggregates unless asked for; on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import select

from app.store.models import AuditEvent, Membership
from tests.school import auth, course, enroll, parse
from tests.site import Site, errors_of, gid

REMOVE = "mutation($ids: [ID!]!, $a: Boolean) { removeMembers(membershipIds: $ids, archive: $a) }"
MEMBERS = """query($g: ID!, $e: Boolean) { group(id: $g) { memberCount
  members(includeEnded: $e) { totalCount edges { node { id endedAt user { firstName } } } }
  progressSummary { learnerCount } progressReport { totalCount } } }"""
SEES = """query($g: ID!, $u: ID!) { group(id: $g) { id viewerRole } user(id: $u) { id } }"""


async def test_archived_memberships_keep_history_and_give_nothing(site: Site) -> None:
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    group = await site.group("Term 1")
    leader = await site.user("Leo", kind="STAFF")
    mentor = await site.user("Max", kind="STAFF")
    await site.member(leader, group, "LEADER")
    mentor_row = await site.member(mentor, group, "MENTOR")
    amy = await site.user("Amy", "Adams")
    ben = await site.user("Ben", "Brown")
    amy_row = await site.member(amy, group)
    await site.member(ben, group)
    maths, _ = await course(site, "Maths", 2)
    for user in (amy, ben):
        await enroll(site, user, maths)
    g = gid("Group", group)

    async def listed(as_user, ended: bool = False):  # type: ignore[no-untyped-def]
        body = await site.gql(MEMBERS, {"g": g, "e": ended}, as_user=as_user)
        assert "errors" not in body, body
        d = body["data"]["group"]
        names = sorted((e["node"]["user"]["firstName"], e["node"]["endedAt"] is not None) for e in d["members"]["edges"])
        return d["memberCount"], d["members"]["totalCount"], names, d["progressSummary"]["learnerCount"], d["progressReport"]["totalCount"]

    assert (await listed(leader))[:2] == (4, 4)
    # who may not: the mentor (FORBIDDEN), a member or an outsider, who do not see Amy (NOT_FOUND); nothing changes
    outsider = await site.user("Out", kind="STAFF")
    assert errors_of(await site.gql(REMOVE, {"ids": [gid("Membership", amy_row)], "a": True}, as_user=mentor)) == ["FORBIDDEN"]
    for who in (ben, outsider):
        assert errors_of(await site.gql(REMOVE, {"ids": [gid("Membership", amy_row)], "a": True}, as_user=who)) == ["NOT_FOUND"]
    assert await site.count(Membership, Membership.ended_at.is_not(None)) == 0

    archived = await site.gql(REMOVE, {"ids": [gid("Membership", amy_row), gid("Membership", mentor_row)], "a": True}, as_user=leader)
    assert archived == {"data": {"removeMembers": 2}}
    assert await site.count(Membership) == 4  # kept
    exported = await site.client.get("/exports/memberships.csv", headers=auth(await site.token(admin)))
    assert sorted(r[2] for r in parse(exported.content)[1:]) == ["Ben", "Leo"]  # current memberships only
    assert await listed(leader) == (2, 2, [("Ben", False), ("Leo", False)], 1, 1)
    with site.statements() as plain:
        await listed(leader)
    with site.statements() as history:
        assert await listed(leader, ended=True) == (2, 4, [("Amy", True), ("Ben", False), ("Leo", False), ("Max", True)], 1, 1)
    assert history.count == plain.count
    # no access and no role from an ended membership: Amy and Max no longer see the group; the leader no
    # longer reaches Amy (her only membership ended)
    assert (await site.gql(SEES, {"g": g, "u": gid("User", ben)}, as_user=amy))["data"] == {"group": None, "user": None}
    assert (await site.gql(SEES, {"g": g, "u": gid("User", ben)}, as_user=mentor))["data"] == {"group": None, "user": None}
    assert (await site.gql(SEES, {"g": g, "u": gid("User", amy)}, as_user=leader))["data"] == {
        "group": {"id": g, "viewerRole": "LEADER"}, "user": None,
    }
    # archiving again changes nothing; an ended membership takes no new role
    assert await site.gql(REMOVE, {"ids": [gid("Membership", amy_row)], "a": True}, as_user=leader) == {"data": {"removeMembers": 0}}
    assert await site.count(AuditEvent, AuditEvent.action == "membership.archive") == 2
    change = "mutation($id: ID!) { changeMemberRole(membershipId: $id, role: MENTOR) { id } }"
    assert errors_of(await site.gql(change, {"id": gid("Membership", amy_row)}, as_user=admin)) == ["BAD_USER_INPUT"]
    # joining again revives the same membership
    added = await site.gql(
        "mutation($g: ID!, $u: [ID!]!) { addMembers(groupId: $g, userIds: $u) { id endedAt role } }",
        {"g": g, "u": [gid("User", amy)]}, as_user=admin,
    )
    assert added == {"data": {"addMembers": [{"id": gid("Membership", amy_row), "endedAt": None, "role": "MEMBER"}]}}
    assert await listed(leader) == (3, 3, [("Amy", False), ("Ben", False), ("Leo", False)], 2, 2)
    # without archive: deleted, as before
    assert await site.gql(REMOVE, {"ids": [gid("Membership", mentor_row)]}, as_user=leader) == {"data": {"removeMembers": 1}}
    async with site.database.session() as session:
        assert (await session.scalars(select(Membership.id).where(Membership.id == mentor_row.id))).all() == []


async def test_importing_an_ended_member_again_revives_the_membership(site: Site) -> None:
    from tests.test_imports import post_csv

    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    group = await site.group("Term 2")
    amy = await site.user("Amy", external_id="S1")
    row = await site.member(amy, group)
    archived = await site.gql(REMOVE, {"ids": [gid("Membership", row)], "a": True}, as_user=admin)
    assert archived == {"data": {"removeMembers": 1}}
    response = await post_csv(site, f"student_id,groups\nS1,{group.slug}\n".encode(), admin)
    assert response.status_code == 200, response.text
    assert response.json()["membershipsCreated"] == 1
    async with site.database.session() as session:
        rows = (await session.scalars(select(Membership).where(Membership.user_id == amy.id))).all()
    assert [(r.id, r.ended_at) for r in rows] == [(row.id, None)]
    again = await post_csv(site, f"student_id,groups\nS1,{group.slug}\n".encode(), admin)
    assert again.json()["membershipsCreated"] == 0 and again.json()["unchanged"] == 1
