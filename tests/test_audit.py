"""The audit log: every mutation writes its audit events on success and none on failure (the failure also
leaves every table exactly as it was); auditLog for site admins, keyset-paginated; export downloads audited.

`test_every_mutation_has_an_audit_case` walks the Mutation type: a mutation added without a case here
fails it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.schema import build_schema
from app.store.models import (
    AccessRequest,
    AccessRequestBlock,
    ApiToken,
    AuditEvent,
    Course,
    Enrollment,
    GuardianLink,
    Step,
    Submission,
    User,
    utcnow,
)
from tests.dump import differences, dump
from tests.site import PASSWORD, Site, errors_of, gid

# mutations that write no audit_event, and why
EXEMPT = {"login": "every sign-in, failed or not, is a login_event row (see test_throttle, test_sessions)"}

Call = tuple[str, dict[str, Any], User | None]


@dataclass
class Case:
    ok: Call
    bad: Call
    actions: set[str]
    upload: bool | str = False  # a str: the upload mutation (the call's query is then the file, str or bytes)


CASES: dict[str, Callable[[Site], Awaitable[Case]]] = {}


def case(name: str) -> Callable[[Callable[[Site], Awaitable[Case]]], Callable[[Site], Awaitable[Case]]]:
    def register(fn: Callable[[Site], Awaitable[Case]]) -> Callable[[Site], Awaitable[Case]]:
        CASES[name] = fn
        return fn

    return register


async def people(site: Site) -> tuple[User, User, User]:
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    staff = await site.user("Sam", kind="STAFF")
    learner = await site.user("Lea", external_id="S1")
    return admin, staff, learner


async def access_request(site: Site, requester: User, subject: User, status: str = "PENDING") -> AccessRequest:
    row = AccessRequest(
        requester_id=requester.id, subject_email=subject.email, subject_email_normalized=subject.email_normalized,  # type: ignore[arg-type]
        subject_user_id=subject.id, status=status, expires_at=utcnow() + timedelta(days=30),
        decided_at=utcnow() if status != "PENDING" else None,
    )
    async with site.database.transaction() as session:
        session.add(row)
    return row


@case("logout")
async def _logout(site: Site) -> Case:
    _, staff, _ = await people(site)
    return Case(("mutation { logout }", {}, staff), ("mutation { logout }", {}, None), {"session.logout"})


@case("createApiToken")
async def _create_api_token(site: Site) -> Case:
    _, staff, _ = await people(site)
    q = "mutation($n: String!) { createApiToken(name: $n) { name } }"
    return Case((q, {"n": "ci"}, staff), (q, {"n": "  "}, staff), {"api_token.create"})


@case("revokeApiToken")
async def _revoke_api_token(site: Site) -> Case:
    admin, staff, _ = await people(site)
    async with site.database.transaction() as session:
        row = ApiToken(user_id=staff.id, name="ci", token_hash="f" * 64, expires_at=utcnow() + timedelta(days=1))
        session.add(row)
    q = "mutation($id: ID!) { revokeApiToken(id: $id) { revokedAt } }"
    return Case((q, {"id": gid("ApiToken", row)}, staff), (q, {"id": gid("ApiToken", row)}, admin), {"api_token.revoke"})


@case("createUser")
async def _create_user(site: Site) -> Case:
    admin, staff, _ = await people(site)
    q = "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }"
    new = {"email": "new@example.com", "firstName": "N", "lastName": "U", "kind": "LEARNER"}
    return Case((q, {"i": new}, admin), (q, {"i": {**new, "email": staff.email}}, admin), {"user.create"})


@case("updateUser")
async def _update_user(site: Site) -> Case:
    """A new password: audited with the changed field names (never the password); sessions end with it."""
    admin, staff, learner = await people(site)
    q = "mutation($u: ID!, $i: UpdateUserInput!) { updateUser(id: $u, input: $i) { id } }"
    return Case((q, {"u": gid("User", learner), "i": {"company": "Acme", "password": "a new password"}}, admin),
                (q, {"u": gid("User", learner), "i": {"company": "Acme", "email": staff.email}}, admin), {"user.update"})


@case("setSiteRoles")
async def _set_site_roles(site: Site) -> Case:
    admin, staff, _ = await people(site)
    q = "mutation($u: ID!, $r: [SiteRole!]!) { setSiteRoles(userId: $u, roles: $r) { id } }"
    return Case((q, {"u": gid("User", staff), "r": ["GROUP_ANALYST"]}, admin),
                (q, {"u": gid("User", staff), "r": ["OWNER"]}, admin), {"user.roles"})


@case("setAccountStatus")
async def _set_account_status(site: Site) -> Case:
    admin, staff, learner = await people(site)
    q = "mutation($u: [ID!]!) { setAccountStatus(userIds: $u, status: DENIED) { id } }"
    return Case((q, {"u": [gid("User", staff), gid("User", learner)]}, admin),
                (q, {"u": [gid("User", staff), gid("User", 9999)]}, admin), {"user.deny"})


@case("deleteUsers")
async def _delete_users(site: Site) -> Case:
    admin, _staff, learner = await people(site)
    q = "mutation($u: [ID!]!) { deleteUsers(userIds: $u) }"
    return Case((q, {"u": [gid("User", learner)]}, admin),
                (q, {"u": [gid("User", learner), gid("User", admin)]}, admin), {"user.delete"})


@case("createGroup")
async def _create_group(site: Site) -> Case:
    admin, *_ = await people(site)
    q = "mutation($i: CreateGroupInput!) { createGroup(input: $i) { id } }"
    return Case((q, {"i": {"name": "Class"}}, admin), (q, {"i": {"name": " "}}, admin), {"group.create"})


# group and membership mutations
@case("updateGroup")
async def _update_group(site: Site) -> Case:
    admin, *_ = await people(site)
    top = await site.group("Top")
    child = await site.group("Child", top)
    q = "mutation($id: ID!, $i: UpdateGroupInput!) { updateGroup(id: $id, input: $i) { id } }"
    return Case((q, {"id": gid("Group", child), "i": {"name": "Renamed", "makeRoot": True}}, admin),
                (q, {"id": gid("Group", top), "i": {"parentId": gid("Group", child)}}, admin), {"group.update"})


@case("deleteGroup")
async def _delete_group(site: Site) -> Case:
    admin, _, learner = await people(site)
    top = await site.group("Top")
    await site.group("Child", top)
    await site.member(learner, top)
    q = "mutation($id: ID!, $n: Boolean) { deleteGroup(id: $id, deleteNested: $n) }"
    return Case((q, {"id": gid("Group", top), "n": True}, admin), (q, {"id": gid("Group", top)}, admin), {"group.delete"})


@case("addMembers")
async def _add_members(site: Site) -> Case:
    admin, staff, learner = await people(site)
    group = await site.group("Class")
    q = "mutation($g: ID!, $u: [ID!]!) { addMembers(groupId: $g, userIds: $u) { id } }"
    return Case((q, {"g": gid("Group", group), "u": [gid("User", staff), gid("User", learner)]}, admin),
                (q, {"g": gid("Group", group), "u": [gid("User", learner), gid("User", 9999)]}, admin), {"membership.add"})


@case("changeMemberRole")
async def _change_member_role(site: Site) -> Case:
    admin, staff, _ = await people(site)
    group = await site.group("Class")
    membership = await site.member(staff, group)
    q = "mutation($m: ID!, $r: GroupRole!) { changeMemberRole(membershipId: $m, role: $r) { id } }"
    return Case((q, {"m": gid("Membership", membership), "r": "MENTOR"}, admin),
                (q, {"m": gid("Membership", membership), "r": "ANALYST"}, admin), {"membership.role"})


@case("removeMembers")
async def _remove_members(site: Site) -> Case:
    admin, staff, learner = await people(site)
    group = await site.group("Class")
    one = await site.member(staff, group)
    two = await site.member(learner, group)
    q = "mutation($m: [ID!]!) { removeMembers(membershipIds: $m) }"
    return Case((q, {"m": [gid("Membership", one), gid("Membership", two)]}, admin),
                (q, {"m": [gid("Membership", one), gid("Membership", 9999)]}, admin), {"membership.remove"})


@case("requestAccess")
async def _request_access(site: Site) -> Case:
    _, staff, learner = await people(site)
    q = "mutation($e: String!) { requestAccess(email: $e) { id } }"
    return Case((q, {"e": learner.email}, staff), (q, {"e": staff.email}, staff), {"access_request.create"})


@case("respondToAccessRequest")
async def _respond(site: Site) -> Case:
    _, staff, learner = await people(site)
    row = await access_request(site, staff, learner)
    q = "mutation($id: ID!) { respondToAccessRequest(id: $id, decision: GRANT) { status } }"
    return Case((q, {"id": gid("AccessRequest", row)}, learner), (q, {"id": gid("AccessRequest", row)}, staff),
                {"access_request.grant"})


@case("revokeAccess")
async def _revoke(site: Site) -> Case:
    _, staff, learner = await people(site)
    row = await access_request(site, staff, learner, "GRANTED")
    group = await site.group("Class")
    await site.member(staff, group, "LEADER")
    await site.member(learner, group, access_request_id=row.id)
    q = "mutation($id: ID!) { revokeAccess(id: $id) { status } }"
    return Case((q, {"id": gid("AccessRequest", row)}, learner), (q, {"id": gid("AccessRequest", row)}, staff),
                {"access_request.revoke"})


@case("cancelAccessRequest")
async def _cancel(site: Site) -> Case:
    _, staff, learner = await people(site)
    row = await access_request(site, staff, learner)
    q = "mutation($id: ID!) { cancelAccessRequest(id: $id) }"
    return Case((q, {"id": gid("AccessRequest", row)}, staff), (q, {"id": gid("AccessRequest", row)}, learner),
                {"access_request.cancel"})


@case("blockAccessRequester")
async def _block(site: Site) -> Case:
    _, staff, learner = await people(site)
    row = await access_request(site, staff, learner)
    q = "mutation($id: ID!) { blockAccessRequester(accessRequestId: $id) { status } }"
    return Case((q, {"id": gid("AccessRequest", row)}, learner), (q, {"id": gid("AccessRequest", row)}, staff),
                {"access_request.deny", "access_request.block"})


@case("unblockAccessRequester")
async def _unblock(site: Site) -> Case:
    _, staff, learner = await people(site)
    async with site.database.transaction() as session:
        session.add(AccessRequestBlock(blocker_id=learner.id, requester_id=staff.id))
    q = "mutation($u: ID!) { unblockAccessRequester(userId: $u) }"
    return Case((q, {"u": gid("User", staff)}, learner), (q, {"u": "bm9wZQ=="}, learner), {"access_request.unblock"})


@case("linkGuardian")
async def _link(site: Site) -> Case:
    admin, staff, learner = await people(site)
    parent = await site.user("Pat", kind="EXTERNAL")
    q = "mutation($e: ID!, $p: ID!) { linkGuardian(externalUserId: $e, pupilId: $p, licenceType: PARENT_GUARDIAN) { id } }"
    return Case((q, {"e": gid("User", parent), "p": gid("User", learner)}, admin),
                (q, {"e": gid("User", staff), "p": gid("User", learner)}, admin), {"guardian.link"})


@case("unlinkGuardian")
async def _unlink(site: Site) -> Case:
    admin, staff, learner = await people(site)
    parent = await site.user("Pat", kind="EXTERNAL")
    row = GuardianLink(external_user_id=parent.id, pupil_id=learner.id, licence_type="PUPIL")  # type: ignore[arg-type]
    async with site.database.transaction() as session:
        session.add(row)
    q = "mutation($id: ID!) { unlinkGuardian(id: $id) }"
    return Case((q, {"id": gid("GuardianLink", row)}, admin), (q, {"id": gid("GuardianLink", row)}, staff),
                {"guardian.unlink"})


@case("deleteMyAccount")
async def _delete_my_account(site: Site) -> Case:
    _, staff, _ = await people(site)
    parent = await site.user("Pat", kind="EXTERNAL")
    q = "mutation($p: String!) { deleteMyAccount(password: $p) }"
    return Case((q, {"p": PASSWORD}, parent), (q, {"p": PASSWORD}, staff), {"user.delete_self"})


@case("emailUsers")
async def _email_users(site: Site) -> Case:
    admin, staff, learner = await people(site)
    q = "mutation($u: [ID!]!) { emailUsers(userIds: $u, subject: \"Hi\", body: \"Hello\") }"
    return Case((q, {"u": [gid("User", staff), gid("User", learner)]}, admin),
                (q, {"u": [gid("User", staff), gid("User", 9999)]}, admin), {"user.email"})


@case("importGroupAssignments")
async def _import(site: Site) -> Case:
    admin, _, _ = await people(site)
    group = await site.group("Class")
    ok = f"student_id,groups\nS1,{group.slug}\n"
    bad = f"student_id,groups\nS1,{group.slug}\nS404,{group.slug}\n"
    return Case((ok, {}, admin), (bad, {}, admin), {"import.group_assignments"}, upload=True)


ROSTER_IMPORT = "mutation($file: Upload!) { importOneRoster(file: $file) { status } }"


@case("importOneRoster")
async def _roster_import(site: Site) -> Case:
    from tests.oneroster import bundle, school_district

    admin, staff, _ = await people(site)
    content = bundle(school_district())
    return Case((content, {}, admin), (content, {}, staff), {"roster.import"}, upload=ROSTER_IMPORT)  # type: ignore[arg-type]


async def held_roster_sync(site: Site) -> tuple[User, User, str]:
    """A district applied, then a run HELD (it would end half of the memberships); the setup's own audit
    events are cleared, so that the case sees only the decision's."""
    from app.services.rostering import run_import
    from tests.oneroster import bundle, school_district

    admin, staff, _ = await people(site)
    district = school_district()
    await run_import(site.database.transaction, site.settings, admin.id, bundle(district), False, "cli")
    district.enrollments = [e for e in district.enrollments if e[1] not in ("K3", "K4")]
    held = await run_import(site.database.transaction, site.settings, admin.id, bundle(district), False, "cli")
    assert held.sync.status == "HELD"
    async with site.database.transaction() as session:
        await session.execute(AuditEvent.__table__.delete())
    return admin, staff, gid("RosterSync", held.sync.id)  # type: ignore[arg-type]


@case("approveRosterSync")
async def _roster_approve(site: Site) -> Case:
    admin, staff, held = await held_roster_sync(site)
    q = "mutation($id: ID!) { approveRosterSync(id: $id) { status } }"
    return Case((q, {"id": held}, admin), (q, {"id": held}, staff), {"roster.approve"})


@case("rejectRosterSync")
async def _roster_reject(site: Site) -> Case:
    admin, staff, held = await held_roster_sync(site)
    q = "mutation($id: ID!) { rejectRosterSync(id: $id) { status } }"
    return Case((q, {"id": held}, admin), (q, {"id": held}, staff), {"roster.reject"})


# courses, progress and review
async def course(site: Site, kinds: tuple[str, ...] = ("LESSON", "ASSIGNMENT")) -> tuple[Course, list[Step]]:
    async with site.database.transaction() as session:
        row = Course(name="Algebra")
        session.add(row)
        await session.flush()
        steps = [Step(course_id=row.id, title=f"Step {n}", position=n, kind=k) for n, k in enumerate(kinds, 1)]  # type: ignore[arg-type]
        session.add_all(steps)
    return row, steps


async def enrolled(site: Site, user: User, row: Course) -> None:
    async with site.database.transaction() as session:
        session.add(Enrollment(user_id=user.id, course_id=row.id))  # type: ignore[arg-type]


@case("createCourse")
async def _create_course(site: Site) -> Case:
    admin, *_ = await people(site)
    q = "mutation($s: [StepInput!]!) { createCourse(name: \"Algebra\", steps: $s) { id } }"
    return Case((q, {"s": [{"title": "Intro", "kind": "LESSON"}]}, admin),
                (q, {"s": [{"title": "Intro", "kind": "LESSON"}, {"title": " ", "kind": "QUIZ"}]}, admin), {"course.create"})


@case("enroll")
async def _enroll(site: Site) -> Case:
    admin, _, learner = await people(site)
    row, _ = await course(site)
    q = "mutation($u: [ID!]!, $c: ID!) { enroll(userIds: $u, courseId: $c) }"
    return Case((q, {"u": [gid("User", learner)], "c": gid("Course", row)}, admin),
                (q, {"u": [gid("User", learner), gid("User", 9999)], "c": gid("Course", row)}, admin), {"course.enroll"})


@case("recordProgress")
async def _record_progress(site: Site) -> Case:
    admin, _, learner = await people(site)
    row, steps = await course(site)
    await enrolled(site, learner, row)
    q = "mutation($e: [ProgressEventInput!]!) { recordProgress(events: $e) }"
    good = {"userId": gid("User", learner), "kind": "VIEWED", "stepId": gid("Step", steps[0])}
    bad = {"userId": gid("User", learner), "kind": "VIEWED", "stepId": gid("Step", 9999)}
    return Case((q, {"e": [good]}, admin), (q, {"e": [good, bad]}, admin), {"progress.record"})


@case("reviewSubmission")
async def _review(site: Site) -> Case:
    admin, _, learner = await people(site)
    row, steps = await course(site)
    await enrolled(site, learner, row)
    async with site.database.transaction() as session:
        work = Submission(user_id=learner.id, step_id=steps[1].id, course_id=row.id, body="My work", status="NEEDS_REVIEW")  # type: ignore[arg-type]
        session.add(work)
    q = "mutation($id: ID!, $p: Int) { reviewSubmission(id: $id, points: $p, feedback: \"Good\") { id } }"
    return Case((q, {"id": gid("Submission", work)}, admin), (q, {"id": gid("Submission", work), "p": 5}, admin),
                {"submission.review"})



# --- export jobs and schedules ------------------------------------------------------------------------------

START_ADMIN_EXPORTS = {
    "startGroupsExport": "", "startMembershipsExport": "", "startUnassignedStudentsExport": "",
    "startExternalUsersExport": "", "startPupilsWithoutLicenceExport": "(licenceType: PUPIL)",
    "startPupilsWithLicenceExport": "(licenceType: PUPIL)",
}


def _admin_export_case(name: str, arguments: str) -> None:
    @case(name)
    async def _start(site: Site) -> Case:
        admin, staff, _ = await people(site)
        q = f"mutation {{ {name}{arguments} {{ id status }} }}"
        return Case((q, {}, admin), (q, {}, staff), {"export_job.start"})


for _name, _arguments in START_ADMIN_EXPORTS.items():
    _admin_export_case(_name, _arguments)


@case("startProgressExport")
async def _start_progress_export(site: Site) -> Case:
    admin, _, _ = await people(site)
    group = await site.group("Class")
    q = "mutation($g: ID!, $c: ID) { startProgressExport(groupId: $g, courseId: $c) { id } }"
    return Case((q, {"g": gid("Group", group)}, admin), (q, {"g": gid("Group", group), "c": gid("Course", 999)}, admin),
                {"export_job.start"})


async def schedule_row(site: Site, owner: User) -> Any:
    from app.services.reports import ExportRequest
    from app.store.models import ExportSchedule

    row = ExportSchedule(
        owner_id=owner.id, report="GROUPS", params=ExportRequest("GROUPS").to_json(), frequency="DAILY",  # type: ignore[arg-type]
        time_of_day="07:00", time_zone="UTC", next_run_at=utcnow() + timedelta(days=1),
    )
    async with site.database.transaction() as session:
        session.add(row)
    return row


@case("createExportSchedule")
async def _create_export_schedule(site: Site) -> Case:
    admin, _, _ = await people(site)
    q = "mutation($i: CreateExportScheduleInput!) { createExportSchedule(input: $i) { id } }"
    good = {"report": "GROUPS", "frequency": "WEEKLY", "weekday": "MONDAY", "time": "07:00", "timeZone": "Europe/Paris"}
    return Case((q, {"i": good}, admin), (q, {"i": {**good, "timeZone": "Nowhere/Else"}}, admin),
                {"export_schedule.create"})


@case("updateExportSchedule")
async def _update_export_schedule(site: Site) -> Case:
    admin, _, _ = await people(site)
    row = await schedule_row(site, admin)
    q = "mutation($id: ID!, $t: String) { updateExportSchedule(id: $id, input: {time: $t}) { id } }"
    return Case((q, {"id": gid("ExportSchedule", row), "t": "08:15"}, admin),
                (q, {"id": gid("ExportSchedule", row), "t": "25:00"}, admin), {"export_schedule.update"})


@case("pauseExportSchedule")
async def _pause_export_schedule(site: Site) -> Case:
    admin, staff, _ = await people(site)
    row = await schedule_row(site, admin)
    q = "mutation($id: ID!) { pauseExportSchedule(id: $id) { paused } }"
    return Case((q, {"id": gid("ExportSchedule", row)}, admin), (q, {"id": gid("ExportSchedule", row)}, staff),
                {"export_schedule.pause"})


@case("deleteExportSchedule")
async def _delete_export_schedule(site: Site) -> Case:
    admin, staff, _ = await people(site)
    row = await schedule_row(site, admin)
    q = "mutation($id: ID!) { deleteExportSchedule(id: $id) }"
    return Case((q, {"id": gid("ExportSchedule", row)}, admin), (q, {"id": gid("ExportSchedule", row)}, staff),
                {"export_schedule.delete"})

IMPORT = "mutation($file: Upload!) { importGroupAssignments(file: $file) { applied errors { line } } }"


async def run(site: Site, call: Call, upload: bool | str) -> dict[str, Any]:
    query, variables, viewer = call
    if not upload:
        return await site.gql(query, variables, as_user=viewer)
    mutation = upload if isinstance(upload, str) else IMPORT
    content = query if isinstance(query, bytes) else query.encode()
    response = await site.client.post(
        "/graphql",
        data={"operations": json.dumps({"query": mutation, "variables": {"file": None}}), "map": '{"0": ["variables.file"]}'},
        files={"0": ("a.csv", content, "text/csv")},
        headers={"Authorization": f"Bearer {await site.token(viewer)}", "X-Requested-With": "1"},  # type: ignore[arg-type]
    )
    return response.json()


def failed(body: dict[str, Any]) -> bool:
    if body.get("errors"):
        return True
    payload = next(iter((body.get("data") or {}).values()), None)
    return isinstance(payload, dict) and payload.get("applied") is False


def test_every_mutation_has_an_audit_case() -> None:
    names = set(build_schema()._schema.mutation_type.fields)  # type: ignore[union-attr]
    assert "createUser" in names
    missing = names - CASES.keys() - EXEMPT.keys()
    assert not missing, f"mutations without an audit case in tests/test_audit.py: {sorted(missing)}"
    assert not (CASES.keys() - names), "cases for mutations that no longer exist"


@pytest.mark.parametrize("mutation", sorted(CASES))
async def test_mutation_audits_success_and_nothing_on_failure(site: Site, mutation: str) -> None:
    setup = await CASES[mutation](site)
    for _, _, viewer in (setup.ok, setup.bad):
        if viewer is not None:
            await site.token(viewer)  # sessions exist before the snapshot
    before = await dump(site.database)
    body = await run(site, setup.bad, setup.upload)
    assert failed(body), body
    assert differences(before, await dump(site.database)) == {}, body
    body = await run(site, setup.ok, setup.upload)
    assert not failed(body), body
    async with site.database.session() as session:
        events = list(await session.scalars(select(AuditEvent).order_by(AuditEvent.id)))
    assert events and {e.action for e in events} == setup.actions, [e.action for e in events]
    actor = setup.ok[2]
    # an account deleting itself is gone: its events name no actor (ids are never reused)
    assert all(e.actor_id == (None if mutation == "deleteMyAccount" else actor.id) for e in events)  # type: ignore[union-attr]
    assert all(e.detail is None or isinstance(json.loads(e.detail), dict) for e in events)


AUDIT_LOG = """query($a: String, $n: Int, $after: String) {
  auditLog(action: $a, first: $n, after: $after) {
    edges { cursor node { id actor { id email } action targetType targetId occurredAt detail } }
    pageInfo { hasNextPage endCursor }
  }
}"""


async def test_audit_log_is_keyset_paginated_for_site_admins_only(site: Site) -> None:
    admin, staff, learner = await people(site)
    for n in range(7):
        body = await site.gql("mutation($n: String!) { createApiToken(name: $n) { name } }", {"n": f"t{n}"}, as_user=staff)
        assert "errors" not in body
    await site.gql('mutation { createGroup(input: {name: "G"}) { id } }', as_user=admin)
    seen: list[dict[str, Any]] = []
    after = None
    with site.statements() as counted:
        while True:
            body = await site.gql(AUDIT_LOG, {"a": "api_token.create", "n": 3, "after": after}, as_user=admin)
            page = body["data"]["auditLog"]
            seen += [e["node"] for e in page["edges"]]
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
    assert [json.loads(e["detail"])["name"] for e in seen] == [f"t{n}" for n in reversed(range(7))]  # newest first
    assert {e["actor"]["email"] for e in seen} == {staff.email} and {e["targetType"] for e in seen} == {"api_token"}
    # per page: the session with the reach, the page, the actors (a site admin needs none of their groups)
    assert counted.count == 3 * 3
    everything = (await site.gql(AUDIT_LOG, {"n": 50}, as_user=admin))["data"]["auditLog"]["edges"]
    assert everything[0]["node"]["action"] == "group.create" and len(everything) == 8
    # node(id:) for admins; null for anyone else, as for a missing id
    event_id = everything[0]["node"]["id"]
    node = "query($id: ID!) { node(id: $id) { ... on AuditEvent { action } } }"
    assert (await site.gql(node, {"id": event_id}, as_user=admin))["data"]["node"] == {"action": "group.create"}
    for viewer in (staff, learner, None):
        assert (await site.gql(node, {"id": event_id}, as_user=viewer)) == {"data": {"node": None}}
    # the list itself: FORBIDDEN for signed-in non-admins, UNAUTHENTICATED for anonymous callers
    assert errors_of(await site.gql(AUDIT_LOG, as_user=staff)) == ["FORBIDDEN"]
    assert errors_of(await site.gql(AUDIT_LOG)) == ["UNAUTHENTICATED"]
    assert errors_of(await site.gql(AUDIT_LOG, {"after": "bm90IGEgY3Vyc29y"}, as_user=admin)) == ["BAD_USER_INPUT"]


async def test_export_downloads_are_audited(site: Site) -> None:
    admin, staff, _ = await people(site)
    ok = await site.client.get(
        "/exports/pupils-without-licence.xlsx?licenceType=PUPIL", headers={"Authorization": f"Bearer {await site.token(admin)}"}
    )
    assert ok.status_code == 200
    denied = await site.client.get(
        "/exports/external-users.xlsx", headers={"Authorization": f"Bearer {await site.token(staff)}"}
    )
    assert denied.status_code == 403
    async with site.database.session() as session:
        events = list(await session.scalars(select(AuditEvent)))
    assert [(e.action, e.actor_id) for e in events] == [("export.pupils_without_licence", admin.id)]
    detail = json.loads(events[0].detail)  # type: ignore[arg-type]
    assert detail == {"format": "XLSX", "licence_type": "PUPIL"}


async def test_every_export_route_audits_its_download(site: Site, tmp_path: Any, monkeypatch: Any) -> None:
    """Walks the app's /exports routes: each download by a site admin writes exactly one audit event (an
    export job's file too: one job is written first)."""
    from starlette.routing import Route

    from app.services.export_jobs import file_store, queue_job, work_once
    from app.services.reports import ExportRequest

    admin, _, learner = await people(site)
    group = await site.group("Class")
    await site.member(learner, group)
    monkeypatch.setattr(site.settings, "export_dir", str(tmp_path))
    async with site.database.transaction() as session:
        job = queue_job(session, admin.id, ExportRequest("PROGRESS", "CSV", group_id=group.id))  # type: ignore[arg-type]
        await session.flush()
    assert await work_once(site.database, site.settings, file_store(site.settings))
    headers = {"Authorization": f"Bearer {await site.token(admin)}"}
    paths = [r.path for r in site.app.routes if isinstance(r, Route) and r.path.startswith("/exports/")]
    assert len(paths) >= 7, paths
    for path in paths:
        before = await site.count(AuditEvent)
        url = path.replace("{id}", str(job.id if "/jobs/" in path else group.id))
        response = await site.client.get(url, params={"licenceType": "PUPIL"}, headers=headers)
        assert response.status_code == 200, (path, response.text[:200])
        async with site.database.session() as session:
            events = list(await session.scalars(select(AuditEvent).order_by(AuditEvent.id)))
        assert len(events) == before + 1 and events[-1].actor_id == admin.id, path
