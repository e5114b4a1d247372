"""External gateway: guardian links and what they show, account status, deletion, emailing users,
login statistics, unassigned active learners, and the gateway's XLSX exports."""

from __future__ import annotations

import io
import time
from datetime import UTC, date, datetime

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from app.store.models import (
    ApiToken,
    AuditEvent,
    GuardianLink,
    LoginEvent,
    Membership,
    OutboxEmail,
    Session,
    Usage,
    User,
)
from dataloaders.reach import load_reach_rows
from dataloaders.store import Store
from permissions.reach import Permission, Reach
from resolvers.views import UserSubject
from tests.site import PASSWORD, Site, errors_of, gid

LINK = """mutation($e: ID!, $p: ID!, $t: LicenceType!) {
  linkGuardian(externalUserId: $e, pupilId: $p, licenceType: $t) {
    id licenceType externalUser { firstName } pupil { firstName }
  }
}"""
PROFILE = "query($id: ID!) { user(id: $id) { firstName lastName email memberships { id } } }"
LOGIN = """mutation($email: String!, $password: String!) { login(email: $email, password: $password) { token } }"""
VIEWER = "{ viewer { firstName } }"


@pytest.fixture(autouse=True)
def gateway_routes(site: Site) -> None:
    """The gateway's export routes, as app/server.py registers them once they are merged."""
    from app.http import gateway_exports

    site.app.router.routes[0:0] = gateway_exports.routes


async def test_guardian_sees_linked_pupil_profile_and_progress_and_nothing_else(site: Site) -> None:
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    guardian = await site.user("Gwen", kind="EXTERNAL")
    pupil = await site.user("Pip")
    classmate = await site.user("Cal")
    school = await site.group("Class 4")
    await site.member(pupil, school)
    await site.member(classmate, school)

    refused = await site.gql(LINK, {"e": gid("User", guardian), "p": gid("User", pupil), "t": "PARENT_GUARDIAN"}, as_user=guardian)
    assert errors_of(refused) == ["FORBIDDEN"] and await site.count(GuardianLink) == 0
    # before the link: the pupil is invisible to the guardian, exactly like a missing user
    assert (await site.gql(PROFILE, {"id": gid("User", pupil)}, as_user=guardian))["data"]["user"] is None

    linked = await site.gql(LINK, {"e": gid("User", guardian), "p": gid("User", pupil), "t": "PARENT_GUARDIAN"}, as_user=admin)
    assert "errors" not in linked, linked
    link = linked["data"]["linkGuardian"]
    assert link["licenceType"] == "PARENT_GUARDIAN"
    assert link["externalUser"] == {"firstName": "Gwen"} and link["pupil"] == {"firstName": "Pip"}

    seen = await site.gql(PROFILE, {"id": gid("User", pupil)}, as_user=guardian)
    assert seen["data"]["user"] == {"firstName": "Pip", "lastName": "Tester", "email": None, "memberships": []}
    assert errors_of(seen) == ["FORBIDDEN"] and seen["errors"][0]["path"] == ["user", "email"]
    for other in (classmate, admin):
        assert (await site.gql(PROFILE, {"id": gid("User", other)}, as_user=guardian))["data"]["user"] is None
        assert (await site.gql("query($id: ID!) { node(id: $id) { id } }", {"id": gid("User", other)}, as_user=guardian))["data"]["node"] is None
    assert (await site.gql("query($id: ID!) { group(id: $id) { name } }", {"id": gid("Group", school)}, as_user=guardian))["data"]["group"] is None

    mine = await site.gql("{ viewer { guardianLinks { id licenceType pupil { firstName } } } }", as_user=guardian)
    assert mine["data"]["viewer"]["guardianLinks"] == [{"id": link["id"], "licenceType": "PARENT_GUARDIAN", "pupil": {"firstName": "Pip"}}]
    node = await site.gql("query($id: ID!) { node(id: $id) { ... on GuardianLink { pupil { firstName } } } }", {"id": link["id"]}, as_user=guardian)
    assert node["data"]["node"] == {"pupil": {"firstName": "Pip"}}
    # the classmate's leader sees nothing of the guardian (the link is absent, not half-shown)
    leader = await site.user("Lee", kind="STAFF")
    await site.member(leader, school, "LEADER")
    theirs = await site.gql("query($id: ID!) { user(id: $id) { guardianLinks { id } } }", {"id": gid("User", pupil)}, as_user=leader)
    assert theirs["data"]["user"]["guardianLinks"] == []
    assert (await site.gql("query($id: ID!) { node(id: $id) { id } }", {"id": link["id"]}, as_user=leader))["data"]["node"] is None

    # progress: the Reach gives the guardian VIEW_PROGRESS on the pupil only, and no contact or activity
    store = Store(site.database)
    reach = Reach.from_rows(guardian.id, [], await load_reach_rows(store, guardian.id))
    await store.close()
    pupil_subject, classmate_subject = UserSubject(pupil.id, frozenset({school.id})), UserSubject(classmate.id, frozenset({school.id}))
    assert reach.may(Permission.VIEW_PROGRESS, pupil_subject) and reach.may(Permission.VIEW_PROFILE, pupil_subject)
    assert not reach.may(Permission.VIEW_CONTACT, pupil_subject) and not reach.may(Permission.VIEW_ACTIVITY, pupil_subject)
    assert not reach.may(Permission.VIEW_PROGRESS, classmate_subject)

    # removing the pupil from the account ends the access on the next request
    removed = await site.gql("mutation($id: ID!) { unlinkGuardian(id: $id) }", {"id": link["id"]}, as_user=admin)
    assert removed == {"data": {"unlinkGuardian": True}}
    assert (await site.gql(PROFILE, {"id": gid("User", pupil)}, as_user=guardian))["data"]["user"] is None
    assert await site.count(AuditEvent, AuditEvent.action.in_(["guardian.link", "guardian.unlink"])) == 2


async def test_link_guardian_refusals_change_nothing(site: Site) -> None:
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    guardian = await site.user("Gwen", kind="EXTERNAL")
    pupil = await site.user("Pip")
    wrong_way = await site.gql(LINK, {"e": gid("User", pupil), "p": gid("User", guardian), "t": "OTHER"}, as_user=admin)
    assert errors_of(wrong_way) == ["BAD_USER_INPUT"] and wrong_way["errors"][0]["extensions"]["field"] == "externalUserId"
    missing = await site.gql(LINK, {"e": gid("User", guardian), "p": gid("User", 999999), "t": "OTHER"}, as_user=admin)
    assert errors_of(missing) == ["NOT_FOUND"]
    assert await site.count(GuardianLink) == 0
    first = await site.gql(LINK, {"e": gid("User", guardian), "p": gid("User", pupil), "t": "PUPIL"}, as_user=admin)
    assert "errors" not in first
    again = await site.gql(LINK, {"e": gid("User", guardian), "p": gid("User", pupil), "t": "OTHER"}, as_user=admin)
    assert errors_of(again) == ["CONFLICT"]
    assert await site.count(GuardianLink) == 1
    gone = await site.gql("mutation($id: ID!) { unlinkGuardian(id: $id) }", {"id": gid("GuardianLink", 999999)}, as_user=admin)
    assert errors_of(gone) == ["NOT_FOUND"] and await site.count(GuardianLink) == 1


async def test_denied_sign_in_is_identical_to_an_unknown_email_and_allow_restores(site: Site) -> None:
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    parent = await site.user("Dee", kind="EXTERNAL", email="dee@example.com")
    token = await site.token(parent)
    async with site.database.transaction() as session:
        session.add(ApiToken(user_id=parent.id, name="tool", token_hash="x" * 64))
    status = "mutation($ids: [ID!]!, $s: AccountStatus!) { setAccountStatus(userIds: $ids, status: $s) { firstName status } }"

    refused = await site.gql(status, {"ids": [gid("User", parent)], "s": "DENIED"}, as_user=parent)
    assert errors_of(refused) == ["FORBIDDEN"]
    assert (await site.gql(VIEWER, token=token))["data"]["viewer"] == {"firstName": "Dee"}

    denied = await site.gql(status, {"ids": [gid("User", parent)], "s": "DENIED"}, as_user=admin)
    assert denied == {"data": {"setAccountStatus": [{"firstName": "Dee", "status": "DENIED"}]}}
    # the open session stops working at once, and every session and token is revoked
    response = await site.client.post("/graphql", json={"query": VIEWER}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert await site.count(Session, Session.user_id == parent.id, Session.revoked_at.is_(None)) == 0
    assert await site.count(ApiToken, ApiToken.user_id == parent.id, ApiToken.revoked_at.is_(None)) == 0

    answers, timings = [], []
    for email in ("dee@example.com", "nobody@example.com"):
        started = time.perf_counter()
        body = await site.gql(LOGIN, {"email": email, "password": PASSWORD})
        timings.append(time.perf_counter() - started)
        answers.append(body)
    assert answers[0] == answers[1]
    assert errors_of(answers[0]) == ["UNAUTHENTICATED"] and answers[0]["data"] is None
    assert min(timings) > max(timings) / 10  # both ran one argon2 verification

    allowed = await site.gql(status, {"ids": [gid("User", parent)], "s": "ACTIVE"}, as_user=admin)
    assert allowed["data"]["setAccountStatus"] == [{"firstName": "Dee", "status": "ACTIVE"}]
    signed_in = await site.gql(LOGIN, {"email": "dee@example.com", "password": PASSWORD})
    assert (await site.gql(VIEWER, token=signed_in["data"]["login"]["token"]))["data"]["viewer"] == {"firstName": "Dee"}
    actions = await _actions(site)
    assert actions.count("user.deny") == 1 and actions.count("user.allow") == 1


async def _actions(site: Site) -> list[str]:
    async with site.database.session() as session:
        return list(await session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


async def test_set_account_status_refusals_change_nothing(site: Site) -> None:
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    owner = await site.user("Own", kind="STAFF", roles="OWNER")
    parent = await site.user("Dee", kind="EXTERNAL")
    status = "mutation($ids: [ID!]!) { setAccountStatus(userIds: $ids, status: DENIED) { status } }"
    unknown = await site.gql(status, {"ids": [gid("User", parent), gid("User", 999999)]}, as_user=admin)
    assert errors_of(unknown) == ["NOT_FOUND"]
    own = await site.gql(status, {"ids": [gid("User", parent), gid("User", admin)]}, as_user=admin)
    assert errors_of(own) == ["BAD_USER_INPUT"]
    above = await site.gql(status, {"ids": [gid("User", owner)]}, as_user=admin)
    assert errors_of(above) == ["FORBIDDEN"]
    assert await site.count(User, User.status == "DENIED") == 0
    assert await site.count(AuditEvent) == 0


async def test_delete_users_removes_memberships_and_links_and_keeps_the_audit_record(site: Site) -> None:
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    guardian = await site.user("Gwen", kind="EXTERNAL")
    idle = await site.user("Ida", email="ida@example.com")
    kept = await site.user("Kit")
    group = await site.group("Class")
    await site.member(idle, group)
    await site.member(kept, group)
    async with site.database.transaction() as session:
        session.add(GuardianLink(external_user_id=guardian.id, pupil_id=idle.id, licence_type="PARENT_GUARDIAN"))
    delete = "mutation($ids: [ID!]!) { deleteUsers(userIds: $ids) }"
    assert errors_of(await site.gql(delete, {"ids": [gid("User", idle)]}, as_user=kept)) == ["FORBIDDEN"]
    assert errors_of(await site.gql(delete, {"ids": [gid("User", idle), gid("User", admin)]}, as_user=admin)) == ["BAD_USER_INPUT"]
    assert await site.count(User) == 4

    body = await site.gql(delete, {"ids": [gid("User", idle), gid("User", guardian), gid("User", 999999)]}, as_user=admin)
    assert body == {"data": {"deleteUsers": 2}}
    assert await site.count(User) == 2
    assert await site.count(Membership) == 1 and await site.count(GuardianLink) == 0
    async with site.database.session() as session:
        record = await session.scalar(select(AuditEvent).where(AuditEvent.action == "user.delete", AuditEvent.target_id == idle.id))
    assert record is not None and "ida@example.com" in record.detail


async def test_external_user_deletes_own_account_with_password(site: Site) -> None:
    parent = await site.user("Dee", kind="EXTERNAL")
    learner = await site.user("Lou")
    pupil = await site.user("Pip")
    async with site.database.transaction() as session:
        session.add(GuardianLink(external_user_id=parent.id, pupil_id=pupil.id, licence_type="PARENT_GUARDIAN"))
    mutation = "mutation($p: String!) { deleteMyAccount(password: $p) }"
    assert errors_of(await site.gql(mutation, {"p": PASSWORD}, as_user=learner)) == ["FORBIDDEN"]
    wrong = await site.gql(mutation, {"p": "not my password"}, as_user=parent)
    assert errors_of(wrong) == ["BAD_USER_INPUT"] and wrong["errors"][0]["extensions"]["field"] == "password"
    assert await site.count(User, User.id == parent.id) == 1

    token = await site.token(parent)
    assert await site.gql(mutation, {"p": PASSWORD}, as_user=parent) == {"data": {"deleteMyAccount": True}}
    assert await site.count(User, User.id == parent.id) == 0 and await site.count(GuardianLink) == 0
    assert await site.count(User, User.id == pupil.id) == 1
    response = await site.client.post("/graphql", json={"query": VIEWER}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert await site.count(AuditEvent, AuditEvent.action == "user.delete_self", AuditEvent.target_id == parent.id) == 1


async def test_email_users_queues_one_outbox_message_each(site: Site) -> None:
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    first = await site.user("Dee", kind="EXTERNAL", email="dee@example.com")
    second = await site.user("Eve", kind="EXTERNAL", email="eve@example.com")
    mutation = "mutation($ids: [ID!]!, $s: String!, $b: String!) { emailUsers(userIds: $ids, subject: $s, body: $b) }"
    ids = [gid("User", first), gid("User", second)]
    injected = await site.gql(mutation, {"ids": ids, "s": "Hi\r\nBcc: x@example.com", "b": "Text"}, as_user=admin)
    assert errors_of(injected) == ["BAD_USER_INPUT"]
    assert errors_of(await site.gql(mutation, {"ids": ids, "s": "Hi", "b": "Text"}, as_user=first)) == ["FORBIDDEN"]
    assert await site.count(OutboxEmail) == 0

    assert await site.gql(mutation, {"ids": ids, "s": "Reports are ready", "b": "Download them."}, as_user=admin) == {"data": {"emailUsers": 2}}
    async with site.database.session() as session:
        queued = sorted(await session.scalars(select(OutboxEmail.to_address).where(OutboxEmail.sent_at.is_(None))))
    assert queued == ["dee@example.com", "eve@example.com"]


STATS = """query($from: DateTime!, $to: DateTime!, $i: StatisticsInterval, $l: LicenceType) {
  loginStatistics(from: $from, to: $to, interval: $i, licenceType: $l) {
    totalLogins buckets { start logins failedLogins uniqueUsers }
  }
}"""


def _at(day: int, hour: int = 12, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


async def test_login_statistics_buckets_include_empty_ones(site: Site) -> None:
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    parent = await site.user("Dee", kind="EXTERNAL")
    pupil_self = await site.user("Pam", kind="EXTERNAL")
    pupil = await site.user("Pip")
    async with site.database.transaction() as session:
        session.add(GuardianLink(external_user_id=parent.id, pupil_id=pupil.id, licence_type="PARENT_GUARDIAN"))
        session.add(GuardianLink(external_user_id=pupil_self.id, pupil_id=pupil.id, licence_type="PUPIL"))
        # Mon 2 March 2026 .. ; Wednesday 4th and Thursday 5th have nothing
        for user, at, ok in [
            (parent, _at(2, 8), True), (parent, _at(2, 9), True), (pupil_self, _at(2, 10), True),
            (parent, _at(3), False), (None, _at(3, 13), False),
            (pupil_self, _at(6), True),
            (parent, _at(9), True),  # the next ISO week
            (parent, _at(1, 12, 4), True),  # April
            (parent, _at(2, 0, 1), True),  # before the range
        ]:
            session.add(LoginEvent(user_id=user.id if user else None, email_normalized="x", success=ok, at=at))

    day = await site.gql(STATS, {"from": "2026-03-02T00:00:00Z", "to": "2026-03-07T00:00:00Z", "i": "DAY"}, as_user=admin)
    assert "errors" not in day, day
    stats = day["data"]["loginStatistics"]
    assert [(b["start"][:10], b["logins"], b["failedLogins"], b["uniqueUsers"]) for b in stats["buckets"]] == [
        ("2026-03-02", 3, 0, 2), ("2026-03-03", 0, 2, 0), ("2026-03-04", 0, 0, 0), ("2026-03-05", 0, 0, 0),
        ("2026-03-06", 1, 0, 1),
    ]
    assert stats["totalLogins"] == 4

    week = await site.gql(STATS, {"from": "2026-03-04T00:00:00Z", "to": "2026-03-16T00:00:00Z", "i": "WEEK"}, as_user=admin)
    assert [(b["start"][:10], b["logins"], b["failedLogins"]) for b in week["data"]["loginStatistics"]["buckets"]] == [
        ("2026-03-02", 1, 0), ("2026-03-09", 1, 0),  # Monday starts; the 2nd and 3rd fall before `from`
    ]
    month = await site.gql(
        STATS, {"from": "2026-02-01T00:00:00Z", "to": "2026-05-01T00:00:00Z", "i": "MONTH", "l": "PARENT_GUARDIAN"}, as_user=admin
    )
    assert [(b["start"][:10], b["logins"], b["failedLogins"], b["uniqueUsers"]) for b in month["data"]["loginStatistics"]["buckets"]] == [
        ("2026-02-01", 0, 0, 0), ("2026-03-01", 3, 1, 1), ("2026-04-01", 1, 0, 1),
    ]
    backwards = await site.gql(STATS, {"from": "2026-03-07T00:00:00Z", "to": "2026-03-02T00:00:00Z"}, as_user=admin)
    assert errors_of(backwards) == ["BAD_USER_INPUT"]
    too_many = await site.gql(STATS, {"from": "2000-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, as_user=admin)
    assert errors_of(too_many) == ["BAD_USER_INPUT"]
    assert errors_of(await site.gql(STATS, {"from": "2026-03-02T00:00:00Z", "to": "2026-03-07T00:00:00Z"}, as_user=parent)) == ["FORBIDDEN"]


async def test_unassigned_active_student_count(site: Site) -> None:
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    active = await site.user("Act")
    idle = await site.user("Idl")
    placed = await site.user("Pla")
    staff = await site.user("Sta", kind="STAFF")
    await site.member(placed, await site.group("Class"))
    async with site.database.transaction() as session:
        for user, minutes in ((active, 1), (idle, 0), (placed, 30), (staff, 40)):
            session.add(Usage(user_id=user.id, day=date(2026, 3, 2), minutes=minutes))
    query = "{ unassignedActiveStudentCount }"
    assert await site.gql(query, as_user=admin) == {"data": {"unassignedActiveStudentCount": 1}}
    assert errors_of(await site.gql(query, as_user=active)) == ["BAD_USER_INPUT"]  # anyone else names a scope


def _sheet(content: bytes) -> list[list[object]]:
    workbook = load_workbook(io.BytesIO(content), read_only=True)
    return [list(row) for row in workbook.active.iter_rows(values_only=True)]


async def test_gateway_exports(site: Site) -> None:
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    parent = await site.user("Dee", "Dale", kind="EXTERNAL", email="dee@example.com")
    other = await site.user("Eve", "Earl", kind="EXTERNAL", email="eve@example.com", status="DENIED")
    pip = await site.user("Pip", "Pym", external_id="S1")
    pam = await site.user("Pam", "Pym", external_id="S2")
    async with site.database.transaction() as session:
        session.add(GuardianLink(external_user_id=parent.id, pupil_id=pip.id, licence_type="PARENT_GUARDIAN"))
        session.add(GuardianLink(external_user_id=parent.id, pupil_id=pam.id, licence_type="OTHER"))
    headers = {"Authorization": f"Bearer {await site.token(admin)}"}

    response = await site.client.get("/exports/external-users.xlsx", headers=headers)
    assert response.status_code == 200, response.text
    rows = _sheet(response.content)
    assert rows[0] == ["ID", "Title", "Surname", "First Name", "Email", "Account Created", "ADR", "Access", "Last Login", "Pupils", "Licence Types"]
    assert [r[:5] + r[6:8] + r[9:] for r in rows[1:]] == [
        [parent.id, None, "Dale", "Dee", "dee@example.com", "Yes", "Allowed", "Pip Pym; Pam Pym", "OTHER; PARENT_GUARDIAN"],
        [other.id, None, "Earl", "Eve", "eve@example.com", "Yes", "Denied", None, None],
    ]
    assert isinstance(rows[1][5], datetime)
    filtered = await site.client.get("/exports/external-users.xlsx?licenceType=OTHER", headers=headers)
    assert [r[0] for r in _sheet(filtered.content)[1:]] == [parent.id]

    without = await site.client.get("/exports/pupils-without-licence.xlsx?licenceType=PARENT_GUARDIAN", headers=headers)
    assert without.status_code == 200
    assert _sheet(without.content)[1:] == [[pam.id, "S2", "Pam", "Pym", pam.email, "OTHER"]]

    assert (await site.client.get("/exports/pupils-without-licence.xlsx", headers=headers)).status_code == 400
    parent_headers = {"Authorization": f"Bearer {await site.token(parent)}"}
    assert (await site.client.get("/exports/external-users.xlsx", headers=parent_headers)).status_code == 403
    assert (await site.client.get("/exports/external-users.xlsx")).status_code == 401



async def test_user_filter_conditions_for_the_users_list(site: Site) -> None:
    """The SQL conditions the users(filter:) list uses for licenceType, noPupils, noGroups and active."""
    from dataloaders.guardians import has_no_pupils, holds_licence
    from dataloaders.imports import has_no_membership, is_active_learner

    parent = await site.user("Dee", kind="EXTERNAL")
    lonely = await site.user("Lon", kind="EXTERNAL")
    pupil = await site.user("Pip")
    async with site.database.transaction() as session:
        session.add(GuardianLink(external_user_id=parent.id, pupil_id=pupil.id, licence_type="PUPIL"))
        session.add(Usage(user_id=pupil.id, day=date(2026, 3, 2), minutes=2))

    async def ids(*where: object) -> set[int]:
        async with site.database.session() as session:
            return set(await session.scalars(select(User.id).where(*where)))

    assert await ids(holds_licence(User.id, "PUPIL")) == {parent.id}
    assert await ids(holds_licence(User.id, "OTHER")) == set()
    assert await ids(User.kind == "EXTERNAL", has_no_pupils(User.id)) == {lonely.id}
    assert await ids(has_no_membership(User.id), is_active_learner(User.id)) == {pupil.id}
