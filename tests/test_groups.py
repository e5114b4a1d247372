"""Groups: the visible list, the tree (closure table kept right through re-nesting and deletion),
updateGroup and deleteGroup, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from app.store.models import AuditEvent, Group, GroupClosure, Membership, User
from dataloaders.loaders import Loaders
from dataloaders.store import Store
from tests.site import Site, errors_of, gid

GROUPS = """query($roots: Boolean, $search: String, $first: Int, $after: String) {
  groups(roots: $roots, search: $search, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor } edges { cursor node { name } }
  }
}"""


async def names(site: Site, viewer: User, **variables: Any) -> tuple[list[str], int]:
    body = await site.gql(GROUPS, variables, as_user=viewer)
    assert "errors" not in body, body
    found = body["data"]["groups"]
    return [e["node"]["name"] for e in found["edges"]], found["totalCount"]


async def forest(site: Site) -> dict[str, Group]:
    """Two trees: A > A1 > A11, A > A2; B > B1."""
    a = await site.group("A")
    a1 = await site.group("A1", a)
    a11 = await site.group("A11", a1)
    a2 = await site.group("A2", a)
    b = await site.group("B")
    b1 = await site.group("B1", b)
    return {"A": a, "A1": a1, "A11": a11, "A2": a2, "B": b, "B1": b1}


async def test_groups_list_is_what_the_viewer_sees(site: Site) -> None:
    g = await forest(site)
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    leader = await site.user("Leo", kind="STAFF")
    await site.member(leader, g["A1"], "LEADER")
    member = await site.user("Mo")
    await site.member(member, g["A2"])
    await site.member(member, g["B1"])
    outsider = await site.user("Out")

    assert await names(site, admin) == (["A", "A1", "A11", "A2", "B", "B1"], 6)
    for viewer in (admin, leader):  # the sign-in with the reach, the page, the count
        await site.token(viewer)
        with site.statements() as counted:
            await names(site, viewer)
        assert counted.count == 3
    assert await names(site, admin, roots=True) == (["A", "B"], 2)
    assert await names(site, leader) == (["A1", "A11"], 2)
    assert await names(site, leader, roots=True) == (["A1"], 1)
    assert await names(site, member) == (["A2", "B1"], 2)
    assert await names(site, member, roots=True) == (["A2", "B1"], 2)
    assert await names(site, outsider) == ([], 0)
    assert await names(site, admin, search="a1") == (["A1", "A11"], 2)
    assert await names(site, leader, search="%") == ([], 0)
    anonymous = await site.gql(GROUPS, {})
    assert errors_of(anonymous) == ["UNAUTHENTICATED"]


async def test_groups_list_pages_by_keyset(site: Site) -> None:
    await forest(site)
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        body = await site.gql(GROUPS, {"first": 4, "after": after}, as_user=admin)
        page = body["data"]["groups"]
        assert page["totalCount"] == 6
        seen += [e["node"]["name"] for e in page["edges"]]
        pages += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert pages == 2 and seen == ["A", "A1", "A11", "A2", "B", "B1"]
    bad = await site.gql(GROUPS, {"after": "not-a-cursor"}, as_user=admin)
    assert errors_of(bad) == ["BAD_USER_INPUT"]
    too_many = await site.gql(GROUPS, {"first": 100000}, as_user=admin)
    assert errors_of(too_many) == ["PAGE_TOO_LARGE"]


UPDATE = """mutation($id: ID!, $input: UpdateGroupInput!) {
  updateGroup(id: $id, input: $input) { name description depth parent { name } ancestors { name } }
}"""
DELETE = "mutation($id: ID!, $nested: Boolean) { deleteGroup(id: $id, deleteNested: $nested) }"


async def closure_rows(site: Site) -> set[tuple[int, int, int]]:
    async with site.database.session() as session:
        rows = await session.execute(select(GroupClosure.ancestor_id, GroupClosure.descendant_id, GroupClosure.depth))
        return {tuple(r) for r in rows}  # type: ignore[misc]


async def recomputed(site: Site) -> tuple[set[tuple[int, int, int]], dict[int, int], dict[int, int]]:
    """The closure rows and depths the parent links imply, computed in Python; and the stored depths."""
    async with site.database.session() as session:
        parents = {g.id: g.parent_id for g in await session.scalars(select(Group))}
        stored = {g.id: g.depth for g in await session.scalars(select(Group))}
    rows = set()
    depths = {}
    for group_id in parents:
        chain = [group_id]
        while parents[chain[-1]] is not None:
            chain.append(parents[chain[-1]])
        depths[group_id] = len(chain) - 1
        rows |= {(ancestor, group_id, distance) for distance, ancestor in enumerate(chain)}
    return rows, depths, stored


async def assert_tree_consistent(site: Site) -> None:
    rows, depths, stored = await recomputed(site)
    assert await closure_rows(site) == rows
    assert stored == depths


async def test_renest_keeps_closure_and_depths(site: Site) -> None:
    g = await forest(site)
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    # move A1 (with A11) under B1
    body = await site.gql(UPDATE, {"id": gid("Group", g["A1"]), "input": {"parentId": gid("Group", g["B1"])}}, as_user=admin)
    assert "errors" not in body, body
    moved = body["data"]["updateGroup"]
    assert moved["depth"] == 2 and moved["parent"]["name"] == "B1"
    assert [a["name"] for a in moved["ancestors"]] == ["B", "B1"]
    await assert_tree_consistent(site)
    async with site.database.session() as session:
        assert (await session.get(Group, g["A11"].id)).depth == 3  # type: ignore[union-attr]
    # make it a root, then rename and describe
    body = await site.gql(UPDATE, {"id": gid("Group", g["A1"]), "input": {"makeRoot": True}}, as_user=admin)
    assert body["data"]["updateGroup"]["depth"] == 0 and body["data"]["updateGroup"]["parent"] is None
    await assert_tree_consistent(site)
    body = await site.gql(
        UPDATE, {"id": gid("Group", g["A1"]), "input": {"name": " Renamed ", "description": "Hello"}}, as_user=admin
    )
    assert body["data"]["updateGroup"]["name"] == "Renamed"
    assert body["data"]["updateGroup"]["description"] == "Hello"
    # back under A2
    await site.gql(UPDATE, {"id": gid("Group", g["A1"]), "input": {"parentId": gid("Group", g["A2"])}}, as_user=admin)
    await assert_tree_consistent(site)
    assert await site.count(AuditEvent, AuditEvent.action == "group.update") == 4


async def test_renest_refuses_cycles_and_depth(site: Site) -> None:
    g = await forest(site)
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    before = await closure_rows(site)
    for target in ("A", "A11"):
        body = await site.gql(UPDATE, {"id": gid("Group", g["A"]), "input": {"parentId": gid("Group", g[target])}}, as_user=admin)
        assert errors_of(body) == ["BAD_USER_INPUT"]
        assert body["errors"][0]["extensions"]["field"] == "parentId"
    both = await site.gql(UPDATE, {"id": gid("Group", g["B"]), "input": {"parentId": gid("Group", g["A"]), "makeRoot": True}}, as_user=admin)
    assert errors_of(both) == ["BAD_USER_INPUT"]
    for bad_name in ("  ", "x" * 201):
        body = await site.gql(UPDATE, {"id": gid("Group", g["B"]), "input": {"name": bad_name}}, as_user=admin)
        assert errors_of(body) == ["BAD_USER_INPUT"]
    assert await closure_rows(site) == before
    assert await site.count(AuditEvent) == 0


@pytest.mark.parametrize("settings_overrides", [{"max_group_depth": 3}])
async def test_depth_limit_counts_the_deepest_descendant(site: Site) -> None:
    g = await forest(site)  # A(0) > A1(1) > A11(2); B(0) > B1(1)
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")

    async def renest(group: Group, parent: Group) -> dict[str, Any]:
        return await site.gql(UPDATE, {"id": gid("Group", group), "input": {"parentId": gid("Group", parent)}}, as_user=admin)

    ok = await renest(g["A1"], g["B1"])  # A1 at 2, A11 at 3 = the limit
    assert "errors" not in ok, ok
    c = await site.group("C")
    c1 = await site.group("C1", c)
    refused = await renest(c, g["A11"])  # C would be at 4
    assert errors_of(refused) == ["BAD_USER_INPUT"] and "levels" in refused["errors"][0]["message"]
    refused = await renest(c, g["A1"])  # C at 3, but C1 at 4
    assert errors_of(refused) == ["BAD_USER_INPUT"] and "levels" in refused["errors"][0]["message"]
    allowed = await renest(c, g["B1"])  # C at 2, C1 at 3
    assert "errors" not in allowed, allowed
    async with site.database.session() as session:
        assert (await session.get(Group, c1.id)).depth == 3  # type: ignore[union-attr]
    await assert_tree_consistent(site)


async def test_update_needs_manage_group_on_group_and_new_parent(site: Site) -> None:
    g = await forest(site)
    leader = await site.user("Leo", kind="STAFF")
    await site.member(leader, g["A"], "LEADER")
    mentor = await site.user("Men", kind="STAFF")
    await site.member(mentor, g["A"], "MENTOR")
    await site.member(mentor, g["B"], "LEADER")
    a1 = gid("Group", g["A1"])
    # the mentor of A cannot rename A1
    body = await site.gql(UPDATE, {"id": a1, "input": {"name": "X"}}, as_user=mentor)
    assert errors_of(body) == ["FORBIDDEN"] and body["data"] is None
    # the leader of A cannot move A1 under B (invisible to them: NOT_FOUND, like a missing id)
    body = await site.gql(UPDATE, {"id": a1, "input": {"parentId": gid("Group", g["B"])}}, as_user=leader)
    assert errors_of(body) == ["NOT_FOUND"]
    # the leader of B (mentor of A) cannot move A1 under B: A1 is not theirs to manage
    body = await site.gql(UPDATE, {"id": a1, "input": {"parentId": gid("Group", g["B"])}}, as_user=mentor)
    assert errors_of(body) == ["FORBIDDEN"]
    # the leader of A cannot make A1 a root (they lead it only by inheritance)
    body = await site.gql(UPDATE, {"id": a1, "input": {"makeRoot": True}}, as_user=leader)
    assert errors_of(body) == ["FORBIDDEN"]
    # but may move it within A
    body = await site.gql(UPDATE, {"id": a1, "input": {"parentId": gid("Group", g["A2"])}}, as_user=leader)
    assert body["data"]["updateGroup"]["depth"] == 2
    async with site.database.session() as session:
        assert (await session.get(Group, g["A1"].id)).parent_id == g["A2"].id  # type: ignore[union-attr]
        assert (await session.get(Group, g["B"].id)).name == "B"  # type: ignore[union-attr]


async def test_delete_group(site: Site) -> None:
    g = await forest(site)
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    leader = await site.user("Leo", kind="STAFF")
    await site.member(leader, g["A1"], "LEADER")
    member = await site.user("Mo")
    await site.member(member, g["A11"])
    await site.member(member, g["B1"])
    # the leader of A1 may not delete A
    body = await site.gql(DELETE, {"id": gid("Group", g["A"]), "nested": True}, as_user=leader)
    assert errors_of(body) == ["NOT_FOUND"]
    body = await site.gql(DELETE, {"id": gid("Group", g["A1"])}, as_user=leader)
    assert errors_of(body) == ["CONFLICT"]
    assert await site.count(Group) == 6
    body = await site.gql(DELETE, {"id": gid("Group", g["A1"]), "nested": True}, as_user=leader)
    assert body == {"data": {"deleteGroup": True}}
    assert await site.count(Group) == 4
    assert await site.count(Membership, Membership.group_id.in_([g["A1"].id, g["A11"].id])) == 0
    assert await site.count(Membership) == 1
    await assert_tree_consistent(site)
    event = await site.count(AuditEvent, AuditEvent.action == "group.delete", AuditEvent.target_id == g["A1"].id)
    assert event == 1
    # the next request sees the change: the leader has no groups left
    assert await names(site, leader) == ([], 0)
    leaf = await site.gql(DELETE, {"id": gid("Group", g["B1"])}, as_user=admin)
    assert leaf == {"data": {"deleteGroup": True}}
    await assert_tree_consistent(site)


async def test_subtree_and_ancestors_are_one_statement_whatever_the_depth(site: Site) -> None:
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    query = "query($id: ID!) { group(id: $id) { ancestors { name } } }"
    counts = []
    for depth in (2, 9):
        chain = [await site.group(f"L{depth}x0")]
        for level in range(1, depth + 1):
            chain.append(await site.group(f"L{depth}x{level}", chain[-1]))
        store = Store(site.database)
        loaders = Loaders(store)
        with site.statements() as counted:
            ancestors = await loaders.groups.ancestors.load(chain[-1].id)
            assert counted.count == 1
            subtree = await loaders.groups.subtree_ids.load(chain[0].id)
            assert counted.count == 2
        await store.close()
        assert [g.name for g in ancestors] == [g.name for g in chain[:-1]]
        assert subtree == {g.id for g in chain}
        await site.token(admin)
        with site.statements() as counted:
            body = await site.gql(query, {"id": gid("Group", chain[-1])}, as_user=admin)
        assert len(body["data"]["group"]["ancestors"]) == depth
        counts.append(counted.count)
    assert counts[0] == counts[1]


async def test_renesting_changes_what_the_next_request_sees(site: Site) -> None:
    g = await forest(site)
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    leader = await site.user("Leo", kind="STAFF")
    await site.member(leader, g["A"], "LEADER")
    pupil = await site.user("Pupil")
    await site.member(pupil, g["A11"])
    query = "query($g: ID!, $u: ID!) { group(id: $g) { name viewerRole } user(id: $u) { firstName email } }"
    variables = {"g": gid("Group", g["A11"]), "u": gid("User", pupil)}
    before = await site.gql(query, variables, as_user=leader)
    assert before == {"data": {"group": {"name": "A11", "viewerRole": "LEADER"}, "user": {"firstName": "Pupil", "email": pupil.email}}}
    moved = await site.gql(UPDATE, {"id": gid("Group", g["A1"]), "input": {"parentId": gid("Group", g["B"])}}, as_user=admin)
    assert "errors" not in moved, moved
    after = await site.gql(query, variables, as_user=leader)
    assert after == {"data": {"group": None, "user": None}}
    assert await names(site, leader) == (["A", "A2"], 2)


CREATE = """mutation($input: CreateGroupInput!) { createGroup(input: $input) { name slug depth viewerRole parent { name } } }"""


async def test_create_group_rules_and_bad_input(site: Site) -> None:
    g = await forest(site)
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    leader = await site.user("Leo", kind="STAFF")
    await site.member(leader, g["A1"], "LEADER")
    made = await site.gql(CREATE, {"input": {"name": "Sub", "parentId": gid("Group", g["A1"])}}, as_user=leader)
    assert made == {"data": {"createGroup": {"name": "Sub", "slug": "sub", "depth": 2, "viewerRole": "LEADER", "parent": {"name": "A1"}}}}
    again = await site.gql(CREATE, {"input": {"name": "Sub", "parentId": gid("Group", g["A1"])}}, as_user=leader)
    assert again["data"]["createGroup"]["slug"] == "sub-2"
    await assert_tree_consistent(site)
    for name in ("", "   ", "x" * 201):
        body = await site.gql(CREATE, {"input": {"name": name}}, as_user=admin)
        assert errors_of(body) == ["BAD_USER_INPUT"] and body["errors"][0]["extensions"]["field"] == "name"
    # a parent the caller cannot see: NOT_FOUND, like one that does not exist
    for parent in (gid("Group", g["B"]), gid("Group", 999999)):
        body = await site.gql(CREATE, {"input": {"name": "X", "parentId": parent}}, as_user=leader)
        assert errors_of(body) == ["NOT_FOUND"]
    # a visible parent the caller does not manage
    member = await site.user("Mo")
    await site.member(member, g["A2"])
    body = await site.gql(CREATE, {"input": {"name": "X", "parentId": gid("Group", g["A2"])}}, as_user=member)
    assert errors_of(body) == ["FORBIDDEN"]
    missing = await site.gql(UPDATE, {"id": gid("Group", 999999), "input": {"name": "Y"}}, as_user=admin)
    assert errors_of(missing) == ["NOT_FOUND"]
    assert await site.gql("query($id: ID!) { group(id: $id) { name } }", {"id": gid("Group", 999999)}, as_user=admin) == {
        "data": {"group": None}
    }
    assert await site.count(Group) == 8


async def test_concurrent_renests_never_make_a_cycle(site: Site) -> None:
    """A under B and B under A at the same time: one wins, the other is refused, the tree stays right."""
    a = await site.group("A")
    b = await site.group("B")
    admin = await site.user("Ada", kind="STAFF", roles="ADMIN")
    await site.token(admin)
    for _ in range(3):
        first, second = await asyncio.gather(
            site.gql(UPDATE, {"id": gid("Group", a), "input": {"parentId": gid("Group", b)}}, as_user=admin),
            site.gql(UPDATE, {"id": gid("Group", b), "input": {"parentId": gid("Group", a)}}, as_user=admin),
        )
        outcomes = sorted(["ok" if "errors" not in r else errors_of(r)[0] for r in (first, second)])
        assert outcomes == ["BAD_USER_INPUT", "ok"], (first, second)
        await assert_tree_consistent(site)
        for group in (a, b):  # both roots again for the next round
            await site.gql(UPDATE, {"id": gid("Group", group), "input": {"makeRoot": True}}, as_user=admin)
        await assert_tree_consistent(site)
