"""Courses, enrollment, progress ingestion, progress cards, group summaries, usage and the activity feed."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from app.services.auth import API_TOKEN_PREFIX, new_token, token_hash
from app.store.models import (
    ActivityEvent,
    ApiToken,
    AuditEvent,
    Enrollment,
    IngestedEvent,
    StepProgress,
    Submission,
    Usage,
    utcnow,
)
from tests.progress_helpers import CREATE_COURSE, ENROLL, course, enroll, event, record
from tests.site import Site, errors_of, gid

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


async def test_catalogue_and_who_builds_it(site: Site) -> None:
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    leader = await site.user("Leo", kind="STAFF")
    lea = await site.user("Lea")
    await site.member(leader, await site.group("Class"), "LEADER")
    denied = await site.gql(CREATE_COURSE, {"name": "X", "steps": []}, as_user=leader)
    assert errors_of(denied) == ["FORBIDDEN"] and denied["data"] is None
    bad = await site.gql(CREATE_COURSE, {"name": "X", "steps": [{"title": "t", "kind": "QUIZ", "maxPoints": 0}]}, as_user=admin)
    assert errors_of(bad) == ["BAD_USER_INPUT"] and bad["errors"][0]["extensions"]["field"] == "steps.0.maxPoints"
    names = ["Zoology", "Art", "Music", "Art"]
    made = [await course(site, admin, n, [("LESSON", None)]) for n in names]
    pages: list[str] = []
    after = None
    while True:
        page = await site.gql(
            "query($a: String) { courses(first: 3, after: $a) { totalCount edges { node { name stepCount steps { title course { name } } } } pageInfo { hasNextPage endCursor } } }",
            {"a": after}, as_user=lea,
        )
        conn = page["data"]["courses"]
        assert conn["totalCount"] == 4
        pages.extend(e["node"]["name"] for e in conn["edges"])
        assert all(e["node"]["steps"][0]["course"]["name"] == e["node"]["name"] for e in conn["edges"])
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    assert pages == ["Art", "Art", "Music", "Zoology"]
    anonymous = await site.gql("{ courses { totalCount } }")
    assert errors_of(anonymous) == ["UNAUTHENTICATED"]
    node = await site.gql("query($id: ID!) { node(id: $id) { ... on Step { title course { name } } } }", {"id": made[0]["steps"][0]["id"]}, as_user=lea)
    assert node["data"]["node"] == {"title": "Zoology 1", "course": {"name": "Zoology"}}
    assert (await site.gql("query($id: ID!) { node(id: $id) { id } }", {"id": made[0]["id"]}))["data"]["node"] is None


async def test_enroll_rules(site: Site) -> None:
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    leader = await site.user("Leo", kind="STAFF")
    lea, max_ = await site.user("Lea"), await site.user("Max")
    group = await site.group("Class")
    await site.member(leader, group, "LEADER")
    await site.member(lea, group)
    c = await course(site, admin, "Algebra", [("LESSON", None)])
    denied = await site.gql(ENROLL, {"u": [gid("User", lea)], "c": c["id"]}, as_user=leader)
    assert errors_of(denied) == ["FORBIDDEN"] and await site.count(Enrollment) == 0
    missing = await site.gql(ENROLL, {"u": [gid("User", lea), gid("User", 999_999)], "c": c["id"]}, as_user=admin)
    assert errors_of(missing) == ["BAD_USER_INPUT"] and missing["errors"][0]["extensions"]["userIds"] == [gid("User", 999_999)]
    assert await site.count(Enrollment) == 0
    past = await site.gql(ENROLL, {"u": [gid("User", lea)], "c": c["id"], "x": (utcnow() - timedelta(days=1)).isoformat()}, as_user=admin)
    assert errors_of(past) == ["BAD_USER_INPUT"] and await site.count(Enrollment) == 0
    assert await enroll(site, admin, [lea], c) == 1
    until = utcnow() + timedelta(days=30)
    again = await site.gql(ENROLL, {"u": [gid("User", lea), gid("User", max_)], "c": c["id"], "x": until.isoformat()}, as_user=admin)
    assert again == {"data": {"enroll": 1}}
    cards = await site.gql("query($id: ID!) { user(id: $id) { courseProgress { expiresAt } } }", {"id": gid("User", lea)}, as_user=leader)
    assert datetime.fromisoformat(cards["data"]["user"]["courseProgress"][0]["expiresAt"]) == until
    assert await site.count(AuditEvent, AuditEvent.action == "course.enroll") == 2


async def test_the_same_events_twice_count_once(site: Site) -> None:
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    lea = await site.user("Lea")
    c = await course(site, admin, "Algebra", [("LESSON", None), ("ASSIGNMENT", 10)])
    await enroll(site, admin, [lea], c)
    t0 = utcnow() - timedelta(hours=1)
    batch = [
        event(lea, "COMPLETED", c["steps"][0], t0),
        event(lea, "SUBMITTED", c["steps"][1], t0 + timedelta(minutes=1), body="my essay"),
        event(lea, "DISCUSSION_POST", at=t0 + timedelta(minutes=2), courseId=c["id"], body="hello"),
        event(lea, "USAGE", at=t0, minutes=20),
    ]
    assert await record(site, admin, [*batch, batch[3]]) == {"data": {"recordProgress": 4}}
    assert await record(site, admin, batch) == {"data": {"recordProgress": 0}}
    assert await site.count(Usage) == 1 and await site.count(Submission) == 1 and await site.count(IngestedEvent) == 4
    assert await site.count(ActivityEvent) == 3  # completed, submission, post
    seen = await site.gql("query($id: ID!) { user(id: $id) { usageMinutes courseProgress { stepsCompleted percentViewed } } }", {"id": gid("User", lea)}, as_user=lea)
    assert seen["data"]["user"] == {"usageMinutes": 20, "courseProgress": [{"stepsCompleted": 1, "percentViewed": 100.0}]}
    # completing a step again later changes nothing visible: the first completion stands, no second feed entry
    assert await record(site, admin, [event(lea, "COMPLETED", c["steps"][0], t0 + timedelta(minutes=9))]) == {"data": {"recordProgress": 1}}
    assert await site.count(ActivityEvent, ActivityEvent.kind == "STEP_COMPLETED") == 1
    async with site.database.session() as session:
        row = (await session.execute(StepProgress.__table__.select().where(StepProgress.step_id == c["steps"][0]["databaseId"]))).first()
    assert row is not None and row.completed_at == t0


async def test_one_event_at_a_time_counts_once_and_is_audited(site: Site) -> None:
    """One event per call (as a learning platform sends them as they happen): each kind that has rows of its own
    is recorded once, a repeat changes nothing and answers 0, and every call leaves its audit row. On PostgreSQL
    a call costs three statements whatever happened before: the sign-in, the lookups, and one write."""
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    lea = await site.user("Lea")
    c = await course(site, admin, "Algebra", [("LESSON", None), ("ASSIGNMENT", 10)])
    await enroll(site, admin, [lea], c)
    t0 = utcnow() - timedelta(hours=1)
    singles = [
        event(lea, "VIEWED", c["steps"][0], t0),
        event(lea, "SUBMITTED", c["steps"][1], t0 + timedelta(minutes=1), body="my essay"),
        event(lea, "DISCUSSION_POST", at=t0 + timedelta(minutes=2), courseId=c["id"], body="hello"),
    ]
    for n, one in enumerate([*singles, *singles]):
        with site.statements() as counted:
            answer = await record(site, admin, [one])
        assert answer == {"data": {"recordProgress": 1 if n < len(singles) else 0}}, answer
        if site.database.dialect == "postgresql":
            assert counted.count == 3, counted.count
    assert await site.count(Submission) == 1 and await site.count(IngestedEvent) == 3
    assert await site.count(ActivityEvent) == 2  # the submission, the post
    async with site.database.session() as session:
        details = list(await session.scalars(select(AuditEvent.detail).where(AuditEvent.action == "progress.record")
                                             .order_by(AuditEvent.id)))
    assert [json.loads(d) for d in details] == [
        {"events": 1, "applied": 1, "repeated": 0, "kinds": {kind: 1}} for kind in ("VIEWED", "SUBMITTED", "DISCUSSION_POST")
    ] + [{"events": 1, "applied": 0, "repeated": 1, "kinds": {}}] * 3
    mine = await site.gql("query($id: ID!) { user(id: $id) { courseProgress { percentViewed } submissions { totalCount } } }",
                          {"id": gid("User", lea)}, as_user=lea)
    assert mine["data"]["user"] == {"courseProgress": [{"percentViewed": 100.0}], "submissions": {"totalCount": 1}}, mine


async def test_one_bad_event_leaves_the_whole_batch_unapplied(site: Site) -> None:
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    lea = await site.user("Lea")
    c = await course(site, admin, "Algebra", [("LESSON", None), ("QUIZ", 5)])
    other = await course(site, admin, "Biology", [("LESSON", None)])
    await enroll(site, admin, [lea], c)
    now = utcnow()
    batch = [
        event(lea, "COMPLETED", c["steps"][0], now - timedelta(minutes=5)),    # 0 fine
        event(lea, "VIEWED", other["steps"][0]),                               # 1 not enrolled
        {"userId": gid("User", 999_999), "kind": "VIEWED", "stepId": c["steps"][0]["id"]},  # 2 unknown user
        event(lea, "USAGE", minutes=-3),                                       # 3 negative minutes
        event(lea, "USAGE"),                                                   # 4 missing minutes
        event(lea, "VIEWED", c["steps"][0], now + timedelta(hours=1)),         # 5 future
        {"userId": gid("User", lea), "kind": "VIEWED", "stepId": gid("Step", 999_999)},  # 6 unknown step
        event(lea, "SUBMITTED", c["steps"][0]),                                # 7 not an assignment
        event(lea, "COMPLETED", c["steps"][1], points=6),                      # 8 points above maxPoints
        event(lea, "USAGE", minutes=5),                                        # 9 fine
    ]
    body = await record(site, admin, batch)
    assert errors_of(body) == ["BAD_USER_INPUT"] and body["data"] is None
    detail = body["errors"][0]["extensions"]
    assert detail["field"] == "events"
    assert sorted({p["index"] for p in detail["invalidEvents"]}) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert {p["index"]: p["field"] for p in detail["invalidEvents"]}[3] == "minutes"
    for table in (StepProgress, Usage, IngestedEvent, ActivityEvent, Submission):
        assert await site.count(table) == 0
    assert await site.count(AuditEvent, AuditEvent.action == "progress.record") == 0
    good = await record(site, admin, [batch[0], batch[9]])
    assert good == {"data": {"recordProgress": 2}}


async def test_a_lone_event_is_checked_as_it_is_in_a_batch(site: Site) -> None:
    """A batch of one event reads what its checks need in a statement of its own on PostgreSQL (single values,
    not arrays): each event refused in a batch is refused alone with the same problem, and nothing is written."""
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    lea = await site.user("Lea")
    c = await course(site, admin, "Algebra", [("LESSON", None), ("QUIZ", 5)])
    other = await course(site, admin, "Biology", [("LESSON", None)])
    await enroll(site, admin, [lea], c)
    refused = [
        event(lea, "VIEWED", other["steps"][0]),                                            # not enrolled
        {"userId": gid("User", 999_999), "kind": "VIEWED", "stepId": c["steps"][0]["id"]},  # unknown user
        {"userId": gid("User", lea), "kind": "VIEWED", "stepId": gid("Step", 999_999)},    # unknown step
        event(lea, "SUBMITTED", c["steps"][0]),                                             # not an assignment
        event(lea, "COMPLETED", c["steps"][1], points=6),                                   # points above maxPoints
    ]
    together = (await record(site, admin, refused))["errors"][0]["extensions"]["invalidEvents"]
    for index, one in enumerate(refused):
        body = await record(site, admin, [one])
        assert errors_of(body) == ["BAD_USER_INPUT"], (index, body)
        alone = body["errors"][0]["extensions"]["invalidEvents"]
        assert [{**p, "index": index} for p in alone] == [p for p in together if p["index"] == index], index
    for table in (StepProgress, Usage, IngestedEvent, ActivityEvent, Submission):
        assert await site.count(table) == 0
    assert await record(site, admin, [event(lea, "COMPLETED", c["steps"][1], points=5)]) == {"data": {"recordProgress": 1}}
    assert await record(site, admin, [event(lea, "USAGE", minutes=5)]) == {"data": {"recordProgress": 1}}


async def test_who_may_record_progress(site: Site) -> None:
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    leader = await site.user("Leo", kind="STAFF")
    lea = await site.user("Lea")
    group = await site.group("Class")
    await site.member(leader, group, "LEADER")
    await site.member(lea, group)
    for caller in (leader, lea):
        denied = await record(site, caller, [event(lea, "USAGE", minutes=5)])
        assert errors_of(denied) == ["FORBIDDEN"]
    assert await site.count(Usage) == 0
    token = new_token(API_TOKEN_PREFIX)
    async with site.database.transaction() as session:
        session.add(ApiToken(user_id=admin.id, name="learning platform", token_hash=token_hash(token)))  # type: ignore[arg-type]
    body = await site.gql("mutation($e: [ProgressEventInput!]!) { recordProgress(events: $e) }", {"e": [event(lea, "USAGE", minutes=5)]}, token=token)
    assert body == {"data": {"recordProgress": 1}}


@pytest.mark.parametrize("settings_overrides", [{"max_progress_batch": 3}])
async def test_batch_limit(site: Site) -> None:
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    lea = await site.user("Lea")
    body = await record(site, admin, [event(lea, "USAGE", minutes=1, at=utcnow() - timedelta(minutes=n)) for n in range(4)])
    assert errors_of(body) == ["BAD_USER_INPUT"] and await site.count(Usage) == 0


DASHBOARD_FRAGMENT = """fragment card on User { courseProgress {
  course { name } activatedAt expiresAt completedAt percentViewed percentCompleted gradePercent stepsCompleted stepCount
  steps { step { position kind } viewedAt completedAt points }
} usageMinutes activity(first: 3) { edges { node { kind course { name } step { position } } } } }"""


def dashboard(group_id: str) -> str:
    """The group dashboard: the summary, and every learner's cards reached through a list (the review queue)."""
    return f"""{{ g: group(id: "{group_id}") {{
      progressSummary(includeNested: true) {{ learnerCount courses {{ course {{ name }} enrolledCount completedCount averagePercentCompleted }} }}
      reviewQueue(first: 100) {{ totalCount edges {{ node {{ user {{ ...card }} }} }} }}
    }} }} {DASHBOARD_FRAGMENT}"""


async def test_dashboard_statements_do_not_grow_with_learners(site: Site) -> None:
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    leader = await site.user("Leo", kind="STAFF")
    school = await site.group("School")
    classes = [await site.group(f"Class {n}", school) for n in range(2)]
    await site.member(leader, school, "LEADER")
    courses = [await course(site, admin, f"Course {n}", [("LESSON", None), ("QUIZ", 10), ("ASSIGNMENT", 10)]) for n in range(3)]
    learners: list[Any] = []
    counts: dict[int, int] = {}
    for size in (5, 40):
        fresh = [await site.user(f"L{len(learners) + n}") for n in range(size - len(learners))]
        for n, learner in enumerate(fresh):
            await site.member(learner, classes[n % 2])
        for c in courses:
            await enroll(site, admin, fresh, c)
        at = utcnow() - timedelta(hours=2)
        events = [event(u, "COMPLETED", c["steps"][n % 3], at, **({"points": 4} if n % 3 == 1 else {})) for n, u in enumerate(fresh) for c in courses]
        events += [event(u, "USAGE", at=at, minutes=3) for u in fresh]
        events += [event(u, "SUBMITTED", courses[0]["steps"][2], at, body="work") for u in fresh]
        assert "errors" not in await record(site, admin, events)
        learners += fresh
        query = dashboard(gid("Group", school))
        await site.gql(query, as_user=leader)  # warm the session token and the schema
        with site.statements() as counted:
            body = await site.gql(query, as_user=leader)
        assert "errors" not in body, body["errors"][:2]
        queue = body["data"]["g"]["reviewQueue"]
        assert queue["totalCount"] == size and len(queue["edges"]) == size
        assert all(len(e["node"]["user"]["courseProgress"]) == 3 for e in queue["edges"])
        assert all(len(e["node"]["user"]["activity"]["edges"]) == 3 for e in queue["edges"])
        assert body["data"]["g"]["progressSummary"]["learnerCount"] == size
        counts[size] = counted.count
    assert counts[5] == counts[40], counts
    assert counts[40] <= 14, counts  # sign-in, reach, group, queue page + count, summary, courses, steps, users,
    # their group ids, cards, step records, usage, activity


async def test_group_summary_hand_computed(site: Site) -> None:
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    analyst = await site.user("Ann", kind="STAFF", roles="GROUP_ANALYST")
    outsider = await site.user("Oli", kind="STAFF")
    school = await site.group("School")
    klass = await site.group("Class", school)
    await site.member(analyst, school, "ANALYST")
    await site.member(outsider, await site.group("Elsewhere"), "LEADER")
    a, b, c = await site.user("A"), await site.user("B"), await site.user("C")
    await site.member(a, school)
    await site.member(b, klass)
    await site.member(c, klass)
    await site.member(a, klass)  # counted once
    four = await course(site, admin, "Four", [("LESSON", None)] * 4)
    empty = await course(site, admin, "Empty", [])
    await enroll(site, admin, [a, b, c], four)
    await enroll(site, admin, [b], empty)
    at = utcnow() - timedelta(hours=1)
    steps = four["steps"]
    events = [event(a, "COMPLETED", s, at) for s in steps]            # a: 100 %, completed
    events += [event(b, "COMPLETED", s, at) for s in steps[:2]]       # b: 50 %
    events += [event(c, "VIEWED", steps[0], at)]                      # c: 0 %
    assert "errors" not in await record(site, admin, events)
    query = """query($id: ID!, $n: Boolean) { group(id: $id) { progressSummary(includeNested: $n) {
      learnerCount courses { course { name } enrolledCount completedCount averagePercentCompleted } } } }"""
    nested = await site.gql(query, {"id": gid("Group", school), "n": True}, as_user=analyst)
    assert nested["data"]["group"]["progressSummary"] == {
        "learnerCount": 3,
        "courses": [
            {"course": {"name": "Empty"}, "enrolledCount": 1, "completedCount": 0, "averagePercentCompleted": 0.0},
            {"course": {"name": "Four"}, "enrolledCount": 3, "completedCount": 1, "averagePercentCompleted": 50.0},
        ],
    }
    flat = await site.gql(query, {"id": gid("Group", school), "n": False}, as_user=analyst)
    assert flat["data"]["group"]["progressSummary"] == {
        "learnerCount": 1,
        "courses": [{"course": {"name": "Four"}, "enrolledCount": 1, "completedCount": 1, "averagePercentCompleted": 100.0}],
    }
    assert (await site.gql(query, {"id": gid("Group", school), "n": True}, as_user=outsider))["data"]["group"] is None
    member = await site.gql(query, {"id": gid("Group", klass), "n": True}, as_user=b)
    assert member["data"]["group"] == {"progressSummary": None} and errors_of(member) == ["FORBIDDEN"]


async def test_activity_feed_pages_without_gaps_or_repeats(site: Site) -> None:
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    mentor = await site.user("Mia", kind="STAFF")
    analyst = await site.user("Ann", kind="STAFF", roles="GROUP_ANALYST")
    lea = await site.user("Lea")
    group = await site.group("Class")
    await site.member(mentor, group, "MENTOR")
    await site.member(analyst, group, "ANALYST")
    await site.member(lea, group)
    c = await course(site, admin, "Long", [("LESSON", None)] * 12)
    await enroll(site, admin, [lea], c)
    t0 = utcnow() - timedelta(days=1)
    same = t0 + timedelta(hours=1)  # several events share this instant: the id breaks the tie
    events = [event(lea, "COMPLETED", s, same if n % 3 == 0 else t0 + timedelta(minutes=n)) for n, s in enumerate(c["steps"])]
    events += [event(lea, "DISCUSSION_POST", at=same, courseId=c["id"], body=f"post {n}") for n in range(5)]
    assert "errors" not in await record(site, admin, events)
    query = """query($id: ID!, $a: String) { user(id: $id) { activity(first: 4, after: $a) {
      edges { cursor node { kind occurredAt body step { position } } } pageInfo { hasNextPage endCursor } } } }"""
    seen: list[tuple[str, Any, Any]] = []
    after = None
    pages = 0
    while True:
        body = await site.gql(query, {"id": gid("User", lea), "a": after}, as_user=mentor)
        feed = body["data"]["user"]["activity"]
        seen += [(e["node"]["occurredAt"], e["node"]["body"], e["node"]["step"]) for e in feed["edges"]]
        pages += 1
        if not feed["pageInfo"]["hasNextPage"]:
            break
        after = feed["pageInfo"]["endCursor"]
    assert len(seen) == 17 and pages == 5
    assert len({(t, b, s["position"] if s else None) for t, b, s in seen}) == 17
    times = [datetime.fromisoformat(t) for t, _, _ in seen]
    assert times == sorted(times, reverse=True)
    async with site.database.session() as session:
        ids = list(await session.scalars(ActivityEvent.__table__.select().with_only_columns(ActivityEvent.id).order_by(ActivityEvent.occurred_at.desc(), ActivityEvent.id.desc())))
    assert len(ids) == 17
    # VIEW_ACTIVITY: self, admin, leader/mentor over; not an analyst
    mine = await site.gql(query, {"id": gid("User", lea), "a": None}, as_user=lea)
    assert len(mine["data"]["user"]["activity"]["edges"]) == 4
    denied = await site.gql(query, {"id": gid("User", lea), "a": None}, as_user=analyst)
    assert denied["data"]["user"] == {"activity": None} and errors_of(denied) == ["FORBIDDEN"]
    bad = await site.gql(query, {"id": gid("User", lea), "a": "not-a-cursor"}, as_user=mentor)
    assert errors_of(bad) == ["BAD_USER_INPUT"]


async def test_batch_statements_do_not_grow_with_events(site: Site) -> None:
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    learners = [await site.user(f"L{n}") for n in range(10)]
    c = await course(site, admin, "Big", [("LESSON", None)] * 9 + [("ASSIGNMENT", 10)])
    await enroll(site, admin, learners, c)
    counts = []
    for size, start in ((20, 0), (400, 20)):
        at = utcnow() - timedelta(days=1)
        kinds = ["VIEWED", "COMPLETED", "SUBMITTED", "DISCUSSION_POST", "USAGE"]
        batch = []
        for n in range(start, start + size):
            kind, learner = kinds[n % 5], learners[n % 10]
            when = at + timedelta(seconds=n)
            if kind in ("VIEWED", "COMPLETED"):
                batch.append(event(learner, kind, c["steps"][n % 9], when))
            elif kind == "SUBMITTED":
                batch.append(event(learner, kind, c["steps"][9], when, body="work"))
            elif kind == "DISCUSSION_POST":
                batch.append(event(learner, kind, at=when, courseId=c["id"], body=f"post {n}"))
            else:
                batch.append(event(learner, kind, at=when, minutes=2))
        with site.statements() as counted:
            body = await record(site, admin, batch)
        assert body == {"data": {"recordProgress": size}}, body
        counts.append(counted.count)
    assert counts[0] == counts[1] and counts[1] <= 16, counts
    assert await site.count(Submission) == 84
    async with site.database.session() as session:
        assert await session.scalar(select(func.sum(Usage.minutes))) == 84 * 2
    assert await site.count(Enrollment, Enrollment.completed_at.is_not(None)) == 0  # the assignment is never COMPLETED


async def test_step_detail_is_loaded_only_when_asked_for(site: Site) -> None:
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    lea = await site.user("Lea")
    c = await course(site, admin, "Algebra", [("LESSON", None), ("LESSON", None)])
    await enroll(site, admin, [lea], c)
    assert "errors" not in await record(site, admin, [event(lea, "COMPLETED", c["steps"][1], utcnow() - timedelta(minutes=1))])
    plain = "query($id: ID!) { user(id: $id) { courseProgress { percentCompleted } } }"
    inline = "query($id: ID!) { user(id: $id) { courseProgress { percentCompleted ... on CourseProgress { steps { completedAt } } } } }"
    spread = "query($id: ID!) { user(id: $id) { courseProgress { ...s } } } fragment s on CourseProgress { percentCompleted steps { completedAt } }"
    counts = {}
    for name, query in (("plain", plain), ("inline", inline), ("spread", spread)):
        await site.gql(query, {"id": gid("User", lea)}, as_user=lea)
        with site.statements() as counted:
            body = await site.gql(query, {"id": gid("User", lea)}, as_user=lea)
        card = body["data"]["user"]["courseProgress"][0]
        assert card["percentCompleted"] == 50.0
        if name != "plain":
            assert [s["completedAt"] is not None for s in card["steps"]] == [False, True], name
        counts[name] = counted.count
    assert counts["inline"] == counts["spread"] == counts["plain"] + 1, counts


async def test_the_same_batch_sent_twice_at_once_counts_once(site: Site) -> None:
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    learners = [await site.user(f"L{n}") for n in range(5)]
    c = await course(site, admin, "Algebra", [("LESSON", None)] * 4)
    await enroll(site, admin, learners, c)
    at = utcnow() - timedelta(hours=1)
    batch = [event(u, "COMPLETED", s, at) for u in learners for s in c["steps"]]
    batch += [event(u, "USAGE", at=at, minutes=10) for u in learners]
    await site.token(admin)
    first, second = await asyncio.gather(record(site, admin, batch), record(site, admin, batch))
    assert "errors" not in first and "errors" not in second, (first, second)
    assert first["data"]["recordProgress"] + second["data"]["recordProgress"] == len(batch)
    async with site.database.session() as session:
        assert await session.scalar(select(func.sum(Usage.minutes))) == 50
    assert await site.count(ActivityEvent) == 20 and await site.count(StepProgress) == 20
    assert await site.count(Enrollment, Enrollment.completed_at.is_not(None)) == 5
