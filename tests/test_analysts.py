"""Group Analysts: limited seats (CONFLICT, nothing changed, also under concurrent grants), and an analyst
reads and exports the progress of assigned groups only, and can do nothing else."""

from __future__ import annotations

import asyncio
from typing import Any

from app.models import AuditEvent, Group, Membership, User
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
    s = await school(site)
    analyst = s["analyst"]
    before = (await site.count(Group), await site.count(Membership), await site.count(AuditEvent))
    attempts: list[tuple[str, dict[str, Any]]] = [
        ("mutation($p: ID!) { createGroup(input: {name: \"Mine\", parentId: $p}) { id } }", {"p": gid("Group", s["a"])}),
        (SET_ROLES, {"id": gid("User", analyst), "roles": ["ADMIN", "GROUP_ANALYST"]}),
        ("{ unassignedActiveStudentCount }", {}),
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
    for path in ("/exports/groups.csv", "/exports/memberships.csv", "/exports/unassigned-active-students.csv"):
        assert (await site.client.get(path, headers=token)).status_code == 403
    assert (await site.count(Group), await site.count(Membership), await site.count(AuditEvent)) == before
