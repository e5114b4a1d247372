"""Group Analysts: limited seats (CONFLICT, nothing changed, also under concurrent grants), and an analyst
reads and exports the progress of assigned groups only, and can do nothing else."""

from __future__ import annotations

import asyncio
from typing import Any

from app.store.models import AuditEvent, Group, Membership, User
from tests.school import auth, parse, school
from tests.site import Site, errors_of, gid

SET_ROLES = "mutation($id: ID!, $roles: [SiteRole!]!) { setSiteRoles(userId: $id, roles: $roles) { roles } }"


async def analysts(site: Site) -> int:
    return await site.count(User, User.site_roles.like("%GROUP_ANALYST%"))


async def test_seats_are_limited(site: Site) -> None:
    admin = await site.user("Adm", kind="STAFF", roles="ADMIN")
    staff = [await site.user(f"Sta{i}", kind="STAFF") for i in range(4)]
    for user in staff[:3]:
        body = await site.gql(SET_ROLES, {"id": gid("User", user), "roles": ["GROUP_ANALYST"]}, as_user=admin)
        assert body == {"data": {"setSiteRoles": {"roles": ["GROUP_ANALYST"]}}}
    audits = await site.count(AuditEvent)
    over = await site.gql(SET_ROLES, {"id": gid("User", staff[3]), "roles": ["ADMIN", "GROUP_ANALYST"]}, as_user=admin)
    assert errors_of(over) == ["CONFLICT"] and over["data"] is None
    assert await analysts(site) == 3
    assert await site.count(User, User.id == staff[3].id, User.site_roles == "") == 1  # ADMIN not given either
    assert await site.count(AuditEvent) == audits
    # keeping a seat (changing other roles) needs no free seat; freeing one lets the next user in
    kept = await site.gql(SET_ROLES, {"id": gid("User", staff[0]), "roles": ["ADMIN", "GROUP_ANALYST"]}, as_user=admin)
    assert kept["data"]["setSiteRoles"]["roles"] == ["ADMIN", "GROUP_ANALYST"]
    assert "errors" not in await site.gql(SET_ROLES, {"id": gid("User", staff[1]), "roles": []}, as_user=admin)
    now = await site.gql(SET_ROLES, {"id": gid("User", staff[3]), "roles": ["GROUP_ANALYST"]}, as_user=admin)
    assert now["data"]["setSiteRoles"]["roles"] == ["GROUP_ANALYST"]
    assert await analysts(site) == 3


async def test_concurrent_grants_never_pass_the_limit(site: Site) -> None:
    admin = await site.user("Adm", kind="STAFF", roles="ADMIN")
    staff = [await site.user(f"Con{i}", kind="STAFF") for i in range(6)]
    await site.token(admin)
    bodies = await asyncio.gather(
        *(site.gql(SET_ROLES, {"id": gid("User", u), "roles": ["GROUP_ANALYST"]}, as_user=admin) for u in staff)
    )
    outcomes = sorted("ok" if "errors" not in b else errors_of(b)[0] for b in bodies)
    assert outcomes == ["CONFLICT", "CONFLICT", "CONFLICT", "ok", "ok", "ok"]
    assert await analysts(site) == 3


async def test_losing_the_role_ends_the_assignments(site: Site) -> None:
    s = await school(site)
    body = await site.gql(SET_ROLES, {"id": gid("User", s["analyst"]), "roles": []}, as_user=s["admin"])
    assert "errors" not in body
    assert await site.count(Membership, Membership.user_id == s["analyst"].id) == 0
    denied = await site.client.get(f"/exports/groups/{s['a'].id}/progress.csv", headers=auth(await site.token(s["analyst"])))
    assert denied.status_code == 404


VIEW = """query($g: ID!, $u: ID!) {
  group(id: $g) { viewerRole viewerPermissions progressReport { totalCount } }
  user(id: $u) { firstName email }
}"""


async def test_analyst_reads_assigned_subtrees_only(site: Site) -> None:
    s = await school(site)
    nested = await site.group("Class A Set 1", s["a"])
    dan = await site.user("Dan", email="dan@example.com")
    await site.member(dan, nested)
    analyst = s["analyst"]
    seen = await site.gql(VIEW, {"g": gid("Group", nested), "u": gid("User", dan)}, as_user=analyst)
    assert seen == {
        "data": {
            "group": {"viewerRole": "ANALYST", "viewerPermissions": ["VIEW_PROGRESS", "EXPORT_GROUP"], "progressReport": {"totalCount": 0}},
            "user": {"firstName": "Dan", "email": "dan@example.com"},
        }
    }
    other = await site.gql(VIEW, {"g": gid("Group", s["b"]), "u": gid("User", s["cid"])}, as_user=analyst)
    assert other == {"data": {"group": None, "user": None}}
    # the CSV holds the members of Class A (and its nested groups) only
    response = await site.client.get(f"/exports/groups/{s['a'].id}/progress.csv", headers=auth(await site.token(analyst)))
    assert sorted({r[0] for r in parse(response.content)[1:]}) == ["Ann", "Bob"]


async def test_analyst_can_do_nothing_else(site: Site) -> None:
    from app.store.models import Enrollment, Step, Submission

    s = await school(site)
    analyst = s["analyst"]
    async with site.database.session() as session:
        from sqlalchemy import select

        step = (await session.scalars(select(Step).where(Step.course_id == s["maths"].id))).first()
    async with site.database.transaction() as session:
        submission = Submission(user_id=s["bob"].id, step_id=step.id, course_id=s["maths"].id, body="my essay")
        session.add(submission)
    ann_in_a = await site.count(Membership, Membership.user_id == s["ann"].id)
    assert ann_in_a == 1
    async with site.database.session() as session:
        ann_membership = (await session.scalars(select(Membership).where(Membership.user_id == s["ann"].id))).one()

    def tables() -> Any:
        return asyncio.gather(
            site.count(Group), site.count(Membership), site.count(AuditEvent), site.count(Enrollment),
            site.count(Submission, Submission.status == "NEEDS_REVIEW"),
        )

    before = await tables()
    a, ann, cid = gid("Group", s["a"]), gid("User", s["ann"]), gid("User", s["cid"])
    attempts: list[tuple[str, dict[str, Any]]] = [
        ("mutation($p: ID!) { createGroup(input: {name: \"Mine\", parentId: $p}) { id } }", {"p": a}),
        (SET_ROLES, {"id": gid("User", analyst), "roles": ["ADMIN", "GROUP_ANALYST"]}),
        ("query($g: ID!) { unassignedActiveStudentCount(scopeGroupId: $g) }", {"g": a}),
        ("mutation($g: ID!, $u: [ID!]!) { addMembers(groupId: $g, userIds: $u) { id } }", {"g": a, "u": [cid]}),
        ("mutation($g: ID!, $u: [ID!]!) { addMembers(groupId: $g, userIds: $u, role: MENTOR) { id } }", {"g": a, "u": [ann]}),
        ("mutation($m: ID!) { changeMemberRole(membershipId: $m, role: LEADER) { id } }", {"m": gid("Membership", ann_membership)}),
        ("mutation($m: [ID!]!) { removeMembers(membershipIds: $m) }", {"m": [gid("Membership", ann_membership)]}),
        ("mutation($g: ID!) { updateGroup(id: $g, input: {name: \"Renamed\"}) { name } }", {"g": a}),
        ("mutation($g: ID!) { deleteGroup(id: $g) }", {"g": a}),
        ("mutation($c: ID!, $u: [ID!]!) { enroll(courseId: $c, userIds: $u) }", {"c": gid("Course", s["art"]), "u": [ann]}),
        ("mutation($id: ID!) { reviewSubmission(id: $id, points: 1) { id } }", {"id": gid("Submission", submission)}),
    ]
    for query, variables in attempts:
        body = await site.gql(query, variables, as_user=analyst)
        assert errors_of(body) == ["FORBIDDEN"], (query, body)
    token = auth(await site.token(analyst))
    imported = await site.client.post(
        "/imports/group-assignments", content=f"student_id,groups\r\nann@example.com,{s['a'].slug}\r\n".encode(),
        headers={**token, "content-type": "text/csv"},
    )
    assert imported.status_code == 422 and "may not manage" in imported.text
    for path in (
        "/exports/groups.csv", "/exports/memberships.csv", f"/exports/unassigned-active-students.csv?scopeGroupId={s['a'].id}",
    ):
        assert (await site.client.get(path, headers=token)).status_code == 403
    assert await tables() == before


USERS = """query($filter: UserFilter, $first: Int, $after: String) {
  users(filter: $filter, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor } edges { node { firstName lastName email } }
  }
}"""


async def names(site: Site, as_user: User, filter: dict[str, Any] | None) -> list[str]:
    body = await site.gql(USERS, {"filter": filter}, as_user=as_user)
    assert "errors" not in body, body
    connection = body["data"]["users"]
    assert connection["totalCount"] == len(connection["edges"])
    return [e["node"]["firstName"] for e in connection["edges"]]


async def test_users_filters(site: Site) -> None:
    from datetime import UTC, date, datetime

    from sqlalchemy import update

    from app.store.models import GuardianLink, Usage

    s = await school(site)
    admin = s["admin"]
    parent = await site.user("Par", "Zeta", kind="EXTERNAL", email="par@example.com")
    await site.user("Lop", "Zulu", kind="EXTERNAL", email="lop@example.com")
    denied = await site.user("Den", "Dark", status="DENIED", email="den@example.com")
    async with site.database.transaction() as session:
        session.add(GuardianLink(external_user_id=parent.id, pupil_id=s["ann"].id, licence_type="PUPIL"))
        session.add(Usage(user_id=s["bob"].id, day=date(2026, 3, 2), minutes=5))
        session.add(Usage(user_id=denied.id, day=date(2026, 3, 2), minutes=5))
        await session.execute(update(User).values(last_login_at=datetime(2026, 6, 1, tzinfo=UTC)))
        await session.execute(
            update(User).where(User.id == s["cid"].id).values(last_login_at=datetime(2025, 1, 1, tzinfo=UTC))
        )
        await session.execute(
            update(User).where(User.id == s["leader"].id).values(last_login_at=None, created_at=datetime(2024, 1, 1, tzinfo=UTC))
        )

    everyone = await names(site, admin, None)
    assert len(everyone) == 10 and everyone[0] == "Ann"  # ordered by last name: Archer first
    assert await names(site, admin, {"search": "BAK"}) == ["Bob"]
    assert await names(site, admin, {"search": "cid@"}) == ["Cid"]
    assert await names(site, admin, {"search": "%"}) == []  # LIKE wildcards are literal
    assert sorted(await names(site, admin, {"kinds": ["EXTERNAL"]})) == ["Lop", "Par"]
    assert await names(site, admin, {"roles": ["GROUP_ANALYST"]}) == ["Ana"]
    assert sorted(await names(site, admin, {"roles": ["ADMIN", "GROUP_ANALYST"]})) == ["Adm", "Ana"]
    assert await names(site, admin, {"analystOfGroupId": gid("Group", s["a"])}) == ["Ana"]
    assert await names(site, admin, {"analystOfGroupId": gid("Group", s["b"])}) == []
    assert sorted(await names(site, admin, {"noGroups": True})) == ["Adm", "Den", "Lop", "Par"]
    assert len(await names(site, admin, {"noGroups": False})) == 6
    assert sorted(await names(site, admin, {"active": True})) == ["Bob", "Den"]
    assert await names(site, admin, {"active": True, "status": "ACTIVE"}) == ["Bob"]
    assert await names(site, admin, {"status": "DENIED"}) == ["Den"]
    assert await names(site, admin, {"licenceType": "PUPIL"}) == ["Par"]
    assert await names(site, admin, {"licenceType": "OTHER"}) == []
    assert await names(site, admin, {"noPupils": True}) == ["Lop"]
    assert await names(site, admin, {"noPupils": False}) == ["Par"]
    assert sorted(await names(site, admin, {"lastLoginBefore": "2026-01-01T00:00:00+00:00"})) == ["Cid", "Lea"]
    assert await names(site, admin, {"lastLoginBefore": "2025-06-01T02:00:00+02:00", "kinds": ["LEARNER"]}) == ["Cid"]

    bad = await site.gql(USERS, {"filter": {"analystOfGroupId": gid("User", admin)}}, as_user=admin)
    assert errors_of(bad) == ["BAD_USER_INPUT"]
    # anyone else lists only the users they may see, and may not filter on what only site admins read
    for who in ("analyst", "leader", "ann"):
        seen = await site.gql(USERS, {}, as_user=s[who])
        assert "errors" not in seen and admin.first_name not in [e["node"]["firstName"] for e in seen["data"]["users"]["edges"]]
        for admin_only in ({"status": "DENIED"}, {"licenceType": "PUPIL"}, {"noPupils": True}, {"lastLoginBefore": "2026-01-01T00:00:00Z"}):
            assert errors_of(await site.gql(USERS, {"filter": admin_only}, as_user=s[who])) == ["FORBIDDEN"]


async def test_users_keyset_pages(site: Site) -> None:
    admin = await site.user("Adm", "Same", kind="STAFF", roles="ADMIN")
    for i in range(11):
        await site.user(f"P{i}", "Same" if i % 2 else f"Name{i % 3}")
    seen: list[str] = []
    after = None
    await site.token(admin)
    costs = []
    while True:
        with site.statements() as counted:
            body = await site.gql(USERS, {"first": 3, "after": after}, as_user=admin)
        costs.append(counted.count)
        connection = body["data"]["users"]
        assert connection["totalCount"] == 12
        seen.extend(e["node"]["firstName"] for e in connection["edges"])
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
    assert len(seen) == 12 and len(set(seen)) == 12
    assert max(costs) == min(costs)


async def test_admins_assign_analysts_with_add_members(site: Site) -> None:
    s = await school(site)
    admin = s["admin"]
    newcomer = await site.user("New", kind="STAFF")
    await site.member(newcomer, s["a"])  # so that the school's leader sees them
    add = "mutation($g: ID!, $u: [ID!]!) { addMembers(groupId: $g, userIds: $u, role: ANALYST) { role } }"
    variables = {"g": gid("Group", s["b"]), "u": [gid("User", newcomer)]}
    refused = await site.gql(add, variables, as_user=admin)
    assert errors_of(refused) == ["FORBIDDEN"]  # not a GROUP_ANALYST yet
    assert await site.count(Membership, Membership.user_id == newcomer.id) == 1
    # the school's leader manages Class B but may not make analysts either
    body = await site.gql(SET_ROLES, {"id": gid("User", newcomer), "roles": ["GROUP_ANALYST"]}, as_user=admin)
    assert "errors" not in body
    assert errors_of(await site.gql(add, variables, as_user=s["leader"])) == ["FORBIDDEN"]
    assert (await site.gql(add, variables, as_user=admin))["data"]["addMembers"] == [{"role": "ANALYST"}]
    response = await site.client.get(f"/exports/groups/{s['b'].id}/progress.csv", headers=auth(await site.token(newcomer)))
    assert [r[0] for r in parse(response.content)[1:]] == ["Cid"]
    listed = await site.gql(
        "query($g: ID!) { users(filter: {analystOfGroupId: $g}) { edges { node { firstName } } } }",
        {"g": gid("Group", s["b"])}, as_user=admin,
    )
    assert listed["data"]["users"]["edges"] == [{"node": {"firstName": "New"}}]
