"""Aggregates count whom the lists show: progressSummary, progressReport, the progress XLSX and CSV (the Python
path and, on PostgreSQL, the COPY path) agree with Group.members for every caller, consent-based members
included where the caller may see them and left out where not; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from app.store.models import AccessRequest, User, utcnow
from tests.school import auth, course, enroll, parse, progress, school
from tests.site import Site, gid

QUERY = """
query($id: ID!, $nested: Boolean) {
  group(id: $id) {
    members(roles: [MEMBER], includeNested: $nested, first: 500) { totalCount edges { node { user { id } } } }
    progressSummary(includeNested: $nested) {
      learnerCount courses { course { name } enrolledCount completedCount averagePercentCompleted }
    }
    progressReport(includeNested: $nested, first: 500) { totalCount edges { node { user { id } courseName } } }
  }
}
"""

SUMMARY = """query($id: ID!) { group(id: $id) {
  members(roles: [MEMBER], includeNested: true) { totalCount } progressSummary { learnerCount } } }"""


async def granted(site: Site, requester: User, subject: User) -> int:
    """A GRANTED consent from `subject` to `requester`, as respondToAccessRequest leaves it."""
    async with site.database.transaction() as session:
        row = AccessRequest(
            requester_id=requester.id, subject_email=subject.email, subject_email_normalized=subject.email_normalized,  # type: ignore[arg-type]
            subject_user_id=subject.id, status="GRANTED", expires_at=utcnow() + timedelta(days=30), decided_at=utcnow(),
        )
        session.add(row)
        await session.flush()
        return row.id  # type: ignore[return-value]


async def tracker(site: Site) -> dict[str, Any]:
    """An Online Tracker group: its leader asked two learners for consent and placed them on it; a co-leader
    placed one learner of their own (by consent to them) and has another by their own membership."""
    t = await site.user("Tess", kind="STAFF")
    co = await site.user("Cora", kind="STAFF")
    group = await site.group("Tracker")
    await site.member(t, group, "LEADER")
    await site.member(co, group, "LEADER")
    una = await site.user("Una", "Upton")
    vic = await site.user("Vic", "Vance")
    wes = await site.user("Wes", "West")
    own = await site.user("Oli", "Own")
    await site.member(una, group, access_request_id=await granted(site, t, una))
    await site.member(vic, group, access_request_id=await granted(site, t, vic))
    await site.member(wes, group, access_request_id=await granted(site, co, wes))
    await site.member(own, group)
    maths, steps = await course(site, "Maths", 4)
    for user, done in ((una, 1), (vic, 4), (wes, 2), (own, 0)):
        await enroll(site, user, maths)
        await progress(site, user, steps, viewed=done, completed=done)
    admin = await site.user("Adm", kind="STAFF", roles="ADMIN")
    return {"group": group, "tess": t, "cora": co, "admin": admin, "una": una, "vic": vic, "wes": wes, "own": own}


async def agree(site: Site, caller: User, group: Any, nested: bool) -> dict[str, Any]:
    """The invariants for one caller and group; returns the summary for the test to check its figures."""
    body = await site.gql(QUERY, {"id": gid("Group", group), "nested": nested}, as_user=caller)
    assert "errors" not in body, body
    data = body["data"]["group"]
    members = {e["node"]["user"]["id"] for e in data["members"]["edges"]}
    summary, report = data["progressSummary"], data["progressReport"]
    rows = [(e["node"]["user"]["id"], e["node"]["courseName"]) for e in report["edges"]]
    assert len(rows) == report["totalCount"]
    # every learner of these fixtures is enrolled: the report's distinct users are the summary's learners
    assert {u for u, _ in rows} == members
    assert summary["learnerCount"] == len(members)
    per_course = Counter(c for _, c in set(rows))
    assert {c["course"]["name"]: c["enrolledCount"] for c in summary["courses"]} == dict(per_course)
    url = f"/exports/groups/{group.id}/progress.csv?includeNested={'true' if nested else 'false'}"
    paths = [True, False] if site.database.dialect == "postgresql" else [False]
    for use_copy in paths:  # PostgreSQL: COPY, then the Python path; SQLite: the Python path
        site.settings.export_use_copy = use_copy
        exported = await site.client.get(url, headers=auth(await site.token(caller)))
        assert exported.status_code == 200, exported.text
        assert len(parse(exported.content)) - 1 == report["totalCount"], use_copy
    site.settings.export_use_copy = True
    workbook = await site.client.get(url.replace("progress.csv", "progress.xlsx"), headers=auth(await site.token(caller)))
    assert workbook.status_code == 200 and len(sheet(workbook.content)) - 1 == report["totalCount"]
    return summary


def sheet(content: bytes) -> list[Any]:
    import io

    from openpyxl import load_workbook

    return list(load_workbook(io.BytesIO(content), read_only=True).active.iter_rows(values_only=True))


async def test_consent_based_members_count_for_whoever_may_see_them(site: Site) -> None:
    s = await tracker(site)
    group = s["group"]
    # the leader who holds the consents: their two learners and the own member
    summary = await agree(site, s["tess"], group, True)
    assert summary["learnerCount"] == 3
    assert summary["courses"] == [
        {"course": {"name": "Maths"}, "enrolledCount": 3, "completedCount": 0, "averagePercentCompleted": 41.67}
    ]
    # the co-leader: their own consent's learner and the own member, never the other leader's consents
    summary = await agree(site, s["cora"], group, False)
    assert summary["learnerCount"] == 2
    assert summary["courses"][0]["averagePercentCompleted"] == 25.0
    # a site admin: everyone
    assert (await agree(site, s["admin"], group, True))["learnerCount"] == 4


async def test_summary_and_report_agree_over_a_school(site: Site) -> None:
    s = await school(site)
    # a consent-based member of Class B, placed by the leader on a consent to them; the mentor and the
    # analyst of Class A may not see them
    dan = await site.user("Dan", "Dunn")
    await site.member(dan, s["b"], access_request_id=await granted(site, s["leader"], dan))
    await enroll(site, dan, s["art"])
    expected = {("leader", "root"): 4, ("admin", "root"): 4, ("mentor", "root"): 3, ("leader", "b"): 2,
                ("mentor", "b"): 1, ("analyst", "a"): 2}
    for (who, where), learners in expected.items():
        if who == "mentor":  # no EXPORT_GROUP: the summary alone, counted as the list counts
            body = await site.gql(SUMMARY, {"id": gid("Group", s[where])}, as_user=s[who])
            data = body["data"]["group"]
            assert data["progressSummary"]["learnerCount"] == data["members"]["totalCount"] == learners, (who, where)
            continue
        summary = await agree(site, s[who], s[where], True)
        assert summary["learnerCount"] == learners, (who, where)
