"""The benchmark presets: `small` on both engines has the shape the bench relies on."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select, text

from app.demo.presets import SHAPES, level_sizes, plan_preset, seed_preset
from app.store import rollup
from app.store.models import (
    AccessRequest,
    Enrollment,
    Group,
    GroupClosure,
    GroupRollup,
    GuardianLink,
    Membership,
    StepProgress,
    Submission,
    Usage,
    User,
)
from tests.site import Site

TOKENS = {key: f"gga_{key}" for key in ("admin", "leader", "mentor", "analyst")}


def test_plans_are_deterministic_and_levels_add_up() -> None:
    first, second = plan_preset("small", TOKENS, "x"), plan_preset("small", TOKENS, "x")
    for (name, _, rows_a), (_, _, rows_b) in zip(first.tables, second.tables, strict=True):
        assert list(rows_a) == list(rows_b), name
    for shape in SHAPES.values():
        sizes = level_sizes(shape.groups, shape.depth)
        assert sum(sizes) == shape.groups and len(sizes) == shape.depth and sizes[0] == 1
        assert sizes == sorted(sizes)


async def test_small_preset_shape(site: Site) -> None:
    result = await seed_preset(site.settings.database_url, "small")
    assert result is not None
    counts = result["counts"]
    assert counts["group"] == 100 and counts["enrollment"] == 2_000
    assert 8_000 <= counts["step_progress"] <= 14_000
    assert await site.count(User, User.kind == "LEARNER") == 1_000
    assert await site.count(User, User.kind == "STAFF") == 50
    assert await site.count(Group, Group.parent_id.is_(None)) == 1
    async with site.database.session() as session:
        assert await session.scalar(select(func.max(Group.depth))) == 3
        # one closure row per (group, ancestor-or-self)
        assert await session.scalar(select(func.sum(Group.depth + 1))) == await session.scalar(
            select(func.count()).select_from(GroupClosure)
        )
        staff_levels = set(
            (
                await session.execute(
                    select(Group.depth, Membership.role).join(Membership, Membership.group_id == Group.id)
                    .where(Membership.role != "MEMBER").distinct()
                )
            ).all()
        )
        assert {(level, role) for level in range(4) for role in ("LEADER", "MENTOR")} <= staff_levels
        # GROUP_ANALYST seats are limited: the bench's analyst and the few staff the seats allow hold ANALYST
        assert {role for _, role in staff_levels} == {"LEADER", "MENTOR", "ANALYST"}
        assert await site.count(User, User.site_roles.like("%GROUP_ANALYST%")) <= site.settings.analyst_seats
        learner_levels = set(
            (await session.scalars(
                select(Group.depth).join(Membership, Membership.group_id == Group.id).where(Membership.role == "MEMBER")
            )).all()
        )
        assert learner_levels == {3}
        statuses = set((await session.scalars(select(AccessRequest.status).distinct())).all())
        assert statuses == {"PENDING", "GRANTED", "DENIED", "REVOKED"}
        now = datetime.now(UTC)
        assert await site.count(AccessRequest, AccessRequest.status == "PENDING", AccessRequest.expires_at < now) > 0
    assert await site.count(AccessRequest) == 20
    assert await site.count(GuardianLink) == 50
    if not site.database.is_sqlite:  # vacuumed once loaded: the closure's pages are all visible, as autovacuum leaves them
        async with site.database.engine.connect() as conn:
            vacuumed = (await conn.execute(text(
                "SELECT last_vacuum IS NOT NULL, last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'group_closure'"
            ))).one()
            pages, visible = (await conn.execute(text(
                "SELECT relpages, relallvisible FROM pg_class WHERE relname = 'group_closure'"
            ))).one()
        assert tuple(vacuumed) == (True, True) and pages > 0 and visible == pages
    assert await site.count(Submission, Submission.status == "NEEDS_REVIEW") > 100
    assert await site.count(Usage) >= 1_000
    assert await site.count(Enrollment, Enrollment.completed_at.is_not(None)) > 0
    assert await site.count(StepProgress, StepProgress.completed_at.is_(None)) > 0
    viewers = result["viewers"]
    assert await site.count(Membership, Membership.user_id == viewers["analyst"]["user_id"],
                            Membership.role == "ANALYST") == 5

    # the tokens sign in, the admin sees the 5% of active learners with no group, and the rest is not admin
    admin = await site.gql("{ viewer { email } unassignedActiveStudentCount }", token=viewers["admin"]["token"])
    assert admin == {"data": {"viewer": {"email": "admin@example.com"}, "unassignedActiveStudentCount": 50}}
    leader = await site.gql("{ viewer { email } }", token=viewers["leader"]["token"])
    assert leader == {"data": {"viewer": {"email": "bench-leader@example.com"}}}
    denied = await site.gql("{ unassignedActiveStudentCount }", token=viewers["leader"]["token"])
    assert denied["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"  # a leader names the scope
    # written with the rollup paused, then rebuilt once: it equals a recompute, its triggers are back, and the
    # root counts every placed learner (95% of 1,000)
    async with site.database.engine.connect() as conn:
        trans = await conn.begin()
        assert await rollup.installed(conn) == set(rollup.TRIGGER_NAMES)
        assert await rollup.rebuild_and_compare(conn) == {t: 0 for t in rollup.TABLES}
        await trans.rollback()
    root = result["groups"]["root"]
    assert await site.count(GroupRollup, GroupRollup.group_id == root, GroupRollup.learners == 950) == 1
    # a second seed refuses a database that has data, or skips it with if_empty
    assert await seed_preset(site.settings.database_url, "small", if_empty=True) is None
