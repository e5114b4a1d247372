"""Faults: the database goes away in the middle of a request, or is locked by other writers.

PostgreSQL: a mutation is held mid-transaction (it has written, and waits on a row lock that this test
holds), its backend is killed with pg_terminate_backend; the request ends with a clean, coded error, its
write is gone, and the next request succeeds, with no ping before checkout (tests/test_runtime.py kills every
pooled connection, as a server restart does). SQLite: concurrent writers from two app instances all get
through (BEGIN IMMEDIATE and busy_timeout), and a writer locked out for longer than busy_timeout gets a
clean error with nothing half-written.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from app.server import create_app
from app.store.db import Database
from app.store.models import ApiToken, AuditEvent, Session, User
from tests.dump import differences, dump
from tests.site import Site, errors_of, gid

DENY = "mutation($u: [ID!]!) { setAccountStatus(userIds: $u, status: DENIED) { id status } }"
TOKEN = "mutation($n: String!) { createApiToken(name: $n) { name } }"


def masked(body: dict[str, Any]) -> None:
    assert body.get("data") is None, body
    assert [e["message"] for e in body["errors"]] == ["Internal server error."], body
    assert errors_of(body) == ["INTERNAL_SERVER_ERROR"] and body["errors"][0]["extensions"]["requestId"]


@asynccontextmanager
async def instance(site: Site, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = site.settings.model_copy(update=overrides)
    database = Database(settings)
    app = create_app(settings, database)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        yield client
    await database.dispose()


@pytest.mark.engines("postgres")  # pg_terminate_backend is PostgreSQL's
async def test_postgres_backend_terminated_mid_request(site: Site, engine: str) -> None:
    import asyncpg

    admin = await site.user("Ann", roles="ADMIN")
    victim = await site.user("Vic")
    await site.token(admin)
    await site.token(victim)  # a session row for the mutation to revoke
    before = await dump(site.database)
    url = make_url(engine)
    holder = await asyncpg.connect(user=url.username, host=url.host, port=url.port, database=url.database)
    try:
        lock = holder.transaction()
        await lock.start()
        # the mutation sets the status first, then revokes the sessions: it will wait here, having written
        await holder.execute("SELECT id FROM session WHERE user_id = $1 FOR UPDATE", victim.id)
        request = asyncio.create_task(site.gql(DENY, {"u": [gid("User", victim)]}, as_user=admin))
        pid = None
        for _ in range(200):
            pid = await holder.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND wait_event_type = 'Lock'"
            )
            if pid is not None:
                break
            await asyncio.sleep(0.02)
        assert pid is not None, "the mutation never reached the locked rows"
        wrote = await holder.fetchval(
            "SELECT count(*) FROM pg_locks WHERE pid = $1 AND relation = '\"user\"'::regclass AND mode = 'RowExclusiveLock'",
            pid,
        )
        assert wrote == 1, "the mutation had not updated the user yet: no partial write to undo"
        assert await holder.fetchval("SELECT pg_terminate_backend($1)", pid)
        body = await asyncio.wait_for(request, 30)
        await lock.rollback()
    finally:
        await holder.close()
    masked(body)
    # the pool pings nothing before use: the dead connection was dropped when its error was seen
    assert site.database.engine.pool._pre_ping is False  # type: ignore[attr-defined]
    assert differences(before, await dump(site.database)) == {}  # the status update went with the backend
    async with site.database.session() as session:
        assert (await session.scalar(select(User.status).where(User.id == victim.id))) == "ACTIVE"
    again = await site.gql(DENY, {"u": [gid("User", victim)]}, as_user=admin)
    assert again == {"data": {"setAccountStatus": [{"id": gid("User", victim), "status": "DENIED"}]}}
    assert await site.count(AuditEvent) == 1 and await site.count(Session, Session.revoked_at.is_(None)) == 1


async def test_concurrent_writers_from_two_instances_lose_nothing(site: Site) -> None:
    users = [await site.user(f"W{n}") for n in range(4)]
    tokens = [await site.token(u) for u in users]
    async with instance(site) as first, instance(site) as second:
        calls = [
            (first if n % 2 else second).post(
                "/graphql", json={"query": TOKEN, "variables": {"n": f"t{n}"}},
                headers={"Authorization": f"Bearer {tokens[n % len(tokens)]}"},
            )
            for n in range(40)
        ]
        bodies = [r.json() for r in await asyncio.gather(*calls)]
    assert all("errors" not in b for b in bodies), [b for b in bodies if "errors" in b][:2]
    assert await site.count(ApiToken) == 40 and await site.count(AuditEvent) == 40


@pytest.mark.engines("sqlite")  # SQLite's file lock
async def test_sqlite_locked_past_the_busy_timeout_is_a_clean_error(site: Site, engine: str) -> None:
    user = await site.user("Lo")
    token = await site.token(user)
    before = await dump(site.database)
    path = make_url(engine).database
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        other.execute("INSERT INTO audit_event (action, target_type, occurred_at) VALUES ('x', 'y', '2026-01-01')")
        async with instance(site, sqlite_busy_timeout_ms=200) as impatient:
            response = await impatient.post(
                "/graphql", json={"query": TOKEN, "variables": {"n": "ci"}}, headers={"Authorization": f"Bearer {token}"}
            )
        other.execute("ROLLBACK")
    finally:
        other.close()
    masked(response.json())
    assert "locked" not in response.text and "sqlite" not in response.text.lower()
    assert differences(before, await dump(site.database)) == {}
    assert "errors" not in await site.gql(TOKEN, {"n": "ci"}, token=token)
    assert await site.count(ApiToken) == 1
