"""Property-based fuzzing of the GraphQL endpoint: queries and mutations generated from schema.graphql
(hypothesis-graphql), sent as a site admin, a group leader and a learner (and anonymously) over a small
school, must never answer a 5xx or INTERNAL_SERVER_ERROR. Ids are drawn from the school's real objects
and from malformed ones; DateTimes from the whole calendar.

GROUPGRAPH_FUZZ_EXAMPLES (default 25) examples per operation kind, caller and engine: each example is one
request, so a CI run sends 2 kinds x 4 callers x 25 x 2 engines = 400 generated requests (about 35 s on a
busy 2-core machine; generating the documents costs more than answering them). Raise it for a longer hunt.
"""

from __future__ import annotations

import asyncio
import base64
import os
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import graphql
import hypothesis_graphql
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.runtime.ids import to_global_id
from app.store.models import AccessRequest, GuardianLink, utcnow
from tests.school import course, enroll
from tests.site import Site

EXAMPLES = int(os.environ.get("GROUPGRAPH_FUZZ_EXAMPLES", "25"))
SCHEMA = graphql.build_schema((Path(__file__).parent.parent / "schema.graphql").read_text())
# login is throttled and verifies argon2 hashes on purpose (tests/test_throttle.py covers it)
QUERY_FIELDS = sorted(SCHEMA.query_type.fields)  # type: ignore[union-attr]
MUTATION_FIELDS = sorted(set(SCHEMA.mutation_type.fields) - {"login", "importGroupAssignments"})  # type: ignore[union-attr]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"login_slowdown_seconds": 0.0}


def string_node(values: st.SearchStrategy[str]) -> st.SearchStrategy[graphql.StringValueNode]:
    return values.map(lambda v: graphql.StringValueNode(value=v))


def ids(real: list[str]) -> st.SearchStrategy[graphql.StringValueNode]:
    """Ids of the school's objects, ids of other types and numbers, and strings that are no id at all."""
    kinds = ["User", "Group", "Membership", "AccessRequest", "GuardianLink", "Course", "Step", "Submission",
             "AuditEvent", "ApiToken", "Nope"]
    forged = st.builds(
        lambda kind, number: base64.b64encode(f"{kind}:{number}".encode()).decode(),
        st.sampled_from(kinds),
        st.one_of(st.integers(-5, 60), st.integers(), st.sampled_from(["1_0", "01", " 1", "1e3", "", "x"])),
    )
    return string_node(st.one_of(st.sampled_from(real), forged, st.text(max_size=12)))


def datetimes() -> st.SearchStrategy[graphql.StringValueNode]:
    moments = st.datetimes(timezones=st.sampled_from([UTC, None]) | st.timezones())
    return string_node(
        st.one_of(
            moments.map(lambda d: d.isoformat()),
            st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "2026-13-01", "now", ""]),
        )
    )


async def school(site: Site) -> tuple[dict[str, str], list[str]]:
    admin = await site.user("Ada", roles="OWNER,ADMIN", kind="STAFF")
    leader = await site.user("Lia", kind="STAFF")
    learner = await site.user("Lea")
    parent = await site.user("Pat", kind="EXTERNAL")
    org = await site.group("Org")
    team = await site.group("Team", org)
    memberships = [await site.member(leader, org, "LEADER"), await site.member(learner, team)]
    course_row, steps = await course(site, "Safety", 3)
    await enroll(site, learner, course_row)
    async with site.database.transaction() as session:
        request = AccessRequest(
            requester_id=leader.id, subject_email=learner.email, subject_email_normalized=learner.email,
            subject_user_id=learner.id, status="PENDING", expires_at=utcnow() + timedelta(days=30),
        )
        link = GuardianLink(external_user_id=parent.id, pupil_id=learner.id, licence_type="PARENT_GUARDIAN")
        session.add_all([request, link])
    real = [
        *(to_global_id("User", u.id) for u in (admin, leader, learner, parent)),  # type: ignore[arg-type]
        *(to_global_id("Group", g.id) for g in (org, team)),  # type: ignore[arg-type]
        *(to_global_id("Membership", m.id) for m in memberships),  # type: ignore[arg-type]
        to_global_id("Course", course_row.id), *(to_global_id("Step", s.id) for s in steps),  # type: ignore[arg-type]
        to_global_id("AccessRequest", request.id), to_global_id("GuardianLink", link.id),  # type: ignore[arg-type]
    ]
    tokens = {"admin": await site.token(admin), "leader": await site.token(leader), "learner": await site.token(learner)}
    return tokens, real


@pytest.mark.parametrize("kind", ["query", "mutation"])
async def test_generated_requests_never_fail_on_the_server(site: Site, kind: str) -> None:
    tokens, real = await school(site)
    callers = [*tokens.values(), None]
    scalars = {"ID": ids(real), "DateTime": datetimes(), "Upload": st.just(graphql.NullValueNode())}
    build = hypothesis_graphql.queries if kind == "query" else hypothesis_graphql.mutations
    fields = QUERY_FIELDS if kind == "query" else MUTATION_FIELDS
    # one root field per document, every field as likely as any other (a few examples reach each one)
    per_field = {f: build(SCHEMA, fields=[f], custom_scalars=scalars, allow_x00=True) for f in fields}
    documents = st.sampled_from(fields).flatmap(per_field.__getitem__)
    loop = asyncio.get_running_loop()
    sent: list[int] = []

    async def post(document: str, token: str | None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await site.client.post("/graphql", json={"query": document}, headers=headers)
        return response.status_code, response.json()

    @settings(
        max_examples=EXAMPLES * len(callers), deadline=None, database=None, derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(document=documents, caller=st.sampled_from(callers))
    def check(document: str, caller: str | None) -> None:
        status, body = asyncio.run_coroutine_threadsafe(post(document, caller), loop).result()
        sent.append(status)
        codes = [e.get("extensions", {}).get("code") for e in body.get("errors", [])]
        assert status < 500 and "INTERNAL_SERVER_ERROR" not in codes, (document, body)

    await asyncio.to_thread(check)
    assert len(sent) >= EXAMPLES, len(sent)
    print(f"fuzz {kind}: {len(sent)} generated requests")
