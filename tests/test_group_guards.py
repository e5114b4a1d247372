"""A LEADER cannot take a group out of the tree their role comes from (its leaders above would lose it) unless
they may make it a root group; nor delete a group holding memberships they could not remove."""

from __future__ import annotations

from datetime import timedelta

from app.store.models import AccessRequest, Group, GroupClosure, Membership, utcnow
from tests.site import Site, errors_of, gid

UPDATE = "mutation($g: ID!, $i: UpdateGroupInput!) { updateGroup(id: $g, input: $i) { parent { name } } }"
DELETE = "mutation($g: ID!) { deleteGroup(id: $g, deleteNested: true) }"
SEES = "query($g: ID!) { group(id: $g) { name } }"


async def test_a_leader_cannot_move_a_group_out_of_the_tree_their_role_comes_from(site: Site) -> None:
    org = await site.group("Org")
    branch = await site.group("Branch", org)
    other_branch = await site.group("Other branch", branch)
    team = await site.group("Team", branch)
    top = await site.user("Tom", kind="STAFF")
    leader = await site.user("Lia", kind="STAFF")
    await site.member(top, org, "LEADER")
    await site.member(leader, branch, "LEADER")
    created = await site.gql('mutation { createGroup(input: {name: "Mine"}) { id } }', as_user=leader)
    mine = created["data"]["createGroup"]["id"]

    for change in ({"parentId": mine}, {"makeRoot": True}):
        body = await site.gql(UPDATE, {"g": gid("Group", team), "i": change}, as_user=leader)
        assert errors_of(body) == ["FORBIDDEN"], body
    assert (await site.gql(SEES, {"g": gid("Group", team)}, as_user=top))["data"]["group"] == {"name": "Team"}
    assert await site.count(GroupClosure, GroupClosure.ancestor_id == org.id, GroupClosure.descendant_id == team.id) == 1

    # within the tree it comes from, a move is the leader's to make
    body = await site.gql(UPDATE, {"g": gid("Group", team), "i": {"parentId": gid("Group", other_branch)}}, as_user=leader)
    assert body["data"]["updateGroup"]["parent"] == {"name": "Other branch"}, body
    # a LEADER held in the group itself may (with self-service groups) move it anywhere, as makeRoot
    await site.member(leader, team, "LEADER")
    body = await site.gql(UPDATE, {"g": gid("Group", team), "i": {"parentId": mine}}, as_user=leader)
    assert body["data"]["updateGroup"]["parent"] == {"name": "Mine"}, body


async def test_deleting_a_group_needs_the_right_to_remove_all_its_memberships(site: Site) -> None:
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    leader = await site.user("Lia", kind="STAFF")
    co_leader = await site.user("Cole", kind="STAFF")
    analyst = await site.user("Ana", kind="STAFF", roles="GROUP_ANALYST")
    group = await site.group("Class")
    nested = await site.group("Nested", group)
    for person in (leader, co_leader):
        await site.member(person, group, "LEADER")
    await site.member(analyst, nested, "ANALYST")
    body = await site.gql(DELETE, {"g": gid("Group", group)}, as_user=leader)
    assert errors_of(body) == ["FORBIDDEN"], body
    assert await site.count(Group) == 2 and await site.count(Membership) == 3

    # a member the co-leader placed on their own consent: the leader cannot see, so cannot remove, them
    other = await site.group("Other")
    await site.member(leader, other, "LEADER")
    await site.member(co_leader, other, "LEADER")
    pupil = await site.user("Pia")
    async with site.database.transaction() as session:
        grant = AccessRequest(
            requester_id=co_leader.id, subject_email=pupil.email, subject_email_normalized=pupil.email,
            subject_user_id=pupil.id, status="GRANTED", expires_at=utcnow() + timedelta(days=30), decided_at=utcnow(),
        )
        session.add(grant)
        await session.flush()
        session.add(Membership(user_id=pupil.id, group_id=other.id, role="MEMBER", access_request_id=grant.id))
    body = await site.gql(DELETE, {"g": gid("Group", other)}, as_user=leader)
    assert errors_of(body) == ["FORBIDDEN"], body

    # a site admin deletes them
    for target in (group, other):
        assert (await site.gql(DELETE, {"g": gid("Group", target)}, as_user=admin))["data"]["deleteGroup"] is True
    assert await site.count(Group) == 0
