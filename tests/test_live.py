"""Live updates: every subscription on both engines, each event decided on the subscriber's permissions as
they are then, the ways a subscription ends, and the limits."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from app.store.models import Membership, Session, User, utcnow
from tests.live import Closed, codes, connect, subscribed
from tests.progress_helpers import course, enroll, event, record
from tests.site import Site, errors_of, gid

RED_DOT = """subscription($g: ID!) { reviewQueueChanged(groupId: $g) {
  group { name } pendingCount submission { body status user { firstName } } } }"""
PROGRESS = """subscription($g: ID!) { groupProgressChanged(groupId: $g) {
  user { firstName } course { name } percentCompleted occurredAt } }"""
REQUESTS = "subscription { accessRequestChanged { status subjectEmail requester { firstName } } }"
REVIEW = "mutation($id: ID!) { reviewSubmission(id: $id, points: 10) { id status } }"
REMOVE = "mutation($ids: [ID!]!) { removeMembers(membershipIds: $ids) }"


async def school(site: Site) -> dict[str, Any]:
    people = {
        "admin": await site.user("Ada", kind="STAFF", roles="ADMIN"),
        "leader": await site.user("Leo", kind="STAFF"),
        "mentor": await site.user("Mia", kind="STAFF"),
        "other_mentor": await site.user("Oto", kind="STAFF"),
        "learner": await site.user("Lea"),
        "outsider": await site.user("Out"),
    }
    top = await site.group("School")
    klass = await site.group("Class", top)
    other = await site.group("Other class", top)
    await site.member(people["leader"], top, "LEADER")
    mentoring = await site.member(people["mentor"], klass, "MENTOR")
    await site.member(people["other_mentor"], other, "MENTOR")
    await site.member(people["learner"], klass)
    await site.member(people["outsider"], other)
    c = await course(site, people["admin"], "Essays", [("LESSON", None), ("ASSIGNMENT", 20), ("ASSIGNMENT", 20)])
    await enroll(site, people["admin"], [people["learner"], people["outsider"]], c)
    return {**people, "school": top, "class": klass, "other": other, "course": c, "mentoring": mentoring}


async def submit(site: Site, room: dict[str, Any], who: str, step: int, body: str) -> None:
    result = await record(site, room["admin"], [event(room[who], "SUBMITTED", room["course"]["steps"][step], body=body)])
    assert result == {"data": {"recordProgress": 1}}, result


async def test_red_dot_follows_submissions_reviews_and_the_mentors_membership(site: Site) -> None:
    room = await school(site)
    mentor = await connect(site, await site.token(room["mentor"]))
    other = await connect(site, await site.token(room["other_mentor"]))
    mentor.subscribe("1", RED_DOT, {"g": gid("Group", room["class"])})
    other.subscribe("1", RED_DOT, {"g": gid("Group", room["other"])})
    assert await mentor.next("1") == {"data": {"reviewQueueChanged": {"group": {"name": "Class"}, "pendingCount": 0, "submission": None}}}
    assert (await other.next("1"))["data"]["reviewQueueChanged"]["pendingCount"] == 0

    await submit(site, room, "learner", 1, "my essay")
    change = (await mentor.next("1"))["data"]["reviewQueueChanged"]
    assert change == {"group": {"name": "Class"}, "pendingCount": 1,
                      "submission": {"body": "my essay", "status": "NEEDS_REVIEW", "user": {"firstName": "Lea"}}}

    # a batch that fails changes nothing and announces nothing; the next event is the next real change
    bad = await record(site, room["admin"], [
        event(room["learner"], "SUBMITTED", room["course"]["steps"][2], body="never saved"),
        event(room["learner"], "SUBMITTED", {"id": gid("Step", 999_999)}, body="bad step"),
    ])
    assert errors_of(bad) == ["BAD_USER_INPUT"]
    await submit(site, room, "outsider", 1, "other work")  # the other class: only the other mentor hears
    assert (await other.next("1"))["data"]["reviewQueueChanged"]["submission"]["body"] == "other work"
    submission = (await site.gql("{ viewer { id } }", as_user=room["mentor"]))  # warm the mentor's token
    assert "errors" not in submission
    pending = await site.gql(
        'query($g: ID!) { group(id: $g) { reviewQueue(first: 5) { edges { node { id } } } } }',
        {"g": gid("Group", room["class"])}, as_user=room["mentor"],
    )
    (first,) = pending["data"]["group"]["reviewQueue"]["edges"]
    assert errors_of(await site.gql(REVIEW, {"id": first["node"]["id"]}, as_user=room["mentor"])) == []
    change = (await mentor.next("1"))["data"]["reviewQueueChanged"]
    assert change["pendingCount"] == 0 and change["submission"]["status"] == "REVIEWED"

    # the mentor is removed from the class: the stream ends at once, with FORBIDDEN
    removed = await site.gql(REMOVE, {"ids": [gid("Membership", room["mentoring"])]}, as_user=room["leader"])
    assert removed == {"data": {"removeMembers": 1}}, removed
    assert codes(await mentor.next("1")) == ["FORBIDDEN"]
    await subscribed(site, 1)  # the other mentor's still runs
    await mentor.close()
    await other.close()
