"""Pagination both ways on every connection (keyset, Relay's loadPrevious), users(orderBy:), and the one
cursor codec and the global id codec: only what they wrote decodes; everything else is BAD_USER_INPUT."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.runtime import cursors
from app.runtime.errors import BadInput
from app.runtime.ids import parse_global_id, to_global_id
from app.store.models import (
    AccessRequest,
    ActivityEvent,
    AuditEvent,
    Course,
    Enrollment,
    Step,
    Submission,
    User,
)
from tests.site import Site, errors_of, gid

PAGE = "edges { cursor } pageInfo { hasNextPage hasPreviousPage startCursor endCursor }"
ARGS = "first: $f, after: $a, last: $l, before: $b"
VARS = "$f: Int, $a: String, $l: Int, $b: String"

# name -> (query, extra variables builder key, path to the connection)
CONNECTIONS: dict[str, str] = {
    "users": f"query({VARS}) {{ c: users({ARGS}) {{ {PAGE} }} }}",
    "groups": f"query({VARS}) {{ c: groups({ARGS}) {{ {PAGE} }} }}",
    "courses": f"query({VARS}) {{ c: courses({ARGS}) {{ {PAGE} }} }}",
    "auditLog": f"query({VARS}) {{ c: auditLog({ARGS}) {{ {PAGE} }} }}",
    "members": f"query({VARS}, $g: ID!) {{ o: group(id: $g) {{ c: members({ARGS}) {{ {PAGE} }} }} }}",
    "reviewQueue": f"query({VARS}, $g: ID!) {{ o: group(id: $g) {{ c: reviewQueue({ARGS}) {{ {PAGE} }} }} }}",
    "progressReport": f"query({VARS}, $g: ID!) {{ o: group(id: $g) {{ c: progressReport({ARGS}) {{ {PAGE} }} }} }}",
    "activity": f"query({VARS}, $u: ID!) {{ o: user(id: $u) {{ c: activity({ARGS}) {{ {PAGE} }} }} }}",
    "accessRequests": f"query({VARS}) {{ c: accessRequests(direction: OUTGOING, {ARGS}) {{ {PAGE} }} }}",
}


def connection(body: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in body, body
    data = body["data"]
    return data["o"]["c"] if "o" in data else data["c"]


async def fixture(site: Site) -> dict[str, Any]:
    """Seven of everything, with ties in every sort key (same names, same instants)."""
    admin = await site.user("Ada", "Admin", kind="STAFF", roles="ADMIN")
    school = await site.group("School")
    for n in range(6):
        await site.group(f"Class {n % 3}", school)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    learners = []
    for n in range(7):
        learner = await site.user(f"L{n}", ["Brown", "Adams", "Brown", "Cole", "Adams", "Brown", "Dunn"][n])
        learners.append(learner)
        await site.member(learner, school)
    async with site.database.transaction() as session:
        for n, learner in enumerate(learners):
            row = await session.get(User, learner.id)
            assert row is not None
            row.created_at = base + timedelta(days=n % 4)
            row.last_login_at = None if n % 3 == 0 else base + timedelta(hours=n % 2)
        courses = [Course(name=f"Course {n % 2}") for n in range(7)]
        session.add_all(courses)
        await session.flush()
        step = Step(course_id=courses[0].id, title="Essay", position=1, kind="ASSIGNMENT", max_points=10)  # type: ignore[arg-type]
        session.add(step)
        await session.flush()
        for n, learner in enumerate(learners):
            for course in courses[:2] if n % 2 else courses[:1]:
                session.add(Enrollment(user_id=learner.id, course_id=course.id))  # type: ignore[arg-type]
            session.add(Submission(user_id=learner.id, step_id=step.id, course_id=courses[0].id,  # type: ignore[arg-type]
                                   submitted_at=base + timedelta(minutes=n // 2)))
            session.add(ActivityEvent(user_id=learners[0].id, kind="DISCUSSION_POST", body=f"post {n}",  # type: ignore[arg-type]
                                      occurred_at=base + timedelta(minutes=n // 2)))
            session.add(AuditEvent(actor_id=admin.id, action="test.event", target_type="user", target_id=learner.id))
            session.add(AccessRequest(requester_id=admin.id, subject_email=learner.email,  # type: ignore[arg-type]
                                      subject_email_normalized=learner.email_normalized, subject_user_id=learner.id,
                                      created_at=base + timedelta(minutes=n // 2), expires_at=base + timedelta(days=400)))
    await site.token(admin)
    return {"admin": admin, "g": gid("Group", school), "u": gid("User", learners[0])}


async def walk(site: Site, query: str, extra: dict[str, Any], admin: User, *, backward: bool, size: int = 3) -> list[list[str]]:
    """Every page, from the start forwards or from the end backwards; checks PageInfo on the way."""
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        if backward:
            variables = {"f": None, "a": None, "l": size, "b": cursor}
        else:
            variables = {"f": size, "a": cursor, "l": None, "b": None}
        page = connection(await site.gql(query, {**variables, **extra}, as_user=admin))
        cursors_ = [e["cursor"] for e in page["edges"]]
        info = page["pageInfo"]
        assert (info["startCursor"], info["endCursor"]) == ((cursors_[0], cursors_[-1]) if cursors_ else (None, None))
        pages.append(cursors_)
        more = info["hasPreviousPage"] if backward else info["hasNextPage"]
        assert (info["hasNextPage"] if backward else info["hasPreviousPage"]) == (cursor is not None)
        if not more:
            break
        cursor = info["startCursor"] if backward else info["endCursor"]
    return pages[::-1] if backward else pages


async def test_every_connection_pages_both_ways_at_the_cost_of_a_first_page(site: Site) -> None:
    made = await fixture(site)
    admin = made["admin"]
    for name, query in CONNECTIONS.items():
        extra = {k: made[k] for k in ("g", "u") if f"${k}:" in query}
        whole = [e["cursor"] for e in connection(await site.gql(query, {"f": 100, **extra}, as_user=admin))["edges"]]
        assert len(whole) >= 7, (name, whole)
        forwards = await walk(site, query, extra, admin, backward=False)
        backwards = await walk(site, query, extra, admin, backward=True)
        assert [c for p in forwards for c in p] == whole, name
        assert [c for p in backwards for c in p] == whole, name
        # Relay's loadPrevious: the page before the second page is the first page
        second = connection(await site.gql(query, {"f": 3, "a": forwards[0][-1], **extra}, as_user=admin))
        previous = connection(await site.gql(query, {"f": None, "l": 3, "b": second["pageInfo"]["startCursor"], **extra}, as_user=admin))
        assert [e["cursor"] for e in previous["edges"]] == forwards[0], name
        # both bounds: the rows strictly between two cursors
        between = connection(await site.gql(query, {"f": 100, "a": whole[0], "b": whole[-1], **extra}, as_user=admin))
        assert [e["cursor"] for e in between["edges"]] == whole[1:-1], name
        # a page far back costs what the first page costs
        with site.statements() as counted:
            connection(await site.gql(query, {"f": 2, **extra}, as_user=admin))
        first_cost = counted.count
        for variables in ({"f": 2, "a": whole[-3]}, {"f": None, "l": 2, "b": whole[-1]}, {"f": None, "l": 2}):
            with site.statements() as counted:
                connection(await site.gql(query, {**variables, **extra}, as_user=admin))
            assert counted.count == first_cost, (name, variables, counted.statements)


USERS = """query($o: UserOrder, $f: Int, $a: String, $l: Int, $b: String) {
  users(orderBy: $o, first: $f, after: $a, last: $l, before: $b) {
    edges { cursor node { id lastName createdAt lastLoginAt } } pageInfo { hasNextPage hasPreviousPage startCursor } } }"""


async def test_users_order_by_each_column_both_directions(site: Site) -> None:
    made = await fixture(site)
    admin = made["admin"]
    async with site.database.session() as session:
        from sqlalchemy import select

        rows = list((await session.scalars(select(User))).all())
    keys = {
        "LAST_NAME": lambda u: u.last_name_normalized,
        "CREATED_AT": lambda u: u.created_at,
        "LAST_LOGIN_AT": lambda u: u.last_login_at,
    }
    for field, key in keys.items():
        for direction in ("ASC", "DESC"):
            present = [u for u in rows if key(u) is not None]
            expected = sorted(present, key=lambda u: (key(u), u.id), reverse=direction == "DESC")
            expected += sorted((u for u in rows if key(u) is None), key=lambda u: u.id, reverse=direction == "DESC")
            order = {"field": field, "direction": direction}
            seen: list[str] = []
            cursor = None
            while True:
                body = await site.gql(USERS, {"o": order, "f": 3, "a": cursor}, as_user=admin)
                assert "errors" not in body, body
                page = body["data"]["users"]
                seen += [e["node"]["id"] for e in page["edges"]]
                if not page["pageInfo"]["hasNextPage"]:
                    break
                cursor = page["edges"][-1]["cursor"]
            assert seen == [gid("User", u) for u in expected], (field, direction)
            # backwards from the end gives the same last page
            body = await site.gql(USERS, {"o": order, "f": None, "l": 3}, as_user=admin)
            assert [e["node"]["id"] for e in body["data"]["users"]["edges"]] == seen[-3:], (field, direction)
            # a cursor of another ordering is refused
            other = {"field": field, "direction": "ASC" if direction == "DESC" else "DESC"}
            refused = await site.gql(USERS, {"o": other, "a": cursor}, as_user=admin)
            assert errors_of(refused) == ["BAD_USER_INPUT"]


def crafted(json_values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(json_values).encode()).decode().rstrip("=")


BAD_CURSORS = [
    "", "x", "%%%", "bm90IGpzb24", crafted([]), crafted(["users"]), crafted([2**63, 2**63]),
    crafted(["groups", "a", 2**63]), crafted(["groups", "a", -1]), crafted(["groups", None, None]),
    crafted(["groups", "a\x00b", 1]), crafted(["activity", "2026-01-01T00:00:00", 1]),
    crafted(["activity", "2026-01-01T00:00:00.000000+01:00", 1]), crafted(["activity", "9999-99-99", 1]),
    crafted(["progressReport", 1, 1, 1.5]), crafted(["auditLog", True]), crafted(["auditLog", "1"]),
    crafted(["a", 1]), crafted([1, 1]), crafted({"a": 1}), crafted(["groups", "a", 1]) + "==",
    crafted(["groups", "a" * 5000, 1]), "\u00e9\u00e9", base64.b64encode(b'["groups","a",1]').decode(),
]


async def test_crafted_and_foreign_cursors_are_bad_input_on_every_connection(site: Site) -> None:
    made = await fixture(site)
    admin = made["admin"]
    good = {}
    for name, query in CONNECTIONS.items():
        extra = {k: made[k] for k in ("g", "u") if f"${k}:" in query}
        good[name] = connection(await site.gql(query, {"f": 1, **extra}, as_user=admin))["pageInfo"]["endCursor"]
    for n, (name, query) in enumerate(CONNECTIONS.items()):
        extra = {k: made[k] for k in ("g", "u") if f"${k}:" in query}
        others = [c for other, c in good.items() if other != name]
        foreign = [others[n % len(others)], others[(n + 3) % len(others)]]
        mine = BAD_CURSORS[n::len(CONNECTIONS)]  # every crafted cursor on one connection at least (one codec)
        tries = [{"a": bad} for bad in [*mine, *foreign]] + [{"f": None, "l": 2, "b": bad} for bad in mine[:2]]
        for variables in tries:
            body = await site.gql(query, {**variables, **extra}, as_user=admin)
            assert errors_of(body) == ["BAD_USER_INPUT"], (name, variables, body)
        for variables in ({"f": -1}, {"l": -1}):
            body = await site.gql(query, {**variables, **extra}, as_user=admin)
            assert errors_of(body) == ["BAD_USER_INPUT"], (name, variables, body)
        too_many = await site.gql(query, {"f": None, "l": 10_000, **extra}, as_user=admin)  # counted as `first` is
        assert errors_of(too_many) == ["PAGE_TOO_LARGE"] and too_many["errors"][0]["extensions"]["field"] == "last"
    # access requests as a connection: each caller sees only their own, in either direction
    mine = "query($d: AccessRequestDirection!) { accessRequests(direction: $d) { totalCount edges { node { requester { id } } } } }"
    async with site.database.session() as session:
        from sqlalchemy import select

        subject = (await session.scalars(select(User).where(User.first_name == "L3"))).one()
    incoming = (await site.gql(mine, {"d": "INCOMING"}, as_user=subject))["data"]["accessRequests"]
    assert incoming["totalCount"] == 1 and incoming["edges"][0]["node"]["requester"]["id"] == gid("User", admin)
    assert (await site.gql(mine, {"d": "OUTGOING"}, as_user=subject))["data"]["accessRequests"]["totalCount"] == 0
    assert (await site.gql(mine, {"d": "INCOMING"}, as_user=admin))["data"]["accessRequests"]["totalCount"] == 0
    assert errors_of(await site.gql(mine, {"d": "INCOMING"})) == ["UNAUTHENTICATED"]


# --- the codecs, property-based -----------------------------------------------------------------------

KIND_VALUES = {
    cursors.ID: st.integers(1, 2**31 - 1),
    cursors.INT: st.integers(-(2**31), 2**31 - 1),
    cursors.TEXT: st.text(max_size=40).filter(lambda t: "\x00" not in t),
    cursors.INSTANT: st.datetimes(timezones=st.just(UTC)),
    cursors.NUMBER: st.floats(allow_nan=False, allow_infinity=False),
}
KINDS = st.lists(st.sampled_from(sorted(KIND_VALUES)), min_size=1, max_size=3)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_cursor_round_trip(data: st.DataObject) -> None:
    kinds = data.draw(KINDS)
    values = tuple(data.draw(KIND_VALUES[k]) for k in kinds)
    name = data.draw(st.sampled_from(sorted(CONNECTIONS)))
    cursor = cursors.encode(name, kinds, values)
    assert cursors.decode(name, kinds, cursor) == values
    with pytest.raises(BadInput) as refused:  # bound to its connection
        cursors.decode(name + "x", kinds, cursor)
    assert refused.value.code == "BAD_USER_INPUT"


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=60), st.binary(max_size=45).map(lambda b: base64.urlsafe_b64encode(b).decode())))
def test_every_other_string_is_not_a_cursor(text: str) -> None:
    kinds = (cursors.TEXT, cursors.ID)
    try:
        values = cursors.decode("groups", kinds, text)
    except BadInput as error:
        assert error.code == "BAD_USER_INPUT"
    else:
        assert cursors.encode("groups", kinds, values) == text


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["User", "Group", "Membership"]), st.integers(1, 2**31 - 1))
def test_global_id_round_trip(kind: str, number: int) -> None:
    assert parse_global_id(to_global_id(kind, number)) == (kind, number)


def _raw_ids() -> st.SearchStrategy[str]:
    number = st.one_of(st.integers(-(2**40), 2**40).map(str), st.text("0123456789_+- ", max_size=12), st.text(max_size=6))
    raw = st.builds(lambda k, n: f"{k}:{n}", st.sampled_from(["User", "Group", "", "user", "Us er"]), number)
    encoded = raw.map(lambda r: base64.b64encode(r.encode()).decode())
    return st.one_of(encoded, encoded.map(lambda e: e.rstrip("=")), st.text(max_size=30))


@settings(max_examples=300, deadline=None)
@given(_raw_ids())
def test_only_canonical_global_ids_decode(text: str) -> None:
    try:
        kind, number = parse_global_id(text)
    except BadInput as error:
        assert error.code == "BAD_USER_INPUT"
    else:
        assert to_global_id(kind, number) == text


def test_the_reported_id_forms_are_refused() -> None:
    for raw in ("User:1_0", "User:+10", "User:010", "User: 10", "User:10 ", "User:\uff11\uff10", "User:-1", "User:0"):
        with pytest.raises(BadInput):
            parse_global_id(base64.b64encode(raw.encode()).decode())
    assert parse_global_id(base64.b64encode(b"User:10").decode()) == ("User", 10)
