"""Sign-in throttling: per email and per client address, slowed then RATE_LIMITED, the same for unknown
emails, held in the database so that two app instances on one database share it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from app.server import create_app
from app.services.throttle import failure_delay
from app.settings import Settings
from app.store.db import Database
from app.store.models import LoginEvent, utcnow
from tests.site import PASSWORD, Site, errors_of

PER_EMAIL = 3
PER_ADDRESS = 5
LOGIN = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "login_failures_per_email": PER_EMAIL,
        "login_failures_per_address": PER_ADDRESS,
        "login_slowdown_after": 2,
        "login_slowdown_seconds": 0.01,
    }


@asynccontextmanager
async def instance(site: Site, address: str = "10.0.0.1") -> AsyncIterator[httpx.AsyncClient]:
    """Another app process in all but name: its own Database (engine, pool) on the same database."""
    database = Database(site.settings)
    app = create_app(site.settings, database)
    transport = httpx.ASGITransport(app=app, client=(address, 4321))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client
    await database.dispose()


async def login(client: httpx.AsyncClient, email: str, password: str) -> tuple[list[str], list[Any]]:
    body = (await client.post("/graphql", json={"query": LOGIN, "variables": {"e": email, "p": password}})).json()
    return errors_of(body), [(e["message"], e["extensions"]) for e in body.get("errors", [])]


def test_slow_down_schedule() -> None:
    settings = Settings(login_slowdown_after=3, login_slowdown_seconds=0.5, login_slowdown_max_seconds=1.2)
    assert [failure_delay(settings, n) for n in range(6)] == [0, 0, 0, 0.5, 1.0, 1.2]


async def test_per_email_across_two_instances_and_alike_for_unknown_emails(site: Site) -> None:
    await site.user("Ada", email="ada@example.com")
    async with instance(site, "10.0.0.1") as first, instance(site, "10.0.0.2") as second:
        known, unknown = [], []
        for n in range(PER_EMAIL + 1):
            client = first if n % 2 == 0 else second  # the two processes share the count
            known.append(await login(client, "ada@example.com", "wrong password"))
            unknown.append(await login(client, "nobody@example.com", "wrong password"))
        assert [codes for codes, _ in known] == [["UNAUTHENTICATED"]] * PER_EMAIL + [["RATE_LIMITED"]]
        assert known == unknown  # same messages and extensions: nothing says whether an account exists
        # the right password does not get through while the email is limited, on either instance
        for client in (first, second):
            assert (await login(client, "ada@example.com", PASSWORD))[0] == ["RATE_LIMITED"]
        # another email from yet another address is not affected
        async with instance(site, "10.0.0.3") as third:
            await site.user("Bo", email="bo@example.com")
            assert (await login(third, "bo@example.com", PASSWORD))[0] == []
    assert await site.count(LoginEvent, LoginEvent.success.is_(False)) == 2 * PER_EMAIL
    # the window passes: the old failures no longer count
    async with site.database.transaction() as session:
        await session.execute(update(LoginEvent).values(at=utcnow() - timedelta(seconds=site.settings.login_failure_window_seconds + 1)))
    async with instance(site) as client:
        assert (await login(client, "ada@example.com", PASSWORD))[0] == []


async def test_per_client_address(site: Site) -> None:
    async with instance(site, "10.9.9.9") as attacker, instance(site, "10.1.1.1") as other:
        codes = [(await login(attacker, f"guess{n}@example.com", "x"))[0] for n in range(PER_ADDRESS + 1)]
        assert codes == [["UNAUTHENTICATED"]] * PER_ADDRESS + [["RATE_LIMITED"]]
        assert (await login(attacker, "fresh@example.com", "x"))[0] == ["RATE_LIMITED"]
        assert (await login(other, "fresh@example.com", "x"))[0] == ["UNAUTHENTICATED"]


async def test_concurrent_guesses_do_not_slip_under_the_limit(site: Site) -> None:
    await site.user("Cy", email="cy@example.com")
    async with instance(site, "10.0.0.1") as first, instance(site, "10.0.0.2") as second:
        results = await asyncio.gather(
            *(login(first if n % 2 else second, "cy@example.com", f"guess {n}") for n in range(10))
        )
    codes = sorted(c for codes, _ in results for c in codes)
    assert codes.count("UNAUTHENTICATED") <= PER_EMAIL and codes.count("RATE_LIMITED") >= 10 - PER_EMAIL
    assert await site.count(LoginEvent, LoginEvent.email_normalized == "cy@example.com") <= PER_EMAIL
