"""Identical writes sent at the same moment: each answers success or CONFLICT (or NOT_FOUND when what it
names was just deleted), never INTERNAL_SERVER_ERROR, and no duplicate rows are left behind."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func, select

from app.store.models import Enrollment, Group, GroupClosure, GuardianLink, Membership
from tests.school import course
from tests.site import Site, errors_of, gid

N = 8
ALLOWED = {None, "CONFLICT", "NOT_FOUND"}


async def at_once(site: Site, calls: list[tuple[str, dict[str, Any]]], as_user: Any) -> list[dict[str, Any]]:
    await site.token(as_user)
    bodies = await asyncio.gather(*(site.gql(q, v, as_user=as_user) for q, v in calls))
    for body in bodies:
        codes = errors_of(body)
        assert set(codes) <= ALLOWED and "INTERNAL_SERVER_ERROR" not in codes, body
    return list(bodies)


async def test_concurrent_identical_writes(site: Site) -> None:
    admin = await site.user("Ada", roles="OWNER,ADMIN", kind="STAFF")

    # createGroup with one name: every call succeeds, each group with its own slug
    create = "mutation($n: String!) { createGroup(input: {name: $n}) { slug } }"
    bodies = await at_once(site, [(create, {"n": "Same Name"})] * N, admin)
    slugs = [b["data"]["createGroup"]["slug"] for b in bodies if b.get("data")]
    assert len(slugs) == N and len(set(slugs)) == N, bodies
    assert await site.count(Group, Group.name == "Same Name") == N

    # linkGuardian for one pair: one link, the others CONFLICT
    parent = await site.user("Pat", kind="EXTERNAL")
    pupil = await site.user("Pip")
    link = (
        "mutation($e: ID!, $p: ID!) { linkGuardian(externalUserId: $e, pupilId: $p, licenceType: PARENT_GUARDIAN) "
        "{ id } }"
    )
    bodies = await at_once(site, [(link, {"e": gid("User", parent), "p": gid("User", pupil)})] * N, admin)
    assert sum(1 for b in bodies if not b.get("errors")) == 1, bodies
    assert await site.count(GuardianLink) == 1

    # enroll the same users in one course: one enrollment each; together they report each user once
    learners = [await site.user(f"L{i}") for i in range(3)]
    course_row, _ = await course(site, "Safety", 2)
    enroll = "mutation($u: [ID!]!, $c: ID!) { enroll(userIds: $u, courseId: $c) }"
    variables = {"u": [gid("User", u) for u in learners], "c": gid("Course", course_row)}
    bodies = await at_once(site, [(enroll, variables)] * N, admin)
    assert sum(b["data"]["enroll"] for b in bodies if b.get("data")) == 3, bodies
    assert await site.count(Enrollment) == 3

    # a role change racing the membership's removal
    group = await site.group("Racing")
    for round_ in range(3):
        member = await site.user(f"Racer{round_}", kind="STAFF")
        row = await site.member(member, group)
        change = "mutation($m: ID!) { changeMemberRole(membershipId: $m, role: MENTOR) { role } }"
        remove = "mutation($m: ID!) { removeMembers(membershipIds: [$m]) }"
        m = {"m": gid("Membership", row)}
        await at_once(site, [(change, m), (remove, m)] * (N // 2), admin)
        assert await site.count(Membership, Membership.id == row.id) == 0

    # deleting a group while another call re-nests a group under it
    for round_ in range(3):
        target = await site.group(f"Target{round_}")
        moving = [await site.group(f"Moving{round_}-{i}") for i in range(N // 2)]
        renest = "mutation($g: ID!, $p: ID!) { updateGroup(id: $g, input: {parentId: $p}) { id } }"
        delete = "mutation($g: ID!) { deleteGroup(id: $g, deleteNested: true) }"
        calls: list[tuple[str, dict[str, Any]]] = []
        for g in moving:
            calls += [(renest, {"g": gid("Group", g), "p": gid("Group", target)}), (delete, {"g": gid("Group", target)})]
        await at_once(site, calls, admin)
        async with site.database.session() as session:
            # the closure holds (g, g) for every group and nothing for a deleted one
            groups = set(await session.scalars(select(Group.id)))
            selves = set(await session.scalars(select(GroupClosure.descendant_id).where(GroupClosure.depth == 0)))
            dangling = await session.scalar(
                select(func.count()).select_from(Group).where(Group.parent_id.is_not(None), Group.parent_id.not_in(groups))
            )
        assert groups == selves and not dangling
