"""Query limits, each refused with its own code before any resolver runs (no SQL statement at all)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from app.runtime.limits import operation_costs
from app.server import create_app
from app.store.db import Database
from app.store.models import User
from tests.site import Site, errors_of, gid


@asynccontextmanager
async def client_with(site: Site, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A second app on the same database with other settings."""
    settings = site.settings.model_copy(update=overrides)
    database = Database(settings)
    app = create_app(settings, database)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        yield client
    await database.dispose()


async def refused(site: Site, query: str, variables: dict[str, Any] | None = None) -> list[str]:
    """The codes of a refused anonymous request, checking that it ran no SQL."""
    with site.statements() as counted:
        body = await site.gql(query, variables)
    assert "data" not in body or body["data"] is None, body
    assert counted.count == 0, counted.statements
    return errors_of(body)


def nested(field: str, depth: int, leaf: str = "id") -> str:
    return "".join(f"{field} {{ " for _ in range(depth)) + leaf + " }" * depth


async def test_depth_bomb(site: Site) -> None:
    limit = site.settings.max_query_depth
    deep = "query($id: ID!) { group(id: $id) { " + nested("parent", limit) + " } }"
    assert await refused(site, deep, {"id": "R3JvdXA6MQ=="}) == ["QUERY_TOO_DEEP"]
    ok = await site.gql("query($id: ID!) { group(id: $id) { " + nested("parent", limit - 2) + " } }", {"id": "R3JvdXA6MQ=="})
    assert ok == {"data": {"group": None}}


async def test_alias_bomb(site: Site) -> None:
    limit = site.settings.max_aliases
    bomb = "{ " + " ".join(f"a{i}: viewer {{ id }}" for i in range(limit + 1)) + " }"
    assert await refused(site, bomb) == ["TOO_MANY_ALIASES"]
    fine = await site.gql("{ " + " ".join(f"a{i}: viewer {{ id }}" for i in range(limit)) + " }")
    assert "errors" not in fine and len(fine["data"]) == limit


async def test_token_bomb(site: Site) -> None:
    bomb = "{ viewer { " + "id " * site.settings.max_tokens + "} }"
    assert await refused(site, bomb) == ["TOO_MANY_TOKENS"]


async def test_cost_bomb_and_the_cost_model(site: Site) -> None:
    costly = "{ auditLog(first: 500) { edges { node { actor { memberships { group { children { children { id } } } } } } } } }"
    codes = await refused(site, costly)
    assert codes == ["QUERY_TOO_COSTLY"]
    body = await site.gql(costly)
    extensions = body["errors"][0]["extensions"]
    assert extensions["cost"] > extensions["limit"] == site.settings.max_query_cost
    # the model: fields cost 1, `first` multiplies, the connection's edges are not counted twice,
    # other lists count ASSUMED_LIST_SIZE (10) times, and variables count with their values
    schema = site.app.state.schema._schema
    assert operation_costs(schema, "{ viewer { id firstName } }") == [3]
    assert operation_costs(schema, "{ auditLog(first: 7) { edges { node { id } } } }") == [1 + 7 * (1 + 1 + 1)]
    assert operation_costs(schema, "{ auditLog { edges { cursor } } }") == [1 + 50 * 2]
    assert operation_costs(schema, "query($n: Int) { auditLog(first: $n) { edges { cursor } } }", {"n": 3}) == [7]
    assert operation_costs(schema, "{ viewer { memberships { group { children { id } } } } }") == [
        1 + 1 * (1 + 10 * (1 + 1 * (1 + 10 * 1)))
    ]


async def test_a_million_first_is_refused(site: Site) -> None:
    admin = await site.user(roles="ADMIN")
    token = await site.token(admin)
    for query, variables in (
        ("{ auditLog(first: 1000000) { edges { cursor } } }", None),
        ("query($n: Int) { auditLog(first: $n) { edges { cursor } } }", {"n": 1_000_000}),
    ):
        body = await site.gql(query, variables, token=token)
        assert errors_of(body) == ["PAGE_TOO_LARGE"] and "data" not in body, body
        assert body["errors"][0]["extensions"]["field"] == "first"
    body = await site.gql("{ auditLog(first: 500) { edges { cursor } } }", token=token)
    assert "errors" not in body, body


async def test_batch_bomb(site: Site) -> None:
    limit = site.settings.max_batch_size
    one = {"query": "{ viewer { id } }"}
    ok = await site.client.post("/graphql", json=[one] * limit)
    assert ok.status_code == 200 and ok.json() == [{"data": {"viewer": None}}] * limit
    with site.statements() as counted:
        bomb = await site.client.post("/graphql", json=[one] * (limit + 1))
    assert bomb.status_code == 400 and errors_of(bomb.json()) == ["BATCH_TOO_LARGE"]
    assert counted.count == 0


async def test_size_bombs(site: Site) -> None:
    limit = site.settings.max_body_bytes
    padded = json.dumps({"query": "{ viewer { id } }", "variables": {"pad": "x" * limit}})
    declared = await site.client.post("/graphql", content=padded, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and errors_of(declared.json()) == ["PAYLOAD_TOO_LARGE"]

    async def chunks() -> AsyncIterator[bytes]:  # no content-length: counted while read
        for start in range(0, len(padded), 65536):
            yield padded[start : start + 65536].encode()

    streamed = await site.client.post("/graphql", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413 and errors_of(streamed.json()) == ["PAYLOAD_TOO_LARGE"]
    assert (await site.gql("{ viewer { id } }")) == {"data": {"viewer": None}}


async def test_introspection_and_suggestions_by_environment(site: Site) -> None:
    introspect = {"query": "{ __schema { queryType { name } } }"}
    typo = {"query": "{ viewer { firstNme } }"}
    dev = await site.client.post("/graphql", json=introspect)
    assert dev.json() == {"data": {"__schema": {"queryType": {"name": "Query"}}}}
    hint = (await site.client.post("/graphql", json=typo)).json()["errors"][0]["message"]
    assert "Did you mean 'firstName'" in hint
    async with client_with(site, env="production") as prod:
        body = (await prod.post("/graphql", json=introspect)).json()
        assert set(errors_of(body)) == {"GRAPHQL_VALIDATION_FAILED"} and "data" not in body
        assert "introspection" in body["errors"][0]["message"]
        body = (await prod.post("/graphql", json=typo)).json()
        assert errors_of(body) == ["GRAPHQL_VALIDATION_FAILED"]
        assert "Did you mean" not in body["errors"][0]["message"] and "firstName" not in json.dumps(body)
        enum_typo = (await prod.post("/graphql", json={"query": '{ auditLog(action: 1) { edges { cursor } } }'})).json()
        assert "Did you mean" not in json.dumps(enum_typo)
        assert (await prod.post("/graphql", json={"query": "{ viewer { id __typename } }"})).json() == {
            "data": {"viewer": None}
        }
        ide = await prod.get("/graphql", headers={"accept": "text/html"})
        assert "graphiql" not in ide.text.lower()


async def test_nul_characters_are_bad_input_before_any_resolver(site: Site) -> None:
    admin = await site.user(roles="ADMIN")
    token = await site.token(admin)
    create = 'mutation($i: CreateUserInput!) { createUser(input: $i) { id } }'
    variables = {"i": {"email": "a\x00@example.com", "firstName": "A", "lastName": "B", "kind": "LEARNER"}}
    for query, values in ((create, variables), ('{ auditLog(action: "x\\u0000") { edges { cursor } } }', None)):
        with site.statements() as counted:
            body = await site.gql(query, values, token=token)
        assert errors_of(body) == ["BAD_USER_INPUT"] and "data" not in body, body
        assert all("audit_event" not in s and "INSERT" not in s for s in counted.statements)
    assert await site.count(User) == 1


async def test_fragment_bombs_are_refused_at_once(site: Site) -> None:
    """Fragments spreading fragments twice, 40 levels: 2**40 fields once expanded, a few hundred tokens.
    Each fragment is walked once (a walk of every spread would never finish)."""
    levels = 40
    fragments = " ".join(
        ["fragment F0 on User { a: id }"] + [f"fragment F{i} on User {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, levels)]
    )
    codes = await refused(site, f"{{ viewer {{ ...F{levels - 1} }} }} {fragments}")
    assert codes == ["TOO_MANY_ALIASES"]
    no_alias = fragments.replace("a: id", "id")
    assert await refused(site, f"{{ viewer {{ ...F{levels - 1} }} }} {no_alias}") == ["QUERY_TOO_COSTLY"]
    deep = " ".join(
        ["fragment D0 on Group { id }"] + [f"fragment D{i} on Group {{ parent {{ ...D{i - 1} }} children {{ ...D{i - 1} }} }}" for i in range(1, 30)]
    )
    assert await refused(site, f'{{ group(id: "R3JvdXA6MQ==") {{ ...D29 }} }} {deep}') == ["QUERY_TOO_DEEP"]


async def test_nesting_past_the_parser_recursion_is_a_clean_error(site: Site) -> None:
    levels = 1500
    query = "{ viewer " + "{ memberships " * levels + "{ id }" + " }" * levels + " }"
    codes = await refused(site, query)
    assert codes in (["GRAPHQL_VALIDATION_FAILED"], ["QUERY_TOO_DEEP"]), codes


async def test_a_query_text_sent_again_is_checked_against_its_new_variables(site: Site) -> None:
    """A valid query text is validated once per process; the rules that read the variables (page size, NUL,
    variable depth, DateTime range) still run on every request, whether or not they walk the document again."""
    admin = await site.user(roles="ADMIN")
    group = await site.group("g")
    token = await site.token(admin)
    paged = "query($n: Int, $a: String) { auditLog(first: $n, action: $a) { edges { cursor } } }"
    usage = "query($g: ID!, $f: DateTime) { group(id: $g) { usageMinutes(from: $f) } }"
    group_id = gid("Group", group)
    for _ in range(2):  # the second time from the cache of valid query texts
        assert "errors" not in await site.gql(paged, {"n": 5, "a": "x"}, token=token)
        assert "errors" not in await site.gql(usage, {"g": group_id, "f": "2026-01-01T00:00:00Z"}, token=token)
    for variables, code in (
        ({"n": 1_000_000}, "PAGE_TOO_LARGE"),
        ({"n": 5, "a": "x\x00"}, "BAD_USER_INPUT"),
    ):
        body = await site.gql(paged, variables, token=token)
        assert errors_of(body) == [code] and "data" not in body, body
    body = await site.gql(usage, {"g": group_id, "f": "0999-01-01T00:00:00Z"}, token=token)
    assert errors_of(body) == ["BAD_USER_INPUT"] and "data" not in body, body
    # the cost rule's walk is remembered per document and integer variables: each answer stays its own
    for _ in range(2):
        body = await site.gql(paged, {"n": 1_000_000}, token=token)
        assert errors_of(body) == ["PAGE_TOO_LARGE"] and "data" not in body, body
        assert "errors" not in await site.gql(paged, {"n": 5}, token=token)
