"""The server process's runtime: trips to the database per request (the sign-in read through the request's own
session; no ping on checkout), recovery when PostgreSQL drops its connections, and the garbage collector's
settings applied at start-up."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from app.runtime.collector import SurvivorFreezer
from app.server import create_app
from app.settings import Settings
from app.store.db import Database, RoundTrips
from tests.site import Site, errors_of, gid

VIEWER = "{ viewer { email } }"
LOGIN = 'mutation { login(email: "nobody@example.com", password: "not this one") { token } }'
RENAME = "mutation($id: ID!, $n: String!) { updateGroup(id: $id, input: {name: $n}) { name } }"


def counting(site: Site) -> RoundTrips:
    trips = RoundTrips()
    for engine in {site.database.engine, site.database.write_engine}:
        trips.attach(engine)
    return trips


async def test_an_authenticated_query_is_one_checkout_and_one_transaction(site: Site) -> None:
    user = await site.user("Ria")
    token = await site.token(user)
    trips = counting(site)
    seen = []
    for _ in range(3):  # the same every time: no ping, no second session for the sign-in
        trips.reset()
        assert await site.gql(VIEWER, token=token) == {"data": {"viewer": {"email": user.email}}}
        seen.append(trips.as_dict())
    # the sign-in and the viewer's Reach, user and memberships: at most 4 statements; on SQLite in BEGIN ...
    # ROLLBACK, on PostgreSQL lean reads outside a transaction (app.store.lean: no BEGIN, no ROLLBACK). It was
    # 2 checkouts, 2 pings of 3 round trips each and 2 transactions: 14 round trips.
    statements = seen[0]["statements"]
    assert statements <= 4
    transactions = 1 if site.database.is_sqlite else 0
    assert seen == [{
        "checkouts": 1, "begins": transactions, "ends": transactions, "statements": statements, "pings": 0,
        "round_trips": statements + 2 * transactions,
    }] * 3


async def test_a_dashboard_reads_through_one_checkout(site: Site) -> None:
    leader = await site.user("Lea", kind="STAFF")
    group = await site.group("Oak")
    await site.member(leader, group, "LEADER")
    for n in range(3):
        await site.member(await site.user(f"M{n}"), group)
    query = (
        "query($id: ID!) { group(id: $id) { name memberCount(includeNested: true) "
        "members(first: 10) { totalCount edges { node { user { firstName } } } } } }"
    )
    await site.gql(query, {"id": gid("Group", group)}, as_user=leader)
    trips = counting(site)
    with site.statements() as counted:
        body = await site.gql(query, {"id": gid("Group", group)}, as_user=leader)
    assert body["data"]["group"]["memberCount"] == 4, body
    # at most one transaction (PostgreSQL: the statements built once are lean reads outside it; a leader's member
    # page, built per request, goes SQLAlchemy's way and begins it)
    assert trips.checkouts == 1 and trips.begins == trips.ends <= 1 and trips.pings == 0
    assert trips.statements == counted.count  # the sign-in is one of them


async def test_a_mutation_after_the_sign_in_writes_and_fails_cleanly(site: Site, engine: str) -> None:
    """PostgreSQL: the sign-in's session carries on into the mutation. SQLite: the mutation takes the write
    engine (BEGIN IMMEDIATE) after the sign-in was read, and the read session is closed."""
    leader = await site.user("Lou", kind="STAFF")
    group = await site.group("Elm")
    await site.member(leader, group, "LEADER")
    await site.token(leader)
    trips = counting(site)
    body = await site.gql(RENAME, {"id": gid("Group", group), "n": "Ash"}, as_user=leader)
    assert body == {"data": {"updateGroup": {"name": "Ash"}}}, body
    assert trips.pings == 0 and trips.begins == trips.ends
    # PostgreSQL: the sign-in and the mutation in one checkout, the fields read after the commit in a second
    # (the session gives its connection back at the commit). SQLite: the sign-in on the read engine, then the
    # mutation and the reads after it on the write engine. Before: one more on PostgreSQL, and three pings.
    assert trips.checkouts == (3 if site.database.is_sqlite else 2)
    # a failed mutation rolls back the session that read the sign-in: the viewer stays usable
    taken = await site.gql(RENAME, {"id": gid("Group", group), "n": ""}, as_user=leader)
    assert errors_of(taken) == ["BAD_USER_INPUT"], taken
    again = await site.gql(RENAME, {"id": gid("Group", group), "n": "Birch"}, as_user=leader)
    assert again == {"data": {"updateGroup": {"name": "Birch"}}}, again


async def test_revoked_expired_and_denied_sign_ins_still_end_at_once(site: Site) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from app.store.models import Session, User, utcnow

    user = await site.user("Rex")
    token = await site.token(user)
    assert "errors" not in await site.gql(VIEWER, token=token)
    async with site.database.transaction() as session:
        await session.execute(update(Session).values(revoked_at=utcnow()))
    assert errors_of(await site.gql(VIEWER, token=token)) == ["UNAUTHENTICATED"]
    other = await site.user("Old")
    expired = await site.token(other, expires_in=timedelta(seconds=-1))
    assert errors_of(await site.gql(VIEWER, token=expired)) == ["UNAUTHENTICATED"]
    denied = await site.user("Den")
    denied_token = await site.token(denied)
    async with site.database.transaction() as session:
        await session.execute(update(User).where(User.id == denied.id).values(status="DENIED"))
    assert errors_of(await site.gql(VIEWER, token=denied_token)) == ["UNAUTHENTICATED"]


async def _terminate_app_connections(engine: str) -> int:
    url = make_url(engine)
    admin = await asyncpg.connect(user=url.username, host=url.host, port=url.port, database=url.database)
    try:
        return int(await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ))
    finally:
        await admin.close()


@pytest.mark.engines("postgres")  # a server restart: every pooled connection is dead, and nothing pings them
async def test_pooled_connections_killed_then_requests_recover_without_a_ping(site: Site, engine: str) -> None:
    user = await site.user("Pat")
    token = await site.token(user)
    group = await site.group("Yew")
    await site.member(user, group, "LEADER")
    assert "errors" not in await site.gql(VIEWER, token=token)
    assert site.database.engine.pool._pre_ping is False  # type: ignore[attr-defined]
    trips = counting(site)
    # a signed-in request: the dead connection fails the sign-in query, which runs again on a new connection
    assert await _terminate_app_connections(engine) >= 1
    assert await site.gql(VIEWER, token=token) == {"data": {"viewer": {"email": user.email}}}
    assert trips.pings == 0
    # an anonymous request that reads (a sign-in attempt) on a dead connection: at worst a clean, coded error,
    # and the next ones succeed
    await _open_pool(site, 3)
    assert await _terminate_app_connections(engine) >= 1
    first = await site.gql(LOGIN)
    assert errors_of(first) in (["UNAUTHENTICATED"], ["INTERNAL_SERVER_ERROR"]), first
    for _ in range(2):
        assert errors_of(await site.gql(LOGIN)) == ["UNAUTHENTICATED"]
        assert await site.gql(VIEWER, token=token) == {"data": {"viewer": {"email": user.email}}}
    rename = await site.gql(RENAME, {"id": gid("Group", group), "n": "Fir"}, token=token)
    assert rename == {"data": {"updateGroup": {"name": "Fir"}}}, rename
    assert trips.pings == 0


async def _open_pool(site: Site, count: int) -> None:
    """Check `count` connections out at once and return them: the pool then holds that many idle."""
    from sqlalchemy import text

    connections = [await site.database.engine.connect() for _ in range(count)]
    for connection in connections:
        await connection.execute(text("SELECT 1"))
    for connection in connections:
        await connection.close()


def test_gc_settings_parse() -> None:
    assert Settings(gc_threshold="1000, 20,30").gc_threshold == (1000, 20, 30)
    assert Settings(gc_threshold="").gc_threshold == ()
    with pytest.raises(ValueError):
        Settings(gc_threshold="10,20")
    with pytest.raises(ValueError):
        Settings(gc_threshold="0,10,10")
    with pytest.raises(ValueError):
        Settings(gc_reclaim_every=0)


class _Node:
    other: Any = None


def test_what_survives_a_full_collection_is_frozen_and_reclaimed_in_turn() -> None:
    """Survivors of a full collection leave later collections; a cycle among them that has since become
    garbage stays until every `reclaim_every`-th full collection, which walks everything."""
    freezer = SurvivorFreezer(reclaim_every=3)
    kept = [_Node() for _ in range(1000)]
    first, second = _Node(), _Node()
    first.other, second.other = second, first
    ended = weakref.ref(first)
    was_enabled = gc.isenabled()
    gc.disable()  # only the collections below
    gc.callbacks.append(freezer)
    try:
        gc.collect()  # the first: everything alive is frozen
        assert gc.get_freeze_count() >= len(kept) + 2
        del first, second
        gc.collect()  # the second: the frozen cycle is not walked
        assert ended() is not None
        gc.collect()  # the third: everything thawed and walked
        assert ended() is None
        assert gc.get_freeze_count() >= len(kept)  # and the survivors frozen again
    finally:
        gc.callbacks.remove(freezer)
        gc.unfreeze()
        if was_enabled:
            gc.enable()


async def test_start_up_tunes_the_collector(tmp_path: Any) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'gc.db'}", gc_threshold="12345,17,33",
                        export_worker=False)
    before = gc.get_threshold()
    database = Database(settings)
    app = create_app(settings, database)
    try:
        async with app.router.lifespan_context(app):
            assert gc.get_threshold() == (12345, 17, 33)
            assert gc.get_freeze_count() > 10_000  # the modules, the schema, the app: out of later collections
            assert sum(isinstance(c, SurvivorFreezer) for c in gc.callbacks) == 1  # once, however often started
    finally:
        gc.set_threshold(*before)
        gc.callbacks[:] = [c for c in gc.callbacks if not isinstance(c, SurvivorFreezer)]
        gc.unfreeze()
        await database.dispose()
    unfrozen = Settings(database_url=settings.database_url, gc_threshold="", gc_freeze=False, export_worker=False)
    database = Database(unfrozen)
    app = create_app(unfrozen, database)
    try:
        async with app.router.lifespan_context(app):
            assert gc.get_threshold() == before and gc.get_freeze_count() == 0
            assert not any(isinstance(c, SurvivorFreezer) for c in gc.callbacks)
    finally:
        await database.dispose()


def test_serve_runs_on_uvloop_and_httptools() -> None:
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    from app.http.serving import TcpConfig

    factory = TcpConfig("app.asgi:app", host="127.0.0.1", port=0, workers=2).get_loop_factory()
    assert factory is not None
    loop = factory()
    try:
        assert type(loop).__module__.startswith("uvloop"), type(loop)
    finally:
        loop.close()
    assert AutoHTTPProtocol.__name__ == "HttpToolsProtocol"


async def test_the_sign_in_reads_the_reach_in_its_own_statement(site: Site) -> None:
    """app.services.viewers.signed_in_with_reach: in one statement, the credential `authenticate` gives and the
    Reach `load_reach_rows` gives, for a session and for an API token (groups, a consent granted, a pupil, an
    asker; the catalogue's version too); nothing for an ended token or an account that is not ACTIVE."""
    from datetime import timedelta

    from sqlalchemy import update

    from app.services.auth import API_TOKEN_PREFIX, authenticate, new_token, token_hash
    from app.services.viewers import signed_in_with_reach
    from app.store.models import ApiToken, GuardianLink, User, utcnow
    from dataloaders.reach import load_reach_rows
    from dataloaders.store import Store
    from permissions.reach import Reach
    from tests.test_aggregates import granted

    leader = await site.user("Lia", kind="STAFF")
    school, other = await site.group("School"), await site.group("Other")
    klass = await site.group("Class", school)
    await site.member(leader, school, "LEADER")
    await site.member(leader, other, "MEMBER")
    pupil, asked = await site.user("Pia"), await site.user("Asa")
    await site.member(pupil, klass)
    await granted(site, leader, asked)
    await granted(site, asked, leader)  # the leader is asked by Asa
    api_token = new_token(API_TOKEN_PREFIX)
    async with site.database.transaction() as session:
        session.add(GuardianLink(external_user_id=leader.id, pupil_id=pupil.id, licence_type="PUPIL"))  # type: ignore[arg-type]
        session.add(ApiToken(user_id=leader.id, name="t", token_hash=token_hash(api_token)))  # type: ignore[arg-type]
    expired = await site.token(await site.user("Old", kind="STAFF"), expires_in=timedelta(seconds=-1))
    for token in (await site.token(leader), api_token):
        store = Store(site.database)
        try:
            credential, reach = await signed_in_with_reach(store, token, True)
            version = store.catalogue_version
            async with site.database.session() as session:
                expected = await authenticate(session, token)
            rows = await load_reach_rows(store, leader.id)
        finally:
            await store.close()
        assert credential is not None and expected is not None and reach is not None
        assert (credential.user.id, credential.session_id, credential.api_token_id) == (
            expected.user.id, expected.session_id, expected.api_token_id
        )
        assert credential.user.email == leader.email and credential.user.site_roles == ""
        assert reach == Reach.from_rows(leader.id, [], rows)
        assert reach.granted and reach.pupils and reach.askers and set(reach.group_roles) == {school.id, klass.id, other.id}
        assert version is not None and version == store.catalogue_version
    async with site.database.transaction() as session:
        await session.execute(update(User).where(User.id == leader.id).values(status="DISABLED"))
        await session.execute(update(ApiToken).values(revoked_at=utcnow()))
    store = Store(site.database)
    try:
        assert await signed_in_with_reach(store, expired, True) == (None, None)
        assert await signed_in_with_reach(store, await site.token(leader), True) == (None, None)
        assert await signed_in_with_reach(store, api_token, True) == (None, None)
        assert await signed_in_with_reach(store, "not a token", True) == (None, None)
    finally:
        await store.close()


def test_instants_are_written_as_isoformat_in_utc_with_z() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    from resolvers.scalars import rfc3339

    for value in (
        datetime(2026, 3, 1, 9, 30, tzinfo=UTC), datetime(2026, 3, 1, 9, 30, 5, 120, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC), datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
    ):
        assert rfc3339(value) == value.isoformat().removesuffix("+00:00") + "Z"
    assert rfc3339(datetime(2026, 3, 1, 9, 30, 0, 500000)) == "2026-03-01T09:30:00.500000Z"  # naive: taken as UTC
    assert rfc3339(datetime(2026, 3, 1, 11, 30, tzinfo=timezone(timedelta(hours=2)))) == "2026-03-01T09:30:00Z"


def test_instants_written_are_kept_up_to_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime, timedelta

    from resolvers import scalars

    monkeypatch.setattr(scalars, "WRITTEN_SIZE", 8)
    monkeypatch.setattr(scalars, "_written", {})
    start = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    first = scalars.rfc3339(start)
    assert scalars.rfc3339(datetime(2026, 3, 1, 9, 30, tzinfo=UTC)) is first  # an equal instant: written once
    for n in range(1, 20):
        value = start + timedelta(microseconds=n)
        assert scalars.rfc3339(value) == value.isoformat().removesuffix("+00:00") + "Z"
        assert len(scalars._written) <= 8
    assert scalars.rfc3339(start) == "2026-03-01T09:30:00Z"  # written again after the memo was emptied


async def test_the_loaders_hold_nothing_once_forgotten() -> None:
    import asyncio
    import weakref

    from dataloaders.batch import load_all
    from dataloaders.loaders import Loaders

    class Row:
        pass

    loaders = Loaders(None)  # type: ignore[arg-type]
    made: list[Row] = []

    async def rows(ids: list[int]) -> list[Row]:
        made.extend(Row() for _ in ids)
        return made[-len(ids):]

    loaders.users.by_id.load_fn = rows  # type: ignore[method-assign]
    loaders.users.by_id.prime(1, Row())
    await load_all(loaders.users.by_id, [2, 3])
    counts = loaders.progress.usage_minutes  # a DataLoader of Strawberry's own
    counts.prime(7, 70)
    held = [weakref.ref(r) for r in made]
    made.clear()
    for _ in range(3):  # the batch's finished tasks leave the event loop
        await asyncio.sleep(0)
    assert all(r() is not None for r in held)  # the loader's cache and last batch keep them
    loaders.forget()
    assert all(r() is None for r in held)  # freed at once, without the cyclic collector
    assert counts.cache_map.get(7) is None and loaders.users.by_id.batch is None
