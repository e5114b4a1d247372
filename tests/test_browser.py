"""What a single-page app on another origin needs: CORS, persisted queries and trusted documents, the cookie
session mode with its CSRF rule, no-store answers, one UNAUTHENTICATED shape, RFC 3339 instants."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from app.server import create_app
from app.services.cookies import SESSION_COOKIE
from app.settings import Settings
from app.store.db import Database
from app.store.models import PersistedQuery
from tests.site import PASSWORD, Site, errors_of

ORIGIN = "https://app.example.com"
VIEWER = "query Viewer { viewer { id firstName createdAt } }"


@asynccontextmanager
async def another_app(site: Site, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A second server process on the same database (its own engine and memory), with other settings."""
    settings = Settings(database_url=site.settings.database_url, **overrides)
    database = Database(settings)
    app = create_app(settings, database)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        yield client
    await database.dispose()


def sha(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


def apq(document_hash: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": document_hash}}


async def test_cors_only_for_the_configured_exact_origins(site: Site) -> None:
    preflight = {
        "origin": ORIGIN, "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type, apollo-require-preflight, x-apollo-operation-name",
    }
    refused = await site.client.options("/graphql", headers=preflight)  # the default: no cross-origin access
    assert refused.status_code == 405 and "access-control-allow-origin" not in refused.headers
    async with another_app(site, cors_origins=f"{ORIGIN}, http://localhost:5173") as client:
        for path in ("/graphql", "/exports/groups.csv", "/imports/group-assignments"):
            ok = await client.options(path, headers=preflight)
            assert ok.status_code == 200, (path, ok.text)
            assert ok.headers["access-control-allow-origin"] == ORIGIN
            assert ok.headers["access-control-allow-credentials"] == "true"
            allowed = ok.headers["access-control-allow-headers"].lower()
            assert all(h in allowed for h in ("authorization", "content-type", "apollo-require-preflight", "x-apollo-operation-name"))
        other = await client.options("/graphql", headers={**preflight, "origin": "https://evil.example"})
        assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
        answer = await client.post("/graphql", json={"query": "{ viewer { id } }"}, headers={"origin": ORIGIN})
        assert answer.headers["access-control-allow-origin"] == ORIGIN and answer.headers["vary"] == "Origin"
        assert "access-control-allow-origin" not in (await client.get("/healthz", headers={"origin": ORIGIN})).headers
    try:
        Settings(cors_origins="*")
        async with another_app(site, cors_origins="*"):
            raise AssertionError("'*' must be refused")
    except ValueError:
        pass


async def test_automatic_persisted_queries_post_and_get_shared_by_workers(site: Site) -> None:
    learner = await site.user("Lea")
    token = await site.token(learner)
    auth = {"authorization": f"Bearer {token}"}
    digest = sha(VIEWER)
    # unknown hash: the code Apollo's link retries on, by POST and by GET
    missing = await site.client.post("/graphql", json={"extensions": apq(digest)}, headers=auth)
    assert missing.status_code == 200 and errors_of(missing.json()) == ["PERSISTED_QUERY_NOT_FOUND"]
    assert missing.json()["errors"][0]["message"] == "PersistedQueryNotFound"
    missing = await site.client.get("/graphql", params={"extensions": json.dumps(apq(digest))}, headers={**auth, "accept": "*/*"})
    assert errors_of(missing.json()) == ["PERSISTED_QUERY_NOT_FOUND"]
    # a document that does not match its hash is refused and not stored
    wrong = await site.client.post("/graphql", json={"query": "{ viewer { id } }", "extensions": apq(digest)}, headers=auth)
    assert wrong.status_code == 400 and errors_of(wrong.json()) == ["BAD_USER_INPUT"]
    assert await site.count(PersistedQuery) == 0
    # the retry with the document registers it
    first = await site.client.post("/graphql", json={"query": VIEWER, "extensions": apq(digest)}, headers=auth)
    assert first.json()["data"]["viewer"]["firstName"] == "Lea"
    assert await site.count(PersistedQuery) == 1
    # then the hash alone runs it, here and in another worker (which reads the table once)
    again = await site.client.post("/graphql", json={"extensions": apq(digest), "operationName": "Viewer"}, headers=auth)
    assert again.json()["data"]["viewer"]["firstName"] == "Lea"
    async with another_app(site) as worker:
        by_get = await worker.get(
            "/graphql", params={"extensions": json.dumps(apq(digest)), "operationName": "Viewer"}, headers={**auth, "accept": "*/*"}
        )
        assert by_get.status_code == 200 and by_get.json()["data"]["viewer"]["firstName"] == "Lea"
        by_id = await worker.post("/graphql", json={"documentId": f"sha256:{digest}"}, headers=auth)
        assert by_id.json()["data"]["viewer"]["firstName"] == "Lea"
    # documents that do not validate are not stored; malformed extensions are bad input
    junk = "{ nope }"
    bad = await site.client.post("/graphql", json={"query": junk, "extensions": apq(sha(junk))}, headers=auth)
    assert errors_of(bad.json()) == ["GRAPHQL_VALIDATION_FAILED"] and await site.count(PersistedQuery) == 1
    # the table stops growing at its limit: the document still runs, unstored
    async with another_app(site, max_persisted_queries=1) as full:
        other = "query Other { viewer { lastName } }"
        ran = await full.post("/graphql", json={"query": other, "extensions": apq(sha(other))}, headers=auth)
        assert ran.json()["data"]["viewer"]["lastName"] == "Tester" and await site.count(PersistedQuery) == 1
    for extensions in ({"persistedQuery": {"version": 2, "sha256Hash": digest}}, apq("XYZ"), {"persistedQuery": 1}):
        refused = await site.client.post("/graphql", json={"extensions": extensions}, headers=auth)
        assert refused.status_code == 400 and errors_of(refused.json()) == ["BAD_USER_INPUT"], extensions


async def test_trusted_documents_only(site: Site, tmp_path: Path) -> None:
    learner = await site.user("Lea")
    auth = {"authorization": f"Bearer {await site.token(learner)}"}
    manifest = tmp_path / "persisted-documents.json"
    manifest.write_text(json.dumps({sha(VIEWER): VIEWER, "relay-id-1": "query Other { viewer { lastName } }"}))
    async with another_app(site, trusted_documents=str(manifest), env="production") as client:
        for body in (
            {"documentId": sha(VIEWER)}, {"documentId": f"sha256:{sha(VIEWER)}"}, {"extensions": apq(sha(VIEWER))},
            {"query": VIEWER}, {"query": VIEWER, "extensions": apq(sha(VIEWER))},
        ):
            answer = await client.post("/graphql", json=body, headers=auth)
            assert answer.json()["data"]["viewer"]["firstName"] == "Lea", body
        relay = await client.post("/graphql", json={"documentId": "relay-id-1"}, headers=auth)
        assert relay.json()["data"]["viewer"]["lastName"] == "Tester"
        for body in (
            {"query": "{ viewer { id } }"}, {"documentId": "nope"}, {"extensions": apq(sha("{ viewer { id } }"))},
            {"query": "{ viewer { id } }", "documentId": "relay-id-1"},
        ):
            refused = await client.post("/graphql", json=body, headers=auth)
            assert refused.status_code == 400 and errors_of(refused.json()) == ["PERSISTED_QUERY_NOT_IN_LIST"], body
        as_get = await client.get("/graphql", params={"query": "{ viewer { id } }"}, headers=auth)
        assert errors_of(as_get.json()) == ["PERSISTED_QUERY_NOT_IN_LIST"]
    # any other way in (a WebSocket subscribe) meets the same rule in validation
    from app.schema import build_schema

    schema = build_schema(Settings(database_url=site.settings.database_url, trusted_documents=str(manifest)))
    refused = await schema.execute("{ viewer { id } }")
    assert [e.extensions["code"] for e in refused.errors or []] == ["PERSISTED_QUERY_NOT_IN_LIST"]
    listed = await schema.execute(VIEWER)
    assert all((e.extensions or {}).get("code") != "PERSISTED_QUERY_NOT_IN_LIST" for e in listed.errors or [])
    assert await site.count(PersistedQuery) == 0


LOGIN = """mutation($e: String!, $p: String!, $c: Boolean) { login(email: $e, password: $p, cookie: $c) {
  token expiresAt user { firstName } } }"""


async def test_cookie_sessions_with_csrf_no_store_and_one_unauthenticated_shape(site: Site) -> None:
    learner = await site.user("Lea", email="lea@example.com")
    # login and createApiToken answers are never stored by a cache
    login = await site.client.post("/graphql", json={"query": LOGIN, "variables": {"e": "lea@example.com", "p": PASSWORD}})
    assert login.headers["cache-control"] == "no-store" and login.json()["data"]["login"]["token"]
    assert "set-cookie" not in login.headers
    token = login.json()["data"]["login"]["token"]
    made = await site.client.post(
        "/graphql", json={"query": 'mutation { createApiToken(name: "ci", expiresInDays: 1) { token } }'},
        headers={"authorization": f"Bearer {token}"},
    )
    assert made.headers["cache-control"] == "no-store" and made.json()["data"]["createApiToken"]["token"]
    # cookie mode: the token is only in an HttpOnly, SameSite=Lax cookie
    cookie_login = await site.client.post(
        "/graphql", json={"query": LOGIN, "variables": {"e": "lea@example.com", "p": PASSWORD, "c": True}}
    )
    assert cookie_login.json()["data"]["login"]["token"] == ""
    set_cookie = cookie_login.headers["set-cookie"]
    assert set_cookie.startswith(f"{SESSION_COOKIE}=ggs_")
    assert all(part in set_cookie for part in ("HttpOnly", "SameSite=Lax", "Secure", "Path=/"))
    session = set_cookie.split(";")[0]
    cookie = {"cookie": session}
    # queries and mutations by cookie need the CSRF header on POST; GET queries do not change anything
    viewer = await site.client.post("/graphql", json={"query": "{ viewer { firstName } }"}, headers=cookie)
    assert viewer.status_code == 403 and errors_of(viewer.json()) == ["FORBIDDEN"]
    viewer = await site.client.post("/graphql", json={"query": "{ viewer { firstName } }"}, headers={**cookie, "x-csrf-token": "1"})
    assert viewer.json() == {"data": {"viewer": {"firstName": "Lea"}}}
    by_get = await site.client.get("/graphql", params={"query": "{ viewer { firstName } }"}, headers=cookie)
    assert by_get.json() == {"data": {"viewer": {"firstName": "Lea"}}}
    upload = await site.client.post("/imports/group-assignments", content=b"student_id,groups\n", headers={**cookie, "content-type": "text/csv"})
    assert upload.status_code == 403
    # a bearer token wins over the cookie
    other = await site.user("Otto")
    both = await site.client.post(
        "/graphql", json={"query": "{ viewer { firstName } }"}, headers={**cookie, "authorization": f"Bearer {await site.token(other)}"}
    )
    assert both.json()["data"]["viewer"]["firstName"] == "Otto"
    # logout ends the session and clears the cookie; the stale cookie then reads as anonymous (and is cleared)
    out = await site.client.post("/graphql", json={"query": "mutation { logout }"}, headers={**cookie, "apollo-require-preflight": "true"})
    assert out.json() == {"data": {"logout": True}} and "Max-Age=0" in out.headers["set-cookie"]
    stale = await site.client.post("/graphql", json={"query": "{ viewer { firstName } }"}, headers=cookie)
    assert stale.json() == {"data": {"viewer": None}} and "Max-Age=0" in stale.headers["set-cookie"]
    # an expired or revoked bearer token: 401, the same GraphQL error shape for either media type
    expired = await site.token(await site.user("Old"), expires_in=timedelta(seconds=-1))
    for accept in ("application/json", "application/graphql-response+json"):
        for bad in (expired, token + "x"):
            answer = await site.client.post(
                "/graphql", json={"query": "{ viewer { id } }"}, headers={"authorization": f"Bearer {bad}", "accept": accept}
            )
            assert answer.status_code == 401 and answer.headers["content-type"].startswith(accept)
            assert answer.json()["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED"}
            assert answer.headers["www-authenticate"] == "Bearer"
    # instants are RFC 3339 in UTC with Z
    created = (await site.gql("{ viewer { createdAt } }", as_user=learner))["data"]["viewer"]["createdAt"]
    assert created.endswith("Z") and "+00:00" not in created


async def test_graphiql_is_served_offline_with_the_explorer(site: Site) -> None:
    import re

    page = await site.client.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "https://" not in page.text and "http://" not in page.text  # no outside host
    assert "explorerPlugin" in page.text and '\\"Authorization\\": \\"Bearer \\"' in page.text
    assets = re.findall(r'(?:src|href)="(/graphiql/[^"]+)"', page.text)
    assert len(assets) == 6
    for path in assets:
        answer = await site.client.get(path)
        assert answer.status_code == 200 and len(answer.content) > 500, path
        assert "immutable" in answer.headers["cache-control"]
    assert (await site.client.get("/graphiql/nope.js")).status_code == 404
    with_cookie = await site.client.get("/graphql", headers={"accept": "text/html", "cookie": f"{SESSION_COOKIE}=x"})
    assert "const DEFAULT_HEADERS = \"{}\";" in with_cookie.text
