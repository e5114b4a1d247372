"""The demo data that `scripts/serve` seeds on an empty database (bench presets: app/presets.py)."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from app.db import Database
from app.models import Group, Membership, User
from app.tree import attach

PRESETS = ("demo",)
DEMO_OWNER_EMAIL = "owner@example.com"
DEMO_OWNER_PASSWORD = "groupgraph-demo"


async def run_seed(database: Database, preset: str, *, if_empty: bool = False) -> None:
    from resolvers.users import create_user_row

    started = time.perf_counter()
    try:
        async with database.transaction() as session:
            if if_empty and await session.scalar(select(func.count()).select_from(User)):
                print("database already has users; not seeding")
                return
            owner = await create_user_row(
                session, email=DEMO_OWNER_EMAIL, first_name="Olivia", last_name="Owner", kind="STAFF",
                password=DEMO_OWNER_PASSWORD, roles=["OWNER"],
            )
            groups: list[Group] = []
            for name, parent in (("Northfield District", None), ("Hillside School", 0), ("Class 5A", 1)):
                group = Group(
                    name=name, name_normalized=name.lower(), slug=name.lower().replace(" ", "-"),
                    parent_id=groups[parent].id if parent is not None else None,
                    depth=0 if parent is None else groups[parent].depth + 1,
                )
                session.add(group)
                await session.flush()
                await attach(session, group.id, group.parent_id)  # type: ignore[arg-type]
                groups.append(group)
            session.add(Membership(user_id=owner.id, group_id=groups[0].id, role="LEADER"))  # type: ignore[arg-type]
            for n in range(1, 6):
                learner = await create_user_row(
                    session, email=f"learner{n}@example.com", first_name=f"Learner{n}", last_name="Demo",
                    kind="LEARNER", password=DEMO_OWNER_PASSWORD,
                )
                session.add(Membership(user_id=learner.id, group_id=groups[2].id, role="MEMBER"))  # type: ignore[arg-type]
    finally:
        await database.dispose()
    print(f"seeded preset {preset} in {time.perf_counter() - started:.1f}s")
    print(f"sign in as {DEMO_OWNER_EMAIL} / {DEMO_OWNER_PASSWORD}")
