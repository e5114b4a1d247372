"""Mutation atomicity: for every mutation taking a list (or a file of rows), one bad item among many good
ones leaves every table exactly as it was; the same call without the bad item then succeeds (so the good
items were really applicable, and were rolled back, not skipped).

`test_every_list_mutation_has_an_atomicity_case` walks the Mutation type: a list-taking mutation added
without a case here fails it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from graphql import GraphQLInputObjectType, GraphQLList, GraphQLNonNull, GraphQLScalarType, get_nullable_type

from app.schema import build_schema
from app.store.models import Course, Enrollment, Step, User
from tests.dump import differences, dump
from tests.site import Site, gid

GOOD = 12


@dataclass
class Case:
    query: str
    good: dict[str, Any]
    bad: dict[str, Any]
    viewer: User
    upload: bool = False
    recorded: tuple[str, ...] = ()  # tables that record the refused call itself (a FAILED roster sync and its audit)


CASES: dict[str, Callable[[Site], Awaitable[Case]]] = {}


def case(name: str) -> Callable[[Callable[[Site], Awaitable[Case]]], Callable[[Site], Awaitable[Case]]]:
    def register(fn: Callable[[Site], Awaitable[Case]]) -> Callable[[Site], Awaitable[Case]]:
        CASES[name] = fn
        return fn

    return register


async def crowd(site: Site, n: int = GOOD, **kwargs: Any) -> list[User]:
    return [await site.user(f"L{i}", external_id=f"S{i}", **kwargs) for i in range(n)]


@case("setAccountStatus")
async def _status(site: Site) -> Case:
    admin = await site.user("Ann", roles="ADMIN")
    owner = await site.user("Own", roles="OWNER")
    users = [gid("User", u) for u in await crowd(site)]
    for u in users:
        await site.token(await _row(site, u))  # sessions that a DENIED would revoke
    q = "mutation($u: [ID!]!) { setAccountStatus(userIds: $u, status: DENIED) { id } }"
    return Case(q, {"u": users}, {"u": [*users[:6], gid("User", owner), *users[6:]]}, admin)


@case("createUser")
async def _create(site: Site) -> Case:
    """siteRoles is the list: an OWNER among them, given by an admin who is not one, refuses the whole account."""
    admin = await site.user("Ann", roles="ADMIN")
    q = "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }"
    account = {"email": "new@example.com", "firstName": "N", "lastName": "U", "kind": "STAFF"}
    return Case(
        q, {"i": {**account, "siteRoles": ["GROUP_ANALYST"]}}, {"i": {**account, "siteRoles": ["GROUP_ANALYST", "OWNER"]}},
        admin,
    )


@case("deleteUsers")
async def _delete(site: Site) -> Case:
    admin = await site.user("Ann", roles="ADMIN")
    users = [gid("User", u) for u in await crowd(site)]
    q = "mutation($u: [ID!]!) { deleteUsers(userIds: $u) }"
    return Case(q, {"u": users}, {"u": [*users, gid("User", admin)]}, admin)


@case("emailUsers")
async def _email(site: Site) -> Case:
    admin = await site.user("Ann", roles="ADMIN")
    users = [gid("User", u) for u in await crowd(site)]
    q = 'mutation($u: [ID!]!) { emailUsers(userIds: $u, subject: "Hi", body: "Hello") }'
    return Case(q, {"u": users}, {"u": [*users[:3], gid("User", 99999), *users[3:]]}, admin)


@case("setSiteRoles")
async def _roles(site: Site) -> Case:
    admin = await site.user("Ann", roles="ADMIN")
    target = await site.user("Tom")
    q = "mutation($u: ID!, $r: [SiteRole!]!) { setSiteRoles(userId: $u, roles: $r) { id } }"
    return Case(q, {"u": gid("User", target), "r": ["GROUP_ANALYST", "ADMIN"]},
                {"u": gid("User", target), "r": ["GROUP_ANALYST", "OWNER", "ADMIN"]}, admin)


@case("importGroupAssignments")
async def _import(site: Site) -> Case:
    admin = await site.user("Ann", roles="ADMIN")
    await crowd(site)
    groups = [await site.group(f"Class {n}") for n in range(3)]
    rows = [f"S{i},{groups[i % 3].slug};{groups[(i + 1) % 3].slug}" for i in range(GOOD)]
    good = "student_id,groups\n" + "\n".join(rows) + "\n"
    bad = "student_id,groups\n" + "\n".join([*rows[:7], f"S1,{groups[0].slug};no-such-group", *rows[7:]]) + "\n"
    return Case("", {"csv": good}, {"csv": bad}, admin, upload=True)


ROSTER_IMPORT = "mutation($file: Upload!) { importOneRoster(file: $file) { status errors { line } } }"


@case("importOneRoster")
async def _roster_import(site: Site) -> Case:
    from tests.oneroster import bundle, school_district

    admin = await site.user("Ann", roles="ADMIN")
    district = school_district()
    good = bundle(district)
    district.enrollments.insert(9, ("e-bad", "K1", "S1", "nobody", "student"))
    return Case(ROSTER_IMPORT, {"zip": good}, {"zip": bundle(district)}, admin, upload=True, recorded=("roster_sync", "audit_event"))


# members
@case("addMembers")
async def _add_members(site: Site) -> Case:
    admin = await site.user("Ann", roles="ADMIN")
    group = await site.group("Class")
    users = [gid("User", u) for u in await crowd(site)]
    q = "mutation($g: ID!, $u: [ID!]!) { addMembers(groupId: $g, userIds: $u) { id } }"
    return Case(q, {"g": gid("Group", group), "u": users}, {"g": gid("Group", group), "u": [*users[:5], gid("User", 99999), *users[5:]]}, admin)


@case("removeMembers")
async def _remove_members(site: Site) -> Case:
    admin = await site.user("Ann", roles="ADMIN")
    group = await site.group("Class")
    other = await site.group("Other")
    members = [gid("Membership", await site.member(u, group)) for u in await crowd(site)]
    foreign = gid("Membership", await site.member(admin, other))
    leader = await site.user("Lee", kind="STAFF")
    await site.member(leader, group, "LEADER")
    q = "mutation($m: [ID!]!) { removeMembers(membershipIds: $m) }"
    # the leader of Class may not touch a membership of Other: FORBIDDEN for the whole list
    return Case(q, {"m": members}, {"m": [*members[:4], foreign, *members[4:]]}, leader)


# courses and progress
async def course_rows(site: Site, steps: int = GOOD) -> tuple[Course, list[Step]]:
    async with site.database.transaction() as session:
        row = Course(name="Algebra")
        session.add(row)
        await session.flush()
        rows = [Step(course_id=row.id, title=f"Step {n}", position=n, kind="LESSON") for n in range(1, steps + 1)]  # type: ignore[arg-type]
        session.add_all(rows)
    return row, rows


@case("createCourse")
async def _create_course(site: Site) -> Case:
    admin = await site.user("Ann", roles="ADMIN")
    steps = [{"title": f"Step {n}", "kind": "LESSON"} for n in range(GOOD)]
    q = "mutation($s: [StepInput!]!) { createCourse(name: \"Algebra\", steps: $s) { id } }"
    return Case(q, {"s": steps}, {"s": [*steps, {"title": "Quiz", "kind": "QUIZ", "maxPoints": 0}]}, admin)


@case("enroll")
async def _enroll(site: Site) -> Case:
    admin = await site.user("Ann", roles="ADMIN")
    row, _ = await course_rows(site, 2)
    users = [gid("User", u) for u in await crowd(site)]
    q = "mutation($u: [ID!]!, $c: ID!) { enroll(userIds: $u, courseId: $c) }"
    return Case(q, {"u": users, "c": gid("Course", row)}, {"u": [*users, gid("User", 99999)], "c": gid("Course", row)}, admin)


@case("recordProgress")
async def _record_progress(site: Site) -> Case:
    admin = await site.user("Ann", roles="ADMIN")
    row, steps = await course_rows(site)
    learners = await crowd(site, 3)
    async with site.database.transaction() as session:
        session.add_all(Enrollment(user_id=u.id, course_id=row.id) for u in learners)  # type: ignore[arg-type]
    events = [
        {"userId": gid("User", u), "kind": kind, "stepId": gid("Step", step)}
        for u in learners for step in steps[:4] for kind in ("VIEWED", "COMPLETED")
    ] + [{"userId": gid("User", learners[0]), "kind": "USAGE", "minutes": 30}]
    bad = {"userId": gid("User", learners[1]), "kind": "USAGE", "minutes": -5}
    q = "mutation($e: [ProgressEventInput!]!) { recordProgress(events: $e) }"
    return Case(q, {"e": events}, {"e": [*events[:10], bad, *events[10:]]}, admin)


SCHEDULE = {"report": "GROUPS", "frequency": "DAILY", "time": "07:00", "timeZone": "UTC"}


@case("createExportSchedule")
async def _create_export_schedule(site: Site) -> Case:
    admin = await site.user("Ann", roles="ADMIN")
    admins = [gid("User", u) for u in await crowd(site, roles="ADMIN")]
    learner = gid("User", await site.user("Lea"))  # may not export the groups: refused
    q = "mutation($i: CreateExportScheduleInput!) { createExportSchedule(input: $i) { id } }"
    return Case(q, {"i": {**SCHEDULE, "recipientIds": admins}},
                {"i": {**SCHEDULE, "recipientIds": [*admins[:5], learner, *admins[5:]]}}, admin)


@case("updateExportSchedule")
async def _update_export_schedule(site: Site) -> Case:
    from datetime import timedelta

    from app.services.reports import ExportRequest
    from app.store.models import ExportSchedule, utcnow

    admin = await site.user("Ann", roles="ADMIN")
    admins = [gid("User", u) for u in await crowd(site, roles="ADMIN")]
    learner = gid("User", await site.user("Lea"))
    row = ExportSchedule(
        owner_id=admin.id, report="GROUPS", params=ExportRequest("GROUPS").to_json(), frequency="DAILY",  # type: ignore[arg-type]
        time_of_day="07:00", time_zone="UTC", next_run_at=utcnow() + timedelta(days=1),
    )
    async with site.database.transaction() as session:
        session.add(row)
    q = "mutation($id: ID!, $r: [ID!]) { updateExportSchedule(id: $id, input: {recipientIds: $r, time: \"09:00\"}) { id } }"
    return Case(q, {"id": gid("ExportSchedule", row), "r": admins},
                {"id": gid("ExportSchedule", row), "r": [*admins[:5], learner, *admins[5:]]}, admin)

async def _row(site: Site, global_id: str) -> User:
    from sqlalchemy import select

    from app.runtime.ids import parse_global_id

    async with site.database.session() as session:
        return (await session.scalars(select(User).where(User.id == parse_global_id(global_id)[1]))).one()


IMPORT = "mutation($file: Upload!) { importGroupAssignments(file: $file) { applied membershipsCreated errors { line } } }"


async def run(site: Site, setup: Case, variables: dict[str, Any]) -> dict[str, Any]:
    if not setup.upload:
        return await site.gql(setup.query, variables, as_user=setup.viewer)
    content = variables["zip"] if "zip" in variables else variables["csv"].encode()
    response = await site.client.post(
        "/graphql",
        data={"operations": json.dumps({"query": setup.query or IMPORT, "variables": {"file": None}}), "map": '{"0": ["variables.file"]}'},
        files={"0": ("a.csv", content, "text/csv")},
        headers={"Authorization": f"Bearer {await site.token(setup.viewer)}", "X-Requested-With": "1"},
    )
    return response.json()


def failed(body: dict[str, Any]) -> bool:
    if body.get("errors"):
        return True
    payload = next(iter((body.get("data") or {}).values()), None)
    return isinstance(payload, dict) and (payload.get("applied") is False or payload.get("status") == "FAILED")


def takes_a_list(field: Any) -> bool:
    def listy(kind: Any, seen: frozenset[str] = frozenset()) -> bool:
        kind = get_nullable_type(kind)
        if isinstance(kind, GraphQLList):
            return True
        if isinstance(kind, GraphQLScalarType):
            return kind.name == "Upload"
        if isinstance(kind, GraphQLInputObjectType) and kind.name not in seen:
            return any(listy(f.type, seen | {kind.name}) for f in kind.fields.values())
        return isinstance(kind, GraphQLNonNull) and listy(kind.of_type, seen)

    return any(listy(arg.type) for arg in field.args.values())


def test_every_list_mutation_has_an_atomicity_case() -> None:
    mutation = build_schema()._schema.mutation_type
    assert mutation is not None
    listy = {name for name, field in mutation.fields.items() if takes_a_list(field)}
    assert {"deleteUsers", "importGroupAssignments"} <= listy
    missing = listy - CASES.keys()
    assert not missing, f"list-taking mutations without an atomicity case in tests/test_atomicity.py: {sorted(missing)}"


@pytest.mark.parametrize("mutation", sorted(CASES))
async def test_one_bad_item_changes_nothing(site: Site, mutation: str) -> None:
    setup = await CASES[mutation](site)
    await site.token(setup.viewer)
    before = await dump(site.database)
    body = await run(site, setup, setup.bad)
    assert failed(body), body
    changed = differences(before, await dump(site.database))
    assert {t: n for t, n in changed.items() if t not in setup.recorded} == {}, body
    before = await dump(site.database)
    body = await run(site, setup, setup.good)
    assert not failed(body), body
    changed = differences(before, await dump(site.database))
    assert changed and "audit_event" in changed, changed
