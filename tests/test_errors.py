"""Error hygiene: every error has a code; no stack trace, SQL or internal name reaches a client; unexpected
errors are masked, and logged as JSON with the request id that the client also gets."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.runtime.errors import CODES
from app.runtime.limits import LIMIT_CODES
from tests.site import Site, gid

LEAKS = re.compile(
    r"Traceback|File \"|\.py\b|sqlalchemy|asyncpg|aiosqlite|sqlite3|psycopg|SELECT |INSERT |UPDATE |DELETE FROM|"
    r"\bFROM \"|OperationalError|ProgrammingError|IntegrityError|KeyError|AttributeError|TypeError|"
    r"\bresolvers\.|\bdataloaders\.|\bpermissions\.|\bapp\.(?:models|db|schema)|0x[0-9a-f]{6,}",
)


def assert_clean(response: httpx.Response) -> list[dict[str, Any]]:
    """The response's errors, after checking each has a known code and the text leaks nothing."""
    assert not LEAKS.search(response.text), response.text
    body = response.json()
    bodies = body if isinstance(body, list) else [body]
    errors = [e for b in bodies for e in b.get("errors", [])]
    for error in errors:
        assert error["extensions"]["code"] in (*CODES, *LIMIT_CODES), error
    return errors


async def test_bad_requests_of_every_kind_are_coded_and_clean(site: Site) -> None:
    admin = await site.user("Ann", roles="ADMIN")
    staff = await site.user("Sam", kind="STAFF")
    auth = {"Authorization": f"Bearer {await site.token(staff)}"}
    admin_auth = {"Authorization": f"Bearer {await site.token(admin)}"}
    bad: list[tuple[str, dict[str, Any]]] = [
        ("json", {"query": "{ viewer { id "}),
        ("json", {"query": "{ nope }"}),
        ("json", {"query": "query { viewer { id } } query { viewer { id } }"}),
        ("json", {"query": "{ viewer { id } }", "operationName": "Missing"}),
        ("json", {"query": "query($id: ID!) { user(id: $id) { id } }", "variables": {"id": 5}}),
        ("json", {"query": "query($id: ID!) { user(id: $id) { id } }", "variables": {}}),
        ("json", {"query": 'query { user(id: "%%%") { id } }'}),
        ("json", {"query": 'query { group(id: "VXNlcjox") { id } }'}),
        ("json", {"query": 'query { node(id: "' + "A" * 5000 + '") { id } }'}),
        ("json", {"query": "{ auditLog(first: -1) { edges { cursor } } }"}),
        ("json", {"query": '{ auditLog(after: "!!!") { edges { cursor } } }'}),
        ("json", {"query": '{ auditLog(after: "W1tdXQ==") { edges { cursor } } }'}),
        ("json", {"query": 'mutation { createGroup(input: {name: ""}) { id } }'}),
        ("json", {"query": 'mutation { setSiteRoles(userId: "' + gid("User", 999) + '", roles: [ADMIN]) { id } }'}),
        ("json", {"query": "fragment A on User { ...A } { viewer { ...A } }"}),
        ("json", {"query": "subscription { viewer { id } }"}),
        ("json", {"query": None}),
        ("json", {"query": ["not", "a", "string"]}),
        ("json", {"query": "{ viewer { id } }", "variables": "not an object"}),
        ("json", [{"query": "{ viewer { id } }"}, {"query": "{ nope }"}]),
        ("json", []),
        ("raw", {"content": b"\xff\xfe\x00garbage", "ct": "application/json"}),
        ("raw", {"content": b'{"query": "{ viewer { id } }"', "ct": "application/json"}),
        ("raw", {"content": b"--x\r\n\r\n", "ct": "multipart/form-data; boundary=x", "extra": {"X-Requested-With": "1"}}),
    ]
    for kind, payload in bad:
        for headers in (auth, admin_auth, {}):
            if kind == "json":
                response = await site.client.post("/graphql", json=payload, headers=headers)
            else:
                response = await site.client.post(
                    "/graphql", content=payload["content"],
                    headers={**headers, "content-type": payload["ct"], **payload.get("extra", {})},
                )
            errors = assert_clean(response)
            assert errors or response.status_code == 200, (payload, response.text)
    # GET with a mutation, unknown methods, and the server still answers afterwards
    assert_clean(await site.client.get("/graphql", params={"query": "mutation { logout }"}, headers=auth))
    assert (await site.client.put("/graphql", json={"query": "{ viewer { id } }"})).status_code in (400, 405)
    assert (await site.gql("{ viewer { firstName } }", as_user=staff)) == {"data": {"viewer": {"firstName": "Sam"}}}


@pytest.fixture
def broken_table(site: Site) -> Any:
    """Rename the audit table away (a schema drift the code does not expect), and back afterwards."""

    class Broken:
        async def __aenter__(self) -> None:
            async with site.database.transaction() as session:
                await session.execute(text('ALTER TABLE audit_event RENAME TO audit_event_gone'))

        async def __aexit__(self, *exc: object) -> None:
            async with site.database.transaction() as session:
                await session.execute(text('ALTER TABLE audit_event_gone RENAME TO audit_event'))

    return Broken()


async def test_unexpected_errors_are_masked_and_logged_with_the_request_id(
    site: Site, broken_table: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = await site.user("Ann", roles="ADMIN")
    headers = {"Authorization": f"Bearer {await site.token(admin)}"}
    capsys.readouterr()
    async with broken_table:
        response = await site.client.post(
            "/graphql", json={"query": "{ viewer { firstName } auditLog { edges { cursor } } }"}, headers=headers
        )
        mutation = await site.client.post(
            "/graphql", json={"query": 'mutation { createApiToken(name: "x") { name } }'}, headers=headers
        )
    errors = assert_clean(response)
    request_id = response.headers["x-request-id"]
    assert errors == [
        {
            "message": "Internal server error.", "locations": [{"line": 1, "column": 24}], "path": ["auditLog"],
            "extensions": {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
        }
    ]
    assert response.json()["data"] is None  # auditLog is non-null: the whole data goes, as GraphQL says
    assert [e["extensions"]["code"] for e in assert_clean(mutation)] == ["INTERNAL_SERVER_ERROR"]
    # the mutation's own change was rolled back with the failed audit write: no token was made
    async with site.database.session() as session:
        assert await session.scalar(text("SELECT count(*) FROM api_token")) == 0
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    unexpected = [entry for entry in logged if entry.get("event") == "unexpected_error"]
    assert [entry["request_id"] for entry in unexpected] == [request_id, mutation.headers["x-request-id"]]
    assert unexpected[0]["level"] == "error" and "audit_event" in unexpected[0]["exception"]  # the detail stays in the log
    # the next request is fine
    ok = await site.client.post("/graphql", json={"query": "{ auditLog { edges { cursor } } }"}, headers=headers)
    assert ok.json() == {"data": {"auditLog": {"edges": []}}}


async def test_the_rest_of_the_http_surface_answers_json_with_codes(
    site: Site, broken_table: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = await site.user("Ann", roles="ADMIN")
    headers = {"Authorization": f"Bearer {await site.token(admin)}"}
    transport = httpx.ASGITransport(app=site.app, raise_app_exceptions=False)  # as a server would answer
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        missing = await client.get("/nope")
        assert missing.status_code == 404 and assert_clean(missing)[0]["extensions"]["code"] == "NOT_FOUND"
        wrong_method = await client.delete("/exports/groups.csv")
        assert wrong_method.status_code == 405 and assert_clean(wrong_method)[0]["extensions"]["code"] == "BAD_USER_INPUT"
        capsys.readouterr()
        async with broken_table:  # the export's audit write fails
            broken = await client.get("/exports/groups.csv", headers=headers)
    assert broken.status_code == 500
    # the failed download gave its connection back (an open read transaction would hold table locks)
    assert site.database.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    errors = assert_clean(broken)
    request_id = errors[0]["extensions"]["requestId"]
    assert errors == [{"message": "Internal server error.", "extensions": {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id}}]
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    assert any(e.get("event") == "unexpected_error" and e["request_id"] == request_id for e in logged)
