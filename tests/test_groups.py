"""Groups: the visible list, the tree (closure table kept right through re-nesting and deletion),
updateGroup and deleteGroup, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from app.models import Group, User
from tests.site import Site, errors_of

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
    assert errors_of(too_many) == ["BAD_USER_INPUT"]
