"""Live updates: every subscription on both engines, each event decided on the subscriber's permissions as
they are then, the ways a subscription ends, and the limits."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from app.services.auth import API_TOKEN_PREFIX, new_token, token_hash
from app.services.viewers import viewers_now
from app.store.models import ApiToken, Membership, Session, User, utcnow
from dataloaders.store import Store
from tests.live import Closed, codes, connect, subscribed, until
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

    metrics = (await site.client.get("/metrics")).text
    for name in (
        "groupgraph_live_connections", "groupgraph_live_subscriptions", "groupgraph_live_events_published_total",
        "groupgraph_live_events_delivered_total", "groupgraph_live_delivery_seconds_bucket",
    ):
        assert name in metrics, name


async def fresh_token(site: Site, user: User) -> tuple[str, int]:
    """Another session of `user` (site.token keeps one per user): the token and the session's id."""
    from app.services.auth import SESSION_PREFIX, new_token, token_hash

    token = new_token(SESSION_PREFIX)
    row = Session(user_id=user.id, token_hash=token_hash(token), expires_at=utcnow() + timedelta(hours=1))  # type: ignore[arg-type]
    async with site.database.transaction() as session:
        session.add(row)
    return token, row.id  # type: ignore[return-value]


async def test_one_batch_decides_each_subscriber_on_their_own_sign_in_and_reach(site: Site) -> None:
    """Events that arrive together are decided together (one statement for every subscriber's sign-in and
    Reach, the event's data read once), yet each subscriber on their own: of three mentors of one class, one
    whose session expired and one whose membership ended (neither announced, so the batch itself finds
    out) end at the burst's first event; the third hears both submissions of the burst."""
    from app.runtime.ids import require_id
    from app.services.events import review_changed

    room = await school(site)
    second, third = await site.user("Max", kind="STAFF"), await site.user("Ned", kind="STAFF")
    await site.member(second, room["class"], "MENTOR")
    ending = await site.member(third, room["class"], "MENTOR")
    expiring, expiring_id = await fresh_token(site, second)
    socks = {"kept": await connect(site, await site.token(room["mentor"])), "expired": await connect(site, expiring),
             "ended": await connect(site, await site.token(third)), "other": await connect(site, await site.token(room["other_mentor"]))}
    for name, sock in socks.items():
        sock.subscribe("1", RED_DOT, {"g": gid("Group", room["other" if name == "other" else "class"])})
        assert (await sock.next("1"))["data"]["reviewQueueChanged"]["pendingCount"] == 0
    async with site.database.transaction() as session:
        await session.execute(update(Session).where(Session.id == expiring_id).values(expires_at=utcnow() - timedelta(seconds=1)))
        await session.execute(update(Membership).where(Membership.id == ending.id).values(ended_at=utcnow()))

    burst = await record(site, room["admin"], [
        event(room["learner"], "SUBMITTED", room["course"]["steps"][1], body="first"),
        event(room["learner"], "SUBMITTED", room["course"]["steps"][2], body="second"),
        event(room["outsider"], "SUBMITTED", room["course"]["steps"][1], body="elsewhere"),
    ])
    assert burst == {"data": {"recordProgress": 3}}, burst
    assert codes(await socks["expired"].next("1")) == ["UNAUTHENTICATED"]
    assert codes(await socks["ended"].next("1")) == ["FORBIDDEN"]
    heard = [(await socks["kept"].next("1"))["data"]["reviewQueueChanged"] for _ in range(2)]
    # one transaction: both events are decided after it, on the queue as it is then
    assert [(c["pendingCount"], c["submission"]["body"]) for c in heard] == [(2, "first"), (2, "second")]
    elsewhere = (await socks["other"].next("1"))["data"]["reviewQueueChanged"]
    assert (elsewhere["pendingCount"], elsewhere["submission"]["body"]) == (1, "elsewhere")
    await subscribed(site, 2)

    # what a batch costs does not grow with its subscribers: one of them, or twenty more of the same class
    broker = site.app.state.broker
    step_id = require_id(room["course"]["steps"][1]["id"], "Step", "stepId")

    async def statements_for(subscribers: list[Any]) -> int:
        with site.statements() as counted:
            await broker.publish([review_changed(room["learner"].id, step_id=step_id)])  # type: ignore[arg-type]
            for sock in subscribers:
                assert "data" in await sock.next("1")
        return counted.count

    alone = await statements_for([socks["kept"]])
    more = []
    for n in range(20):
        mentor = await site.user(f"Mentor{n}", kind="STAFF")
        await site.member(mentor, room["class"], "MENTOR")
        sock = await connect(site, await site.token(mentor))
        sock.subscribe("1", RED_DOT, {"g": gid("Group", room["class"])})
        assert "data" in await sock.next("1")
        more.append(sock)
    assert await statements_for([socks["kept"], *more]) == alone
    for sock in [*socks.values(), *more]:
        await sock.close()


@pytest.mark.engines("postgres")
async def test_a_submission_names_its_row_and_its_delivery_costs_two_statements(site: Site) -> None:
    """On PostgreSQL recordProgress announces the new submission's id (from its INSERT's RETURNING) and the
    learner's groups, and the routing statement reads that row with the learner's memberships and the red dots
    of the followers of those groups: a lone delivery costs the routing and the subscriber's sign-in and Reach
    (and the red-dot count a statement of its own when the event names no groups), and the submission it
    carries is the new one."""
    room = await school(site)
    sock = await connect(site, await site.token(room["mentor"]))
    red_dot = "subscription($g: ID!) { reviewQueueChanged(groupId: $g) { pendingCount submission { id body user { firstName } } } }"
    sock.subscribe("1", red_dot, {"g": gid("Group", room["class"])})
    assert (await sock.next("1"))["data"]["reviewQueueChanged"]["pendingCount"] == 0
    broker = site.app.state.broker
    heard: list[dict[str, Any]] = []
    publish = broker.publish

    async def spy(events: list[dict[str, Any]]) -> None:
        heard.extend(events)
        await publish(events)

    site.database.after_commit = spy
    body = await record(site, room["admin"], [event(room["learner"], "SUBMITTED", room["course"]["steps"][1], body="mine")])
    assert body == {"data": {"recordProgress": 1}}, body
    change = (await sock.next("1"))["data"]["reviewQueueChanged"]
    assert (change["pendingCount"], change["submission"]["body"]) == (1, "mine")
    review = next(e for e in heard if e["k"] == "review")
    assert "st" not in review and gid("Submission", review["s"]) == change["submission"]["id"]
    # with the learner's groups as recordProgress read them: a worker that follows none of them needs no statement
    assert review["g"] == sorted([room["class"].id, room["school"].id])

    with site.statements() as counted:  # the same event once more: the delivery alone
        await publish([{k: v for k, v in review.items() if k != "at"}])
        again = (await sock.next("1"))["data"]["reviewQueueChanged"]
        assert (again["pendingCount"], again["submission"]["id"]) == (1, change["submission"]["id"])
    assert counted.count == 2
    with site.statements() as counted:  # without the groups: the red dot in a statement of its own
        await publish([{k: v for k, v in review.items() if k not in ("at", "g")}])
        again = (await sock.next("1"))["data"]["reviewQueueChanged"]
        assert (again["pendingCount"], again["submission"]["id"]) == (1, change["submission"]["id"])
    assert counted.count == 3
    site.database.after_commit = publish
    await sock.close()


async def test_an_event_naming_groups_nobody_here_follows_costs_no_statement(site: Site) -> None:
    """A review or progress event that names the learner's groups is routed to nobody, without a statement, by a
    worker none of whose subscriptions follows one of them; one that names a followed group is routed (on the
    memberships as they are then) and decided as always."""
    room = await school(site)
    sock = await connect(site, await site.token(room["mentor"]))
    sock.subscribe("1", RED_DOT, {"g": gid("Group", room["class"])})
    assert (await sock.next("1"))["data"]["reviewQueueChanged"]["pendingCount"] == 0
    progress = await connect(site, await site.token(room["leader"]))
    progress.subscribe("2", PROGRESS, {"g": gid("Group", room["school"])})
    await subscribed(site, 2)
    await submit(site, room, "learner", 1, "mine")
    assert (await sock.next("1"))["data"]["reviewQueueChanged"]["pendingCount"] == 1
    assert (await progress.next("2"))["data"]["groupProgressChanged"]["user"]["firstName"] == "Lea"
    broker = site.app.state.broker
    learner, course_id, step = room["learner"].id, room["course"]["databaseId"], room["course"]["steps"][1]["databaseId"]
    received = broker.received
    from app.services.events import progress_changed, review_changed

    with site.statements() as counted:  # groups nobody here follows, for a learner who is in the followed ones
        await broker.publish([review_changed(learner, step_id=step, groups=[room["other"].id]),
                              progress_changed(learner, course_id, groups=[room["other"].id])])
        await until(lambda: broker.received == received + 2, "both events heard")
    assert counted.count == 0
    batches = broker.batches
    await broker.publish([review_changed(learner, step_id=step, groups=[room["class"].id, room["school"].id])])
    assert (await sock.next("1"))["data"]["reviewQueueChanged"]["submission"]["body"] == "mine"
    await until(lambda: broker.batches > batches, "the event decided")
    assert sock.outgoing.empty() and progress.outgoing.empty()  # the events routed to nobody sent nothing
    await sock.close()
    await progress.close()


async def test_subscribing_is_checked_like_a_query(site: Site) -> None:
    room = await school(site)
    anonymous = await connect(site)
    anonymous.subscribe("1", RED_DOT, {"g": gid("Group", room["class"])})
    assert codes(await anonymous.next("1")) == ["UNAUTHENTICATED"]
    anonymous.subscribe("2", REQUESTS)
    assert codes(await anonymous.next("2")) == ["UNAUTHENTICATED"]
    await anonymous.close()
    with pytest.raises(Closed) as refused:  # a token that is not valid: the connection is refused
        await connect(site, "ggs_not-a-token")
    assert refused.value.code == 4403

    learner = await connect(site, await site.token(room["learner"]))
    learner.subscribe("1", RED_DOT, {"g": gid("Group", room["class"])})  # sees the class, may not review
    assert codes(await learner.next("1")) == ["FORBIDDEN"]
    learner.subscribe("2", PROGRESS, {"g": gid("Group", room["class"])})
    assert codes(await learner.next("2")) == ["FORBIDDEN"]
    outsider = await connect(site, await site.token(room["outsider"]))
    for n, group in enumerate((gid("Group", room["class"]), gid("Group", 999_999))):  # invisible = missing
        outsider.subscribe(str(n), RED_DOT, {"g": group})
        assert codes(await outsider.next(str(n))) == ["NOT_FOUND"]
    # the same limits as queries
    deep = "subscription($g: ID!) { reviewQueueChanged(groupId: $g) { group " + "{ parent " * 12 + "{ name }" + " }" * 13 + " }"
    mentor = await connect(site, await site.token(room["mentor"]))
    mentor.subscribe("1", deep, {"g": gid("Group", room["class"])})
    assert codes(await mentor.next("1")) == ["QUERY_TOO_DEEP"]
    await subscribed(site, 0)
    # a subscription over plain HTTP is refused
    plain = await site.gql(RED_DOT, {"g": gid("Group", room["class"])}, as_user=room["mentor"])
    assert plain.get("data") is None and plain["errors"], plain
    for sock in (learner, outsider, mentor):
        await sock.close()


async def test_the_subscription_ends_when_the_sign_in_ends(site: Site) -> None:
    room = await school(site)
    mentor = room["mentor"]
    (signed_out, _), (kept, _), (expiring, expiring_id) = [await fresh_token(site, mentor) for _ in range(3)]
    socks = {name: await connect(site, token) for name, token in
             (("signed_out", signed_out), ("kept", kept), ("expiring", expiring))}
    for sock in socks.values():
        sock.subscribe("1", RED_DOT, {"g": gid("Group", room["class"])})
        assert (await sock.next("1"))["data"]["reviewQueueChanged"]["pendingCount"] == 0

    # signing out with one token ends what runs on it, now; the mentor's other sign-ins go on
    assert await site.gql("mutation { logout }", token=signed_out) == {"data": {"logout": True}}
    assert codes(await socks["signed_out"].next("1")) == ["UNAUTHENTICATED"]
    # an expired session: ended at its next event
    async with site.database.transaction() as session:
        await session.execute(update(Session).where(Session.id == expiring_id).values(expires_at=utcnow() - timedelta(seconds=1)))
    await submit(site, room, "learner", 1, "first")
    assert codes(await socks["expiring"].next("1")) == ["UNAUTHENTICATED"]
    assert (await socks["kept"].next("1"))["data"]["reviewQueueChanged"]["pendingCount"] == 1
    # an account set to DENIED: ended at once
    denied = await site.gql(
        "mutation($u: [ID!]!) { setAccountStatus(userIds: $u, status: DENIED) { id } }", {"u": [gid("User", mentor)]},
        as_user=room["admin"],
    )
    assert "errors" not in denied, denied
    assert codes(await socks["kept"].next("1")) == ["UNAUTHENTICATED"]
    await subscribed(site, 0)
    for sock in socks.values():
        await sock.close()

    # a membership ended (archived: kept for history, gives no access) ends the other mentor's stream
    other = await connect(site, await site.token(room["other_mentor"]))
    other.subscribe("1", PROGRESS, {"g": gid("Group", room["other"])})
    await subscribed(site, 1)
    async with site.database.transaction() as session:
        await session.execute(
            update(Membership).where(Membership.user_id == room["other_mentor"].id).values(ended_at=utcnow())
        )
    await submit(site, room, "outsider", 1, "essay")
    assert codes(await other.next("1")) == ["FORBIDDEN"]
    await other.close()


async def test_nothing_is_announced_for_a_transaction_rolled_back(site: Site) -> None:
    from app.services.events import ACCESS, access_request_changed
    from dataloaders.store import Store

    user = await site.user("Rae")
    subscriber = await site.app.state.broker.open(ACCESS, user.id, user.id)
    store = Store(site.database)
    with pytest.raises(RuntimeError):
        async with store.transaction():
            store.publish(access_request_changed(1, [user.id]))
            raise RuntimeError("changed my mind")
    async with store.transaction():
        store.publish(access_request_changed(2, [user.id]))
    await store.close()
    assert (await subscriber.next(10)).event["r"] == 2  # type: ignore[union-attr]  # the first thing heard: the committed one
    site.app.state.broker.close(subscriber)


async def test_group_progress_shows_only_whom_the_subscriber_may_see(site: Site) -> None:
    """A leader who placed a learner on the strength of a consent hears of that learner's progress until the
    consent is revoked, and never after; other members go on."""
    room = await school(site)
    grantee = await site.user("Gus", kind="STAFF")
    own = await site.group("Gus's club")
    await site.member(grantee, own, "LEADER")
    await site.member(room["outsider"], own)  # a member in their own right
    asked = await site.gql(
        "mutation($e: String!) { requestAccess(email: $e) { id } }", {"e": room["learner"].email}, as_user=grantee
    )
    request_id = asked["data"]["requestAccess"]["id"]
    granted = await site.gql(
        "mutation($id: ID!) { respondToAccessRequest(id: $id, decision: GRANT) { status } }", {"id": request_id},
        as_user=room["learner"],
    )
    assert granted["data"]["respondToAccessRequest"]["status"] == "GRANTED", granted
    added = await site.gql(
        "mutation($g: ID!, $u: [ID!]!) { addMembers(groupId: $g, userIds: $u) { id } }",
        {"g": gid("Group", own), "u": [gid("User", room["learner"])]}, as_user=grantee,
    )
    assert "errors" not in added, added

    sock = await connect(site, await site.token(grantee))
    sock.subscribe("1", PROGRESS, {"g": gid("Group", own)})
    await subscribed(site, 1)
    await submit(site, room, "learner", 1, "essay")
    change = (await sock.next("1"))["data"]["groupProgressChanged"]
    assert change["user"] == {"firstName": "Lea"} and change["course"] == {"name": "Essays"}
    assert change["percentCompleted"] == 0.0 and change["occurredAt"]

    revoked = await site.gql(
        "mutation($id: ID!) { revokeAccess(id: $id) { status } }", {"id": request_id}, as_user=room["learner"]
    )
    assert revoked["data"]["revokeAccess"]["status"] == "REVOKED", revoked
    await submit(site, room, "learner", 2, "after the consent")  # not for the grantee any more
    done = await record(site, room["admin"], [event(room["outsider"], "COMPLETED", room["course"]["steps"][0])])
    assert done == {"data": {"recordProgress": 1}}
    change = (await sock.next("1"))["data"]["groupProgressChanged"]  # the next thing heard: the other member
    assert change["user"] == {"firstName": "Out"} and change["percentCompleted"] == pytest.approx(33.33)
    await sock.close()


async def test_access_requests_reach_both_people_and_nobody_else(site: Site) -> None:
    requester = await site.user("Rob", kind="STAFF")
    subject = await site.user("Sue")
    stranger = await site.user("Tim")
    made = await site.gql('mutation { createApiToken(name: "phone") { token } }', as_user=subject)
    api_token = made["data"]["createApiToken"]["token"]  # an API token signs in the same way as a session
    socks = {}
    for name, user in (("requester", requester), ("subject", subject), ("stranger", stranger)):
        socks[name] = await connect(site, api_token if user is subject else await site.token(user))
        socks[name].subscribe("1", REQUESTS)
    await subscribed(site, 3)

    asked = await site.gql("mutation($e: String!) { requestAccess(email: $e, message: \"hi\") { id } }",
                           {"e": subject.email}, as_user=requester)
    request_id = asked["data"]["requestAccess"]["id"]
    for name in ("subject", "requester"):
        assert (await socks[name].next("1"))["data"]["accessRequestChanged"] == {
            "status": "PENDING", "subjectEmail": subject.email, "requester": {"firstName": "Rob"}}
    for decision, status in (("respondToAccessRequest(id: $id, decision: GRANT)", "GRANTED"), ("revokeAccess(id: $id)", "REVOKED")):
        body = await site.gql(f"mutation($id: ID!) {{ {decision} {{ status }} }}", {"id": request_id}, as_user=subject)
        assert "errors" not in body, body
        for name in ("requester", "subject"):
            assert (await socks[name].next("1"))["data"]["accessRequestChanged"]["status"] == status
    # the stranger heard none of it: the first thing they hear is their own request
    await site.gql("mutation { requestAccess(email: \"nobody@example.com\") { id } }", as_user=stranger)
    assert (await socks["stranger"].next("1"))["data"]["accessRequestChanged"]["subjectEmail"] == "nobody@example.com"
    for sock in socks.values():
        await sock.close()


@pytest.mark.parametrize(
    "settings_overrides",
    [{
        "live_max_subscriptions_per_connection": 2, "live_max_subscriptions_per_user": 3, "live_queue_size": 2,
        "live_max_message_bytes": 4000, "live_connection_init_seconds": 0.3, "live_ping_seconds": 0.3,
        "live_pong_seconds": 0.3,
    }],
)
async def test_limits(site: Site) -> None:
    room = await school(site)
    token = await site.token(room["mentor"])
    group = {"g": gid("Group", room["class"])}
    first, second = await connect(site, token), await connect(site, token)
    for n in "12":
        first.subscribe(n, RED_DOT, group)
        assert (await first.next(n))["data"]["reviewQueueChanged"]["pendingCount"] == 0
    first.subscribe("3", RED_DOT, group)  # per connection
    assert codes(await first.next("3")) == ["TOO_MANY_SUBSCRIPTIONS"]
    second.subscribe("1", RED_DOT, group)
    assert (await second.next("1"))["data"]["reviewQueueChanged"]["pendingCount"] == 0
    second.subscribe("2", RED_DOT, group)  # per user
    assert codes(await second.next("2")) == ["TOO_MANY_SUBSCRIPTIONS"]
    await first.close()

    # a consumer that falls behind is ended instead of buffered without bound
    await subscribed(site, 1)
    second.flowing.clear()
    for step in (1, 2, 1, 2):
        await submit(site, room, "learner", step, "again")
    await until(lambda: any(s.too_slow for subs in site.app.state.broker._by_user.values() for s in subs))
    second.flowing.set()
    assert (await second.next("1"))["data"]["reviewQueueChanged"]["pendingCount"] >= 1  # the one in flight
    assert codes(await second.next("1")) == ["SUBSCRIBER_TOO_SLOW"]

    # a message over the size limit closes the connection
    second.send({"id": "9", "type": "subscribe", "payload": {"query": "#" * 5000}})
    with pytest.raises(Closed) as closed:
        await second.receive()
    assert closed.value.code == 1009
    await second.close()

    # no connection_init in time: closed (4408); a client that stops answering pings: closed
    silent = await connect_raw(site)
    with pytest.raises(Closed) as closed:
        await silent.receive()
    assert closed.value.code == 4408
    await silent.close()
    deaf = await connect(site, token)
    deaf.answer_pings = False
    with pytest.raises(Closed) as closed:
        await deaf.receive()
    assert closed.value.code == 1001
    await deaf.close()
    await subscribed(site, 0)


async def connect_raw(site: Site) -> Any:
    from tests.live import Socket

    return await Socket(site.app).open()


async def test_server_sent_events(site: Site) -> None:
    """graphql-sse (distinct connections): the same subscription as a text/event-stream response."""
    import asyncio
    import re

    async def delivered() -> float:
        metrics = (await site.client.get("/metrics")).text
        found = re.search(r'^groupgraph_live_events_delivered_total\{field="reviewQueueChanged"\} (\S+)$', metrics, re.M)
        return float(found.group(1)) if found else 0.0

    room = await school(site)
    token = await site.token(room["mentor"])
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    counted = await delivered()
    stream = asyncio.create_task(site.client.post(
        "/graphql", json={"query": RED_DOT, "variables": {"g": gid("Group", room["class"])}}, headers=headers, timeout=30,
    ))
    await subscribed(site, 1)
    broker = site.app.state.broker
    batches = broker.batches
    await submit(site, room, "learner", 1, "essay")
    await until(lambda: broker.batches > batches, "the submission decided")  # before the removal, not after
    removed = await site.gql(REMOVE, {"ids": [gid("Membership", room["mentoring"])]}, as_user=room["leader"])
    assert removed == {"data": {"removeMembers": 1}}
    response = await stream
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [block for block in response.text.split("\r\n\r\n") if block.startswith("event:")]
    assert [e.split("\r\n")[0] for e in events] == ["event: next"] * 3 + ["event: complete"], events
    counts = [e for e in events[:2]]
    assert '"pendingCount":0' in counts[0] and '"pendingCount":1' in counts[1] and '"body":"essay"' in counts[1]
    assert '"code":"FORBIDDEN"' in events[2]
    assert await delivered() == counted + 2  # what a stream sends counts in /metrics, as on a WebSocket


async def test_streams_end_cleanly_when_the_worker_stops(site: Site) -> None:
    """A stopping worker (SIGTERM: app.runtime.lifecycle) ends its subscriptions at once: an SSE stream with
    `complete` instead of being cut after the grace period, a WebSocket operation with `complete`."""
    import asyncio

    from app.runtime.lifecycle import begin_stop, stopping

    room = await school(site)
    token = await site.token(room["mentor"])
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    stream = asyncio.create_task(site.client.post(
        "/graphql", json={"query": RED_DOT, "variables": {"g": gid("Group", room["class"])}}, headers=headers, timeout=30,
    ))
    sock = await connect(site, token)
    sock.subscribe("1", PROGRESS, {"g": gid("Group", room["class"])})
    await subscribed(site, 2)
    try:
        begin_stop()
        response = await stream
        events = [block.split("\r\n")[0] for block in response.text.split("\r\n\r\n") if block.startswith("event:")]
        assert events == ["event: next", "event: complete"], response.text
        assert await sock.receive() == {"id": "1", "type": "complete"}
        await subscribed(site, 0)
    finally:
        stopping().clear()
        await sock.close()


async def test_one_token_signs_in_as_it_would_among_others(site: Site) -> None:
    """A batch with one subscriber signs it in through the request's sign-in statement, a batch of several
    through one statement for all: both give the same sign-in and Reach, and both refuse an ended session, a
    revoked API token and a DENIED account."""
    school = await site.group("School")
    klass = await site.group("Class", school)
    leader, mentor, pupil, denied = (await site.user("Lea", kind="STAFF"), await site.user("Men", kind="STAFF"),
                                     await site.user("Pup"), await site.user("Den", status="DENIED"))
    await site.member(leader, school, "LEADER")
    await site.member(mentor, klass, "MENTOR")
    await site.member(pupil, klass)
    tokens = {"leader": await site.token(leader), "mentor": await site.token(mentor), "denied": await site.token(denied),
              "ended": await site.token(pupil, expires_in=timedelta(seconds=-1))}
    live_api, revoked_api = new_token(API_TOKEN_PREFIX), new_token(API_TOKEN_PREFIX)
    async with site.database.transaction() as session:
        session.add(ApiToken(user_id=leader.id, name="reports", token_hash=token_hash(live_api)))  # type: ignore[arg-type]
        session.add(ApiToken(user_id=mentor.id, name="old", token_hash=token_hash(revoked_api), revoked_at=utcnow()))  # type: ignore[arg-type]
    tokens |= {"api": live_api, "revoked api": revoked_api}

    def shown(viewer: Any) -> Any:
        credential = viewer.credential
        if credential is None:
            return None
        return credential.user.id, credential.session_id, credential.api_token_id, viewer.reach

    store = Store(site.database)
    try:
        together = await viewers_now(store, tokens.values())
        for name, token in tokens.items():
            with site.statements() as counted:
                alone = await viewers_now(store, [token])
            assert counted.count == 1, name
            assert shown(alone[token]) == shown(together[token]), name
    finally:
        await store.close()
    assert {n for n, t in tokens.items() if together[t].credential is None} == {"denied", "ended", "revoked api"}
    assert together[tokens["leader"]].reach != together[tokens["mentor"]].reach
