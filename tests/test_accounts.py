"""Account administration (MANAGE_ACCOUNT): the LEADERs of an account's home group and of its ancestors
administer it, however unassigned. The permission matrix of the new operations, the day of a school
leader as a new user lives it, and the statement count of a leader's user list. SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import delete, insert, select, update

from app.store.models import AuditEvent, Group, Membership, Session, Usage, User
from tests.site import PASSWORD, Site, errors_of, gid

VIEWERS = ("admin", "leadA", "classlead", "mentorA", "leadB", "learner")


@dataclass
class Fixture:
    groups: dict[str, Group]
    users: dict[str, User]


async def district(site: Site) -> Fixture:
    """District > School A > Class A1, District > School B > Class B1; kim (active, no group) and idle are
    homed in School A, lee (active, no group) in School B; the learner is in Class A1 and homed in School A;
    ana holds a site role and is homed in School A."""
    root = await site.group("District")
    school_a = await site.group("School A", root)
    class_a1 = await site.group("Class A1", school_a)
    school_b = await site.group("School B", root)
    class_b1 = await site.group("Class B1", school_b)
    groups = {"District": root, "SchoolA": school_a, "ClassA1": class_a1, "SchoolB": school_b, "ClassB1": class_b1}
    users = {
        "admin": await site.user("Adm", kind="STAFF", roles="ADMIN"),
        "leadA": await site.user("Lia", kind="STAFF"),
        "classlead": await site.user("Cal", kind="STAFF"),
        "mentorA": await site.user("Men", kind="STAFF"),
        "leadB": await site.user("Lib", kind="STAFF"),
        "learner": await site.user("Lea", email="lea@example.com"),
        "kim": await site.user("Kim", "Kane", email="kim@example.com", external_id="S-KIM", company="Acme"),
        "idle": await site.user("Idl", email="idle@example.com"),
        "lee": await site.user("Lee", email="lee@example.com"),
        "ana": await site.user("Ana", kind="STAFF", roles="GROUP_ANALYST"),
    }
    for user, group, role in (
        ("leadA", "SchoolA", "LEADER"), ("classlead", "ClassA1", "LEADER"), ("mentorA", "SchoolA", "MENTOR"),
        ("leadB", "SchoolB", "LEADER"), ("learner", "ClassA1", "MEMBER"),
    ):
        await site.member(users[user], groups[group], role)
    homes = {"kim": "SchoolA", "idle": "SchoolA", "learner": "SchoolA", "ana": "SchoolA", "lee": "SchoolB"}
    async with site.database.transaction() as session:
        for name, group in homes.items():
            await session.execute(update(User).where(User.id == users[name].id).values(home_group_id=groups[group].id))
            users[name].home_group_id = groups[group].id
        for name, minutes in (("kim", 5), ("lee", 3), ("learner", 9)):
            session.add(Usage(user_id=users[name].id, day=date(2026, 3, 2), minutes=minutes))
    return Fixture(groups, users)


def code(body: dict[str, Any], field: str) -> str:
    """"ok", "null" (absent, no error) or the error's code."""
    if body.get("errors"):
        return body["errors"][0]["extensions"]["code"]
    return "ok" if body["data"][field] is not None else "null"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# viewer -> outcome, per operation (the columns follow VIEWERS)
MATRIX = {
    # user(id: kim): an unassigned account shows to those who administer it, to no one else
    "user": ("ok", "ok", "null", "null", "null", "null"),
    # users(filter: {homeGroupId: School A, noGroups, active})
    "list": ("ok", "ok", "NOT_FOUND", "ok", "NOT_FOUND", "NOT_FOUND"),
    "count": ("ok", "ok", "NOT_FOUND", "FORBIDDEN", "NOT_FOUND", "NOT_FOUND"),
    "count_site": ("ok", "BAD_USER_INPUT", "BAD_USER_INPUT", "BAD_USER_INPUT", "BAD_USER_INPUT", "BAD_USER_INPUT"),
    "csv": ("ok", "ok", "NOT_FOUND", "FORBIDDEN", "NOT_FOUND", "NOT_FOUND"),
    "create": ("ok", "ok", "NOT_FOUND", "FORBIDDEN", "NOT_FOUND", "NOT_FOUND"),
    "create_site_role": ("ok", "FORBIDDEN", "NOT_FOUND", "FORBIDDEN", "NOT_FOUND", "NOT_FOUND"),
    "update": ("ok", "ok", "NOT_FOUND", "NOT_FOUND", "NOT_FOUND", "NOT_FOUND"),
    # the learner of Class A1: seen by its class LEADER and the MENTOR, administered by neither
    "update_member": ("ok", "ok", "FORBIDDEN", "FORBIDDEN", "NOT_FOUND", "FORBIDDEN"),
    "password": ("ok", "ok", "NOT_FOUND", "NOT_FOUND", "NOT_FOUND", "NOT_FOUND"),
    "place": ("ok", "ok", "NOT_FOUND", "FORBIDDEN", "NOT_FOUND", "FORBIDDEN"),
    "import": ("ok", "ok", "unknown student", "unknown student", "unknown student", "unknown student"),
    "move": ("ok", "NOT_FOUND", "NOT_FOUND", "NOT_FOUND", "NOT_FOUND", "NOT_FOUND"),
    # an account holding a site role is the site admins' alone
    "update_site_role_holder": ("ok", "NOT_FOUND", "NOT_FOUND", "NOT_FOUND", "NOT_FOUND", "NOT_FOUND"),
}
UPDATE = "mutation($id: ID!, $input: UpdateUserInput!) { updateUser(id: $id, input: $input) { id company homeGroup { name } } }"
CREATE = "mutation($input: CreateUserInput!) { createUser(input: $input) { id roles homeGroup { name } } }"
PLACE = "mutation($g: ID!, $u: [ID!]!) { addMembers(groupId: $g, userIds: $u) { id } }"


async def test_account_administration_matrix(site: Site) -> None:
    f = await district(site)
    g, u = f.groups, f.users
    school_a, kim = gid("Group", g["SchoolA"]), gid("User", u["kim"])
    for n, viewer in enumerate(VIEWERS):
        who = u[viewer]
        token = await site.token(who)
        seen: dict[str, str] = {}
        body = await site.gql("query($id: ID!) { user(id: $id) { firstName email homeGroup { name } } }", {"id": kim}, as_user=who)
        seen["user"] = code(body, "user")
        if seen["user"] == "ok":
            assert body["data"]["user"] == {"firstName": "Kim", "email": "kim@example.com", "homeGroup": {"name": "School A"}}
        listed = await site.gql(
            "query($g: ID!) { users(filter: {homeGroupId: $g, noGroups: true, active: true}) { totalCount edges { node { firstName } } } }",
            {"g": school_a}, as_user=who,
        )
        seen["list"] = code(listed, "users")
        if seen["list"] == "ok":
            names = [e["node"]["firstName"] for e in listed["data"]["users"]["edges"]]
            administers = viewer in ("admin", "leadA")
            assert names == (["Kim"] if administers else []) and listed["data"]["users"]["totalCount"] == len(names), viewer
        counted = await site.gql("query($g: ID!) { unassignedActiveStudentCount(scopeGroupId: $g) }", {"g": school_a}, as_user=who)
        seen["count"] = code(counted, "unassignedActiveStudentCount")
        if seen["count"] == "ok":
            assert counted["data"]["unassignedActiveStudentCount"] == 1
        site_wide = await site.gql("{ unassignedActiveStudentCount }", as_user=who)
        seen["count_site"] = code(site_wide, "unassignedActiveStudentCount")
        if seen["count_site"] == "ok":
            assert site_wide["data"]["unassignedActiveStudentCount"] == 2  # kim and lee
        download = await site.client.get(
            "/exports/unassigned-active-students.csv", params={"scopeGroupId": school_a}, headers=auth(token)
        )
        seen["csv"] = "ok" if download.status_code == 200 else download.json()["errors"][0]["extensions"]["code"]
        if seen["csv"] == "ok":
            rows = list(csv.reader(io.StringIO(download.text)))
            assert rows == [
                ["student_id", "first_name", "last_name", "email", "usage_minutes", "groups"],
                ["S-KIM", "Kim", "Kane", "kim@example.com", "5", ""],
            ]
        base = {"firstName": "New", "lastName": "Learner", "kind": "LEARNER", "homeGroupId": school_a}
        created = await site.gql(CREATE, {"input": {**base, "email": f"new{n}@example.com"}}, as_user=who)
        seen["create"] = code(created, "createUser")
        if seen["create"] == "ok":
            assert created["data"]["createUser"]["homeGroup"] == {"name": "School A"}
        analyst = {**base, "email": f"analyst{n}@example.com", "kind": "STAFF", "siteRoles": ["GROUP_ANALYST"]}
        seen["create_site_role"] = code(await site.gql(CREATE, {"input": analyst}, as_user=who), "createUser")
        seen["update"] = code(await site.gql(UPDATE, {"id": kim, "input": {"company": f"C{n}"}}, as_user=who), "updateUser")
        member = await site.gql(UPDATE, {"id": gid("User", u["learner"]), "input": {"title": "Pupil"}}, as_user=who)
        seen["update_member"] = code(member, "updateUser")
        seen["password"] = code(await site.gql(UPDATE, {"id": kim, "input": {"password": f"new secret {n}"}}, as_user=who), "updateUser")
        seen["place"] = code(await site.gql(PLACE, {"g": gid("Group", g["ClassA1"]), "u": [kim]}, as_user=who), "addMembers")
        async with site.database.transaction() as session:  # undo the placement for the next viewer
            await session.execute(delete(Membership).where(Membership.user_id == u["kim"].id))
        imported = await site.client.post(
            "/imports/group-assignments", content=f"student_id,groups\r\nS-KIM,{g['ClassA1'].slug}\r\n".encode(),
            headers={**auth(token), "content-type": "text/csv"},
        )
        seen["import"] = "ok" if imported.status_code == 200 else imported.json()["errors"][0]["message"]
        seen["import"] = next((m for m in ("unknown student", "may not manage") if m in seen["import"]), seen["import"])
        async with site.database.transaction() as session:
            await session.execute(delete(Membership).where(Membership.user_id == u["kim"].id))
        moved = await site.gql(UPDATE, {"id": kim, "input": {"homeGroupId": gid("Group", g["SchoolB"])}}, as_user=who)
        seen["move"] = code(moved, "updateUser")
        if seen["move"] == "ok":
            assert moved["data"]["updateUser"]["homeGroup"] == {"name": "School B"}
        async with site.database.transaction() as session:
            await session.execute(update(User).where(User.id == u["kim"].id).values(home_group_id=g["SchoolA"].id))
        holder = await site.gql(UPDATE, {"id": gid("User", u["ana"]), "input": {"title": "x"}}, as_user=who)
        seen["update_site_role_holder"] = code(holder, "updateUser")
        assert seen == {op: outcomes[n] for op, outcomes in MATRIX.items()}, viewer
    # the refusals changed nothing: only the admin's and leadA's attempts are in the audit log
    actors = {e.actor_id for e in await site_rows(site, AuditEvent) if e.action.startswith(("user.", "membership."))}
    assert actors == {u["admin"].id, u["leadA"].id}


async def site_rows(site: Site, model: Any) -> list[Any]:
    async with site.database.session() as session:
        return list(await session.scalars(select(model)))


async def test_a_school_leader_runs_their_school(site: Site) -> None:
    """Done as a new user would: list, count, download, create, place, edit, reset a password; the other
    school stays out of reach (NOT_FOUND) and site roles stay the admins' (FORBIDDEN); the round trip of the
    downloaded file through the importer; ending the LEADER membership ends it all at once."""
    f = await district(site)
    g, u = f.groups, f.users
    lead = u["leadA"]
    school_a, school_b = gid("Group", g["SchoolA"]), gid("Group", g["SchoolB"])
    count = "query($g: ID) { unassignedActiveStudentCount(scopeGroupId: $g) }"
    assert await site.gql(count, {"g": school_a}, as_user=lead) == {"data": {"unassignedActiveStudentCount": 1}}
    assert errors_of(await site.gql(count, {"g": school_b}, as_user=lead)) == ["NOT_FOUND"]
    assert errors_of(await site.gql(count, {}, as_user=lead)) == ["BAD_USER_INPUT"]
    # the users list: everyone homed in the school (unassigned or not) and the people the leader is over
    listing = await site.gql(
        "{ users(first: 100) { totalCount edges { node { firstName homeGroup { name } } } } }", as_user=lead
    )
    assert sorted(e["node"]["firstName"] for e in listing["data"]["users"]["edges"]) == ["Cal", "Idl", "Kim", "Lea", "Lia", "Men"]
    # create a learner homed in the school, place them, edit them, reset their password
    created = await site.gql(
        CREATE,
        {"input": {"email": "neo@example.com", "firstName": "Neo", "lastName": "New", "kind": "LEARNER", "homeGroupId": school_a, "password": "first password"}},
        as_user=lead,
    )
    neo = created["data"]["createUser"]["id"]
    assert created["data"]["createUser"] == {"id": neo, "roles": [], "homeGroup": {"name": "School A"}}
    placed = await site.gql(PLACE, {"g": gid("Group", g["ClassA1"]), "u": [neo, gid("User", u["kim"])]}, as_user=lead)
    assert len(placed["data"]["addMembers"]) == 2
    login = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }"
    async with site.database.session() as session:
        neo_row = (await session.scalars(select(User).where(User.email_normalized == "neo@example.com"))).one()
    neo_token = await site.token(neo_row)  # a session of neo's (a login costs an argon2 verification)
    assert (await site.gql("{ viewer { firstName } }", token=neo_token))["data"]["viewer"] == {"firstName": "Neo"}
    edited = await site.gql(
        UPDATE, {"id": neo, "input": {"firstName": "Neon", "company": "Acme", "password": "second password"}}, as_user=lead
    )
    assert "errors" not in edited, edited
    assert errors_of(await site.gql("{ viewer { firstName } }", token=neo_token)) == ["UNAUTHENTICATED"]  # it ended
    assert "errors" not in await site.gql(login, {"e": "neo@example.com", "p": "second password"})
    async with site.database.session() as session:
        event = (await session.scalars(select(AuditEvent).where(AuditEvent.action == "user.update"))).one()
    assert json.loads(event.detail)["fields"] == ["firstName", "company", "password"] and "second password" not in event.detail
    # the other school: NOT_FOUND, as if it did not exist; site roles: FORBIDDEN; nothing changed
    lee = gid("User", u["lee"])
    assert errors_of(await site.gql(UPDATE, {"id": lee, "input": {"company": "X"}}, as_user=lead)) == ["NOT_FOUND"]
    other = {"email": "o@example.com", "firstName": "O", "lastName": "P", "kind": "LEARNER", "homeGroupId": school_b}
    assert errors_of(await site.gql(CREATE, {"input": other}, as_user=lead)) == ["NOT_FOUND"]
    roles = {**other, "homeGroupId": school_a, "siteRoles": ["ADMIN"]}
    assert errors_of(await site.gql(CREATE, {"input": roles}, as_user=lead)) == ["FORBIDDEN"]
    assert errors_of(await site.gql(CREATE, {"input": {**other, "homeGroupId": None}}, as_user=lead)) == ["BAD_USER_INPUT"]
    assert errors_of(await site.gql(PLACE, {"g": gid("Group", g["ClassB1"]), "u": [neo]}, as_user=lead)) == ["NOT_FOUND"]
    assert await site.count(User, User.email_normalized == "o@example.com") == 0
    token = auth(await site.token(lead))
    other_csv = await site.client.get("/exports/unassigned-active-students.csv", params={"scopeGroupId": school_b}, headers=token)
    assert other_csv.status_code == 404
    # the file round trip: idle and a brand-new learner, with passwords and classes
    async with site.database.transaction() as session:
        session.add(Usage(user_id=u["idle"].id, day=date(2026, 3, 3), minutes=2))
    download = await site.client.get("/exports/unassigned-active-students.csv", params={"scopeGroupId": school_a}, headers=token)
    rows = list(csv.reader(io.StringIO(download.text)))
    assert [r[0] for r in rows[1:]] == ["idle@example.com"]
    header = rows[0] + ["password"]
    body = [header, [*rows[1][:5], g["ClassA1"].slug, "idle's new one"]]
    body.append(["S-NEW", "Nia", "Novak", "nia@example.com", "", g["ClassA1"].slug, "nia's first one"])
    file = io.StringIO()
    csv.writer(file, lineterminator="\r\n").writerows(body)
    dry = await site.client.post(
        "/imports/group-assignments", params={"dryRun": "true", "scopeGroupId": school_a}, content=file.getvalue().encode(),
        headers={**token, "content-type": "text/csv"},
    )
    assert dry.json() | {"errors": []} == {
        "dryRun": True, "applied": True, "rowCount": 2, "membershipsCreated": 2, "unchanged": 0,
        "accountsCreated": 1, "passwordsSet": 1, "errors": [],
    }, dry.json()
    assert await site.count(User, User.email_normalized == "nia@example.com") == 0
    applied = await site.client.post(
        "/imports/group-assignments", params={"scopeGroupId": school_a}, content=file.getvalue().encode(),
        headers={**token, "content-type": "text/csv"},
    )
    assert applied.status_code == 200 and applied.json()["accountsCreated"] == 1, applied.json()
    async with site.database.session() as session:
        nia = (await session.scalars(select(User).where(User.email_normalized == "nia@example.com"))).one()
    assert (nia.external_id, nia.home_group_id, nia.kind) == ("S-NEW", g["SchoolA"].id, "LEARNER")
    assert await site.count(Membership, Membership.group_id == g["ClassA1"].id, Membership.user_id.in_([nia.id, u["idle"].id])) == 2
    assert "errors" not in await site.gql(login, {"e": "idle@example.com", "p": "idle's new one"})
    assert "errors" not in await site.gql(login, {"e": "nia@example.com", "p": "nia's first one"})
    # ending the LEADER membership ends the administration at once
    async with site.database.transaction() as session:
        await session.execute(delete(Membership).where(Membership.user_id == lead.id))
    assert errors_of(await site.gql(UPDATE, {"id": neo, "input": {"company": "Y"}}, as_user=lead)) == ["NOT_FOUND"]
    assert errors_of(await site.gql(count, {"g": school_a}, as_user=lead)) == ["NOT_FOUND"]


async def test_import_refusals_name_line_and_column(site: Site) -> None:
    f = await district(site)
    g, lead = f.groups, f.users["leadA"]
    token = auth(await site.token(lead))
    text = (
        "student_id,groups,first_name,last_name,email,password,home_group\r\n"
        f"S-1,{g['ClassA1'].slug},Ann,,ann@example.com,,\r\n"  # no last name
        f"S-2,{g['ClassA1'].slug},Bo,Bell,kim@example.com,,\r\n"  # email taken
        f"S-3,{g['ClassA1'].slug},Cy,Cole,cy@example.com,short,\r\n"  # password too short
        f"S-4,{g['ClassA1'].slug},Di,Dunn,di@example.com,,{g['SchoolB'].slug}\r\n"  # another school
        f"lee@example.com,{g['ClassA1'].slug},,,,a long password,\r\n"  # not administered: unknown
        f"S-KIM,{g['ClassA1'].slug},,,,tiny,\r\n"  # administered, password too short
    )
    response = await site.client.post(
        "/imports/group-assignments", content=text.encode(), headers={**token, "content-type": "text/csv"}
    )
    assert response.status_code == 422
    assert [(e["line"], e["column"]) for e in response.json()["errors"]] == [
        (2, "last_name"), (3, "email"), (4, "password"), (5, "home_group"), (6, "student_id"), (7, "password"),
    ], response.json()
    # a leader of several groups names the home of new accounts
    await site.member(lead, g["SchoolB"], "LEADER")
    ambiguous = await site.client.post(
        "/imports/group-assignments", content=b"student_id,groups,first_name,last_name\r\nx@example.com,,X,Y\r\n",
        headers={**token, "content-type": "text/csv"},
    )
    assert ambiguous.json()["errors"][0]["column"] == "home_group"
    assert await site.count(User) == 10 and await site.count(Membership) == 6


async def test_leader_user_list_statements_do_not_grow(site: Site) -> None:
    """A LEADER's users(first: 100) with names and home groups: the same statements for 10 accounts in
    scope as for 10,000 (inserted in bulk)."""
    f = await district(site)
    lead, school = f.users["leadA"], f.groups["SchoolA"]
    query = "{ users(first: 100) { totalCount pageInfo { hasNextPage } edges { node { firstName lastName email homeGroup { name } } } } }"

    async def add(n: int, start: int) -> None:
        rows = [
            {
                "email": f"bulk{i}@example.com", "email_normalized": f"bulk{i}@example.com", "first_name": "Bulk",
                "last_name": f"L{i:05}", "last_name_normalized": f"l{i:05}", "kind": "LEARNER", "site_roles": "",
                "status": "ACTIVE", "synced": False, "home_group_id": school.id, "agreed_to_download_reports": True,
                "login_count": 0,
            }
            for i in range(start, start + n)
        ]
        async with site.database.transaction() as session:
            await session.execute(insert(User.__table__), rows)

    await site.token(lead)
    counts = []
    for n, start in ((10, 0), (9_990, 10)):
        await add(n, start)
        with site.statements() as counted:
            body = await site.gql(query, as_user=lead)
        assert "errors" not in body, body
        counts.append(counted.count)
    assert body["data"]["users"]["totalCount"] == 10_000 + 6
    assert len(body["data"]["users"]["edges"]) == 100
    assert counts[0] == counts[1], counts
    print(f"\nleader users(first: 100): {counts[1]} statements at 10 and at 10,000 accounts in scope")


async def test_sessions_and_tokens_end_with_a_new_password(site: Site) -> None:
    f = await district(site)
    admin, kim = f.users["admin"], f.users["kim"]
    token = await site.token(kim)
    api = await site.gql('mutation { createApiToken(name: "script") { token } }', token=token)
    api_token = api["data"]["createApiToken"]["token"]
    changed = await site.gql(UPDATE, {"id": gid("User", kim), "input": {"password": "brand new password"}}, as_user=admin)
    assert "errors" not in changed
    for old in (token, api_token):
        assert errors_of(await site.gql("{ viewer { id } }", token=old)) == ["UNAUTHENTICATED"]
    assert await site.count(Session, Session.user_id == kim.id, Session.revoked_at.is_(None)) == 0
    # bad input changes nothing
    for bad, field in (({"email": "nope"}, "email"), ({"firstName": " "}, "firstName"), ({"password": "short"}, "password"),
                       ({"email": "LEE@example.com"}, "email"), ({"externalId": "S-KIM "}, None)):
        body = await site.gql(UPDATE, {"id": gid("User", kim), "input": {**bad, "company": "Changed"}}, as_user=admin)
        if field is None:  # the same external id, trimmed: no change, no conflict with itself
            assert "errors" not in body, body
            continue
        assert errors_of(body) and body["errors"][0]["extensions"]["field"] == field, (bad, body)
    synced = await site.gql(UPDATE, {"id": gid("User", kim), "input": {"synced": True}}, as_user=f.users["leadA"])
    assert errors_of(synced) == ["FORBIDDEN"]
    shown = await site.gql("query($id: ID!) { user(id: $id) { company } }", {"id": gid("User", kim)}, as_user=admin)
    assert shown["data"]["user"] == {"company": "Changed"}  # only by the one valid request
    assert PASSWORD  # the fixture's password still opens the other accounts
    # an analyst is created in one request while seats remain; then CONFLICT, nothing created
    site.settings.analyst_seats = 2
    analyst = {"firstName": "An", "lastName": "A", "kind": "STAFF", "siteRoles": ["GROUP_ANALYST"]}
    made = await site.gql(CREATE, {"input": {**analyst, "email": "an1@example.com"}}, as_user=admin)
    assert made["data"]["createUser"]["roles"] == ["GROUP_ANALYST"], made
    full = await site.gql(CREATE, {"input": {**analyst, "email": "an2@example.com"}}, as_user=admin)
    assert errors_of(full) == ["CONFLICT"] and full["errors"][0]["extensions"]["field"] == "siteRoles"
    assert await site.count(User, User.email_normalized == "an2@example.com") == 0
    # an admin who is not an owner may not take over an owner's account
    owner = await site.user("Own", kind="STAFF", roles="OWNER")
    taken = await site.gql(UPDATE, {"id": gid("User", owner), "input": {"password": "taken over now"}}, as_user=admin)
    assert errors_of(taken) == ["FORBIDDEN"]


async def test_a_search_spells_out_no_email_the_caller_may_not_read(site: Site) -> None:
    """users() is open to everyone signed in: a guardian sees the pupil's name but not the email, so the
    email prefix finds nothing there, while the last name does."""
    from app.store.models import GuardianLink

    parent = await site.user("Pam", kind="EXTERNAL")
    pupil = await site.user("Pup", "Zed", email="secret.address@example.com")
    async with site.database.transaction() as session:
        session.add(GuardianLink(external_user_id=parent.id, pupil_id=pupil.id, licence_type="PARENT_GUARDIAN"))
    query = "query($s: String) { users(filter: {search: $s}) { totalCount edges { node { firstName email } } } }"
    by_name = await site.gql(query, {"s": "zed"}, as_user=parent)
    assert by_name["data"]["users"]["totalCount"] == 1 and by_name["data"]["users"]["edges"][0]["node"]["email"] is None
    assert (await site.gql(query, {"s": "secret"}, as_user=parent))["data"]["users"] == {"totalCount": 0, "edges": []}


async def test_a_school_leader_cannot_take_over_staff_of_other_groups(site: Site) -> None:
    """Setting a password hands over the account's powers, so a school leader administers a teacher homed
    in the school only while every staff role the teacher holds is in a group the leader leads. Tia mentors
    in School A and in School B; Dan leads School B only; Sam mentors in Class A1 (under School A). leadA
    may reset Sam's password, not Tia's (FORBIDDEN: leadA is over Tia, so sees her) nor Dan's (NOT_FOUND:
    leadA sees Dan by no other path); the site admin may do all three; the refusals change nothing."""
    f = await district(site)
    g, u = f.groups, f.users
    tia = await site.user("Tia", kind="STAFF", email="tia@example.com")
    dan = await site.user("Dan", kind="STAFF", email="dan@example.com")
    sam = await site.user("Sam", kind="STAFF", email="sam@example.com")
    for who, group, role in ((tia, "SchoolA", "MENTOR"), (tia, "SchoolB", "MENTOR"), (dan, "SchoolB", "LEADER"), (sam, "ClassA1", "MENTOR")):
        await site.member(who, g[group], role)
    async with site.database.transaction() as session:
        await session.execute(
            update(User).where(User.id.in_([tia.id, dan.id, sam.id])).values(home_group_id=g["SchoolA"].id)
        )
    tokens = {who.id: await site.token(who) for who in (tia, dan)}
    lead, admin = u["leadA"], u["admin"]

    async def reset(target: User, as_user: User, n: int) -> str:
        body = await site.gql(UPDATE, {"id": gid("User", target), "input": {"password": f"taken over {n}"}}, as_user=as_user)
        return code(body, "updateUser")

    assert [await reset(who, lead, n) for n, who in enumerate((tia, dan, sam))] == ["FORBIDDEN", "NOT_FOUND", "ok"]
    renamed = await site.gql(UPDATE, {"id": gid("User", tia), "input": {"title": "Taken"}}, as_user=lead)
    assert errors_of(renamed) == ["FORBIDDEN"]
    # the list the leader administers from: Dan is not in it (the SQL filter), Tia is (leadA is over her)
    listing = await site.gql(
        "query($g: ID!) { users(first: 100, filter: {homeGroupId: $g}) { totalCount edges { node { firstName } } } }",
        {"g": gid("Group", g["SchoolA"])}, as_user=lead,
    )
    names = sorted(e["node"]["firstName"] for e in listing["data"]["users"]["edges"])
    assert "Dan" not in names and {"Tia", "Sam", "Kim"} <= set(names)
    assert listing["data"]["users"]["totalCount"] == len(names)
    assert await site.gql("query($id: ID!) { user(id: $id) { firstName } }", {"id": gid("User", dan)}, as_user=lead) == {
        "data": {"user": None}
    }
    # the refused resets changed nothing: Tia's and Dan's tokens still work, their passwords still sign in
    for who in (tia, dan):
        me = await site.client.post("/graphql", json={"query": "{ viewer { firstName } }"}, headers=auth(tokens[who.id]))
        assert me.json() == {"data": {"viewer": {"firstName": who.first_name}}}
        login = await site.gql(
            "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }",
            {"e": who.email, "p": PASSWORD},
        )
        assert login["data"]["login"]["token"]
    # the leader who leads every group of a teacher's staff roles administers them: the district's leader
    district_lead = await site.user("Dia", kind="STAFF")
    await site.member(district_lead, g["District"], "LEADER")
    assert [await reset(who, district_lead, 10 + n) for n, who in enumerate((tia, dan))] == ["ok", "ok"]
    assert [await reset(who, admin, 20 + n) for n, who in enumerate((tia, dan, sam))] == ["ok", "ok", "ok"]
