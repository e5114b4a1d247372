"""A members page with its users' course cards costs the same statements whatever its size: the page, the
users' group ids and their cards are each one statement for the whole page, the catalogue is in memory, and
the fields below resolve from that data."""

from __future__ import annotations

from typing import Any

from app.store.models import User
from tests.progress_helpers import course, enroll, event, record
from tests.site import Site, gid

PAGE = """query($id: ID!, $first: Int!) { group(id: $id) { members(includeNested: true, roles: [MEMBER], first: $first) {
  totalCount pageInfo { hasNextPage endCursor }
  edges { node { role group { name } user { id firstName lastName email
    courseProgress { course { name } percentCompleted stepsCompleted steps { step { position } completedAt } } } } }
} } }"""
ONE = """query($id: ID!) { user(id: $id) { id firstName lastName email
  courseProgress { course { name } percentCompleted stepsCompleted steps { step { position } completedAt } } } }"""


async def page(site: Site, viewer: User, group_id: int, first: int) -> tuple[int, dict[str, Any]]:
    token = await site.token(viewer)
    await site.gql(PAGE, {"id": gid("Group", group_id), "first": first}, token=token)  # the catalogue, once
    with site.statements() as counted:
        body = await site.gql(PAGE, {"id": gid("Group", group_id), "first": first}, token=token)
    assert "errors" not in body, body["errors"][:2]
    return counted.count, body["data"]["group"]["members"]


async def test_members_page_with_cards_costs_the_same_statements_at_every_size(site: Site) -> None:
    admin = await site.user("Ada", "Admin", roles="ADMIN", kind="STAFF")
    leader = await site.user("Lea", "Leader", kind="STAFF")
    school = await site.group("School")
    classes = [await site.group(f"Class {n}", school) for n in range(3)]
    await site.member(leader, school, "LEADER")
    algebra = await course(site, admin, "Algebra", [("LESSON", None), ("QUIZ", 10), ("LESSON", None)])
    biology = await course(site, admin, "Biology", [("LESSON", None), ("LESSON", None)])
    learners = []
    for n in range(12):
        learner = await site.user(f"L{n:02d}", f"Learner{n:02d}")
        await site.member(learner, classes[n % 3] if n % 4 else school)
        learners.append(learner)
    await enroll(site, admin, learners, algebra)
    await enroll(site, admin, learners[::2], biology)
    done = await record(site, admin, [event(u, "COMPLETED", algebra["steps"][0]) for u in learners[::3]])
    assert "errors" not in done, done

    for viewer in (admin, leader):
        small, few = await page(site, viewer, school.id, 2)  # type: ignore[arg-type]
        large, every = await page(site, viewer, school.id, 12)  # type: ignore[arg-type]
        assert len(few["edges"]) == 2 and len(every["edges"]) == every["totalCount"] == 12
        assert small == large, (small, large)
        # sign-in, Reach (with the catalogue version), group, page, group ids, cards, step records, count: 8
        assert small <= 9, small
        for edge in every["edges"]:
            cards = edge["node"]["user"]["courseProgress"]
            user = next(u for u in learners if gid("User", u) == edge["node"]["user"]["id"])
            assert [c["course"]["name"] for c in cards] == (["Algebra", "Biology"] if user in learners[::2] else ["Algebra"])
            assert len(cards[0]["steps"]) == 3
            # the page's cards, loaded for the whole page at once, read as the user's own do
            alone = await site.gql(ONE, {"id": edge["node"]["user"]["id"]}, as_user=viewer)
            assert alone["data"]["user"] == edge["node"]["user"]
        completed = {e["node"]["user"]["id"] for e in every["edges"] if e["node"]["user"]["courseProgress"][0]["stepsCompleted"]}
        assert completed == {gid("User", u) for u in learners[::3]}


SHOWN = """query($id: ID!) { group(id: $id) { members(includeNested: true, first: 20) { edges { node { role
  group { name } user { id firstName lastName email courseProgress { course { name } percentCompleted } } } } } } }"""
WIDER = """query($id: ID!) { group(id: $id) { members(includeNested: true, first: 20) { edges { node { role
  group { name depth } user { id firstName lastName email createdAt title courseProgress { course { name } percentCompleted } } } } } } }"""
BESIDE = """query($id: ID!) { group(id: $id) { members(includeNested: true, roles: [MEMBER], first: 20) { edges { node {
  user { id firstName } group { name members(roles: [MEMBER], first: 5) { edges { node { user { firstName createdAt title } } } } } } } } } }"""


def page_statement(statements: list[str]) -> str:
    return next(s for s in statements if "membership_sort_name" in s)


async def test_a_dashboards_page_reads_only_the_columns_it_shows(site: Site) -> None:
    admin = await site.user("Ada", "Admin", roles="ADMIN", kind="STAFF")
    leader = await site.user("Lea", "Leader", kind="STAFF")
    school = await site.group("School")
    klass = await site.group("Class", school)
    await site.member(leader, school, "LEADER")
    algebra = await course(site, admin, "Algebra", [("LESSON", None), ("LESSON", None)])
    learners = [await site.user(f"L{n}", f"Learner{n}") for n in range(4)]
    for n, learner in enumerate(learners):
        await site.member(learner, klass if n % 2 else school)
    await enroll(site, admin, learners, algebra)
    for viewer in (admin, leader):
        token = await site.token(viewer)
        with site.statements() as counted:
            shown = await site.gql(SHOWN, {"id": gid("Group", school)}, token=token)
        narrow = page_statement(counted.statements)
        with site.statements() as counted:
            wider = await site.gql(WIDER, {"id": gid("Group", school)}, token=token)
        wide = page_statement(counted.statements)
        assert "errors" not in shown and "errors" not in wider, (shown, wider)
        # the shown page leaves out what no field asked reads: the user's creation and sign-ins, the group's text
        for column in ("last_login_at", "login_count", "title", "description", "slug"):
            assert column not in narrow and column in wide, column
        # and answers the same
        edges, wide_edges = shown["data"]["group"]["members"]["edges"], wider["data"]["group"]["members"]["edges"]
        assert len(edges) == 5  # the leader and the four learners
        for edge, wide_edge in zip(edges, wide_edges, strict=True):
            assert edge["node"]["group"]["name"] == wide_edge["node"]["group"]["name"]
            assert {k: edge["node"]["user"][k] for k in edge["node"]["user"]} == {
                k: wide_edge["node"]["user"][k] for k in edge["node"]["user"]
            }
            assert wide_edge["node"]["user"]["createdAt"] and "depth" in wide_edge["node"]["group"]


async def test_a_shown_page_leaves_the_loaders_whole_for_the_rest_of_the_request(site: Site) -> None:
    admin = await site.user("Ada", "Admin", roles="ADMIN", kind="STAFF")
    school = await site.group("School")
    klass = await site.group("Class", school)
    learners = [await site.user(name, "Learner") for name in ("Lu", "Mo")]
    for learner in learners:
        await site.member(learner, klass)
    body = await site.gql(BESIDE, {"id": gid("Group", school)}, token=await site.token(admin))
    assert "errors" not in body, body["errors"][:2]
    edges = body["data"]["group"]["members"]["edges"]
    assert [e["node"]["user"]["firstName"] for e in edges] == ["Lu", "Mo"]
    # the same users, read again later in the request by a page that asks columns the first page did not read
    inner = edges[0]["node"]["group"]["members"]["edges"]
    assert [e["node"]["user"]["firstName"] for e in inner] == ["Lu", "Mo"]
    assert all(e["node"]["user"]["createdAt"].endswith("Z") and e["node"]["user"]["title"] is None for e in inner)
