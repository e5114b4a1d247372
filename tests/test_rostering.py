"""Rostering from OneRoster 1.1 and 1.2 CSV bundles: the life cycle of a district's nightly sync (dry run,
apply, a no-op re-run, delta, a bulk file without an enrollment), held runs approved, rejected and refused
when the data moved, failed bundles with file, line and column, who may run it, and statement counts."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from app.cli import cli as cli_app
from app.services.auth import API_TOKEN_PREFIX, new_token, token_hash
from app.store.models import (
    ApiToken,
    AuditEvent,
    Course,
    Enrollment,
    Group,
    GroupClosure,
    GuardianLink,
    Membership,
    RosterSync,
    User,
    utcnow,
)
from tests.oneroster import District, bundle, school_district
from tests.site import Site, errors_of, gid, stale_sort_names

RUN = (
    "id status heldReason groupsCreated groupsUpdated usersCreated usersUpdated usersDenied membershipsCreated "
    "membershipsUpdated membershipsEnded guardianLinksCreated unchanged errors { file line column message }"
)
IMPORT = f"mutation($file: Upload!, $dry: Boolean) {{ importOneRoster(file: $file, dryRun: $dry) {{ {RUN} }} }}"
APPROVE = f"mutation($id: ID!) {{ approveRosterSync(id: $id) {{ {RUN} }} }}"
REJECT = f"mutation($id: ID!) {{ rejectRosterSync(id: $id) {{ {RUN} }} }}"
COUNTS = (
    "groupsCreated", "groupsUpdated", "usersCreated", "usersUpdated", "usersDenied", "membershipsCreated",
    "membershipsUpdated", "membershipsEnded", "guardianLinksCreated",
)


async def upload(site: Site, content: bytes, user: User, dry_run: bool = False) -> dict[str, Any]:
    """The GraphQL multipart request an admin tool sends."""
    operations = json.dumps({"query": IMPORT, "variables": {"file": None, "dry": dry_run}})
    response = await site.client.post(
        "/graphql",
        data={"operations": operations, "map": json.dumps({"0": ["variables.file"]})},
        files={"0": ("district.zip", content, "application/zip")},
        headers={"Authorization": f"Bearer {await site.token(user)}", "X-Requested-With": "test"},
    )
    return response.json()


async def run(site: Site, content: bytes, admin: User, dry_run: bool = False) -> dict[str, Any]:
    body = await upload(site, content, admin, dry_run)
    assert "errors" not in body, body
    return body["data"]["importOneRoster"]


def counts(result: dict[str, Any], **expected: int) -> None:
    got = {name: result[name] for name in COUNTS}
    assert got == {name: expected.get(name, 0) for name in COUNTS}, got


async def state(site: Site) -> dict[str, Any]:
    """Everything rostering may write, to compare before and after a run that must change nothing."""
    async with site.database.session() as session:
        return {
            "groups": sorted(
                (g.external_id or "", g.name, g.parent_id or 0, g.synced, g.term_title or "")
                for g in await session.scalars(select(Group))
            ),
            "users": sorted((u.external_id or "", u.email, u.kind, u.status, u.home_group_id or 0) for u in await session.scalars(select(User))),
            "memberships": sorted(
                (m.user_id, m.group_id, m.role, m.ended_at is not None) for m in await session.scalars(select(Membership))
            ),
            "links": sorted((link.external_user_id, link.pupil_id) for link in await session.scalars(select(GuardianLink))),
            "closure": sorted((c.ancestor_id, c.descendant_id, c.depth) for c in await session.scalars(select(GroupClosure))),
        }


async def by_external(site: Site, model: Any, external_id: str) -> Any:
    async with site.database.session() as session:
        return (await session.scalars(select(model).where(model.external_id == external_id))).one()


async def membership(site: Site, user_sid: str, group_sid: str) -> Membership | None:
    user, group = await by_external(site, User, user_sid), await by_external(site, Group, group_sid)
    async with site.database.session() as session:
        return (
            await session.scalars(select(Membership).where(Membership.user_id == user.id, Membership.group_id == group.id))
        ).one_or_none()


@pytest.mark.parametrize("version", ["1.1", "1.2"])
async def test_a_districts_nightly_sync(site: Site, version: str) -> None:
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    district = school_district()
    content = bundle(district, version)

    # the dry run counts what it would do and writes nothing but its run
    before = await state(site)
    dry = await run(site, content, admin, dry_run=True)
    assert dry["status"] == "DRY_RUN" and dry["errors"] == []
    counts(dry, groupsCreated=7, usersCreated=14, membershipsCreated=22, guardianLinksCreated=3)
    assert await state(site) == before

    # applied: the org tree, classes with their term, accounts homed in their school, memberships, guardians
    applied = await run(site, content, admin)
    assert applied["status"] == "APPLIED" and applied["heldReason"] is None
    counts(applied, groupsCreated=7, usersCreated=14, membershipsCreated=22, guardianLinksCreated=3)
    tree = """{ groups(roots: true) { edges { node { externalId name synced children { externalId name
        children { externalId name classCode term { title startsOn endsOn } } } } } } }"""
    body = await site.gql(tree, as_user=admin)
    (root,) = [e["node"] for e in body["data"]["groups"]["edges"]]
    assert (root["externalId"], root["name"], root["synced"]) == ("D1", "Riverside District", True)
    schools = {s["externalId"]: s for s in root["children"]}
    assert set(schools) == {"S1", "S2"}
    math = next(c for c in schools["S1"]["children"] if c["externalId"] == "K1")
    assert math == {
        "externalId": "K1", "name": "Math 7A", "classCode": "M7A",
        "term": {"title": "Fall 2026", "startsOn": "2026-08-24", "endsOn": "2026-12-18"},
    }
    s1, teacher, aide, director, guardian, parent = [
        await by_external(site, User, sid) for sid in ("s1", "t1", "a1", "adm1", "g1", "g2")
    ]
    school_s1 = await by_external(site, Group, "S1")
    assert (s1.kind, s1.synced, s1.home_group_id, s1.status) == ("LEARNER", True, school_s1.id, "ACTIVE")
    assert (teacher.kind, aide.kind, guardian.kind, parent.kind) == ("STAFF", "STAFF", "EXTERNAL", "EXTERNAL")
    assert parent.email.endswith("@roster.invalid")  # no email in the SIS: a placeholder that never delivers
    assert [(m.role) for m in [await membership(site, "t1", "K1"), await membership(site, "a1", "K1"),
                                await membership(site, "s1", "K1"), await membership(site, "adm1", "D1")]] == [
        "LEADER", "MENTOR", "MEMBER", "LEADER"]
    async with site.database.session() as session:
        links = {(a, b, t) for a, b, t in await session.execute(
            select(GuardianLink.external_user_id, GuardianLink.pupil_id, GuardianLink.licence_type))}
    s2, s5 = await by_external(site, User, "s2"), await by_external(site, User, "s5")
    assert links == {(guardian.id, s1.id, "PARENT_GUARDIAN"), (guardian.id, s2.id, "PARENT_GUARDIAN"),
                     (parent.id, s5.id, "PARENT_GUARDIAN")}
    # the teacher leads her class through the synced membership; the district director leads the district
    role = "query($g: ID!) { group(id: $g) { viewerRole } }"
    for who, where in ((teacher, "K1"), (director, "K4")):
        body = await site.gql(role, {"g": gid("Group", await by_external(site, Group, where))}, as_user=who)
        assert body["data"]["group"]["viewerRole"] == "LEADER"

    # the same bundle again changes nothing: every row matched
    settled = await state(site)
    again = await run(site, content, admin)
    assert again["status"] == "APPLIED"
    counts(again)
    assert again["unchanged"] == 7 + 14 + 21
    assert await state(site) == settled

    # delta: a new student in Math 7A, one enrollment tobedeleted, one account disabled, a class renamed
    delta = District(
        orgs=[], terms=[], courses=[],
        classes=[("K2", "Science 7A (lab)", "S7A", "C2", "S1", "T1"), ("K4", "Science 7B", "S7B", "C2", "S1", "T1")],
        users=[*(u for u in district.users if u.sid == "s4"), *(u for u in district.users if u.sid == "s9")],
        enrollments=[("e-s9-K1", "K1", "S1", "s9", "student"), ("e-s2-K2", "K2", "S1", "s2", "student")],
        statuses={"e-s2-K2": "tobedeleted"},
    )
    from tests.oneroster import Person

    delta.users = [Person("s9", "student", "Nina", "New", ("S1",), "s9@riverside.example"),
                   Person("s4", "student", "Stu4", "Dent-Four", ("S1",), "s4@riverside.example", enabled=False)]
    modes = {name: "delta" for name in ("classes", "users", "enrollments", "roles")} | {
        name: "absent" for name in ("orgs", "academicSessions", "courses")}
    changed = await run(site, bundle(delta, version, modes), admin)
    assert changed["status"] == "APPLIED", changed
    counts(changed, groupsUpdated=2, usersCreated=1, usersUpdated=1, usersDenied=1, membershipsCreated=1, membershipsEnded=1)
    assert (await membership(site, "s9", "K1")).ended_at is None  # type: ignore[union-attr]
    ended = await membership(site, "s2", "K2")
    assert ended is not None and ended.ended_at is not None  # ended, not deleted
    assert (await by_external(site, User, "s4")).status == "DENIED"
    assert (await by_external(site, User, "s4")).last_name_normalized == "dent-four"
    assert await stale_sort_names(site) == []  # the renamed learner's memberships page by the new name
    assert (await by_external(site, Group, "K2")).name == "Science 7A (lab)"
    moved, north = await by_external(site, Group, "K4"), await by_external(site, Group, "S1")
    assert (moved.parent_id, moved.depth) == (north.id, 2)  # Science 7B moved to North School, closure and all
    async with site.database.session() as session:
        above = set(await session.scalars(select(GroupClosure.ancestor_id).where(GroupClosure.descendant_id == moved.id)))
    assert above == {moved.id, north.id, (await by_external(site, Group, "D1")).id}

    # bulk again without s3's Science enrollment: s3's membership is ended and stays for the report
    district.users.append(Person("s9", "student", "Nina", "New", ("S1",), "s9@riverside.example"))
    district.user("s4").enabled = False
    district.user("s4").family = "Dent-Four"
    district.classes[1] = ("K2", "Science 7A (lab)", "S7A", "C2", "S1", "T1")
    district.classes[3] = ("K4", "Science 7B", "S7B", "C2", "S1", "T1")
    district.enrollments = [e for e in district.enrollments if e[0] not in ("e-s3-K2", "e-s2-K2")]
    district.enrollments.append(("e-s9-K1", "K1", "S1", "s9", "student"))
    bulk = await run(site, bundle(district, version), admin)
    assert bulk["status"] == "APPLIED", bulk
    counts(bulk, membershipsEnded=1)
    gone = await membership(site, "s3", "K2")
    assert gone is not None and gone.ended_at is not None
    assert await stale_sort_names(site) == []

    # the old class's report keeps the student who left, when asked to
    science = await by_external(site, Group, "K2")
    s3 = await by_external(site, User, "s3")
    async with site.database.transaction() as session:
        course = Course(name="Cells")
        session.add(course)
        await session.flush()
        session.add(Enrollment(user_id=s3.id, course_id=course.id, activated_at=utcnow()))  # type: ignore[arg-type]
    report = """query($g: ID!, $e: Boolean) { group(id: $g) { progressReport(includeEnded: $e) {
        totalCount edges { node { lastName } } } } }"""
    now_only = await site.gql(report, {"g": gid("Group", science), "e": False}, as_user=admin)
    with_history = await site.gql(report, {"g": gid("Group", science), "e": True}, as_user=admin)
    assert now_only["data"]["group"]["progressReport"]["totalCount"] == 0
    assert [e["node"]["lastName"] for e in with_history["data"]["group"]["progressReport"]["edges"]] == ["Dent3"]
    for query, rows in (("", 1), ("?includeEnded=true", 2)):
        response = await site.client.get(
            f"/exports/groups/{gid('Group', science)}/progress.csv{query}",
            headers={"Authorization": f"Bearer {await site.token(admin)}"},
        )
        assert response.status_code == 200, response.text
        assert len(list(csv.reader(io.StringIO(response.text)))) == rows  # the header, and s3's row with history

    # every run listed newest first with its counts, and audited
    listed = await site.gql("{ rosterSyncs(first: 10) { edges { node { status membershipsEnded unchanged } } } }", as_user=admin)
    assert [e["node"]["status"] for e in listed["data"]["rosterSyncs"]["edges"]] == ["APPLIED"] * 4 + ["DRY_RUN"]
    assert await site.count(AuditEvent, AuditEvent.action == "roster.import") == 5


async def test_held_runs_wait_for_a_decision(site: Site) -> None:
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    district = school_district()
    await run(site, bundle(district), admin)
    south = [e for e in district.enrollments if e[1] in ("K3", "K4")]
    district.enrollments = [e for e in district.enrollments if e[1] not in ("K3", "K4")]
    mass_change = bundle(district)  # ends 10 of the 22 synced memberships: over the 20% hold

    before = await state(site)
    held = await run(site, mass_change, admin)
    assert held["status"] == "HELD"
    assert "end 10 of 22 synced memberships" in held["heldReason"]
    counts(held, membershipsEnded=10)
    assert await state(site) == before

    # rejected: nothing applied, and it cannot be approved afterwards
    rejected = await site.gql(REJECT, {"id": held["id"]}, as_user=admin)
    assert rejected["data"]["rejectRosterSync"]["status"] == "REJECTED"
    assert errors_of(await site.gql(APPROVE, {"id": held["id"]}, as_user=admin)) == ["CONFLICT"]
    assert await state(site) == before

    # held again, then approved: exactly the held plan is applied
    again = await run(site, mass_change, admin)
    assert again["status"] == "HELD"
    approved = await site.gql(APPROVE, {"id": again["id"]}, as_user=admin)
    assert approved["data"]["approveRosterSync"]["status"] == "APPLIED", approved
    assert (await membership(site, "s5", "K3")).ended_at is not None  # type: ignore[union-attr]
    assert (await membership(site, "s1", "K1")).ended_at is None  # type: ignore[union-attr]
    # an ended membership gives no access: the South teacher no longer leads Math 7B
    role = "query($g: ID!) { group(id: $g) { viewerRole } }"
    south_teacher, math_7b = await by_external(site, User, "t2"), await by_external(site, Group, "K3")
    assert (await site.gql(role, {"g": gid("Group", math_7b)}, as_user=south_teacher))["data"]["group"] is None

    # the classes come back (restored, not duplicated); then a held run whose data changed before approval
    district.enrollments += south
    restored = await run(site, bundle(district), admin)
    counts(restored, membershipsCreated=10)
    district.enrollments = [e for e in district.enrollments if e[1] not in ("K3", "K4")]
    held = await run(site, bundle(district), admin)
    assert held["status"] == "HELD"
    async with site.database.transaction() as session:
        k3 = (await session.scalars(select(Membership).join(Group, Group.id == Membership.group_id).where(
            Group.external_id == "K3"))).first()
        k3.ended_at = utcnow()  # type: ignore[union-attr]  # meanwhile someone ends one of them by hand
        session.add(k3)
    before = await state(site)
    refused = await site.gql(APPROVE, {"id": held["id"]}, as_user=admin)
    assert errors_of(refused) == ["CONFLICT"]
    assert await state(site) == before
    async with site.database.session() as session:
        statuses = [s for s, in await session.execute(select(RosterSync.status).order_by(RosterSync.id))]
    assert statuses == ["APPLIED", "REJECTED", "APPLIED", "APPLIED", "HELD"]
    # the next night's run, held afresh, discards the older held run (one waits, not a pile)
    assert (await run(site, bundle(district), admin))["status"] == "HELD"
    async with site.database.session() as session:
        statuses = [s for s, in await session.execute(select(RosterSync.status).order_by(RosterSync.id))]
        bundles = [b is not None for b, in await session.execute(select(RosterSync.bundle).order_by(RosterSync.id))]
    assert statuses[-2:] == ["REJECTED", "HELD"] and bundles == [False] * 5 + [True]


async def test_a_bad_bundle_fails_whole_with_file_line_and_column(site: Site) -> None:
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    district = school_district()
    district.users[4].role = "wizard"  # users.csv line 6
    district.enrollments.append(("e-x", "K9", "S1", "s1", "student"))  # enrollments.csv line 23: unknown class
    district.enrollments.append(("e-x", "K1", "S1", "nobody", "student"))  # line 24: duplicate id, unknown user
    district.orgs.append(("S1", "Again", "school", "D1"))  # orgs.csv line 5: duplicate sourcedId
    before = await state(site)
    failed = await run(site, bundle(district), admin)
    assert failed["status"] == "FAILED"
    counts(failed)
    assert [(e["file"], e["line"], e["column"]) for e in failed["errors"]] == [
        ("orgs.csv", 5, "sourcedId"),
        ("users.csv", 6, "role"),
        ("enrollments.csv", 23, "classSourcedId"),
        ("enrollments.csv", 24, "sourcedId"),
        ("enrollments.csv", 24, "userSourcedId"),
    ], failed["errors"]
    assert await state(site) == before

    # a manifest naming a file the zip lacks, a cycle of orgs, and a file that is not a zip
    cyclic = school_district()
    cyclic.orgs[0] = ("D1", "Riverside District", "district", "S2")
    missing = await run(site, bundle(cyclic, omit=("enrollments",)), admin)
    assert [(e["file"], e["column"]) for e in missing["errors"]] == [("manifest.csv", "value"), ("orgs.csv", "parentSourcedId")]
    cycle = await run(site, bundle(cyclic), admin)
    assert [(e["file"], e["line"], e["column"]) for e in cycle["errors"]] == [("orgs.csv", 2, "parentSourcedId")]
    assert "cycle" in cycle["errors"][0]["message"]
    not_zip = await run(site, b"sourcedId,name\n", admin)
    assert not_zip["status"] == "FAILED" and "zip" in not_zip["errors"][0]["message"]
    latin = await run(site, bundle(school_district(), extra={"users.csv": "sourcedId,givenName\nx,Jos\xe9\n".encode("latin-1")}), admin)
    assert [(e["file"], e["line"]) for e in latin["errors"]][:1] == [("users.csv", 2)], latin["errors"]
    assert "UTF-8" in latin["errors"][0]["message"]
    assert await state(site) == before


async def test_only_site_admins_roster(site: Site, tmp_path: Path) -> None:
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    leader = await site.user("Lee", kind="STAFF")
    await site.member(leader, await site.group("Staff room"), "LEADER")
    content = bundle(school_district())
    before = await state(site)

    refused = await upload(site, content, leader)
    assert errors_of(refused) == ["FORBIDDEN"] and refused["data"] is None
    response = await site.client.post(
        "/imports/oneroster", content=content,
        headers={"Content-Type": "application/zip", "Authorization": f"Bearer {await site.token(leader)}"},
    )
    assert response.status_code == 403
    assert errors_of(await site.gql("{ rosterSyncs { edges { node { id } } } }", as_user=leader)) == ["FORBIDDEN"]
    assert await state(site) == before and await site.count(RosterSync) == 0

    # an admin's API token, over HTTP: a dry run, then the run
    token = new_token(API_TOKEN_PREFIX)
    async with site.database.transaction() as session:
        session.add(ApiToken(user_id=admin.id, name="nightly sync", token_hash=token_hash(token)))  # type: ignore[arg-type]
    headers = {"Content-Type": "application/zip", "Authorization": f"Bearer {token}"}
    dry = await site.client.post("/imports/oneroster?dryRun=true", content=content, headers=headers)
    assert dry.status_code == 200 and dry.json()["status"] == "DRY_RUN"
    assert set(dry.json()) == {  # the RosterSync fields, as GraphQL names them
        "id", "status", "startedAt", "finishedAt", "heldReason", "errors", "unchanged", "groupsCreated", "groupsUpdated",
        "usersCreated", "usersUpdated", "usersDenied", "membershipsCreated", "membershipsUpdated", "membershipsEnded",
        "guardianLinksCreated",
    }
    applied = await site.client.post("/imports/oneroster", content=content, headers=headers)
    assert applied.status_code == 200 and applied.json()["usersCreated"] == 14
    node = "query($id: ID!) { node(id: $id) { ... on RosterSync { status usersCreated } } }"
    run_id = applied.json()["id"]
    assert (await site.gql(node, {"id": run_id}, as_user=admin))["data"]["node"] == {"status": "APPLIED", "usersCreated": 14}
    assert (await site.gql(node, {"id": run_id}, as_user=leader))["data"]["node"] is None
    bad = await site.client.post("/imports/oneroster", content=b"PK\x03\x04 not really", headers=headers)
    assert bad.status_code == 422 and bad.json()["status"] == "FAILED"
    as_csv = await site.client.post("/imports/oneroster", content=content, headers={**headers, "Content-Type": "text/csv"})
    assert as_csv.status_code == 415
    anonymous = await site.client.post("/imports/oneroster", content=content, headers={"Content-Type": "application/zip"})
    assert anonymous.status_code == 401

    # a leader may not make a synced group; a site admin may, and does not join it
    made = await site.gql('mutation { createGroup(input: {name: "X", synced: true}) { id } }', as_user=leader)
    assert errors_of(made) == ["FORBIDDEN"]
    made = await site.gql('mutation { createGroup(input: {name: "Synced", synced: true}) { synced viewerRole } }', as_user=admin)
    assert made["data"]["createGroup"] == {"synced": True, "viewerRole": None}


async def test_the_command_line_for_cron(site: Site, tmp_path: Path) -> None:
    """`groupgraph roster-import BUNDLE.zip`: exit 0 applied, 3 held, 1 failed; --approve passes the hold."""
    district = school_district()
    path = tmp_path / "district.zip"
    path.write_bytes(bundle(district))

    runner = CliRunner()

    async def cli(*args: str) -> Any:
        """The command in-process (a thread of its own: it runs its own event loop), as cron runs it."""
        command = ["roster-import", *args, "--database-url", site.settings.database_url]
        return await asyncio.to_thread(runner.invoke, cli_app, command)

    first = await cli(str(path))
    assert first.exit_code == 0, first.output
    assert "APPLIED" in first.stdout and "usersCreated 14" in first.stdout
    district.enrollments = [e for e in district.enrollments if e[1] not in ("K3", "K4")]
    path.write_bytes(bundle(district))
    held = await cli(str(path))
    assert held.exit_code == 3 and "HELD" in held.stdout and "hold:" in held.stdout
    approved = await cli(str(path), "--approve")
    assert approved.exit_code == 0 and "membershipsEnded 10" in approved.stdout
    district.users[0].role = "wizard"
    path.write_bytes(bundle(district))
    failed = await cli(str(path), "--dry-run")
    assert failed.exit_code == 1 and "users.csv line 2 column role: unknown role 'wizard'" in failed.output


def grown(copies: int) -> District:
    """`copies` districts side by side (distinct ids), so rows grow and nothing else does."""
    merged = District()
    for n in range(copies):
        d = school_district()
        p = f"x{n}-"
        merged.orgs += [(p + s, name, t, p + parent if parent else "") for s, name, t, parent in d.orgs]
        merged.terms += [(p + s, *rest) for s, *rest in d.terms]  # type: ignore[misc]
        merged.courses += [(p + s, title, p + org) for s, title, org in d.courses]
        merged.classes += [(p + s, t, c, p + k, p + o, p + ts) for s, t, c, k, o, ts in d.classes]
        for u in d.users:
            u.sid, u.orgs, u.agents = p + u.sid, tuple(p + o for o in u.orgs), tuple(p + a for a in u.agents)
            u.email = u.email and p + u.email
        merged.users += d.users
        merged.enrollments += [(p + s, p + k, p + o, p + u, r) for s, k, o, u, r in d.enrollments]
    return merged


async def test_statements_do_not_grow_with_rows(site: Site) -> None:
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    await site.gql("{ viewer { id } }", as_user=admin)
    seen = []
    for copies in (1, 6):
        content = bundle(grown(copies))
        steps = {}
        for label, dry in (("dry run", True), ("apply", False), ("re-run", False)):
            with site.statements() as counted:
                result = await run(site, content, admin, dry)
            assert result["status"] in ("DRY_RUN", "APPLIED"), result
            steps[label] = counted.count
        seen.append(steps)
        # a fresh site for the second size: end what the first made, so both runs start alike
        async with site.database.transaction() as session:
            for model in (GuardianLink, Membership, GroupClosure):
                await session.execute(model.__table__.delete())
            await session.execute(User.__table__.delete().where(User.external_id.is_not(None)))
            await session.execute(Group.__table__.delete())
    assert seen[0] == seen[1], seen
