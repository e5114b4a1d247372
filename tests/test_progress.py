"""Courses, enrollment, progress ingestion, progress cards, group summaries, usage and the activity feed."""

from __future__ import annotations

from datetime import datetime, timedelta

from app.models import utcnow
from tests.progress_helpers import course, enroll, event, record
from tests.site import Site, gid

CARDS = """query($id: ID!) { user(id: $id) { courseProgress {
  course { name stepCount } activatedAt expiresAt completedAt percentViewed percentCompleted gradePercent
  stepsCompleted stepCount steps { step { position kind maxPoints } viewedAt completedAt points }
} usageMinutes } }"""


async def test_progress_cards_hand_computed(site: Site) -> None:
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    lea = await site.user("Lea")
    graded = await course(site, admin, "Algebra", [("LESSON", None), ("LESSON", None), ("QUIZ", 10), ("ASSIGNMENT", 20)])
    plain = await course(site, admin, "Biology", [("LESSON", None), ("LESSON", None)])
    empty = await course(site, admin, "Chemistry", [])
    assert empty["stepCount"] == 0 and graded["steps"][2] == {**graded["steps"][2], "position": 3, "kind": "QUIZ", "maxPoints": 10}
    for c in (graded, plain, empty):
        assert await enroll(site, admin, [lea], c) == 1
    t0 = utcnow() - timedelta(hours=3)
    a, b = graded["steps"], plain["steps"]
    body = await record(site, admin, [
        event(lea, "VIEWED", a[0], t0),
        event(lea, "COMPLETED", a[0], t0 + timedelta(minutes=5)),
        event(lea, "VIEWED", a[1], t0 + timedelta(minutes=6)),
        event(lea, "COMPLETED", a[2], t0 + timedelta(minutes=7), points=7),
        event(lea, "COMPLETED", b[0], t0 + timedelta(minutes=8)),
        event(lea, "COMPLETED", b[1], t0 + timedelta(minutes=9)),
        event(lea, "USAGE", at=t0, minutes=30),
        event(lea, "USAGE", at=t0 + timedelta(minutes=1), minutes=12),
    ])
    assert body == {"data": {"recordProgress": 8}}, body
    seen = await site.gql(CARDS, {"id": gid("User", lea)}, as_user=lea)
    assert "errors" not in seen, seen
    cards = {c["course"]["name"]: c for c in seen["data"]["user"]["courseProgress"]}
    assert list(cards) == ["Algebra", "Biology", "Chemistry"]
    alg = cards["Algebra"]
    # 3 of 4 viewed (a completed step counts as viewed), 2 of 4 completed, 7 of the 10 points graded so far
    assert (alg["percentViewed"], alg["percentCompleted"], alg["gradePercent"]) == (75.0, 50.0, 70.0)
    assert (alg["stepsCompleted"], alg["stepCount"], alg["completedAt"]) == (2, 4, None)
    assert [s["step"]["position"] for s in alg["steps"]] == [1, 2, 3, 4]
    assert [s["points"] for s in alg["steps"]] == [None, None, 7, None]
    assert [s["completedAt"] is not None for s in alg["steps"]] == [True, False, True, False]
    assert [s["viewedAt"] is not None for s in alg["steps"]] == [True, True, True, False]
    assert alg["activatedAt"] is not None and alg["expiresAt"] is None
    bio = cards["Biology"]
    assert (bio["percentViewed"], bio["percentCompleted"], bio["gradePercent"]) == (100.0, 100.0, None)
    assert datetime.fromisoformat(bio["completedAt"]) == t0 + timedelta(minutes=9)
    chem = cards["Chemistry"]
    assert (chem["percentViewed"], chem["percentCompleted"], chem["gradePercent"], chem["completedAt"]) == (0.0, 0.0, None, None)
    assert chem["steps"] == [] and chem["stepCount"] == 0
    assert seen["data"]["user"]["usageMinutes"] == 42

    only = await site.gql(
        "query($id: ID!, $c: [ID!]) { user(id: $id) { courseProgress(courseIds: $c) { course { name } } } }",
        {"id": gid("User", lea), "c": [plain["id"]]}, as_user=admin,
    )
    assert only["data"]["user"]["courseProgress"] == [{"course": {"name": "Biology"}}]
