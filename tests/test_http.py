"""The HTTP surface: GraphQL over HTTP, bad input, health, metrics."""

from __future__ import annotations

import json
from pathlib import Path

from app.schema import schema_sdl
from tests.site import Site, errors_of

ROOT = Path(__file__).resolve().parent.parent


def test_schema_file_is_printed_from_the_code() -> None:
    assert (ROOT / "schema.graphql").read_text() == schema_sdl(), (
        "schema.graphql is stale: run `groupgraph export-schema`"
    )


async def test_get_runs_queries_but_not_mutations(site: Site) -> None:
    response = await site.client.get("/graphql", params={"query": "{ viewer { id } }"})
    assert response.status_code == 200 and response.json() == {"data": {"viewer": None}}
    response = await site.client.get("/graphql", params={"query": 'mutation { login(email: "a", password: "b") { token } }'})
    assert response.status_code in (400, 405)


async def test_graphql_response_media_type(site: Site) -> None:
    accept = {"accept": "application/graphql-response+json"}
    ok = await site.client.post("/graphql", json={"query": "{ viewer { id } }"}, headers=accept)
    assert ok.status_code == 200 and ok.headers["content-type"].startswith("application/graphql-response+json")
    bad = await site.client.post("/graphql", json={"query": "{ nope }"}, headers=accept)
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    plain = await site.client.post("/graphql", json={"query": "{ nope }"})
    assert plain.status_code == 200 and plain.headers["content-type"].startswith("application/json")


async def test_bad_requests_get_codes_and_the_server_keeps_serving(site: Site) -> None:
    malformed = await site.gql("{ viewer { id ")
    assert errors_of(malformed) == ["GRAPHQL_VALIDATION_FAILED"]
    unknown = await site.gql("{ viewer { nope } }")
    assert errors_of(unknown) == ["GRAPHQL_VALIDATION_FAILED"]
    bad_id = await site.gql('{ user(id: "%%%") { id } }')
    assert errors_of(bad_id) == ["BAD_USER_INPUT"]
    not_json = await site.client.post("/graphql", content=b"{not json", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    huge = await site.client.post(
        "/graphql", content=json.dumps({"query": "{ viewer { id } }", "pad": "x" * (site.settings.max_body_bytes + 1)}),
        headers={"content-type": "application/json"},
    )
    assert huge.status_code == 413 and huge.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    bad_token = await site.client.post("/graphql", json={"query": "{ viewer { id } }"}, headers={"Authorization": "Bearer nope"})
    assert bad_token.status_code == 401
    still = await site.gql("{ viewer { id } }")
    assert still == {"data": {"viewer": None}}


async def test_unknown_ids_read_as_null(site: Site) -> None:
    from app.runtime.ids import to_global_id

    body = await site.gql("query($id: ID!) { user(id: $id) { id } node(id: $id) { id } }", {"id": to_global_id("User", 999)})
    assert body == {"data": {"user": None, "node": None}}


async def test_health_readiness_and_metrics(site: Site) -> None:
    assert (await site.client.get("/healthz")).json() == {"status": "ok"}
    ready = await site.client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}
    await site.gql("query Dashboard { viewer { id } }")
    metrics = (await site.client.get("/metrics")).text
    # a name that is not a known operation is counted as `other` (tests/test_observability.py has the rest)
    assert "groupgraph_graphql_operation_seconds" in metrics and 'operation="other",type="query"' in metrics
    assert 'groupgraph_http_requests_total{method="POST",route="/graphql",status="200"}' in metrics


async def test_a_client_that_lists_event_streams_after_json_gets_json(site: Site) -> None:
    """urql's default Accept names text/event-stream after the JSON types: a query is answered as JSON; a client
    that asks for an event stream first (graphql-sse) gets one."""
    user = await site.user("Uma")
    token = await site.token(user)
    query = {"query": "{ viewer { firstName } }"}
    urql = "application/graphql-response+json, application/graphql+json, application/json, text/event-stream, multipart/mixed"
    answer = await site.client.post(
        "/graphql", json=query, headers={"Authorization": f"Bearer {token}", "Accept": urql}
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/graphql-response+json")
    assert answer.json() == {"data": {"viewer": {"firstName": "Uma"}}}
    stream = await site.client.post(
        "/graphql", json=query, headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    )
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert '"firstName":"Uma"' in stream.text.replace(" ", "")
