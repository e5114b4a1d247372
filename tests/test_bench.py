"""The bench's per-request SQL headers: present only with GROUPGRAPH_BENCH=1, and they count this request."""

from __future__ import annotations

from typing import Any

import pytest

from tests.site import Site, errors_of, gid


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {"bench": getattr(request, "param", False)}


@pytest.mark.parametrize("settings_overrides", [True], indirect=True)
async def test_bench_headers_count_the_request_statements(site: Site) -> None:
    viewer = await site.user("Vera", roles="ADMIN")
    token = await site.token(viewer)
    with site.statements() as counted:
        response = await site.client.post(
            "/graphql", json={"query": "{ viewer { email } }"}, headers={"Authorization": f"Bearer {token}"}
        )
    assert response.json()["data"]["viewer"]["email"] == viewer.email
    assert int(response.headers["x-bench-statements"]) == counted.count >= 1
    assert float(response.headers["x-bench-db-ms"]) <= float(response.headers["x-bench-server-ms"])


async def test_no_bench_headers_by_default(site: Site) -> None:
    response = await site.client.post("/graphql", json={"query": "{ viewer { email } }"})
    assert response.status_code == 200
    assert not [name for name in response.headers if name.startswith("x-bench")]


def test_multi_worker_listener_is_tcp_so_accepted_sockets_get_nodelay() -> None:
    import socket

    from app.http.serving import TcpConfig

    sock = TcpConfig("app.asgi:app", host="127.0.0.1", port=0, workers=2).bind_socket()
    try:
        assert sock.proto == socket.IPPROTO_TCP and sock.getsockname()[0] == "127.0.0.1"
    finally:
        sock.close()


async def test_a_valid_query_is_validated_once_and_a_rejected_one_every_time(site: Site) -> None:
    from app.runtime import query_cache

    viewer = await site.user("Quinn", roles="ADMIN")
    query = "query Again { viewer { email firstName } }"
    first = await site.gql(query, as_user=viewer)
    assert any(key[1] == query for key in query_cache._valid)
    assert await site.gql(query, as_user=viewer) == first == {"data": {"viewer": {"email": viewer.email, "firstName": "Quinn"}}}
    too_deep = "{ viewer { email } group(id: \"x\") { " + "parent { " * 14 + "name" + " }" * 14 + " } }"
    for _ in range(2):
        body = await site.gql(too_deep, as_user=viewer)
        assert body["errors"][0]["extensions"]["code"] == "QUERY_TOO_DEEP" and "data" not in body
    assert not any(key[1] == too_deep for key in query_cache._valid)


async def test_a_cached_query_still_meets_the_page_and_cost_limits_of_its_variables(site: Site) -> None:
    """The document is validated once, but `first` may come as a variable: its limits hold every time."""
    viewer = await site.user("Quinn", roles="ADMIN")
    group = await site.group("Cached")
    query = "query Page($id: ID!, $first: Int) { group(id: $id) { members(first: $first) { totalCount } } }"
    small = await site.gql(query, {"id": gid("Group", group), "first": 10}, as_user=viewer)
    assert small == {"data": {"group": {"members": {"totalCount": 0}}}}
    for _ in range(2):
        huge = await site.gql(query, {"id": gid("Group", group), "first": 1_000_000}, as_user=viewer)
        assert errors_of(huge) == ["PAGE_TOO_LARGE"] and "data" not in huge
        nul = await site.gql(query, {"id": "x\x00", "first": 10}, as_user=viewer)
        assert errors_of(nul) == ["BAD_USER_INPUT"]


def test_peer_bench_goals_are_judged_from_one_run() -> None:
    """bench.peer reads the peer bench's paired ratios, CPU and spreads: a goal missed reads MISS, a
    scenario the run left out n/a."""
    from bench.peer import judge

    def summary(scenario: str, system: str, p50: float, p95: float, cpu: float | None) -> dict[str, object]:
        return {"scenario": scenario, "system": system, "p50": p50, "p95": p95, "cpu_server_ms": cpu}

    report = {
        "summary": [
            summary("d1-level5", "gg", 10.0, 30.0, 10.0), summary("d1-level5", "pg5", 7.0, 9.0, 5.0),
            summary("members500", "gg", 90.0, 100.0, 40.0), summary("members500", "pg5", 50.0, 55.0, 14.0),
        ],
        "paired": [
            {"scenario": "d1-level5", "ratio": "gg/pg5", "median_paired": 1.4},
            {"scenario": "members500", "ratio": "gg/pg5", "median_paired": 2.2},
        ],
    }
    found = {c["target"].split(" <=")[0]: (c["status"], c["value"]) for c in judge(report)}
    assert found["d1-level5 gg/pg5 (paired median)"] == ("ok", 1.4)
    assert found["members500 gg/pg5 (paired median)"] == ("MISS", 2.2)
    assert found["d1-level5 CPU per request gg/pg5"] == ("ok", 2.0)
    assert found["members500 CPU per request gg/pg5"] == ("MISS", 2.86)
    assert found["d1-level5 gg p95/p50"] == ("MISS", 3.0)
    assert found["members100 gg/pg5 (paired median)"] == ("n/a", None)
    assert found["gg d1-root p50 / d1-level5 p50"] == ("n/a", None)
