"""Mentor review: who may grade (and who may not), points checks, grade and feed effects, the queue."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from app.store.models import AccessRequest, ActivityEvent, AuditEvent, GuardianLink, Submission, utcnow
from tests.progress_helpers import course, enroll, event, record
from tests.site import Site, errors_of, gid

REVIEW = """mutation($id: ID!, $p: Int, $f: String) { reviewSubmission(id: $id, points: $p, feedback: $f) {
  id status points feedback reviewedAt reviewedBy { firstName } user { firstName } step { position maxPoints } } }"""
QUEUE = """query($id: ID!, $a: String, $n: Int) { group(id: $id) { reviewQueue(first: $n, after: $a) {
  totalCount edges { node { id body user { firstName } step { title } } } pageInfo { hasNextPage endCursor } } } }"""
RED_DOT = "query($id: ID!) { user(id: $id) { pendingReviewCount } }"


async def classroom(site: Site) -> dict[str, Any]:
    """A school with a class; one learner who handed in an assignment; one person per role."""
    people = {
        "admin": await site.user("Ada", kind="STAFF", roles="ADMIN"),
        "leader": await site.user("Leo", kind="STAFF"),
        "mentor": await site.user("Mia", kind="STAFF"),
        "analyst": await site.user("Ann", kind="STAFF", roles="GROUP_ANALYST"),
        "grantee": await site.user("Gus", kind="STAFF"),
        "guardian": await site.user("Gwen", kind="EXTERNAL"),
        "classmate": await site.user("Cal"),
        "learner": await site.user("Lea"),
    }
    school = await site.group("School")
    klass = await site.group("Class", school)
    await site.member(people["leader"], school, "LEADER")
    await site.member(people["mentor"], klass, "MENTOR")
    await site.member(people["analyst"], school, "ANALYST")
    await site.member(people["classmate"], klass)
    await site.member(people["learner"], klass)
    async with site.database.transaction() as session:
        session.add(AccessRequest(
            requester_id=people["grantee"].id, subject_email=people["learner"].email,
            subject_email_normalized=people["learner"].email_normalized, subject_user_id=people["learner"].id,
            status="GRANTED", expires_at=utcnow() + timedelta(days=30), decided_at=utcnow(),
        ))
        session.add(GuardianLink(external_user_id=people["guardian"].id, pupil_id=people["learner"].id, licence_type="PARENT_GUARDIAN"))  # type: ignore[arg-type]
    c = await course(site, people["admin"], "Essays", [("LESSON", None), ("ASSIGNMENT", 20), ("ASSIGNMENT", None)])
    await enroll(site, people["admin"], [people["learner"], people["classmate"]], c)
    body = await record(site, people["admin"], [
        event(people["learner"], "SUBMITTED", c["steps"][1], utcnow() - timedelta(hours=2), body="my essay"),
        event(people["learner"], "SUBMITTED", c["steps"][2], utcnow() - timedelta(hours=1), body="a drawing"),
    ])
    assert body == {"data": {"recordProgress": 2}}, body
    async with site.database.session() as session:
        graded, ungraded = list(await session.scalars(select(Submission).order_by(Submission.submitted_at)))
    return {**people, "school": school, "class": klass, "course": c, "graded": graded, "ungraded": ungraded}


async def status_of(site: Site, submission: Submission) -> tuple[str, int | None, int | None]:
    async with site.database.session() as session:
        row = await session.get(Submission, submission.id)
        assert row is not None
        return row.status, row.points, row.reviewer_id


async def test_who_may_review(site: Site) -> None:
    room = await classroom(site)
    graded = gid("Submission", room["graded"])
    # may see the work (VIEW_PROGRESS) but not grade it
    for role in ("analyst", "grantee", "guardian"):
        seen = await site.gql("query($id: ID!) { node(id: $id) { ... on Submission { body status } } }", {"id": graded}, as_user=room[role])
        assert seen["data"]["node"] == {"body": "my essay", "status": "NEEDS_REVIEW"}, role
        denied = await site.gql(REVIEW, {"id": graded, "p": 15}, as_user=room[role])
        assert errors_of(denied) == ["FORBIDDEN"] and denied["data"] is None, role
    # a classmate may not even see it: exactly like a missing id; the learner may not grade their own work
    assert errors_of(await site.gql(REVIEW, {"id": graded, "p": 15}, as_user=room["classmate"])) == ["NOT_FOUND"]
    assert errors_of(await site.gql(REVIEW, {"id": gid("Submission", 999_999), "p": 15}, as_user=room["classmate"])) == ["NOT_FOUND"]
    assert errors_of(await site.gql(REVIEW, {"id": graded, "p": 15}, as_user=room["learner"])) == ["FORBIDDEN"]
    assert await status_of(site, room["graded"]) == ("NEEDS_REVIEW", None, None)
    assert await site.count(ActivityEvent, ActivityEvent.kind == "REVIEW") == 0
    # the red dot follows REVIEW_WORK too
    dot = await site.gql(RED_DOT, {"id": gid("User", room["learner"])}, as_user=room["analyst"])
    assert dot["data"]["user"] == {"pendingReviewCount": None} and errors_of(dot) == ["FORBIDDEN"]
    assert (await site.gql(RED_DOT, {"id": gid("User", room["learner"])}, as_user=room["mentor"]))["data"]["user"] == {"pendingReviewCount": 2}

    by_mentor = await site.gql(REVIEW, {"id": graded, "p": 15, "f": " Good work. "}, as_user=room["mentor"])
    assert "errors" not in by_mentor, by_mentor
    done = by_mentor["data"]["reviewSubmission"]
    assert (done["status"], done["points"], done["feedback"], done["reviewedBy"]) == ("REVIEWED", 15, "Good work.", {"firstName": "Mia"})
    assert done["user"] == {"firstName": "Lea"} and done["reviewedAt"] is not None
    by_leader = await site.gql(REVIEW, {"id": gid("Submission", room["ungraded"]), "f": "Lovely"}, as_user=room["leader"])
    assert by_leader["data"]["reviewSubmission"]["status"] == "REVIEWED"
    assert await status_of(site, room["ungraded"]) == ("REVIEWED", None, room["leader"].id)
    assert (await site.gql(RED_DOT, {"id": gid("User", room["learner"])}, as_user=room["mentor"]))["data"]["user"] == {"pendingReviewCount": 0}
    assert await site.count(AuditEvent, AuditEvent.action == "submission.review") == 2


async def test_points_out_of_range_change_nothing(site: Site) -> None:
    room = await classroom(site)
    graded, ungraded = gid("Submission", room["graded"]), gid("Submission", room["ungraded"])
    for points in (-1, 21, None):
        body = await site.gql(REVIEW, {"id": graded, "p": points, "f": "x"}, as_user=room["mentor"])
        assert errors_of(body) == ["BAD_USER_INPUT"] and body["errors"][0]["extensions"]["field"] == "points", points
    body = await site.gql(REVIEW, {"id": ungraded, "p": 3}, as_user=room["mentor"])
    assert errors_of(body) == ["BAD_USER_INPUT"]
    assert await status_of(site, room["graded"]) == ("NEEDS_REVIEW", None, None)
    assert await status_of(site, room["ungraded"]) == ("NEEDS_REVIEW", None, None)
    assert await site.count(ActivityEvent, ActivityEvent.kind == "REVIEW") == 0
    assert await site.count(AuditEvent, AuditEvent.action == "submission.review") == 0
    edge = await site.gql(REVIEW, {"id": graded, "p": 20}, as_user=room["mentor"])
    assert edge["data"]["reviewSubmission"]["points"] == 20


async def test_review_counts_toward_grade_and_shows_in_the_feed(site: Site) -> None:
    room = await classroom(site)
    learner = room["learner"]
    cards = "query($id: ID!) { user(id: $id) { courseProgress { gradePercent steps { points } } } }"
    before = await site.gql(cards, {"id": gid("User", learner)}, as_user=learner)
    assert before["data"]["user"]["courseProgress"] == [{"gradePercent": None, "steps": [{"points": None}] * 3}]
    await site.gql(REVIEW, {"id": gid("Submission", room["graded"]), "p": 5, "f": "Needs sources."}, as_user=room["mentor"])
    after = await site.gql(cards, {"id": gid("User", learner)}, as_user=learner)
    assert after["data"]["user"]["courseProgress"] == [{"gradePercent": 25.0, "steps": [{"points": None}, {"points": 5}, {"points": None}]}]
    # regrading replaces the points
    await site.gql(REVIEW, {"id": gid("Submission", room["graded"]), "p": 18}, as_user=room["leader"])
    regraded = await site.gql(cards, {"id": gid("User", learner)}, as_user=room["guardian"])
    assert regraded["data"]["user"]["courseProgress"][0]["gradePercent"] == 90.0
    feed = await site.gql(
        "query($id: ID!) { user(id: $id) { activity(first: 10) { edges { node { kind body step { position } course { name } } } } } }",
        {"id": gid("User", learner)}, as_user=learner,
    )
    kinds = [(e["node"]["kind"], e["node"]["body"], e["node"]["step"]["position"]) for e in feed["data"]["user"]["activity"]["edges"]]
    assert kinds == [("REVIEW", None, 2), ("REVIEW", "Needs sources.", 2), ("SUBMISSION", None, 3), ("SUBMISSION", None, 2)]


async def test_queue_lists_nested_members_oldest_first_in_pages(site: Site) -> None:
    room = await classroom(site)
    sub = await site.group("Subclass", room["class"])
    late = await site.user("Lou")
    await site.member(late, sub)
    await enroll(site, room["admin"], [late], room["course"])
    steps = room["course"]["steps"]
    await record(site, room["admin"], [
        event(late, "SUBMITTED", steps[1], utcnow() - timedelta(hours=3), body="first of all"),
        event(room["classmate"], "SUBMITTED", steps[1], utcnow() - timedelta(minutes=5), body="newest"),
    ])
    seen: list[str] = []
    after = None
    while True:
        body = await site.gql(QUEUE, {"id": gid("Group", room["school"]), "a": after, "n": 2}, as_user=room["leader"])
        queue = body["data"]["group"]["reviewQueue"]
        assert queue["totalCount"] == 4
        seen += [e["node"]["body"] for e in queue["edges"]]
        if not queue["pageInfo"]["hasNextPage"]:
            break
        after = queue["pageInfo"]["endCursor"]
    assert seen == ["first of all", "my essay", "a drawing", "newest"]
    # check agrees with list: every queued submission is also there by id, for the same caller
    listed = await site.gql(QUEUE, {"id": gid("Group", room["school"]), "n": 10}, as_user=room["leader"])
    for edge in listed["data"]["group"]["reviewQueue"]["edges"]:
        node = await site.gql("query($id: ID!) { node(id: $id) { ... on Submission { body } } }", {"id": edge["node"]["id"]}, as_user=room["leader"])
        assert node["data"]["node"] == {"body": edge["node"]["body"]}
    # the subclass queue holds only its own members' work; a mentor of the class sees the class and below
    sub_queue = await site.gql(QUEUE, {"id": gid("Group", sub), "n": 10}, as_user=room["mentor"])
    assert [e["node"]["user"]["firstName"] for e in sub_queue["data"]["group"]["reviewQueue"]["edges"]] == ["Lou"]
    # analysts see the group but not its queue; reviewed work leaves the queue
    denied = await site.gql(QUEUE, {"id": gid("Group", room["school"]), "n": 10}, as_user=room["analyst"])
    assert denied["data"]["group"] == {"reviewQueue": None} and errors_of(denied) == ["FORBIDDEN"]
    await site.gql(REVIEW, {"id": gid("Submission", room["graded"]), "p": 10}, as_user=room["mentor"])
    body = await site.gql(QUEUE, {"id": gid("Group", room["school"]), "n": 10}, as_user=room["leader"])
    assert [e["node"]["body"] for e in body["data"]["group"]["reviewQueue"]["edges"]] == ["first of all", "a drawing", "newest"]


async def test_learner_sees_own_submission_but_not_the_reviewer_profile(site: Site) -> None:
    room = await classroom(site)
    await site.gql(REVIEW, {"id": gid("Submission", room["graded"]), "p": 10}, as_user=room["mentor"])
    own = await site.gql(
        "query($id: ID!) { node(id: $id) { ... on Submission { status points reviewedBy { firstName } user { firstName } } } }",
        {"id": gid("Submission", room["graded"])}, as_user=room["learner"],
    )
    assert own["data"]["node"] == {"status": "REVIEWED", "points": 10, "reviewedBy": None, "user": {"firstName": "Lea"}}


async def test_who_sees_progress_activity_and_the_red_dot(site: Site) -> None:
    room = await classroom(site)
    query = """query($id: ID!) { user(id: $id) { courseProgress { percentViewed } usageMinutes
      activity(first: 1) { edges { node { kind } } } pendingReviewCount } }"""
    expected = {  # role: (progress and usage, activity, red dot)
        "admin": (True, True, True),
        "leader": (True, True, True),
        "mentor": (True, True, True),
        "analyst": (True, False, False),
        "grantee": (True, False, False),
        "guardian": (True, False, False),
        "learner": (True, True, False),
    }
    for role, (progress, activity, dot) in expected.items():
        body = await site.gql(query, {"id": gid("User", room["learner"])}, as_user=room[role])
        user = body["data"]["user"]
        assert (user["courseProgress"] is not None, user["usageMinutes"] is not None) == (progress, progress), role
        assert (user["activity"] is not None) == activity, role
        assert (user["pendingReviewCount"] is not None) == dot, role
        denied = sorted(e["path"][-1] for e in body.get("errors", []))
        assert all(code == "FORBIDDEN" for code in errors_of(body)), role
        assert denied == sorted(
            [f for f, ok in (("activity", activity), ("pendingReviewCount", dot), ("courseProgress", progress), ("usageMinutes", progress)) if not ok]
        ), role
    # a classmate sees nothing of the learner: the user itself is null, as for a missing id
    assert (await site.gql(query, {"id": gid("User", room["learner"])}, as_user=room["classmate"]))["data"]["user"] is None
