"""Ids are never reused: a deleted user's id is not given to the next user, the audit log names nobody as
the actor of a deleted account, and a deleted user's progress keys go with them."""

from __future__ import annotations

import tempfile
import uuid

from sqlalchemy import pool, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.settings import Settings
from app.store.db import Database
from app.store.migrate import upgrade
from app.store.models import AuditEvent, IngestedEvent, User
from tests.site import Site, gid

CREATE = "mutation($i: CreateUserInput!) { createUser(input: $i) { id databaseId } }"
RECORD = "mutation($e: [ProgressEventInput!]!) { recordProgress(events: $e) }"


async def test_a_deleted_users_id_is_never_given_again(site: Site) -> None:
    admin = await site.user("Ada", roles="OWNER,ADMIN", kind="STAFF")
    made = await site.gql(CREATE, {"i": {"email": "old@example.com", "firstName": "Old", "lastName": "One", "kind": "LEARNER"}}, as_user=admin)
    old_id = made["data"]["createUser"]["databaseId"]
    async with site.database.session() as session:
        old = await site.token(await session.get(User, old_id))  # type: ignore[arg-type]
    # the old user acts (an audited mutation) and has progress recorded
    body = await site.gql('mutation { createApiToken(name: "mine") { name } }', token=old)
    assert body["data"], body
    event = {"userId": gid("User", old_id), "kind": "USAGE", "minutes": 5, "occurredAt": "2026-03-02T10:00:00Z"}
    assert (await site.gql(RECORD, {"e": [event]}, as_user=admin))["data"]["recordProgress"] == 1
    assert await site.count(IngestedEvent, IngestedEvent.user_id == old_id) == 1

    body = await site.gql("mutation($ids: [ID!]!) { deleteUsers(userIds: $ids) }", {"ids": [gid("User", old_id)]}, as_user=admin)
    assert body["data"]["deleteUsers"] == 1, body
    assert await site.count(AuditEvent, AuditEvent.actor_id == old_id) == 0
    assert await site.count(AuditEvent, AuditEvent.action == "api_token.create", AuditEvent.actor_id.is_(None)) == 1
    assert await site.count(IngestedEvent) == 0

    made = await site.gql(CREATE, {"i": {"email": "new@example.com", "firstName": "New", "lastName": "One", "kind": "LEARNER"}}, as_user=admin)
    new_id = made["data"]["createUser"]["databaseId"]
    assert new_id > old_id
    # the same event for the new user is new
    event["userId"] = gid("User", new_id)
    assert (await site.gql(RECORD, {"e": [event]}, as_user=admin))["data"]["recordProgress"] == 1


async def test_migrating_a_filled_database_keeps_every_row(engine: str) -> None:
    """Rebuilding tables (SQLite) must not cascade-delete what points at them; keys and actors are mapped.
    On PostgreSQL the migrations run in a schema of their own in the test database."""
    schema = f"mig_{uuid.uuid4().hex[:8]}"
    if engine.startswith("sqlite"):
        database = Database(Settings(database_url=f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/migrating.db"))
        run: AsyncEngine = database.engine
    else:
        database = Database(Settings(database_url=engine))
        async with database.engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        run = create_async_engine(engine, poolclass=pool.NullPool, connect_args={"server_settings": {"search_path": schema}})
    try:
        await upgrade(run, "0003_home_group")
        async with run.begin() as conn:
            for n in (1, 2):
                await conn.execute(text(
                    'INSERT INTO "user" (id, email, email_normalized, kind, first_name, last_name, last_name_normalized, '
                    "site_roles, status, synced, agreed_to_download_reports, created_at, login_count) VALUES "
                    f"({n}, 'u{n}@x', 'u{n}@x', 'LEARNER', 'U', 'X', 'x', '', 'ACTIVE', false, true, '2026-01-01', 0)"
                ))
            await conn.execute(text(
                "INSERT INTO session (id, user_id, token_hash, created_at, expires_at) VALUES (1, 1, 'h', '2026-01-01', '2027-01-01')"
            ))
            await conn.execute(text(
                "INSERT INTO audit_event (id, actor_id, action, target_type, occurred_at) VALUES "
                "(1, 1, 'a', 'user', '2026-01-01'), (2, 99, 'a', 'user', '2026-01-01')"
            ))
            await conn.execute(text(
                "INSERT INTO ingested_event (key, created_at) VALUES ('USAGE|2|-|2026-01-01T00:00:00+00:00', '2026-01-01')"
            ))
            if run.dialect.name == "postgresql":
                await conn.execute(text("SELECT setval(pg_get_serial_sequence('\"user\"', 'id'), 2)"))
        await upgrade(run)
        async with run.begin() as conn:
            if run.dialect.name == "sqlite":
                await conn.exec_driver_sql("PRAGMA foreign_keys=ON")  # as the app's connections have it
            assert (await conn.scalar(text("SELECT count(*) FROM session"))) == 1
            actors = dict((await conn.execute(text("SELECT id, actor_id FROM audit_event"))).all())
            assert actors == {1: 1, 2: None}
            assert list(await conn.scalars(text("SELECT user_id FROM ingested_event"))) == [2]
            if run.dialect.name == "sqlite":
                sql = await conn.scalar(text("SELECT sql FROM sqlite_master WHERE name = 'user'"))
                assert "AUTOINCREMENT" in sql
        async with run.begin() as conn:
            if run.dialect.name == "sqlite":
                await conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            await conn.execute(text('DELETE FROM "user" WHERE id = 2'))
            await conn.execute(text(
                'INSERT INTO "user" (email, email_normalized, kind, first_name, last_name, last_name_normalized, '
                "site_roles, status, synced, agreed_to_download_reports, created_at, login_count) VALUES "
                "('u3@x', 'u3@x', 'LEARNER', 'U', 'X', 'x', '', 'ACTIVE', false, true, '2026-01-01', 0)"
            ))
            assert await conn.scalar(text('SELECT max(id) FROM "user"')) == 3
            assert await conn.scalar(text("SELECT count(*) FROM ingested_event")) == 0
    finally:
        if run is not database.engine:
            await run.dispose()
            async with database.engine.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await database.dispose()
