"""membership.sort_name stays its user's last_name_normalized whoever writes memberships or names (the triggers of
app.store.member_order), member pages follow renames, and migration 0013 goes down and up again."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import case, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.store import member_order
from app.store.bulk import insert_rows
from app.store.migrate import _sqlite_migration_engine, alembic_config, upgrade
from app.store.models import Membership, User, utcnow
from tests.conftest import PG_ADMIN_DSN, PG_URL_BASE
from tests.site import Site, gid, stale_sort_names

MEMBERS = """query($id: ID!, $after: String) { group(id: $id) {
  members(includeNested: true, roles: [MEMBER], first: 2, after: $after) {
    pageInfo { hasNextPage endCursor } edges { node { id user { lastName } } } } } }"""


async def walk(site: Site, viewer: User, group_id: int) -> list[str]:
    """Every member's last name, page by page (two a page: the cursors carry sort_name)."""
    names: list[str] = []
    after = None
    while True:
        body = await site.gql(MEMBERS, {"id": gid("Group", group_id), "after": after}, as_user=viewer)
        assert "errors" not in body, body
        page = body["data"]["group"]["members"]
        names += [e["node"]["user"]["lastName"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return names
        after = page["pageInfo"]["endCursor"]


async def test_sort_names_follow_every_write(site: Site) -> None:
    admin = await site.user("Ann", "Admin", kind="STAFF", roles="ADMIN")
    top = await site.group("Top")
    child = await site.group("Child", top)
    young, adams, moore = await site.user("Yan", "Young"), await site.user("Abe", "Adams"), await site.user("Mo", "Moore")
    await site.member(young, top)  # the ORM
    async with site.database.transaction() as session:  # a bulk insert (rostering, imports, seeders)
        table = Membership.__table__  # type: ignore[attr-defined]
        await insert_rows(session, table, ["user_id", "group_id", "role", "created_at"], [(adams.id, child.id, "MEMBER", utcnow())])
        await session.execute(insert(Membership).values(user_id=moore.id, group_id=child.id, role="MEMBER"))  # Core
    assert await stale_sort_names(site) == []
    assert await walk(site, admin, top.id) == ["Adams", "Moore", "Young"]

    # renamed through the API: the page's order follows at once
    body = await site.gql(
        'mutation($id: ID!) { updateUser(id: $id, input: {lastName: "Aaron"}) { lastName } }',
        {"id": gid("User", young.id)}, as_user=admin,
    )
    assert body == {"data": {"updateUser": {"lastName": "Aaron"}}}
    assert await stale_sort_names(site) == []
    assert await walk(site, admin, top.id) == ["Aaron", "Adams", "Moore"]

    # several users renamed by one statement (as rostering updates users), a membership moved to another user
    async with site.database.transaction() as session:
        await session.execute(
            update(User)
            .where(User.id.in_([adams.id, moore.id]))
            .values(last_name_normalized=case((User.id == adams.id, "zed"), else_="abel"))
        )
        await session.execute(update(Membership).where(Membership.user_id == young.id).values(user_id=admin.id))
        await session.execute(update(Membership).where(Membership.user_id == moore.id).values(sort_name="forged"))
    assert await stale_sort_names(site) == []
    async with site.database.session() as session:
        assert set(await session.scalars(select(Membership.sort_name))) == {"admin", "zed", "abel"}
    assert await walk(site, admin, top.id) == ["Moore", "Admin", "Adams"]


async def test_the_triggers_are_installed(site: Site) -> None:
    async with site.database.engine.connect() as connection:
        assert await member_order.installed(connection) == member_order.names(connection.dialect.name)


async def _create(engine: str, tmp_path: Path) -> tuple[str, str | None]:
    """A fresh database of the engine under test (`engine`: its migrated database's URL): its URL and, on
    PostgreSQL, its name to drop."""
    if engine.startswith("sqlite"):
        return f"sqlite+aiosqlite:///{tmp_path / 'order.db'}", None
    import asyncpg

    name = f"groupgraph_order_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    return PG_URL_BASE + name, name


async def _downgrade(url: str, revision: str) -> None:
    engine: AsyncEngine = _sqlite_migration_engine(url) if url.startswith("sqlite") else create_async_engine(url)
    config = alembic_config(url)

    def down(connection: Any) -> None:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    try:
        async with engine.begin() as connection:
            await connection.run_sync(down)
    finally:
        await engine.dispose()


async def test_migration_down_and_up_again(engine: str, tmp_path: Path) -> None:
    url, name = await _create(engine, tmp_path)
    database = create_async_engine(url)
    try:
        await upgrade(database, "0012_member_rollup")
        async with database.begin() as connection:
            await connection.execute(text(
                "INSERT INTO \"user\" (email, email_normalized, kind, first_name, last_name, last_name_normalized, "
                "name_search, site_roles, status, synced, agreed_to_download_reports, created_at, login_count) "
                "VALUES ('k@x', 'k@x', 'LEARNER', 'Kim', 'Lee', 'lee', 'kim lee', '', 'ACTIVE', false, true, "
                "CURRENT_TIMESTAMP, 0)"
            ))
            await connection.execute(text(
                "INSERT INTO \"group\" (name, name_normalized, slug, synced, depth, created_at, members_see_groups) "
                "VALUES ('G', 'g', 'g', false, 0, CURRENT_TIMESTAMP, true)"
            ))
            await connection.execute(text(
                "INSERT INTO membership (user_id, group_id, role, created_at) "
                "SELECT u.id, g.id, 'MEMBER', CURRENT_TIMESTAMP FROM \"user\" u, \"group\" g"
            ))
        await upgrade(database)  # 0013 fills the existing memberships
        async with database.connect() as connection:
            assert (await connection.execute(text("SELECT sort_name FROM membership"))).scalars().all() == ["lee"]
            assert await member_order.installed(connection) == member_order.names(connection.dialect.name)
        await _downgrade(url, "0012_member_rollup")
        async with database.connect() as connection:
            assert await member_order.installed(connection) == set()
            columns = (await connection.execute(text("SELECT * FROM membership"))).keys()
            assert "sort_name" not in columns and "user_id" in columns
        await upgrade(database)
        async with database.connect() as connection:
            assert (await connection.execute(text("SELECT sort_name FROM membership"))).scalars().all() == ["lee"]
    finally:
        await database.dispose()
        if name is not None:
            import asyncpg

            admin = await asyncpg.connect(PG_ADMIN_DSN)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()


@pytest.mark.engines("postgres")  # SQLite runs one writer at a time
@pytest.mark.parametrize("renamed_first", [False, True])
async def test_a_rename_and_a_new_membership_at_once(site: Site, renamed_first: bool) -> None:
    """Whichever of the two transactions writes first, the other waits for it and the name comes out current."""
    user, group = await site.user("Kit", "Old"), await site.group("G")
    engine = site.database.engine
    async with engine.connect() as joining, engine.connect() as renaming:
        await joining.begin()
        await renaming.begin()
        join = text("INSERT INTO membership (user_id, group_id, role, created_at) VALUES (:u, :g, 'MEMBER', now())")
        rename = text("UPDATE \"user\" SET last_name = 'New', last_name_normalized = 'new' WHERE id = :u")
        first, second = (renaming, rename), (joining, join)
        if not renamed_first:
            first, second = second, first
        await first[0].execute(first[1], {"u": user.id, "g": group.id})
        waiting = asyncio.create_task(second[0].execute(second[1], {"u": user.id, "g": group.id}))
        await asyncio.sleep(0.3)  # room for the second to run ahead if nothing made it wait
        await first[0].commit()
        await waiting
        await second[0].commit()
    assert await stale_sort_names(site) == []
    async with site.database.session() as session:
        assert list(await session.scalars(select(Membership.sort_name))) == ["new"]
