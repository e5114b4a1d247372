"""Mentor review you can navigate: the queue by status and member, a user's submissions, the latest submission
on a card, every review kept, and reviewed work counting as completed as the course decides; on SQLite and
PostgreSQL, with the denial side and statement counts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from app.store.models import Review, utcnow
from tests.progress_helpers import course, enroll, event, record
from tests.site import Site, errors_of, gid

REVIEW = """mutation($id: ID!, $p: Int) { reviewSubmission(id: $id, points: $p) { id status points
  reviews { points reviewer { firstName } } } }"""
QUEUE = """query($g: ID!, $s: SubmissionStatus, $u: ID, $a: String) { group(id: $g) {
  reviewQueue(status: $s, userId: $u, first: 2, after: $a) { totalCount pageInfo { hasNextPage endCursor }
    edges { node { id body user { firstName } reviews { points reviewer { firstName } } } } } } }"""
CARD = """query($u: ID!, $s: SubmissionStatus) { user(id: $u) {
  submissions(status: $s) { totalCount edges { node { body status } } }
  courseProgress { course { name } percentCompleted steps { completedAt submission { body } } } } }"""
SUMMARY = """query($g: ID!) { group(id: $g) { progressSummary { courses { course { name } averagePercentCompleted } }
  progressReport { edges { node { firstName courseName percentCompleted } } } } }"""


async def setup(site: Site) -> dict[str, Any]:
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    mentor = await site.user("Mia", kind="STAFF")
    analyst = await site.user("Ann", kind="STAFF", roles="GROUP_ANALYST")
    amy, ben = await site.user("Amy"), await site.user("Ben")
    group = await site.group("Class")
    await site.member(mentor, group, "MENTOR")
    await site.member(analyst, group, "ANALYST")
    for learner in (amy, ben):
        await site.member(learner, group)
    essays = await course(site, admin, "Essays", [("LESSON", None), ("ASSIGNMENT", 10)])
    await enroll(site, admin, [amy, ben], essays)
    now = utcnow()
    body = await record(site, admin, [
        event(amy, "SUBMITTED", essays["steps"][1], now - timedelta(hours=3), body="amy draft"),
        event(ben, "SUBMITTED", essays["steps"][1], now - timedelta(hours=2), body="ben essay"),
        event(amy, "SUBMITTED", essays["steps"][1], now - timedelta(hours=1), body="amy final"),
    ])
    assert body == {"data": {"recordProgress": 3}}, body
    return {"admin": admin, "mentor": mentor, "analyst": analyst, "amy": amy, "ben": ben, "group": group, "essays": essays}


async def queue(site: Site, ctx: dict[str, Any], who: str = "mentor", **variables: Any) -> dict[str, Any]:
    body = await site.gql(QUEUE, {"g": gid("Group", ctx["group"]), **variables}, as_user=ctx[who])
    assert "errors" not in body, body
    return body["data"]["group"]["reviewQueue"]


async def test_review_queue_history_and_completion(site: Site) -> None:
    s = await setup(site)
    waiting = await queue(site, s)
    assert waiting["totalCount"] == 3 and [e["node"]["body"] for e in waiting["edges"]] == ["amy draft", "ben essay"]
    rest = await queue(site, s, a=waiting["pageInfo"]["endCursor"])
    assert [e["node"]["body"] for e in rest["edges"]] == ["amy final"] and not rest["pageInfo"]["hasNextPage"]
    amy_only = await queue(site, s, u=gid("User", s["amy"]))
    assert amy_only["totalCount"] == 2 and [e["node"]["body"] for e in amy_only["edges"]] == ["amy draft", "amy final"]
    draft = amy_only["edges"][0]["node"]["id"]
    ben_essay = waiting["edges"][1]["node"]["id"]

    # the analyst sees the work but may not review it; nothing changes
    denied = await site.gql(REVIEW, {"id": draft, "p": 5}, as_user=s["analyst"])
    assert errors_of(denied) == ["FORBIDDEN"]
    denied_queue = await site.gql(QUEUE, {"g": gid("Group", s["group"])}, as_user=s["analyst"])
    assert errors_of(denied_queue) == ["FORBIDDEN"] and denied_queue["data"]["group"]["reviewQueue"] is None
    assert await site.count(Review) == 0

    # grading, then grading again: both reviews kept, the latest grade on the submission
    assert (await site.gql(REVIEW, {"id": draft, "p": 6}, as_user=s["mentor"]))["data"]["reviewSubmission"]["points"] == 6
    regraded = await site.gql(REVIEW, {"id": draft, "p": 8}, as_user=s["mentor"])
    assert regraded["data"]["reviewSubmission"] == {
        "id": draft, "status": "REVIEWED", "points": 8,
        "reviews": [{"points": 6, "reviewer": {"firstName": "Mia"}}, {"points": 8, "reviewer": {"firstName": "Mia"}}],
    }
    await site.gql(REVIEW, {"id": ben_essay, "p": 9}, as_user=s["admin"])
    graded = await queue(site, s, s="REVIEWED")  # newest reviewed first
    assert [e["node"]["body"] for e in graded["edges"]] == ["ben essay", "amy draft"] and graded["totalCount"] == 2
    assert (await queue(site, s))["totalCount"] == 1  # amy final still waits

    # the card: the latest submission per assignment; reviewed work counts as completed, everywhere alike
    card = (await site.gql(CARD, {"u": gid("User", s["amy"])}, as_user=s["mentor"]))["data"]["user"]
    assert card["submissions"]["totalCount"] == 2
    assert [e["node"]["body"] for e in card["submissions"]["edges"]] == ["amy final", "amy draft"]
    progress = card["courseProgress"][0]
    assert progress["percentCompleted"] == 50.0
    assert [st["submission"] for st in progress["steps"]] == [None, {"body": "amy final"}]
    assert progress["steps"][1]["completedAt"] is not None
    reviewed = (await site.gql(CARD, {"u": gid("User", s["amy"]), "s": "REVIEWED"}, as_user=s["mentor"]))["data"]["user"]
    assert [e["node"]["body"] for e in reviewed["submissions"]["edges"]] == ["amy draft"]
    summary = (await site.gql(SUMMARY, {"g": gid("Group", s["group"])}, as_user=s["analyst"]))["data"]["group"]
    assert summary["progressSummary"]["courses"] == [{"course": {"name": "Essays"}, "averagePercentCompleted": 50.0}]
    assert sorted(e["node"]["percentCompleted"] for e in summary["progressReport"]["edges"]) == [50.0, 50.0]
    # a learner may not read another's submissions (the user is not visible to them)
    assert (await site.gql(CARD, {"u": gid("User", s["amy"])}, as_user=s["ben"]))["data"] == {"user": None}

    # statement counts: a page of the queue with its reviews costs the same for 1 and 2 rows
    with site.statements() as one:
        await queue(site, s, s="REVIEWED", u=gid("User", s["ben"]))
    with site.statements() as two:
        await queue(site, s, s="REVIEWED")
    assert one.count == two.count


async def test_a_course_may_not_count_reviewed_work(site: Site) -> None:
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    amy = await site.user("Amy")
    made = await site.gql(
        """mutation { createCourse(name: "Drafts", reviewedWorkCompletes: false,
          steps: [{title: "Write", kind: ASSIGNMENT, maxPoints: null}]) { id reviewedWorkCompletes steps { id } } }""",
        as_user=admin,
    )
    drafts = made["data"]["createCourse"]
    assert drafts["reviewedWorkCompletes"] is False
    await enroll(site, admin, [amy], drafts)
    await record(site, admin, [event(amy, "SUBMITTED", drafts["steps"][0], utcnow() - timedelta(hours=1), body="x")])
    queued = await site.gql("query($u: ID!) { user(id: $u) { submissions { edges { node { id } } } } }", {"u": gid("User", amy)}, as_user=admin)
    sid = queued["data"]["user"]["submissions"]["edges"][0]["node"]["id"]
    assert (await site.gql(REVIEW, {"id": sid}, as_user=admin))["data"]["reviewSubmission"]["status"] == "REVIEWED"
    card = await site.gql("query($u: ID!) { user(id: $u) { courseProgress { percentCompleted } } }", {"u": gid("User", amy)}, as_user=admin)
    assert card["data"]["user"]["courseProgress"] == [{"percentCompleted": 0.0}]
