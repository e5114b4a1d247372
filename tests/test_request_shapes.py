"""Malformed requests are refused with a 400 (or a GraphQL error) and a code, never a 500: bodies that are not
a request object, nested batches, deeply nested JSON and variables, DateTime values at the calendar's ends,
and documents with several operations but no operationName."""

from __future__ import annotations

import json

from tests.site import Site, errors_of, gid


async def test_bodies_that_are_not_a_request_are_bad_input(site: Site) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    nested_variables = '{"query": "{ viewer { id } }", "variables": {"a": ' + "[" * 5000 + "]" * 5000 + "}}"
    bodies = [
        json.dumps("{ viewer { id } }"),  # a JSON string
        json.dumps([[{"query": "{ viewer { id } }"}]]),  # a nested batch
        json.dumps([{"query": "{ viewer { id } }"}, 3]),
        json.dumps([{"query": "{ viewer { id } }", "variables": [1]}]),
        json.dumps({"query": "{ viewer { id } }", "operationName": 3}),
        "3",
        "null",
        deep,
        nested_variables,
    ]
    for body in bodies:
        response = await site.client.post("/graphql", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400, (body[:60], response.text)
        assert errors_of(response.json()) == ["BAD_USER_INPUT"], response.text
    response = await site.client.get("/graphql", params={"query": "{ viewer { id } }", "variables": "[" * 50 + "]" * 50})
    assert response.status_code == 400 and errors_of(response.json()) == ["BAD_USER_INPUT"]


async def test_variables_nest_at_most_the_limit(site: Site) -> None:
    limit = site.settings.max_variable_depth
    value: object = "x"
    for _ in range(limit + 1):
        value = {"a": value}
    query = "query($v: String) { viewer { id } }"
    body = await site.gql(query, {"v": value})
    assert errors_of(body)[0] == "BAD_USER_INPUT", body


async def test_several_operations_need_an_operation_name(site: Site) -> None:
    viewer = await site.user("Vic")
    document = "query A { viewer { firstName } } query B { viewer { lastName } }"
    body = await site.gql(document, as_user=viewer)
    assert errors_of(body) == ["GRAPHQL_VALIDATION_FAILED"] and "data" not in body, body
    response = await site.client.post(
        "/graphql", json={"query": document, "operationName": "B"}, headers={"Authorization": f"Bearer {await site.token(viewer)}"}
    )
    assert response.json() == {"data": {"viewer": {"lastName": "Tester"}}}
    response = await site.client.post(
        "/graphql", json={"query": document}, headers={"accept": "application/graphql-response+json"}
    )
    assert response.status_code == 400


async def test_datetimes_at_the_calendars_ends_are_bad_input(site: Site) -> None:
    admin = await site.user("Ada", roles="ADMIN", kind="STAFF")
    learner = await site.user("Lea")
    ends = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00", "1899-12-31T23:59:59Z"]
    for end in ends:
        cases = [
            ("query($t: DateTime!) { loginStatistics(from: $t, to: \"2026-01-01T00:00:00Z\") { totalLogins } }",
             {"t": end}, "from"),
            ("query($t: DateTime!) { loginStatistics(from: \"2026-01-01T00:00:00Z\", to: $t) { totalLogins } }",
             {"t": end}, "to"),
            ("query($t: DateTime) { users(filter: {lastLoginBefore: $t}) { totalCount } }", {"t": end},
             "lastLoginBefore"),
            (f'query {{ users(filter: {{lastLoginBefore: "{end}"}}) {{ totalCount }} }}', {}, "lastLoginBefore"),
            ("mutation($t: DateTime, $u: [ID!]!) { enroll(userIds: $u, courseId: \"Q291cnNlOjE=\", expiresAt: $t) }",
             {"t": end, "u": [gid("User", learner)]}, "expiresAt"),
            ("mutation($e: [ProgressEventInput!]!) { recordProgress(events: $e) }",
             {"e": [{"userId": gid("User", learner), "kind": "USAGE", "minutes": 5, "occurredAt": end}]}, "occurredAt"),
        ]
        for query, variables, field in cases:
            body = await site.gql(query, variables, as_user=admin)
            assert errors_of(body) == ["BAD_USER_INPUT"], (end, field, body)
            assert body["errors"][0]["extensions"]["field"] == field, body
    within = "2026-06-01T00:00:00+14:00"
    # once the document has passed (it is cached: its variables are checked without a visit of it), a DateTime
    # in an input object is still refused, under its field's name, and the batch is not recorded
    record = "mutation($e: [ProgressEventInput!]!) { recordProgress(events: $e) }"
    usage = {"userId": gid("User", learner), "kind": "USAGE", "minutes": 5}
    assert await site.gql(record, {"e": [{**usage, "occurredAt": "2026-01-01T00:00:00Z"}]}, as_user=admin) == {
        "data": {"recordProgress": 1}
    }
    for end in ends:
        body = await site.gql(record, {"e": [usage, {**usage, "occurredAt": end}]}, as_user=admin)
        assert errors_of(body) == ["BAD_USER_INPUT"], (end, body)
        assert body["errors"][0]["extensions"]["field"] == "occurredAt", body
    body = await site.gql(
        "query($t: DateTime!) { loginStatistics(from: $t, to: \"2026-06-03T00:00:00Z\") { totalLogins } }",
        {"t": within}, as_user=admin,
    )
    assert body == {"data": {"loginStatistics": {"totalLogins": 0}}}, body
