"""What the five products' users do every day, as their help pages describe it: the gateway's login chart,
groups made by site admins, seats, the licence exports, self-service by kind, the outbox; on SQLite and
PostgreSQL, the denial side too."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from app.settings import Settings
from app.store.models import (
    AccessRequest,
    AuditEvent,
    Group,
    GuardianLink,
    LoginEvent,
    Membership,
    OutboxEmail,
    Usage,
    utcnow,
)
from tests.school import auth, course, enroll, parse
from tests.site import Site, errors_of, gid

STATS = """query($from: DateTime!, $to: DateTime!, $k: [UserKind!], $l: LicenceType) {
  loginStatistics(from: $from, to: $to, kinds: $k, licenceType: $l) {
    totalLogins uniqueUsers buckets { start logins failedLogins uniqueUsers }
  }
}"""


def _at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


async def test_the_gateway_login_chart_counts_external_users_once_each(site: Site) -> None:
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    parent = await site.user("Dee", kind="EXTERNAL")
    other = await site.user("Eve", kind="EXTERNAL")
    learner = await site.user("Lou")
    pupils = [await site.user(f"Pup{i}") for i in range(3)]
    async with site.database.transaction() as session:
        # Dee holds three links (two PARENT_GUARDIAN, one OTHER): she is still one user
        for pupil, licence in zip(pupils, ("PARENT_GUARDIAN", "PARENT_GUARDIAN", "OTHER"), strict=True):
            session.add(GuardianLink(external_user_id=parent.id, pupil_id=pupil.id, licence_type=licence))
        for user, at, ok in [
            (parent, _at(2, 8), True), (parent, _at(2, 9), True), (other, _at(2, 10), True),
            (admin, _at(2, 11), True), (learner, _at(2, 12), True), (learner, _at(3), True),
            (parent, _at(3), True), (other, _at(3), False), (admin, _at(3), False), (None, _at(3, 13), False),
        ]:
            session.add(LoginEvent(user_id=user.id if user else None, email_normalized="x", success=ok, at=at))
    period = {"from": "2026-03-02T00:00:00Z", "to": "2026-03-04T00:00:00Z"}

    async def stats(**more: Any) -> list[Any]:
        body = await site.gql(STATS, {**period, **more}, as_user=admin)
        assert "errors" not in body, body
        s = body["data"]["loginStatistics"]
        return [s["totalLogins"], s["uniqueUsers"], [(b["logins"], b["failedLogins"], b["uniqueUsers"]) for b in s["buckets"]]]

    # the gateway's chart: external users' sign-ins only
    assert await stats(k=["EXTERNAL"]) == [4, 2, [(3, 0, 2), (1, 1, 1)]]
    # everyone's, without kinds (an unknown email's failure counts as a failure of nobody's kind)
    assert await stats() == [7, 4, [(5, 0, 4), (2, 3, 2)]]
    assert await stats(k=["STAFF", "LEARNER"]) == [3, 2, [(2, 0, 2), (1, 1, 1)]]
    # a licence type: each holder once, however many links of it they hold
    assert await stats(k=["EXTERNAL"], l="PARENT_GUARDIAN") == [3, 1, [(2, 0, 1), (1, 0, 1)]]
    assert await stats(l="OTHER") == [3, 1, [(2, 0, 1), (1, 0, 1)]]
    denied = await site.gql(STATS, {**period, "k": ["EXTERNAL"]}, as_user=parent)
    assert errors_of(denied) == ["FORBIDDEN"] and denied["data"] is None


CREATE = """mutation($input: CreateGroupInput!) { createGroup(input: $input) { id viewerRole viewerPermissions
  memberCount members { totalCount } } }"""


async def test_site_admins_do_not_become_members_of_the_groups_they_create(site: Site) -> None:
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    made = await site.gql(CREATE, {"input": {"name": "District"}}, as_user=admin)
    assert "errors" not in made, made
    root = made["data"]["createGroup"]
    assert root["viewerRole"] is None and "MANAGE_GROUP" in root["viewerPermissions"]
    assert root["memberCount"] == 0 and root["members"]["totalCount"] == 0
    nested = await site.gql(CREATE, {"input": {"name": "School", "parentId": root["id"]}}, as_user=admin)
    assert nested["data"]["createGroup"]["memberCount"] == 0
    assert await site.count(Membership) == 0
    exported = await site.client.get("/exports/memberships.csv", headers=auth(await site.token(admin)))
    assert len(parse(exported.content)) == 1  # the header only
    # a self-service creator still leads their group, and so does a leader creating a nested group
    staff = await site.user("Sam", kind="STAFF")
    own = await site.gql(CREATE, {"input": {"name": "Mine"}}, as_user=staff)
    assert own["data"]["createGroup"]["viewerRole"] == "LEADER" and own["data"]["createGroup"]["memberCount"] == 1
    sub = await site.gql(CREATE, {"input": {"name": "Sub", "parentId": own["data"]["createGroup"]["id"]}}, as_user=staff)
    assert sub["data"]["createGroup"]["viewerRole"] == "LEADER"
    assert await site.count(Membership) == 2
    assert await site.count(AuditEvent, AuditEvent.action == "group.create") == 4


async def test_self_service_groups_by_kind_of_account(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    staff = await site.user("Sam", kind="STAFF")
    learner = await site.user("Lou")
    external = await site.user("Eve", kind="EXTERNAL")
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")

    async def outcome(user: Any) -> str:
        body = await site.gql(CREATE, {"input": {"name": f"By {user.first_name}"}}, as_user=user)
        return "ok" if "errors" not in body else errors_of(body)[0]

    expected = {
        "none": ["FORBIDDEN", "FORBIDDEN", "FORBIDDEN", "ok"],
        "staff": ["ok", "FORBIDDEN", "FORBIDDEN", "ok"],
        "staff,learner": ["ok", "ok", "FORBIDDEN", "ok"],
        "staff, learner, external": ["ok", "ok", "ok", "ok"],
        "true": ["ok", "ok", "FORBIDDEN", "ok"],
        "false": ["FORBIDDEN", "FORBIDDEN", "FORBIDDEN", "ok"],
    }
    for value, outcomes in expected.items():
        monkeypatch.setenv("GROUPGRAPH_SELF_SERVICE_GROUPS", value)
        site.settings.self_service_groups = Settings().self_service_groups
        before = await site.count(Group)
        assert [await outcome(u) for u in (staff, learner, external, admin)] == outcomes, value
        assert await site.count(Group) == before + outcomes.count("ok")
    with pytest.raises(ValueError):
        Settings(self_service_groups="staff,teachers")
    # makeRoot by a LEADER held in the group follows the same kinds
    site.settings.self_service_groups = frozenset({"STAFF"})
    root = await site.group("Root")
    child = await site.group("Child", root)
    await site.member(learner, child, "LEADER")
    make_root = "mutation($id: ID!) { updateGroup(id: $id, input: {makeRoot: true}) { depth } }"
    assert errors_of(await site.gql(make_root, {"id": gid("Group", child)}, as_user=learner)) == ["FORBIDDEN"]
    site.settings.self_service_groups = frozenset({"STAFF", "LEARNER"})
    assert await site.gql(make_root, {"id": gid("Group", child)}, as_user=learner) == {"data": {"updateGroup": {"depth": 0}}}


SIGHT = """query($g: ID!) { groups { totalCount } group(id: $g) { id } viewer { memberships { id }
  courseProgress { course { name } } } }"""
SET_SIGHT = """mutation($id: ID!, $see: Boolean) { updateGroup(id: $id, input: {membersSeeGroups: $see}) {
  membersSeeGroups } }"""


async def test_members_see_their_groups_as_the_root_group_decides(site: Site) -> None:
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    org = await site.group("Org")
    cls = await site.group("Class", org)
    other = await site.group("Other")
    leader = await site.user("Leo", kind="STAFF")
    await site.member(leader, org, "LEADER")
    pupil = await site.user("Pia")
    await site.member(pupil, cls)
    await site.member(pupil, other)
    maths, _ = await course(site, "Maths", 2)
    await enroll(site, pupil, maths)

    async def sight() -> tuple[int, bool, int, int]:
        body = await site.gql(SIGHT, {"g": gid("Group", cls)}, as_user=pupil)
        assert "errors" not in body, body
        d = body["data"]
        return d["groups"]["totalCount"], d["group"] is not None, len(d["viewer"]["memberships"]), len(d["viewer"]["courseProgress"])

    assert await sight() == (2, True, 2, 1)  # the site's default: members see their groups (Class, Other)
    assert (await site.gql(SET_SIGHT, {"id": gid("Group", org), "see": False}, as_user=admin))["data"] == {
        "updateGroup": {"membersSeeGroups": False}
    }
    assert await sight() == (1, False, 1, 1)  # nothing of Org's tree; Other still; their own progress stays
    # the leader still sees the tree and reads the setting on any group of it
    body = await site.gql("query($g: ID!) { group(id: $g) { membersSeeGroups members { totalCount } } }", {"g": gid("Group", cls)}, as_user=leader)
    assert body["data"]["group"] == {"membersSeeGroups": False, "members": {"totalCount": 1}}
    # who may not: a leader (FORBIDDEN), anyone on a nested group (BAD_USER_INPUT); nothing changes
    denied = await site.gql(SET_SIGHT, {"id": gid("Group", org), "see": True}, as_user=leader)
    assert errors_of(denied) == ["FORBIDDEN"]
    nested = await site.gql(SET_SIGHT, {"id": gid("Group", cls), "see": True}, as_user=admin)
    assert errors_of(nested) == ["BAD_USER_INPUT"] and nested["errors"][0]["extensions"]["field"] == "membersSeeGroups"
    assert await sight() == (1, False, 1, 1)
    assert await site.count(AuditEvent, AuditEvent.action == "group.update") == 1
    # the site's default off: Other's tree hides too, unless its root says otherwise
    site.settings.members_see_groups = False
    assert await sight() == (0, False, 0, 1)
    await site.gql(SET_SIGHT, {"id": gid("Group", other), "see": True}, as_user=admin)
    assert await sight() == (1, False, 1, 1)
    # staff roles are not MEMBER: a mentor in a hidden tree still sees it
    await site.member(pupil, org, "MENTOR")
    assert (await sight())[:2] == (3, True)


SEATS = "{ analystSeats { used limit } }"
GRANT = "mutation($u: ID!) { setSiteRoles(userId: $u, roles: [GROUP_ANALYST]) { roles } }"


async def test_analyst_seats_are_readable(site: Site) -> None:
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    await site.user("Ann", kind="STAFF", roles="GROUP_ANALYST")
    staff = [await site.user(f"S{i}", kind="STAFF") for i in range(3)]
    assert await site.gql(SEATS, as_user=admin) == {"data": {"analystSeats": {"used": 1, "limit": 3}}}
    for user in staff[:2]:
        assert "errors" not in await site.gql(GRANT, {"u": gid("User", user)}, as_user=admin)
    assert await site.gql(SEATS, as_user=admin) == {"data": {"analystSeats": {"used": 3, "limit": 3}}}
    assert errors_of(await site.gql(GRANT, {"u": gid("User", staff[2])}, as_user=admin)) == ["CONFLICT"]
    denied = await site.gql(SEATS, as_user=staff[0])
    assert errors_of(denied) == ["FORBIDDEN"] and denied["data"] is None


def test_presets_stay_within_the_seat_limit() -> None:
    """A preset makes no state the API forbids: at most the default seats of GROUP_ANALYST, and ANALYST
    memberships only for those users."""
    from app.demo.presets import plan_preset

    for preset in ("small", "medium"):
        plan = plan_preset(preset, {k: k for k in ("admin", "leader", "mentor", "analyst")}, "x", Settings().analyst_seats)
        tables = {name: (columns, list(rows)) for name, columns, rows in plan.tables if name in ("user", "membership")}
        columns, users = tables["user"]
        roles = {row[columns.index("id")]: row[columns.index("site_roles")] for row in users}
        assert sum("GROUP_ANALYST" in r for r in roles.values()) <= Settings().analyst_seats, preset
        columns, memberships = tables["membership"]
        analysts = {row[columns.index("user_id")] for row in memberships if row[columns.index("role")] == "ANALYST"}
        assert analysts and all("GROUP_ANALYST" in roles[u] for u in analysts), preset


PEOPLE = """query($s: String!, $g: ID!) { users(filter: {search: $s}) { totalCount edges { node { firstName } } }
  group(id: $g) { members(search: $s) { totalCount edges { node { user { firstName } } } } } }"""


async def test_search_by_first_name_full_name_and_accents(site: Site) -> None:
    admin = await site.user("Ada", "Admin", kind="STAFF", roles="ADMIN", email="boss@example.com")
    group = await site.group("Class")
    people = [
        await site.user("Zoë", "Ångström", email="zoe@example.com"),
        await site.user("Zachary", "Oak", email="zach@example.com"),
        await site.user("Owen", "Zoellner", email="o.z@example.com"),
        await site.user("Mary Ann", "Smith", email="ms@example.com"),
    ]
    for person in people:
        await site.member(person, group)

    async def found(text: str) -> tuple[list[str], list[str]]:
        body = await site.gql(PEOPLE, {"s": text, "g": gid("Group", group)}, as_user=admin)
        assert "errors" not in body, body
        users = sorted(e["node"]["firstName"] for e in body["data"]["users"]["edges"])
        members = sorted(e["node"]["user"]["firstName"] for e in body["data"]["group"]["members"]["edges"])
        assert body["data"]["users"]["totalCount"] == len(users)
        return users, members

    cases = {
        "zoe": ["Owen", "Zoë"],  # first name Zoë (accent folded), last name Zoellner
        "ZOË": ["Owen", "Zoë"],
        "zoe ang": ["Zoë"],  # the full name
        "Zoë Ångström": ["Zoë"],
        "angs": ["Zoë"],  # the last name, accents folded
        "za": ["Zachary"],
        "zach@": ["Zachary"],  # an email prefix
        "mary ann s": ["Mary Ann"],
        "oe": [],  # a prefix, not a substring
        "ström": [],
    }
    for text, names in cases.items():
        users, members = await found(text)
        assert users == names and members == names, text
    # statement counts do not depend on how many match
    with site.statements() as few:
        await found("zach")
    with site.statements() as more:
        await found("z")
    assert few.count == more.count


WHO_ASKS = """query($u: ID!) { incomingAccessRequests { status requester { firstName email } }
  user(id: $u) { firstName email } }"""


async def test_the_subject_sees_who_asks_while_the_request_is_open(site: Site) -> None:
    asker = await site.user("Rae", kind="STAFF", email="rae@example.com")
    subject = await site.user("Sue", email="sue@example.com")
    stranger = await site.user("Tom")
    ask = await site.gql('mutation { requestAccess(email: "sue@example.com") { id } }', as_user=asker)
    request_id = ask["data"]["requestAccess"]["id"]

    async def seen(who: Any = subject) -> tuple[Any, Any, list[str]]:
        body = await site.gql(WHO_ASKS, {"u": gid("User", asker)}, as_user=who)
        requests = body["data"]["incomingAccessRequests"]
        return (requests[0]["requester"] if requests else None), body["data"]["user"], errors_of(body)

    assert await seen() == ({"firstName": "Rae", "email": "rae@example.com"}, {"firstName": "Rae", "email": "rae@example.com"}, [])
    assert (await seen(stranger))[:2] == (None, None)  # nobody else
    await site.gql('mutation($id: ID!) { respondToAccessRequest(id: $id, decision: GRANT) { id } }', {"id": request_id}, as_user=subject)
    assert (await seen())[1] == {"firstName": "Rae", "email": "rae@example.com"}
    # it gives nothing over the requester's progress
    progress = await site.gql("query($u: ID!) { user(id: $u) { courseProgress { percentCompleted } } }", {"u": gid("User", asker)}, as_user=subject)
    assert errors_of(progress) == ["FORBIDDEN"]
    await site.gql('mutation($id: ID!) { revokeAccess(id: $id) { id } }', {"id": request_id}, as_user=subject)
    requester, user, errors = await seen()
    assert requester == {"firstName": "Rae", "email": None} and user is None and errors == ["FORBIDDEN"]
    # denied: never again; expired: never
    again = await site.gql('mutation { requestAccess(email: "sue@example.com") { id } }', as_user=asker)
    second = again["data"]["requestAccess"]["id"]
    assert (await seen())[1] is not None
    await site.gql('mutation($id: ID!) { respondToAccessRequest(id: $id, decision: DENY) { id } }', {"id": second}, as_user=subject)
    assert (await seen())[1] is None
    other = await site.user("Uma", kind="STAFF", email="uma@example.com")
    await site.gql('mutation { requestAccess(email: "sue@example.com") { id } }', as_user=other)
    async with site.database.transaction() as session:
        await session.execute(update(AccessRequest).where(AccessRequest.requester_id == other.id).values(expires_at=utcnow() - timedelta(seconds=1)))
    body = await site.gql(WHO_ASKS, {"u": gid("User", other)}, as_user=subject)
    assert body["data"]["user"] is None


USAGE = """query($g: ID!, $h: ID!, $f: DateTime, $t: DateTime, $n: Boolean) {
  g: group(id: $g) { usageMinutes(from: $f, to: $t, includeNested: $n) }
  h: group(id: $h) { usageMinutes(from: $f, to: $t, includeNested: $n) } }"""


async def test_group_usage_minutes_per_period(site: Site) -> None:
    org = await site.group("Org")
    cls = await site.group("Class", org)
    leader, co = await site.user("Lea", kind="STAFF"), await site.user("Cor", kind="STAFF")
    mentor = await site.user("Men", kind="STAFF")
    await site.member(leader, org, "LEADER")
    await site.member(co, org, "LEADER")
    await site.member(mentor, cls, "MENTOR")
    amy, ben, cat = await site.user("Amy"), await site.user("Ben"), await site.user("Cat")
    await site.member(amy, cls)
    await site.member(ben, cls)
    await site.member(ben, org)  # in two groups of the tree: counted once
    async with site.database.transaction() as session:
        consent = AccessRequest(
            requester_id=leader.id, subject_email=cat.email, subject_email_normalized=cat.email_normalized,  # type: ignore[arg-type]
            subject_user_id=cat.id, status="GRANTED", expires_at=utcnow() + timedelta(days=30), decided_at=utcnow(),
        )
        session.add(consent)
        await session.flush()
    await site.member(cat, org, access_request_id=consent.id)  # the co-leader may not see Cat
    async with site.database.transaction() as session:
        for user, day, minutes in ((amy, 2, 10), (amy, 3, 20), (ben, 2, 5), (cat, 2, 7), (mentor, 2, 100), (amy, 9, 1)):
            session.add(Usage(user_id=user.id, day=date(2026, 3, day), minutes=minutes))

    async def minutes(who: Any, **v: Any) -> tuple[Any, Any]:
        body = await site.gql(USAGE, {"g": gid("Group", org), "h": gid("Group", cls), **v}, as_user=who)
        assert "errors" not in body, body
        return body["data"]["g"]["usageMinutes"], body["data"]["h"]["usageMinutes"]

    assert await minutes(leader) == (43, 36)
    assert await minutes(co) == (36, 36)
    assert await minutes(leader, n=False) == (12, 36)
    assert await minutes(leader, f="2026-03-03T00:00:00Z", t="2026-03-04T00:00:00Z") == (20, 20)
    assert await minutes(leader, f="2026-03-02T12:00:00Z", t="2026-03-09T00:00:00Z") == (20, 20)  # the 2nd starts before
    assert await minutes(leader, t="2026-03-03T00:00:00Z") == (22, 15)
    assert await minutes(leader, f="2999-01-01T00:00:00Z") == (0, 0)
    with site.statements() as counted:
        await minutes(leader)
    assert counted.count <= 4  # session, reach, both groups, then one usage statement for both
    bad = await site.gql(USAGE, {"g": gid("Group", org), "h": gid("Group", cls), "f": "2026-03-05T00:00:00Z", "t": "2026-03-01T00:00:00Z"}, as_user=leader)
    assert errors_of(bad) == ["BAD_USER_INPUT", "BAD_USER_INPUT"]
    # a member may not read it
    denied = await site.gql(USAGE, {"g": gid("Group", cls), "h": gid("Group", cls)}, as_user=amy)
    assert errors_of(denied) == ["FORBIDDEN", "FORBIDDEN"] and denied["data"] == {"g": {"usageMinutes": None}, "h": {"usageMinutes": None}}


async def test_pupils_with_licence_export(site: Site) -> None:
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    parent = await site.user("Dee", "Dale", kind="EXTERNAL")
    pip = await site.user("Pip", "Pym", external_id="S1", email="pip@example.com")
    pam = await site.user("Pam", "Pym", external_id="S2", email="pam@example.com")
    pat = await site.user("Pat", "Pym", external_id="S3")  # no link at all
    async with site.database.transaction() as session:
        session.add(GuardianLink(external_user_id=parent.id, pupil_id=pip.id, licence_type="PARENT_GUARDIAN"))
        session.add(GuardianLink(external_user_id=parent.id, pupil_id=pam.id, licence_type="OTHER"))
    headers = auth(await site.token(admin))
    response = await site.client.get("/exports/pupils-with-licence.xlsx?licenceType=PARENT_GUARDIAN", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == 'attachment; filename="pupils-with-licence.xlsx"'
    rows = sheet(response.content)
    assert rows == [["ID", "Student ID", "First Name", "Surname", "Email", "Licence Types"],
                    [pip.id, "S1", "Pip", "Pym", "pip@example.com", "PARENT_GUARDIAN"]]
    other = sheet((await site.client.get("/exports/pupils-with-licence.xlsx?licenceType=OTHER", headers=headers)).content)
    assert [r[0] for r in other[1:]] == [pam.id]
    # the two halves cover every learner with or without a holder of the type
    without = sheet((await site.client.get("/exports/pupils-without-licence.xlsx?licenceType=PARENT_GUARDIAN", headers=headers)).content)
    assert sorted(r[0] for r in rows[1:] + without[1:]) == sorted([pip.id, pam.id, pat.id])
    assert await site.count(AuditEvent, AuditEvent.action == "export.pupils_with_licence") == 2
    # who may not, and bad input: nothing is audited
    assert (await site.client.get("/exports/pupils-with-licence.xlsx", headers=headers)).status_code == 400
    assert (await site.client.get("/exports/pupils-with-licence.xlsx?licenceType=X", headers=headers)).status_code == 400
    assert (await site.client.get("/exports/pupils-with-licence.xlsx?licenceType=OTHER", headers=auth(await site.token(parent)))).status_code == 403
    assert (await site.client.get("/exports/pupils-with-licence.xlsx?licenceType=OTHER")).status_code == 401
    assert await site.count(AuditEvent, AuditEvent.action == "export.pupils_with_licence") == 2


def sheet(content: bytes) -> list[list[object]]:
    import io

    from openpyxl import load_workbook

    workbook = load_workbook(io.BytesIO(content), read_only=True)
    return [list(row) for row in workbook.active.iter_rows(values_only=True)]


OUTBOX = """query($s: EmailStatus, $a: String) { outboxEmails(status: $s, first: 2, after: $a) { totalCount
  pageInfo { hasNextPage endCursor } edges { node { to subject kind status attempts lastError sentAt } } } }"""


async def test_the_outbox_is_visible_to_site_admins(site: Site) -> None:
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    staff = await site.user("Sam", kind="STAFF")
    most = site.settings.email_max_attempts
    async with site.database.transaction() as session:
        for n, (attempts, sent, error) in enumerate([(1, True, None), (most, False, "550 no such user"), (1, False, "timed out"), (0, False, None)]):
            session.add(OutboxEmail(
                kind="access_request", to_address=f"to{n}@example.com", subject=f"Mail {n}", body="b",
                attempts=attempts, sent_at=utcnow() if sent else None, last_error=error,
            ))

    async def listed(**v: Any) -> dict[str, Any]:
        body = await site.gql(OUTBOX, v, as_user=admin)
        assert "errors" not in body, body
        return body["data"]["outboxEmails"]

    first = await listed()
    assert first["totalCount"] == 4 and first["pageInfo"]["hasNextPage"]
    assert [(e["node"]["to"], e["node"]["status"], e["node"]["attempts"], e["node"]["lastError"]) for e in first["edges"]] == [
        ("to3@example.com", "QUEUED", 0, None), ("to2@example.com", "QUEUED", 1, "timed out"),
    ]
    rest = await listed(a=first["pageInfo"]["endCursor"])
    assert [(e["node"]["to"], e["node"]["status"]) for e in rest["edges"]] == [("to1@example.com", "FAILED"), ("to0@example.com", "SENT")]
    assert rest["edges"][1]["node"]["sentAt"] is not None and not rest["pageInfo"]["hasNextPage"]
    assert [e["node"]["lastError"] for e in (await listed(s="FAILED"))["edges"]] == ["550 no such user"]
    assert (await listed(s="SENT"))["totalCount"] == 1 and (await listed(s="QUEUED"))["totalCount"] == 2
    with site.statements() as page:
        await listed(a=first["pageInfo"]["endCursor"])
    with site.statements() as other:
        await listed(s="QUEUED")
    assert page.count == other.count
    denied = await site.gql(OUTBOX, as_user=staff)
    assert errors_of(denied) == ["FORBIDDEN"] and denied["data"] is None
