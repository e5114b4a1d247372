"""Group.progressReport: the export's rows over GraphQL, keyset pages, totalCount, permissions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select

from app.store.models import Enrollment, Membership, User
from tests.school import auth, course, parse, school
from tests.site import Site, errors_of, gid

REPORT = """
query($id: ID!, $first: Int, $after: String, $courseId: ID, $nested: Boolean) {
  group(id: $id) {
    progressReport(first: $first, after: $after, courseId: $courseId, includeNested: $nested) {
      totalCount
      pageInfo { hasNextPage endCursor }
      edges { cursor node {
        user { id } firstName lastName email company groupName courseName activatedAt
        percentViewed percentCompleted completedAt expiresAt
      } }
    }
    csv: progressExportUrl
    xlsx: progressExportUrl(format: XLSX)
  }
}
"""


async def report(site: Site, group: Any, as_user: Any, **variables: Any) -> dict[str, Any]:
    return await site.gql(REPORT, {"id": gid("Group", group), **variables}, as_user=as_user)


async def test_report_rows_match_the_csv(site: Site) -> None:
    s = await school(site)
    body = await report(site, s["root"], s["leader"])
    assert "errors" not in body, body
    data = body["data"]["group"]
    assert data["csv"].startswith(f"/exports/groups/{s['root'].id}/progress.csv?")  # signed for the caller
    assert data["xlsx"].startswith(f"/exports/groups/{s['root'].id}/progress.xlsx?")
    connection = data["progressReport"]
    assert connection["totalCount"] == 4
    nodes = [e["node"] for e in connection["edges"]]
    assert nodes[0] == {
        "user": {"id": gid("User", s["ann"])}, "firstName": "Ann", "lastName": "Archer", "email": "ann@example.com",
        "company": "=cmd|' /C calc'!A0", "groupName": "Class A", "courseName": "Maths",
        "activatedAt": nodes[0]["activatedAt"], "percentViewed": 100.0, "percentCompleted": 100.0,
        "completedAt": nodes[0]["completedAt"], "expiresAt": nodes[0]["expiresAt"],
    }
    assert nodes[0]["completedAt"].startswith("2026-03-09T12:00")
    assert [(n["firstName"], n["courseName"], n["percentViewed"], n["percentCompleted"]) for n in nodes] == [
        ("Ann", "Maths", 100.0, 100.0), ("Ann", "Art", 66.67, 33.33), ("Bob", "Maths", 25.0, 0.0), ("Cid", "Art", 0.0, 0.0),
    ]
    exported = await site.client.get(data["csv"], headers=auth(await site.token(s["leader"])))
    assert [[n["firstName"], n["lastName"], n["groupName"], n["courseName"], repr(n['percentCompleted'])] for n in nodes] == [
        [r[0], r[1], r[4], r[5], r[7]] for r in parse(exported.content)[1:]
    ]

    art = await report(site, s["root"], s["admin"], courseId=gid("Course", s["art"]))
    assert [e["node"]["firstName"] for e in art["data"]["group"]["progressReport"]["edges"]] == ["Ann", "Cid"]
    assert art["data"]["group"]["progressReport"]["totalCount"] == 2
    flat = await report(site, s["root"], s["admin"], nested=False)
    assert flat["data"]["group"]["progressReport"]["totalCount"] == 0
    unknown = await report(site, s["root"], s["admin"], courseId=gid("Course", 999999))
    assert errors_of(unknown) == ["NOT_FOUND"] and unknown["data"]["group"]["progressReport"] is None


async def test_report_permissions(site: Site) -> None:
    s = await school(site)
    analyst = await report(site, s["a"], s["analyst"])
    assert [e["node"]["firstName"] for e in analyst["data"]["group"]["progressReport"]["edges"]] == ["Ann", "Ann", "Bob"]
    # an analyst of Class A: Class B and the school are not theirs
    assert (await report(site, s["b"], s["analyst"]))["data"]["group"] is None
    assert (await report(site, s["root"], s["analyst"]))["data"]["group"] is None
    for who in ("mentor", "ann"):
        denied = await report(site, s["a"], s[who])
        assert errors_of(denied) == ["FORBIDDEN", "FORBIDDEN", "FORBIDDEN"], who
        assert denied["data"]["group"] == {"progressReport": None, "csv": None, "xlsx": None}


async def test_keyset_pages_cover_every_row_once_at_a_flat_cost(site: Site) -> None:
    admin = await site.user("Adm", kind="STAFF", roles="ADMIN")
    root = await site.group("Big")
    nested = await site.group("Nested", root)
    courses = [(await course(site, f"C{i}", 2))[0] for i in range(3)]
    async with site.database.transaction() as session:
        await session.execute(
            insert(User),
            [
                {"email": f"k{i}@example.com", "email_normalized": f"k{i}@example.com", "first_name": f"K{i}",
                 "last_name": "Key", "last_name_normalized": "key", "kind": "LEARNER"}
                for i in range(40)
            ],
        )
    async with site.database.session() as session:
        ids = list(await session.scalars(select(User.id).where(User.last_name == "Key")))
    async with site.database.transaction() as session:
        # every learner in the root, half of them in the nested group too: one row per membership and course
        await session.execute(insert(Membership), [{"user_id": u, "group_id": root.id, "role": "MEMBER"} for u in ids])
        await session.execute(insert(Membership), [{"user_id": u, "group_id": nested.id, "role": "MEMBER"} for u in ids[::2]])
        await session.execute(insert(Enrollment), [{"user_id": u, "course_id": c.id} for u in ids for c in courses])
    await site.token(admin)
    seen: list[tuple[str, str, str]] = []
    costs: list[int] = []
    after = None
    while True:
        with site.statements() as counted:
            body = await report(site, root, admin, first=7, after=after)
            costs.append(counted.count)
        connection = body["data"]["group"]["progressReport"]
        seen.extend((e["node"]["user"]["id"], e["node"]["groupName"], e["node"]["courseName"]) for e in connection["edges"])
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
    assert len(seen) == (40 + 20) * 3 == connection["totalCount"]
    assert len(set(seen)) == len(seen)
    assert len(costs) == 26
    assert max(costs) == min(costs), costs  # the last page costs what the first does: no OFFSET, no per-row SQL
    with site.statements() as counted:
        await report(site, root, admin, first=7, after=after)
        report_sql = [s for s in counted.statements if "enrollment" in s and "LIMIT" in s.upper()]
        # the cursor is a keyset condition on the membership index (SQLite prints a constant OFFSET 0)
        assert len(report_sql) == 1 and "membership.group_id >=" in report_sql[0]
        assert " OFFSET" not in report_sql[0].upper() or "OFFSET ?" in report_sql[0]
    bad = await report(site, root, admin, first=7, after="bm90IGEgY3Vyc29y")
    assert errors_of(bad) == ["BAD_USER_INPUT"]
    too_many = await report(site, root, admin, first=10_000)
    assert errors_of(too_many) == ["PAGE_TOO_LARGE"]


async def test_report_percentages_agree_with_course_progress(site: Site) -> None:
    s = await school(site)
    body = await report(site, s["a"], s["leader"])
    rows = {
        (e["node"]["firstName"], e["node"]["courseName"]): (e["node"]["percentViewed"], e["node"]["percentCompleted"])
        for e in body["data"]["group"]["progressReport"]["edges"]
    }
    cards: dict[tuple[str, str], tuple[float, float]] = {}
    for who in ("ann", "bob"):
        progress = await site.gql(
            "query($id: ID!) { user(id: $id) { firstName courseProgress { course { name } percentViewed percentCompleted } } }",
            {"id": gid("User", s[who])}, as_user=s["leader"],
        )
        user = progress["data"]["user"]
        for card in user["courseProgress"]:
            cards[(user["firstName"], card["course"]["name"])] = (card["percentViewed"], card["percentCompleted"])
    assert rows == cards
