"""Consent grants: requestAccess, respondToAccessRequest, revokeAccess, cancelAccessRequest and the two lists,
on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from app.store.db import Database
from app.store.models import AccessRequest, AuditEvent, Membership, OutboxEmail, User, utcnow
from dataloaders.reach import load_reach_rows
from dataloaders.store import Store
from dataloaders.users import UserLoaders
from permissions.reach import PLACED_ON_CONSENT, Permission, Reach, placement_basis
from resolvers.views import UserSubject
from tests.site import Site, errors_of, gid

MAX_PENDING = 3


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"max_pending_access_requests": MAX_PENDING}


FIELDS = """
    id requester { id firstName } subjectEmail subject { id firstName email } message status
    createdAt expiresAt decidedAt
"""
REQUEST = f"mutation($email: String!, $message: String) {{ requestAccess(email: $email, message: $message) {{ {FIELDS} }} }}"
RESPOND = f"mutation($id: ID!, $d: AccessDecision!) {{ respondToAccessRequest(id: $id, decision: $d) {{ {FIELDS} }} }}"
REVOKE = f"mutation($id: ID!) {{ revokeAccess(id: $id) {{ {FIELDS} }} }}"
CANCEL = "mutation($id: ID!) { cancelAccessRequest(id: $id) }"
OUTGOING = f"query($s: AccessRequestStatus) {{ outgoingAccessRequests(status: $s) {{ {FIELDS} }} }}"
INCOMING = f"query($s: AccessRequestStatus) {{ incomingAccessRequests(status: $s) {{ {FIELDS} }} }}"
NODE = f"query($id: ID!) {{ node(id: $id) {{ ... on AccessRequest {{ {FIELDS} }} }} }}"
USER = "query($id: ID!) { user(id: $id) { id firstName email } }"
STATUSES = ("PENDING", "GRANTED", "DENIED", "REVOKED", "EXPIRED")


async def ask(site: Site, requester: User, email: str, message: str | None = None) -> dict[str, Any]:
    body = await site.gql(REQUEST, {"email": email, "message": message}, as_user=requester)
    assert "errors" not in body, body
    return body["data"]["requestAccess"]


async def answer(site: Site, subject: User, request_id: str, decision: str) -> dict[str, Any]:
    body = await site.gql(RESPOND, {"id": request_id, "d": decision}, as_user=subject)
    assert "errors" not in body, body
    return body["data"]["respondToAccessRequest"]


async def snapshot(site: Site) -> dict[str, Any]:
    """Every row a consent mutation may touch, to show that a refused one changed nothing."""
    async with site.database.session() as session:
        requests = (await session.execute(select(AccessRequest).order_by(AccessRequest.id))).scalars().all()
        memberships = (await session.execute(select(Membership).order_by(Membership.id))).scalars().all()
        return {
            "requests": [r.model_dump() for r in requests],
            "memberships": [m.model_dump() for m in memberships],
            "audit": await site.count(AuditEvent),
            "outbox": await site.count(OutboxEmail),
        }


async def reach_of(database: Database, viewer: User) -> Reach:
    """The Reach a request by `viewer` would load (read straight from the database, as every request does)."""
    store = Store(database)
    try:
        return Reach.from_rows(viewer.id, [], await load_reach_rows(store, viewer.id))  # type: ignore[arg-type]
    finally:
        await store.close()


async def expire(site: Site, request_id: str) -> None:
    from app.runtime.ids import parse_global_id

    _, database_id = parse_global_id(request_id)
    async with site.database.transaction() as session:
        await session.execute(
            update(AccessRequest).where(AccessRequest.id == database_id).values(expires_at=utcnow() - timedelta(seconds=1))
        )


async def subject_of(database: Database, user: User) -> UserSubject:
    """The user as permission decisions see them, with group ids loaded as requests load them."""
    store = Store(database)
    try:
        own = await UserLoaders(store).own_groups.load(user.id)  # type: ignore[arg-type]
        return UserSubject(user.id, own.group_ids, staff_group_ids=own.staff_group_ids)  # type: ignore[arg-type]
    finally:
        await store.close()


def database_id(global_id: str) -> int:
    from app.runtime.ids import parse_global_id

    return parse_global_id(global_id)[1]


async def test_life_cycle_request_grant_add_revoke(site: Site) -> None:
    rita = await site.user("Rita", kind="STAFF")
    sam = await site.user("Sam", email="Sam.Subject@Example.com", company="Acme")
    admin = await site.user("Ada", roles="ADMIN", kind="STAFF")
    co_leader = await site.user("Cole", kind="STAFF")
    class_a = await site.group("Class A")
    class_b = await site.group("Class B")
    await site.member(rita, class_a, "LEADER")
    await site.member(co_leader, class_a, "LEADER")
    await site.member(co_leader, class_b, "LEADER")

    # Rita asks, typing Sam's email in another case; Sam is not visible to her yet.
    assert (await site.gql(USER, {"id": gid("User", sam)}, as_user=rita)) == {"data": {"user": None}}
    asked = await ask(site, rita, "  sam.SUBJECT@example.com ", "May I follow your progress?")
    assert asked["status"] == "PENDING" and asked["subject"] is None and asked["decidedAt"] is None
    assert asked["requester"] == {"id": gid("User", rita), "firstName": "Rita"}
    assert asked["subjectEmail"] == "sam.SUBJECT@example.com" and asked["message"] == "May I follow your progress?"
    from datetime import datetime

    created, expires = datetime.fromisoformat(asked["createdAt"]), datetime.fromisoformat(asked["expiresAt"])
    assert expires - created == timedelta(days=site.settings.access_request_days)

    # The subject gets an email through the outbox, with the message.
    async with site.database.session() as session:
        emails = (await session.execute(select(OutboxEmail))).scalars().all()
    assert [(e.kind, e.to_address) for e in emails] == [("access_request", "sam.SUBJECT@example.com")]
    assert "May I follow your progress?" in emails[0].body and "Rita" in emails[0].subject

    # Sam sees it; Rita's list holds it; nobody else's does.
    incoming = (await site.gql(INCOMING, as_user=sam))["data"]["incomingAccessRequests"]
    assert [r["id"] for r in incoming] == [asked["id"]]
    assert incoming[0]["subject"] == {"id": gid("User", sam), "firstName": "Sam", "email": sam.email}
    assert (await site.gql(OUTGOING, as_user=rita))["data"]["outgoingAccessRequests"] == [asked]
    assert (await site.gql(INCOMING, as_user=co_leader))["data"]["incomingAccessRequests"] == []

    # Sam grants: decidedAt set; Rita now sees Sam with profile and contact.
    granted = await answer(site, sam, asked["id"], "GRANT")
    assert granted["status"] == "GRANTED" and granted["decidedAt"] is not None
    rita_view = (await site.gql(NODE, {"id": asked["id"]}, as_user=rita))["data"]["node"]
    assert rita_view["status"] == "GRANTED"
    assert rita_view["subject"] == {"id": gid("User", sam), "firstName": "Sam", "email": sam.email}
    assert (await site.gql(USER, {"id": gid("User", sam)}, as_user=rita))["data"]["user"]["email"] == sam.email
    reach = await reach_of(site.database, rita)
    sam_ref = UserSubject(sam.id, frozenset())  # type: ignore[arg-type]
    assert {p for p in Permission if reach.may(p, sam_ref)} == {
        Permission.VIEW_PROFILE, Permission.VIEW_CONTACT, Permission.VIEW_PROGRESS,
    }

    # The grant lets Rita place Sam as a MEMBER in a group she leads, recorded as consent-based; nothing more.
    assert placement_basis(reach, class_a.id, sam_ref, "MEMBER", []) == PLACED_ON_CONSENT
    assert placement_basis(reach, class_a.id, sam_ref, "MENTOR", []) is None
    assert placement_basis(reach, class_b.id, sam_ref, "MEMBER", []) is None

    # Rita places Sam in her class on the strength of the consent (as addMembers records it); an admin
    # adds Sam to another class.
    on_consent = await site.member(sam, class_a, access_request_id=database_id(asked["id"]))
    by_admin = await site.member(sam, class_b)
    # The consent-based membership gives nobody "over" reach: Rita still gets no activity or grading.
    sam_ref = await subject_of(site.database, sam)
    assert sam_ref.group_ids == frozenset({class_b.id})
    reach = await reach_of(site.database, rita)
    assert {p for p in Permission if reach.may(p, sam_ref)} == {
        Permission.VIEW_PROFILE, Permission.VIEW_CONTACT, Permission.VIEW_PROGRESS,
    }
    assert not reach.may(Permission.VIEW_ACTIVITY, sam_ref) and not reach.may(Permission.REVIEW_WORK, sam_ref)

    # Membership.accessRequest: the requester, the subject and admins see it; a co-leader who sees the
    # membership (Sam is under them through class B) sees null.
    membership_query = "query($id: ID!) { node(id: $id) { ... on Membership { accessRequest { id status } } } }"
    for viewer in (rita, admin):
        body = await site.gql(membership_query, {"id": gid("Membership", on_consent)}, as_user=viewer)
        assert body == {"data": {"node": {"accessRequest": {"id": asked["id"], "status": "GRANTED"}}}}, viewer.first_name
    body = await site.gql(membership_query, {"id": gid("Membership", on_consent)}, as_user=co_leader)
    assert body == {"data": {"node": {"accessRequest": None}}}
    own = await site.gql("{ viewer { memberships { databaseId accessRequest { id } } } }", as_user=sam)
    assert sorted(
        (m["databaseId"], m["accessRequest"]) for m in own["data"]["viewer"]["memberships"]
    ) == [(on_consent.id, {"id": asked["id"]}), (by_admin.id, None)]

    # A second worker process on the same database sees the grant, and then its revocation at once.
    worker = Database(site.settings)
    from app.server import create_app

    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(site.settings, worker)), base_url="http://worker"
        ) as other:
            headers = {"Authorization": f"Bearer {await site.token(rita)}"}
            before = (await other.post("/graphql", json={"query": USER, "variables": {"id": gid("User", sam)}}, headers=headers)).json()
            assert before["data"]["user"]["email"] == sam.email

            revoked = (await site.gql(REVOKE, {"id": asked["id"]}, as_user=sam))["data"]["revokeAccess"]
            assert revoked["status"] == "REVOKED" and revoked["subject"]["id"] == gid("User", sam)

            after = (await other.post("/graphql", json={"query": USER, "variables": {"id": gid("User", sam)}}, headers=headers)).json()
            assert after == {"data": {"user": None}}
    finally:
        await worker.dispose()
    assert (await site.gql(USER, {"id": gid("User", sam)}, as_user=rita)) == {"data": {"user": None}}
    reach_after = await reach_of(site.database, rita)
    assert not any(reach_after.may(p, sam_ref) for p in Permission)
    assert placement_basis(reach_after, class_a.id, sam_ref, "MEMBER", []) is None

    # The consent-based membership went in the same transaction, logged; the admin-added one stays.
    assert await site.count(Membership, Membership.id == on_consent.id) == 0
    assert await site.count(Membership, Membership.id == by_admin.id) == 1
    async with site.database.session() as session:
        event = (await session.execute(select(AuditEvent).where(AuditEvent.action == "access_request.revoke"))).scalar_one()
    assert event.actor_id == sam.id and event.target_id == database_id(asked["id"])
    assert json.loads(event.detail)["removed_memberships"] == [
        {"id": on_consent.id, "user_id": sam.id, "group_id": class_a.id, "role": "MEMBER"}
    ]

    # Rita still sees her request, now without the subject; she may ask again.
    rita_view = (await site.gql(NODE, {"id": asked["id"]}, as_user=rita))["data"]["node"]
    assert rita_view["status"] == "REVOKED" and rita_view["subject"] is None
    again = await ask(site, rita, sam.email)
    assert again["id"] != asked["id"] and again["status"] == "PENDING"
    outgoing = (await site.gql(OUTGOING, as_user=rita))["data"]["outgoingAccessRequests"]
    assert [r["id"] for r in outgoing] == [again["id"], asked["id"]]  # newest first
    async with site.database.session() as session:
        actions = (await session.execute(select(AuditEvent.actor_id, AuditEvent.action).order_by(AuditEvent.id))).all()
    assert [tuple(a) for a in actions] == [
        (rita.id, "access_request.create"), (sam.id, "access_request.grant"), (sam.id, "access_request.revoke"),
        (rita.id, "access_request.create"),
    ]


async def test_deny_and_duplicates(site: Site) -> None:
    rita = await site.user("Rita")
    sam = await site.user("Sam")
    first = await ask(site, rita, sam.email, "hello")
    # A second request while one is PENDING returns it (whatever the case of the email), sends no email.
    assert (await ask(site, rita, sam.email.upper(), "again")) == first
    assert await site.count(OutboxEmail) == 1 and await site.count(AccessRequest) == 1

    denied = await answer(site, sam, first["id"], "DENY")
    assert denied["status"] == "DENIED" and denied["decidedAt"] is not None
    assert (await site.gql(USER, {"id": gid("User", sam)}, as_user=rita)) == {"data": {"user": None}}
    assert (await reach_of(site.database, rita)).granted == frozenset()

    # After a DENY a new request waits (RATE_LIMITED), then may be made; once GRANTED, asking again returns it.
    body = await site.gql(REQUEST, {"email": sam.email, "message": None}, as_user=rita)
    assert errors_of(body) == ["RATE_LIMITED"] and body["errors"][0]["extensions"]["retryAfterSeconds"] > 0, body
    async with site.database.transaction() as session:
        await session.execute(
            update(AccessRequest).values(decided_at=utcnow() - timedelta(seconds=site.settings.access_request_repeat_seconds))
        )
    second = await ask(site, rita, sam.email)
    assert second["id"] != first["id"] and second["status"] == "PENDING"
    await answer(site, sam, second["id"], "GRANT")
    again = await ask(site, rita, sam.email)
    assert again["id"] == second["id"] and again["status"] == "GRANTED" and again["subject"]["email"] == sam.email
    assert await site.count(OutboxEmail) == 2


async def test_forbidden_transitions_change_nothing(site: Site) -> None:
    rita = await site.user("Rita")
    sam = await site.user("Sam")
    stranger = await site.user("Stan")
    admin = await site.user("Ada", roles="ADMIN")
    pending = await ask(site, rita, sam.email)
    gil_row = await site.user("Gil")
    granted_request = await ask(site, rita, gil_row.email)
    await answer(site, gil_row, granted_request["id"], "GRANT")
    group = await site.group("Class")
    await site.member(gil_row, group, access_request_id=database_id(granted_request["id"]))
    before = await snapshot(site)

    attempts = [
        # (who, mutation, variables, expected code)
        (stranger, RESPOND, {"id": pending["id"], "d": "GRANT"}, "NOT_FOUND"),  # someone else's request
        (rita, RESPOND, {"id": pending["id"], "d": "GRANT"}, "FORBIDDEN"),  # the requester answering
        (admin, RESPOND, {"id": pending["id"], "d": "GRANT"}, "FORBIDDEN"),  # an admin is not the subject
        (gil_row, RESPOND, {"id": granted_request["id"], "d": "DENY"}, "CONFLICT"),  # answering twice
        (sam, REVOKE, {"id": pending["id"]}, "CONFLICT"),  # revoking a PENDING one
        (rita, REVOKE, {"id": granted_request["id"]}, "FORBIDDEN"),  # the requester revoking
        (stranger, REVOKE, {"id": granted_request["id"]}, "NOT_FOUND"),
        (stranger, CANCEL, {"id": pending["id"]}, "NOT_FOUND"),  # cancelling someone else's
        (sam, CANCEL, {"id": pending["id"]}, "FORBIDDEN"),  # the subject cancelling
        (rita, CANCEL, {"id": granted_request["id"]}, "CONFLICT"),  # cancelling a GRANTED one
        (rita, RESPOND, {"id": gid("AccessRequest", 999_999), "d": "GRANT"}, "NOT_FOUND"),
        (sam, RESPOND, {"id": gid("User", sam), "d": "GRANT"}, "BAD_USER_INPUT"),
        (rita, REQUEST, {"email": rita.email.upper()}, "BAD_USER_INPUT"),  # asking oneself
        (rita, REQUEST, {"email": "not-an-email"}, "BAD_USER_INPUT"),
        (rita, REQUEST, {"email": "x@example.com", "message": "m" * 2001}, "BAD_USER_INPUT"),
        (None, REQUEST, {"email": "x@example.com"}, "UNAUTHENTICATED"),
        (None, CANCEL, {"id": pending["id"]}, "UNAUTHENTICATED"),
    ]
    for who, mutation, variables, code in attempts:
        body = await site.gql(mutation, variables, as_user=who)
        assert errors_of(body) == [code], (who and who.first_name, mutation[:40], body)
        assert body["data"] is None
        assert await snapshot(site) == before, (who and who.first_name, mutation[:40])
    self_request = await site.gql(REQUEST, {"email": rita.email}, as_user=rita)
    assert self_request["errors"][0]["extensions"]["field"] == "email"

    # The allowed counterparts work, and are the only changes.
    assert (await site.gql(CANCEL, {"id": pending["id"]}, as_user=rita)) == {"data": {"cancelAccessRequest": True}}
    assert await site.count(AccessRequest, AccessRequest.id == database_id(pending["id"])) == 0
    assert (await site.gql(INCOMING, as_user=sam))["data"]["incomingAccessRequests"] == []
    assert errors_of(await site.gql(CANCEL, {"id": pending["id"]}, as_user=rita)) == ["NOT_FOUND"]


def _without_ids_and_times(value: Any, email: str) -> Any:
    text = json.dumps(value, sort_keys=True).replace(email, "<email>")
    data = json.loads(text)

    def scrub(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: "<x>" if k in ("id", "createdAt", "expiresAt") else scrub(v) for k, v in node.items()}
        if isinstance(node, list):
            return [scrub(v) for v in node]
        return node

    return scrub(data)


async def test_no_account_enumeration(site: Site) -> None:
    """The requester's view is the same whether or not an account has the email: the same response
    (apart from ids and timestamps), the same statements, the same outbox and list entries."""
    rita = await site.user("Rita")
    sam = await site.user("Sam", email="sam@example.com")
    await site.token(rita)
    views: dict[str, list[Any]] = {}
    counts: dict[str, int] = {}
    for email in ("nobody@example.com", sam.email):
        with site.statements() as counted:
            created = await site.gql(REQUEST, {"email": email, "message": "hi"}, as_user=rita)
        counts[email] = counted.count
        duplicate = await site.gql(REQUEST, {"email": email, "message": "hi"}, as_user=rita)
        node = await site.gql(NODE, {"id": created["data"]["requestAccess"]["id"]}, as_user=rita)
        listed = await site.gql(OUTGOING, {"s": "PENDING"}, as_user=rita)
        entry = [r for r in listed["data"]["outgoingAccessRequests"] if r["subjectEmail"] == email]
        views[email] = [_without_ids_and_times(v, email) for v in (created, duplicate, node, entry)]
    assert views["nobody@example.com"] == views[sam.email]
    assert views[sam.email][0]["data"]["requestAccess"]["subject"] is None
    assert counts["nobody@example.com"] == counts[sam.email]
    async with site.database.session() as session:
        outbox = (await session.execute(select(OutboxEmail.to_address, OutboxEmail.kind).order_by(OutboxEmail.id))).all()
    assert [tuple(r) for r in outbox] == [("nobody@example.com", "access_request"), (sam.email, "access_request")]



async def test_account_created_after_the_request_sees_it(site: Site) -> None:
    rita = await site.user("Rita")
    asked = await ask(site, rita, "Late.Comer@example.com")
    late = await site.user("Late", email="late.comer@EXAMPLE.com")
    incoming = (await site.gql(INCOMING, {"s": "PENDING"}, as_user=late))["data"]["incomingAccessRequests"]
    assert [r["id"] for r in incoming] == [asked["id"]]
    assert incoming[0]["subject"]["id"] == gid("User", late)
    assert (await site.gql(NODE, {"id": asked["id"]}, as_user=late))["data"]["node"]["id"] == asked["id"]
    await answer(site, late, asked["id"], "GRANT")
    async with site.database.session() as session:
        row = await session.get(AccessRequest, database_id(asked["id"]))
    assert row.subject_user_id == late.id
    assert (await site.gql(USER, {"id": gid("User", late)}, as_user=rita))["data"]["user"]["email"] == late.email


async def test_node_is_seen_by_requester_subject_and_admins_only(site: Site) -> None:
    rita, sam = await site.user("Rita"), await site.user("Sam")
    admin, stranger = await site.user("Ada", roles="ADMIN"), await site.user("Stan")
    asked = await ask(site, rita, sam.email, "note")
    for viewer in (rita, sam, admin):
        node = (await site.gql(NODE, {"id": asked["id"]}, as_user=viewer))["data"]["node"]
        assert node["id"] == asked["id"] and node["message"] == "note", viewer.first_name
    # Before an answer, only the subject and admins see who the subject is.
    assert (await site.gql(NODE, {"id": asked["id"]}, as_user=admin))["data"]["node"]["subject"]["id"] == gid("User", sam)
    assert (await site.gql(NODE, {"id": asked["id"]}, as_user=rita))["data"]["node"]["subject"] is None
    assert (await site.gql(NODE, {"id": asked["id"]}, as_user=stranger)) == {"data": {"node": None}}
    assert (await site.gql(NODE, {"id": asked["id"]})) == {"data": {"node": None}}
    missing = await site.gql(NODE, {"id": gid("AccessRequest", 999_999)}, as_user=stranger)
    assert missing == {"data": {"node": None}}
    assert errors_of(await site.gql(OUTGOING)) == ["UNAUTHENTICATED"]


async def test_expiry(site: Site) -> None:
    rita, sam = await site.user("Rita"), await site.user("Sam")
    old = await ask(site, rita, sam.email)
    await expire(site, old["id"])

    for viewer, query, key in ((rita, OUTGOING, "outgoingAccessRequests"), (sam, INCOMING, "incomingAccessRequests")):
        everything = (await site.gql(query, as_user=viewer))["data"][key]
        assert [r["status"] for r in everything] == ["EXPIRED"]
        by_status = {s: (await site.gql(query, {"s": s}, as_user=viewer))["data"][key] for s in STATUSES}
        assert [r["id"] for r in by_status["EXPIRED"]] == [old["id"]]
        assert all(by_status[s] == [] for s in STATUSES if s != "EXPIRED")

    before = await snapshot(site)
    assert errors_of(await site.gql(RESPOND, {"id": old["id"], "d": "GRANT"}, as_user=sam)) == ["CONFLICT"]
    assert errors_of(await site.gql(CANCEL, {"id": old["id"]}, as_user=rita)) == ["CONFLICT"]
    assert await snapshot(site) == before
    assert (await reach_of(site.database, rita)).granted == frozenset()

    # A new request may be made; it is PENDING while the old one stays EXPIRED.
    new = await ask(site, rita, sam.email)
    assert new["id"] != old["id"] and new["status"] == "PENDING"
    incoming = (await site.gql(INCOMING, as_user=sam))["data"]["incomingAccessRequests"]
    assert [(r["id"], r["status"]) for r in incoming] == [(new["id"], "PENDING"), (old["id"], "EXPIRED")]
    assert (await answer(site, sam, new["id"], "GRANT"))["status"] == "GRANTED"


async def test_pending_requests_are_capped(site: Site) -> None:
    rita = await site.user("Rita")
    others = [await site.user(f"Other{i}") for i in range(MAX_PENDING + 2)]
    made = [await ask(site, rita, u.email) for u in others[:MAX_PENDING]]
    before = await snapshot(site)
    over = await site.gql(REQUEST, {"email": others[MAX_PENDING].email}, as_user=rita)
    assert errors_of(over) == ["RATE_LIMITED"] and await snapshot(site) == before
    unknown = await site.gql(REQUEST, {"email": "nobody@example.com"}, as_user=rita)
    assert errors_of(unknown) == ["RATE_LIMITED"] and await snapshot(site) == before
    # Asking again for a pending one still returns it; other requesters are not affected.
    assert (await ask(site, rita, others[0].email))["id"] == made[0]["id"]
    assert (await ask(site, others[0], rita.email))["status"] == "PENDING"

    # Answered, cancelled and expired requests free their place.
    await answer(site, others[0], made[0]["id"], "GRANT")
    fourth = await ask(site, rita, others[MAX_PENDING].email)
    assert errors_of(await site.gql(REQUEST, {"email": others[MAX_PENDING + 1].email}, as_user=rita)) == ["RATE_LIMITED"]
    assert (await site.gql(CANCEL, {"id": made[1]["id"]}, as_user=rita))["data"]["cancelAccessRequest"] is True
    await expire(site, made[2]["id"])
    await expire(site, fourth["id"])
    assert (await ask(site, rita, others[MAX_PENDING + 1].email))["status"] == "PENDING"
    assert (await ask(site, rita, "nobody@example.com"))["status"] == "PENDING"


async def test_lists_are_newest_first_and_filters_agree_with_status(site: Site) -> None:
    rita = await site.user("Rita")
    subjects = [await site.user(f"S{i}") for i in range(5)]
    made = [await ask(site, rita, s.email) for s in subjects[:3]]
    await answer(site, subjects[0], made[0]["id"], "GRANT")
    await answer(site, subjects[1], made[1]["id"], "DENY")
    await site.gql(REVOKE, {"id": made[0]["id"]}, as_user=subjects[0])
    await expire(site, made[2]["id"])
    made.append(await ask(site, rita, subjects[3].email))
    made.append(await ask(site, rita, subjects[4].email))
    await answer(site, subjects[4], made[4]["id"], "GRANT")
    # Also one incoming to Rita, which her outgoing list must not hold.
    await ask(site, subjects[0], rita.email)

    with site.statements() as counted:
        everything = (await site.gql(OUTGOING, as_user=rita))["data"]["outgoingAccessRequests"]
    assert [r["id"] for r in everything] == [m["id"] for m in reversed(made)]
    assert [r["status"] for r in everything] == ["GRANTED", "PENDING", "EXPIRED", "DENIED", "REVOKED"]
    statements_for_five = counted.count
    for status in STATUSES:
        filtered = (await site.gql(OUTGOING, {"s": status}, as_user=rita))["data"]["outgoingAccessRequests"]
        assert filtered == [r for r in everything if r["status"] == status], status
    incoming = (await site.gql(INCOMING, as_user=rita))["data"]["incomingAccessRequests"]
    assert [r["requester"]["firstName"] for r in incoming] == ["S0"]

    # Set-based: a longer list costs no more statements.
    for s in [await site.user(f"T{i}") for i in range(MAX_PENDING - 1)]:
        await ask(site, rita, s.email)
    with site.statements() as counted:
        longer = (await site.gql(OUTGOING, as_user=rita))["data"]["outgoingAccessRequests"]
    assert len(longer) == 5 + MAX_PENDING - 1 and counted.count == statements_for_five


async def test_concurrent_requests_and_answers_stay_consistent(site: Site) -> None:
    import asyncio

    rita, sam = await site.user("Rita"), await site.user("Sam")
    await site.token(rita)
    await site.token(sam)
    same = await asyncio.gather(*(site.gql(REQUEST, {"email": sam.email}, as_user=rita) for _ in range(4)))
    assert len({body["data"]["requestAccess"]["id"] for body in same}) == 1, same
    assert await site.count(AccessRequest) == 1 and await site.count(OutboxEmail) == 1

    emails = [f"person{i}@example.com" for i in range(MAX_PENDING + 1)]
    bodies = await asyncio.gather(*(site.gql(REQUEST, {"email": e}, as_user=rita) for e in emails))
    assert sorted(errors_of(b)[0] if "errors" in b else "OK" for b in bodies) == ["OK"] * (MAX_PENDING - 1) + [
        "RATE_LIMITED"
    ] * 2
    assert await site.count(AccessRequest, AccessRequest.status == "PENDING") == MAX_PENDING

    request_id = same[0]["data"]["requestAccess"]["id"]
    answers = await asyncio.gather(
        site.gql(RESPOND, {"id": request_id, "d": "GRANT"}, as_user=sam),
        site.gql(RESPOND, {"id": request_id, "d": "DENY"}, as_user=sam),
    )
    outcomes = sorted(errors_of(b)[0] if "errors" in b else b["data"]["respondToAccessRequest"]["status"] for b in answers)
    assert outcomes[0] == "CONFLICT" and outcomes[1] in ("DENIED", "GRANTED")
    assert sorted(errors_of(b) for b in answers) == [[], ["CONFLICT"]]
    assert await site.count(AuditEvent, AuditEvent.action.in_(["access_request.grant", "access_request.deny"])) == 1


PROGRESS = "query($id: ID!) { user(id: $id) { firstName courseProgress { course { name } percentCompleted } } }"
ADD = "mutation($g: ID!, $u: [ID!]!) { addMembers(groupId: $g, userIds: $u, role: MEMBER) { id accessRequest { id } } }"


async def test_after_revoke_progress_and_placement_end_and_other_memberships_stay(site: Site) -> None:
    """Through the API only: the grant gives progress and placement; the revocation takes both back on
    the very next request, removes the consent-based membership and leaves the admin-added one."""
    from tests.progress_helpers import course, enroll

    rita = await site.user("Rita", kind="STAFF")
    sam = await site.user("Sam")
    admin = await site.user("Ada", roles="ADMIN", kind="STAFF")
    class_a = await site.group("Class A")
    class_b = await site.group("Class B")
    await site.member(rita, class_a, "LEADER")
    fractions = await course(site, admin, "Fractions", [("LESSON", None), ("QUIZ", 10)])
    await enroll(site, admin, [sam], fractions)

    asked = await ask(site, rita, sam.email)
    denied_before = await site.gql(ADD, {"g": gid("Group", class_a), "u": [gid("User", sam)]}, as_user=rita)
    assert errors_of(denied_before) and await site.count(Membership, Membership.user_id == sam.id) == 0

    await answer(site, sam, asked["id"], "GRANT")
    seen = (await site.gql(PROGRESS, {"id": gid("User", sam)}, as_user=rita))["data"]["user"]
    assert seen == {"firstName": "Sam", "courseProgress": [{"course": {"name": "Fractions"}, "percentCompleted": 0.0}]}
    placed = await site.gql(ADD, {"g": gid("Group", class_a), "u": [gid("User", sam)]}, as_user=rita)
    assert placed["data"]["addMembers"][0]["accessRequest"] == {"id": asked["id"]}
    by_admin = await site.gql(ADD, {"g": gid("Group", class_b), "u": [gid("User", sam)]}, as_user=admin)
    assert by_admin["data"]["addMembers"][0]["accessRequest"] is None

    await site.gql(REVOKE, {"id": asked["id"]}, as_user=sam)
    # Invisible objects read as null without an error (an error would tell that the id exists).
    assert await site.gql(PROGRESS, {"id": gid("User", sam)}, as_user=rita) == {"data": {"user": None}}
    again = await site.gql(ADD, {"g": gid("Group", class_a), "u": [gid("User", sam)]}, as_user=rita)
    assert errors_of(again) == ["NOT_FOUND"] and again["data"] is None  # Sam is no longer visible to Rita
    async with site.database.session() as session:
        left = (await session.execute(select(Membership.group_id, Membership.access_request_id).where(Membership.user_id == sam.id))).all()
    assert [tuple(m) for m in left] == [(class_b.id, None)]
    # The admin, over Sam through class B, still sees the progress.
    assert (await site.gql(PROGRESS, {"id": gid("User", sam)}, as_user=admin))["data"]["user"] == seen
