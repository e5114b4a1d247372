"""Group.members / memberCount (visibility, pages, batching) and addMembers / changeMemberRole /
removeMembers, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from app.models import Group, User
from tests.site import Site, gid

BENCH = """query($id: ID!, $first: Int) { group(id: $id) {
  name depth ancestors { name } children { name memberCount(includeNested: true) }
  viewerRole viewerPermissions memberCount(includeNested: true)
  members(includeNested: true, roles: [MEMBER], first: $first) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { node { role group { name } user { firstName lastName email } } }
  }
} }"""


async def tree(site: Site, children: int, members_each: int) -> tuple[Group, User, list[Group]]:
    """A root under a top group, `children` child groups each with a grandchild, members everywhere."""
    top = await site.group("Top")
    root = await site.group("Root", top)
    leader = await site.user("Lea", kind="STAFF")
    await site.member(leader, root, "LEADER")
    kids = []
    for i in range(children):
        child = await site.group(f"Child {i}", root)
        grandchild = await site.group(f"Grand {i}", child)
        kids.append(child)
        for j in range(members_each):
            await site.member(await site.user(f"M{i}x{j}", f"Last{j:03d}"), child)
            await site.member(await site.user(f"G{i}x{j}", f"Last{j:03d}"), grandchild)
    return root, leader, kids


async def bench(site: Site, root: Group, leader: User, first: int) -> tuple[dict[str, Any], int]:
    await site.token(leader)
    with site.statements() as counted:
        body = await site.gql(BENCH, {"id": gid("Group", root), "first": first}, as_user=leader)
    assert "errors" not in body, body
    return body["data"]["group"], counted.count


async def test_dashboard_statements_do_not_grow(site: Site) -> None:
    root, leader, _ = await tree(site, 2, 2)
    small, small_count = await bench(site, root, leader, 3)
    assert small["memberCount"] == 2 * 2 * 2 + 1
    assert small["members"]["totalCount"] == 8
    assert len(small["members"]["edges"]) == 3 and small["members"]["pageInfo"]["hasNextPage"]
    for i in range(2, 12):
        child = await site.group(f"More {i}", root)
        grandchild = await site.group(f"MoreGrand {i}", child)
        for j in range(6):
            await site.member(await site.user(f"N{i}x{j}"), child)
            await site.member(await site.user(f"H{i}x{j}"), grandchild, "MENTOR" if j == 0 else "MEMBER")
    large, large_count = await bench(site, root, leader, 100)
    assert len(large["children"]) == 12
    assert large["memberCount"] == 8 + 10 * 12 + 1
    assert large["members"]["totalCount"] == 8 + 10 * 11
    assert len(large["members"]["edges"]) == 100
    print("dashboard statements", small_count, large_count, *[s[:150].replace("\n", " ") for s in site.database.counter.statements], sep="\n")
    assert small_count == large_count
