"""requestAccess cannot be used to flood an inbox: invitations per requester and per address per day, a wait
before asking an address again after a cancel or a DENY, a capped message, and recipients who block a
requester. None of it tells the requester whether an account has the address."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from app.store.models import AccessRequest, AccessRequestEmail, OutboxEmail, utcnow
from tests.site import Site, errors_of, gid

REQUEST = "mutation($e: String!, $m: String) { requestAccess(email: $e, message: $m) { id status subject { id } } }"
CANCEL = "mutation($id: ID!) { cancelAccessRequest(id: $id) }"
BLOCK = "mutation($id: ID!) { blockAccessRequester(accessRequestId: $id) { status } }"
UNBLOCK = "mutation($u: ID!) { unblockAccessRequester(userId: $u) }"
INCOMING = "{ incomingAccessRequests { id } blockedAccessRequesters { firstName } }"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "access_request_emails_per_requester_per_day": 4,
        "access_request_emails_per_address_per_day": 2,
        "access_request_message_max_length": 100,
    }


async def ask(site: Site, requester: Any, email: str, message: str | None = None) -> dict[str, Any]:
    return await site.gql(REQUEST, {"e": email, "m": message}, as_user=requester)


async def test_cancel_and_ask_again_waits_alike_for_accounts_and_strangers(site: Site) -> None:
    rita = await site.user("Rita")
    sam = await site.user("Sam")
    answers = []
    for address in (sam.email, "nobody@example.com"):
        first = await ask(site, rita, address, "hello")
        assert await site.gql(CANCEL, {"id": first["data"]["requestAccess"]["id"]}, as_user=rita) == {
            "data": {"cancelAccessRequest": True}
        }
        with site.statements() as counted:
            again = await ask(site, rita, address, "hello")
        assert errors_of(again) == ["RATE_LIMITED"], again
        retry = again["errors"][0]["extensions"]["retryAfterSeconds"]
        assert 0 < retry <= site.settings.access_request_repeat_seconds
        answers.append((again["errors"][0]["message"], counted.count))
    assert answers[0] == answers[1]
    assert await site.count(OutboxEmail) == 2
    # once the wait is over, asking works again
    async with site.database.transaction() as session:
        await session.execute(update(AccessRequestEmail).values(cancelled_at=utcnow() - timedelta(days=2)))
    assert "errors" not in await ask(site, rita, sam.email)


async def test_daily_caps_and_message_length(site: Site) -> None:
    rita = await site.user("Rita")
    long = await ask(site, rita, "a@example.com", "x" * 101)
    assert errors_of(long) == ["BAD_USER_INPUT"] and long["errors"][0]["extensions"]["field"] == "message"
    for n in range(4):
        assert "errors" not in await ask(site, rita, f"person{n}@example.com")
    over = await ask(site, rita, "person9@example.com")
    assert errors_of(over) == ["RATE_LIMITED"] and over["errors"][0]["extensions"]["retryAfterSeconds"] > 0

    # one address gets at most two invitations a day: later requests are recorded, not emailed
    target = await site.user("Tess")
    asked = [await site.user(f"Asker{n}") for n in range(3)]
    for requester in asked:
        body = await ask(site, requester, target.email)
        assert body["data"]["requestAccess"]["status"] == "PENDING" and body["data"]["requestAccess"]["subject"] is None
    assert await site.count(OutboxEmail, OutboxEmail.to_address == target.email) == 2
    assert await site.count(AccessRequest, AccessRequest.subject_email_normalized == target.email) == 3


async def test_a_recipient_blocks_a_requester_without_the_requester_knowing(site: Site) -> None:
    rita = await site.user("Rita")
    sam = await site.user("Sam")
    stranger = await site.user("Stan")
    first = (await ask(site, rita, sam.email))["data"]["requestAccess"]
    # only the person asked may block
    assert errors_of(await site.gql(BLOCK, {"id": first["id"]}, as_user=rita)) == ["FORBIDDEN"]
    assert errors_of(await site.gql(BLOCK, {"id": first["id"]}, as_user=stranger)) == ["NOT_FOUND"]
    assert (await site.gql(BLOCK, {"id": first["id"]}, as_user=sam))["data"]["blockAccessRequester"] == {"status": "DENIED"}
    listed = (await site.gql(INCOMING, as_user=sam))["data"]
    assert listed == {"incomingAccessRequests": [], "blockedAccessRequesters": [{"firstName": "Rita"}]}

    async with site.database.transaction() as session:  # the wait after a DENY is over
        await session.execute(update(AccessRequest).values(decided_at=utcnow() - timedelta(days=2)))
    emails = await site.count(OutboxEmail)
    again = (await ask(site, rita, sam.email))["data"]["requestAccess"]
    stranger_view = (await ask(site, rita, "nobody@example.com"))["data"]["requestAccess"]
    assert again["status"] == stranger_view["status"] == "PENDING" and again["subject"] is stranger_view["subject"] is None
    assert await site.count(OutboxEmail) == emails + 1  # only the stranger's address got one
    assert (await site.gql(INCOMING, as_user=sam))["data"]["incomingAccessRequests"] == []

    assert (await site.gql(UNBLOCK, {"u": gid("User", rita)}, as_user=sam))["data"]["unblockAccessRequester"] is True
    assert (await site.gql(UNBLOCK, {"u": gid("User", rita)}, as_user=sam))["data"]["unblockAccessRequester"] is False
    assert [r["id"] for r in (await site.gql(INCOMING, as_user=sam))["data"]["incomingAccessRequests"]] == [again["id"], first["id"]]
