"""The group dashboard (the bench's D1 and D2 queries) costs the same number of SQL statements, at most 15,
whatever the group's size, on both databases (groups of the same shape: both with nested groups)."""

from __future__ import annotations

from typing import Any

import pytest

from app.demo.presets import seed_preset
from bench.scenarios import D1, D2, gid
from dataloaders.courses import forget_catalogues
from tests.site import Site

MAX_STATEMENTS = 15
# over HTTP, on both engines, per viewer: a site admin's decisions about the page's users need no look at
# their groups, a leader's do (one statement more)
D1_STATEMENTS = {"admin": 4, "leader": 5}


async def statements_for(site: Site, token: str, query: str, group_id: int) -> tuple[int, dict[str, Any]]:
    with site.statements() as counted:
        body = await site.gql(query, {"id": gid(group_id)}, token=token)
    return counted.count, body


@pytest.mark.parametrize("viewer,small,large", [("admin", "level2", "root"), ("leader", "level2", "level1")])
async def test_dashboard_statements_do_not_grow_with_the_group_or_the_page(
    site: Site, viewer: str, small: str, large: str
) -> None:
    seeded = await seed_preset(site.settings.database_url, "small")
    assert seeded is not None
    token = seeded["viewers"][viewer]["token"]
    groups = seeded["groups"]
    counts: dict[tuple[str, str], int] = {}
    totals: dict[str, int] = {}
    # the worker loads the course catalogue once (two statements), then reads one version number per request
    await statements_for(site, token, D1, groups[small])
    for name, query in (("D1", D1), ("D2", D2)):
        for target in (small, large):
            count, body = await statements_for(site, token, query, groups[target])
            assert "errors" not in body, body["errors"][:2]
            group = body["data"]["group"]
            edges = group["members"]["edges"]
            assert len(edges) == min(group["members"]["totalCount"], 100 if name == "D1" else 500)
            assert all(edge["node"]["user"]["courseProgress"] for edge in edges)  # every learner has 2 courses
            assert group["progressSummary"]["learnerCount"] == group["members"]["totalCount"]
            totals[target] = group["members"]["totalCount"]
            counts[(name, target)] = count
    assert totals[small] < 100 < 2 * totals[small] < totals[large]  # within one D1 page, and over it
    assert max(counts.values()) <= MAX_STATEMENTS, counts
    # the sign-in with the Reach (and the catalogue's version); the group with its ancestors and children, the
    # rolled-up member counts (the group's and its children's) and its rolled-up progress summary; the members
    # page; the page's users' groups (not for a site admin); their course cards. D2 adds the steps
    expected = D1_STATEMENTS[viewer]
    assert counts[("D1", small)] == expected and counts[("D2", small)] == expected + 1, counts
    for name in ("D1", "D2"):  # D2 asks for more (steps), so it may cost more than D1, but not with size
        assert counts[(name, small)] == counts[(name, large)], counts
    forget_catalogues()  # as a fresh worker: the catalogue's two statements once more
    cold, _ = await statements_for(site, token, D1, groups[small])
    assert cold == counts[("D1", small)] + 2
