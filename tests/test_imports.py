"""Bulk group assignment from CSV: GraphQL multipart and POST /imports/group-assignments share one importer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import insert, select

from app.runtime import metrics
from app.store.models import AccessRequest, AuditEvent, Group, Membership, User, utcnow
from tests.site import Site, errors_of, stale_sort_names

REPORT = "dryRun applied rowCount membershipsCreated unchanged errors { line column message }"
IMPORT = f"mutation($file: Upload!, $dry: Boolean) {{ importGroupAssignments(file: $file, dryRun: $dry) {{ {REPORT} }} }}"


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return getattr(request, "param", {})


async def upload(site: Site, content: bytes, user: User, dry_run: bool = False) -> dict[str, Any]:
    """The GraphQL multipart request a browser sends."""
    operations = json.dumps({"query": IMPORT, "variables": {"file": None, "dry": dry_run}})
    response = await site.client.post(
        "/graphql",
        data={"operations": operations, "map": json.dumps({"0": ["variables.file"]})},
        files={"0": ("assignments.csv", content, "text/csv")},
        headers={"Authorization": f"Bearer {await site.token(user)}", "X-Requested-With": "test"},
    )
    return response.json()


async def post_csv(site: Site, content: bytes, user: User | None, query: str = "") -> Any:
    headers = {"Content-Type": "text/csv"}
    if user is not None:
        headers["Authorization"] = f"Bearer {await site.token(user)}"
    return await site.client.post(f"/imports/group-assignments{query}", content=content, headers=headers)


async def learners(site: Site, count: int, *, synced: bool = False, prefix: str = "S") -> list[int]:
    """`count` learners with external ids S1..Sn in one statement (site.user is one transaction each)."""
    now = utcnow()
    rows = [
        {
            "email": f"{prefix.lower()}{n}@school.example", "email_normalized": f"{prefix.lower()}{n}@school.example",
            "external_id": f"{prefix}{n}", "kind": "LEARNER", "first_name": "L", "last_name": f"N{n}",
            "last_name_normalized": f"n{n}", "site_roles": "", "status": "ACTIVE", "synced": synced,
            "agreed_to_download_reports": True, "created_at": now, "login_count": 0,
        }
        for n in range(1, count + 1)
    ]
    async with site.database.transaction() as session:
        await session.execute(insert(User), rows)
        ids = await session.scalars(
            select(User.id).where(User.external_id.like(f"{prefix}%"), User.kind == "LEARNER").order_by(User.id)
        )
        return list(ids)


async def memberships(site: Site) -> set[tuple[int, int]]:
    async with site.database.session() as session:
        return {(u, g) for u, g in await session.execute(select(Membership.user_id, Membership.group_id))}


async def test_clean_file_with_excel_habits_then_rerun_changes_nothing(site: Site) -> None:
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    s1, s2, s3 = await learners(site, 3)
    red, blue = await site.group("Red"), await site.group("Blue")
    content = (
        "\ufeffStudent ID ,First Name, GROUPS ,usage_minutes\r\n"
        f"S1,Ann,{red.slug};{blue.slug},12\r\n"
        f's2@School.example,"Bo, the second", {blue.slug.upper()} ,3\r\n'
        f"S3,Cy,{red.slug};;,0\r\n"
        "\r\n\r\n"
    ).encode()
    with site.statements() as counted:
        body = await upload(site, content, admin)
    assert body == {"data": {"importGroupAssignments": {
        "dryRun": False, "applied": True, "rowCount": 3, "membershipsCreated": 4, "unchanged": 0, "errors": [],
    }}}
    assert await memberships(site) == {(s1, red.id), (s1, blue.id), (s2, blue.id), (s3, red.id)}
    assert await stale_sort_names(site) == []  # the imported memberships page by their learners' names
    assert counted.count < 25, counted.statements
    async with site.database.session() as session:
        record = await session.scalar(select(AuditEvent).where(AuditEvent.action == "import.group_assignments"))
    assert record is not None and record.actor_id == admin.id and json.loads(record.detail)["created"] == 4

    again = await upload(site, content, admin)
    assert again["data"]["importGroupAssignments"] | {"errors": None} == {
        "dryRun": False, "applied": True, "rowCount": 3, "membershipsCreated": 0, "unchanged": 3, "errors": None,
    }
    assert len(await memberships(site)) == 4


async def test_one_bad_row_in_a_thousand_applies_nothing_and_names_its_line(site: Site) -> None:
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    await learners(site, 1000)
    group = await site.group("Year 7")
    lines = ["student_id,groups"] + [f"S{n},{group.slug}" for n in range(1, 1001)]
    lines[537] = f"S99999,{group.slug}"  # line 538 of the file (the header is line 1)
    content = "\n".join(lines).encode()

    with site.statements() as counted:
        response = await post_csv(site, content, admin)
    assert response.status_code == 422
    report = response.json()
    assert report["applied"] is False and report["rowCount"] == 1000 and report["membershipsCreated"] == 0
    assert report["errors"] == [{"line": 538, "column": "student_id", "message": "unknown student 'S99999'"}]
    assert await site.count(Membership) == 0
    assert counted.count < 25  # set-based: no statement per row

    fixed = content.replace(b"S99999,", b"S537,")
    response = await post_csv(site, fixed, admin)
    assert response.status_code == 200 and response.json()["membershipsCreated"] == 1000
    assert await site.count(Membership) == 1000


async def test_dry_run_reports_the_same_and_writes_nothing(site: Site) -> None:
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    await learners(site, 2)
    group = await site.group("Chess")
    content = f"student_id,groups\nS1,{group.slug}\nS2,{group.slug}\n".encode()
    counted = {
        (source, outcome): metrics.registry.get_sample_value("groupgraph_imports_total", {"source": source, "outcome": outcome}) or 0
        for source, outcome in [("graphql", "dry_run"), ("http", "rejected")]
    }
    dry = await upload(site, content, admin, dry_run=True)
    assert dry["data"]["importGroupAssignments"] == {
        "dryRun": True, "applied": True, "rowCount": 2, "membershipsCreated": 2, "unchanged": 0, "errors": [],
    }
    assert await site.count(Membership) == 0 and await site.count(AuditEvent) == 0
    bad = content + b"S3,no-such-group\n"
    dry_bad = (await post_csv(site, bad, admin, "?dryRun=true")).json()
    real_bad = (await post_csv(site, bad, admin)).json()
    assert dry_bad["errors"] == real_bad["errors"] == [
        {"line": 4, "column": "student_id", "message": "unknown student 'S3'"},
        {"line": 4, "column": "groups", "message": "unknown group 'no-such-group'"},
    ]
    assert dry_bad["dryRun"] is True and real_bad["dryRun"] is False
    assert await site.count(Membership) == 0
    assert {  # the import metrics: one dry run over GraphQL, two rejected files over HTTP
        key: metrics.registry.get_sample_value("groupgraph_imports_total", dict(zip(("source", "outcome"), key, strict=True))) - value
        for key, value in counted.items()
    } == {("graphql", "dry_run"): 1, ("http", "rejected"): 2}


async def test_synced_groups_take_synced_students_only(site: Site) -> None:
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    (plain,) = await learners(site, 1, prefix="P")
    (rostered,) = await learners(site, 1, synced=True, prefix="R")
    synced_class = await site.group("Period 1", synced=True)
    club = await site.group("Club")
    refused = await post_csv(site, f"student_id,groups\nP1,{synced_class.slug}\nR1,{synced_class.slug}\n".encode(), admin)
    assert refused.status_code == 422
    assert refused.json()["errors"] == [{
        "line": 2, "column": "groups",
        "message": f"non-synced students may only join non-synced groups ('{synced_class.slug}' is synced)",
    }]
    assert await site.count(Membership) == 0
    into_plain = await post_csv(site, f"student_id,groups\nP1,{club.slug}\nR1,{club.slug}\n".encode(), admin)
    assert into_plain.status_code == 422
    assert into_plain.json()["errors"] == [{
        "line": 3, "column": "groups", "message": f"synced students may only join synced groups ('{club.slug}' is not)",
    }]
    assert await site.count(Membership) == 0
    ok = await post_csv(site, f"student_id,groups\nP1,{club.slug}\nR1,{synced_class.slug}\n".encode(), admin)
    assert ok.status_code == 200, ok.json()
    assert await memberships(site) == {(plain, club.id), (rostered, synced_class.id)}


async def test_a_leader_places_only_within_their_trees(site: Site) -> None:
    leader = await site.user("Lee", kind="STAFF")
    mine = await site.group("Mine")
    sub = await site.group("Mine A", mine)
    theirs = await site.group("Theirs")
    mentored = await site.group("Mentored")
    await site.member(leader, mine, "LEADER")
    await site.member(leader, mentored, "MENTOR")
    inside, _outside, consenting, seen = await learners(site, 4)
    await site.member(await _user(site, inside), mine)
    await site.member(await _user(site, seen), mentored)
    async with site.database.transaction() as session:
        grant = AccessRequest(
            requester_id=leader.id, subject_email="s3@school.example", subject_email_normalized="s3@school.example",
            subject_user_id=consenting, status="GRANTED", expires_at=utcnow(),
        )
        session.add(grant)
    refused = await post_csv(
        site,
        (
            "student_id,groups\n"
            f"S1,{sub.slug};{theirs.slug}\n"  # a group outside the leader's trees looks unknown
            f"S2,{sub.slug}\n"  # a student the leader cannot reach looks unknown
            f"S4,{mentored.slug}\n"  # seen as MENTOR, but only a LEADER manages
            f"S4,{sub.slug}\n"  # visible through the mentored group, not placeable by a leader of `mine`
        ).encode(),
        leader,
    )
    assert refused.json()["errors"] == [
        {"line": 2, "column": "groups", "message": f"unknown group '{theirs.slug}'"},
        {"line": 3, "column": "student_id", "message": "unknown student 'S2'"},
        {"line": 4, "column": "groups", "message": f"you may not manage group '{mentored.slug}'"},
        {"line": 5, "column": "student_id", "message": f"you may not place student 'S4' in group '{sub.slug}'"},
    ]
    assert await site.count(Membership) == 4  # only the four set up above
    ok = await post_csv(site, f"student_id,groups\nS1,{sub.slug}\nS3,{sub.slug}\n".encode(), leader)
    assert ok.status_code == 200, ok.json()
    async with site.database.session() as session:
        placed = {u: r for u, r in await session.execute(
            select(Membership.user_id, Membership.access_request_id).where(Membership.group_id == sub.id)
        )}
    assert placed == {inside: None, consenting: grant.id}  # the consent-based placement records the consent


async def _user(site: Site, user_id: int) -> User:
    async with site.database.session() as session:
        return await session.get(User, user_id)


async def test_bad_files_and_callers(site: Site) -> None:
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    await learners(site, 1)
    group = await site.group("G")
    no_header = (await post_csv(site, b"id,classes\nS1,x\n", admin)).json()
    assert no_header["errors"] == [
        {"line": 1, "column": "student_id", "message": "the header has no 'student_id' column"},
        {"line": 1, "column": "groups", "message": "the header has no 'groups' column"},
    ]
    latin1 = (await post_csv(site, f"student_id,groups\nS1,{group.slug}\nJos\xe9,x\n".encode("latin-1"), admin)).json()
    assert latin1["errors"][0]["line"] == 3 and "UTF-8" in latin1["errors"][0]["message"]
    empty_id = (await post_csv(site, f"student_id,groups\n ,{group.slug}\n".encode(), admin)).json()
    assert empty_id["errors"] == [{"line": 2, "column": "student_id", "message": "student_id is empty"}]
    assert (await post_csv(site, b"student_id,groups\n", None)).status_code == 401
    wrong_type = await site.client.post(
        "/imports/group-assignments", content=b"student_id,groups\n",
        headers={"Authorization": f"Bearer {await site.token(admin)}", "Content-Type": "text/plain"},
    )
    assert wrong_type.status_code == 415
    # multipart without a preflight header is refused (CSRF guard of the GraphQL view)
    operations = json.dumps({"query": IMPORT, "variables": {"file": None}})
    csrf = await site.client.post(
        "/graphql", data={"operations": operations, "map": json.dumps({"0": ["variables.file"]})},
        files={"0": ("a.csv", b"student_id,groups\n", "text/csv")},
        headers={"Authorization": f"Bearer {await site.token(admin)}"},
    )
    assert csrf.status_code == 400
    anonymous = await site.client.post(
        "/graphql", data={"operations": operations, "map": json.dumps({"0": ["variables.file"]})},
        files={"0": ("a.csv", b"student_id,groups\n", "text/csv")}, headers={"X-Requested-With": "test"},
    )
    assert errors_of(anonymous.json()) == ["UNAUTHENTICATED"]
    assert await site.count(Membership) == 0


@pytest.mark.parametrize("settings_overrides", [{"max_import_rows": 3}], indirect=True)
async def test_row_limit(site: Site) -> None:
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    await learners(site, 4)
    group = await site.group("G")
    four = "student_id,groups\n" + "".join(f"S{n},{group.slug}\n" for n in range(1, 5))
    over_rows = await post_csv(site, four.encode(), admin)
    assert over_rows.status_code == 413 and "more than 3 rows" in over_rows.json()["errors"][0]["message"]
    body = await upload(site, four.encode(), admin)
    assert errors_of(body) == ["BAD_USER_INPUT"] and body["errors"][0]["extensions"]["field"] == "file"
    assert await site.count(Membership) == 0
    three = "student_id,groups\n" + "".join(f"S{n},{group.slug}\n" for n in range(1, 4)) + "\n\n"
    assert (await post_csv(site, three.encode(), admin)).status_code == 200


@pytest.mark.parametrize("settings_overrides", [{"max_upload_bytes": 200}], indirect=True)
async def test_byte_limit(site: Site) -> None:
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    await learners(site, 1)
    group = await site.group("G")
    big = ("student_id,groups,notes\n" + f"S1,{group.slug},{'x' * 300}\n").encode()
    over_bytes = await post_csv(site, big, admin)
    assert over_bytes.status_code == 413 and "200 bytes" in over_bytes.json()["errors"][0]["message"]

    async def chunked():  # no content-length: the limit is enforced while reading
        yield big[:100]
        yield big[100:]

    streamed = await site.client.post(
        "/imports/group-assignments", content=chunked(),
        headers={"Content-Type": "text/csv", "Authorization": f"Bearer {await site.token(admin)}"},
    )
    assert streamed.status_code == 413
    assert (await upload(site, big, admin)).get("errors")[0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    assert await site.count(Membership) == 0


async def _import_statements(site: Site, admin: User, rows: int, prefix: str) -> dict[str, int]:
    await learners(site, rows, prefix=prefix)
    async with site.database.transaction() as session:
        await session.execute(
            insert(Group),
            [
                {"name": f"{prefix}{n}", "name_normalized": f"{prefix.lower()}{n}", "slug": f"{prefix.lower()}-c{n}",
                 "synced": False, "depth": 0, "created_at": utcnow()}
                for n in range(20)
            ],
        )
    content = "student_id,groups\n" + "".join(
        f"{prefix}{n},{prefix.lower()}-c{n % 20};{prefix.lower()}-c{(n + 1) % 20}\n" for n in range(1, rows + 1)
    )
    counts = {}
    for label, query in (("dry run", "?dryRun=true"), ("apply", ""), ("re-run", "")):
        with site.statements() as counted:
            response = await post_csv(site, content.encode(), admin, query)
        assert response.status_code == 200, response.text[:500]
        counts[label] = counted.count
    return counts


async def test_statements_do_not_grow_with_rows(site: Site) -> None:
    """The importer works in set-based chunks of 5,000: 100 rows and 2,000 rows cost the same statements.
    (Timing of 50,000-row files belongs to the benchmark, not the suite.)"""
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    await site.gql("{ viewer { id } }", as_user=admin)  # the first request of a token also stamps its use
    small = await _import_statements(site, admin, 100, "A")
    large = await _import_statements(site, admin, 2_000, "B")
    assert small == large, (small, large)
    assert await site.count(Membership) == 2 * 2_100
