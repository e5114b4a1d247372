"""The rolled-up progress summary (app/store/rollup.py) is exact, on SQLite and PostgreSQL.

A Hypothesis property: random group trees built with createGroup, random learners, two courses, then a
random sequence of writes through the API (addMembers, removeMembers with and without archive,
changeMemberRole, re-nesting with updateGroup, deleteGroup with its subtree, createGroup, enroll,
recordProgress, deleteUsers) and a step deleted straight in the database (its progress goes by cascade).
After every write, each group's rolled-up summary equals the direct aggregate over its subtree; at the end
the tables equal a rebuild from scratch, row for row. The membership counts (member_rollup) the same way: after
every write, each group's rolled-up count per role equals the direct count over its subtree, read through
the members loader both ways (a consent given to a membership and taken back straight in the database too). Beside it: the root's summary costs the same
statements whatever the subtree's size, and a caller whose row filter leaves learners out (consent-based
members they may not see) still gets the filtered answer.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text, true

from app.server import create_app
from app.settings import Settings
from app.store import rollup
from app.store.db import Database
from app.store.models import (
    CourseRollup,
    Enrollment,
    Group,
    GroupRollup,
    LearnerRollup,
    MemberRollup,
    User,
)
from dataloaders.groups import GroupLoaders, TreeReads
from dataloaders.loaders import Loaders
from dataloaders.memberships import MemberFilter, MembershipLoaders
from dataloaders.progress import ProgressLoaders, Summary
from dataloaders.store import Store
from dataloaders.users import UserLoaders
from tests.school import course, enroll, progress
from tests.site import Site, empty_tables, gid
from tests.test_aggregates import granted

EXAMPLES_PER_ENGINE = int(os.environ.get("GROUPGRAPH_ROLLUP_EXAMPLES", "15"))
OPS = ("add", "add", "add", "remove", "role", "move", "move", "delete_group", "add_group", "enroll", "enroll",
       "complete", "complete", "complete", "view", "delete_user", "delete_step", "unenroll", "undo_step", "consent")
ROLES = ("MEMBER", "MEMBER", "MEMBER", "MENTOR", "LEADER")

CREATE_GROUP = "mutation($i: CreateGroupInput!) { createGroup(input: $i) { id } }"
UPDATE_GROUP = "mutation($id: ID!, $i: UpdateGroupInput!) { updateGroup(id: $id, input: $i) { id } }"
DELETE_GROUP = "mutation($id: ID!) { deleteGroup(id: $id, deleteNested: true) }"
ADD = "mutation($g: ID!, $u: [ID!]!, $r: GroupRole!) { addMembers(groupId: $g, userIds: $u, role: $r) { id } }"
REMOVE = "mutation($m: [ID!]!, $a: Boolean) { removeMembers(membershipIds: $m, archive: $a) }"
ROLE = "mutation($m: ID!, $r: GroupRole!) { changeMemberRole(membershipId: $m, role: $r) { id } }"
ENROLL = "mutation($u: [ID!]!, $c: ID!) { enroll(userIds: $u, courseId: $c) }"
RECORD = "mutation($e: [ProgressEventInput!]!) { recordProgress(events: $e) }"
DELETE_USERS = "mutation($u: [ID!]!) { deleteUsers(userIds: $u) }"

SUMMARY = """query($id: ID!) { group(id: $id) { progressSummary(includeNested: true) {
  learnerCount courses { course { name } enrolledCount completedCount averagePercentCompleted } } } }"""


async def reset(database: Database) -> None:
    await empty_tables(database)


def same(rolled: Summary | None, direct: Summary) -> bool:
    if rolled is None or rolled.learner_count != direct.learner_count:
        return False
    a = sorted(rolled.courses, key=lambda c: c.course_id)
    b = sorted(direct.courses, key=lambda c: c.course_id)
    return len(a) == len(b) and all(
        (x.course_id, x.enrolled, x.completed) == (y.course_id, y.enrolled, y.completed)
        and abs(x.average_percent_completed - y.average_percent_completed) < 1e-9
        for x, y in zip(a, b, strict=True)
    )


async def check_every_group(database: Database, where: str) -> None:
    """Each group's rolled-up summary against the direct aggregate over every learner of its subtree."""
    store = Store(database)
    try:
        loaders = ProgressLoaders(store)
        group_ids = list(await store.scalars(select(Group.id)))
        for group_id in group_ids:
            rolled = await loaders.rolled_up_summary(group_id)
            direct = await loaders._one_summary(group_id, True, lambda _u, _g: true())
            assert same(rolled, direct), f"group {group_id} after {where}: rollup {rolled} != direct {direct}"
        await check_member_counts(store, group_ids, where)
        await check_read_with_groups(database, store, group_ids, where)
    finally:
        await store.close()


async def check_read_with_groups(database: Database, store: Store, group_ids: list[int], where: str) -> None:
    """The rolled-up rows `group(id:)` reads in the groups' own statement (GroupLoaders.load_with_tree) answer
    the summaries and the member counts as their own statements do, a site admin's without another statement."""
    nested, everyone = MemberFilter(include_nested=True), lambda _u, _g: true()
    for consent_matters, admitted in ((False, "all"), (True, "own")):
        def ordered(summary: Summary | None) -> Any:  # courses in no particular order either way
            return summary and (summary.learner_count, sorted(summary.courses, key=lambda c: c.course_id))

        summaries = [ordered(await ProgressLoaders(store).rolled_up_summary(g, consent_matters)) for g in group_ids]
        apart = MembershipLoaders(store, UserLoaders(store), GroupLoaders(store))
        counts = sorted(await apart._count_rows(group_ids, nested, everyone, admitted))
        loaders = Loaders(store)
        reads = TreeReads(children=True, member_counts=True, summary=True, consent_matters=consent_matters)
        await asyncio.gather(*(loaders.groups.load_with_tree(g, reads) for g in group_ids))
        before = database.counter.count
        assert [ordered(await loaders.progress.rolled_up_summary(g, consent_matters)) for g in group_ids] == summaries, where
        assert sorted(await loaders.memberships._count_rows(group_ids, nested, everyone, admitted)) == counts, where
        if admitted == "all":
            assert database.counter.count == before, where


async def check_member_counts(store: Store, group_ids: list[int], where: str) -> None:
    """Each group's memberships per role over its subtree: member_rollup (as a site admin reads it) against the
    direct count; and a LEADER's read ("own") agrees with the direct count where no membership is consent-based
    and falls back to it where one is."""
    groups = GroupLoaders(store)
    members = MembershipLoaders(store, UserLoaders(store), groups)
    nested, everyone = MemberFilter(include_nested=True), lambda _u, _g: true()
    direct = sorted(await members._count_rows(group_ids, nested, everyone, None))
    assert sorted(await members._count_rows(group_ids, nested, everyone, "all")) == direct, where
    assert sorted(await members._count_rows(group_ids, nested, everyone, "own")) == direct, where
    r = MemberRollup.__table__.c  # type: ignore[attr-defined]
    consent = await store.all(
        text(
            "SELECT c.ancestor_id, m.role, count(m.access_request_id) FROM membership m JOIN group_closure c "
            "ON c.descendant_id = m.group_id WHERE m.ended_at IS NULL GROUP BY c.ancestor_id, m.role"
        )
    )
    rolled = {(g, role): n for g, role, n in await store.all(select(r.group_id, r.role, r.on_consent))}
    assert {(g, role): n for g, role, n in consent} == rolled, f"consent-based counts after {where}"


async def rollup_rows(conn: Any) -> list[list[tuple[Any, ...]]]:
    out = []
    for model in (LearnerRollup, GroupRollup, CourseRollup, MemberRollup):
        table = model.__table__  # type: ignore[attr-defined]
        out.append(sorted(tuple(r) for r in (await conn.execute(select(table))).all()))
    return out


async def check_rebuild(database: Database) -> None:
    """The maintained tables equal a rebuild, row for row (no row of zeros left behind)."""
    async with database.engine.connect() as conn:
        trans = await conn.begin()
        maintained = await rollup_rows(conn)
        await rollup.rebuild(conn)
        rebuilt = await rollup_rows(conn)
        await trans.rollback()
    assert maintained == rebuilt


# (parent index per group, per learner: (group indexes, (course index, steps completed) pairs), writes)
Program = tuple[list[int], list[tuple[list[int], list[tuple[int, int]]]], list[tuple[str, int, int, int]]]


@st.composite
def programs(draw: Any) -> Program:
    parents = draw(st.lists(st.integers(0, 99), min_size=3, max_size=7))  # mostly nested: see run()
    learners = draw(st.lists(
        st.tuples(
            st.lists(st.integers(0, 7), max_size=2, unique=True),
            st.lists(st.tuples(st.integers(0, 1), st.integers(0, 2)), max_size=2, unique_by=lambda t: t[0]),
        ),
        min_size=2, max_size=5,
    ))
    ops = draw(st.lists(
        st.tuples(st.sampled_from(OPS), st.integers(0, 99), st.integers(0, 99), st.integers(0, 99)),
        min_size=4, max_size=14,
    ))
    return parents, learners, ops


def test_rollup_equals_direct_aggregate(engine: str) -> None:
    """Sync on purpose: Hypothesis drives the examples, each run on this test's own event loop."""
    loop = asyncio.new_event_loop()
    config = Settings(database_url=engine)
    database = Database(config)
    app = create_app(config, database)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rollup")
    site = Site(database, config, client, app)
    seen = {"examples": 0, "writes": 0, "refused": 0}

    async def gql(query: str, **variables: Any) -> dict[str, Any]:
        seen["writes"] += 1
        body = await site.gql(query, variables, token=site.tokens[0])
        if body.get("errors"):  # a cycle, a duplicate, progress on a course not enrolled in: fine, nothing changed
            seen["refused"] += 1
        return body

    async def ids(query: str) -> list[int]:
        async with database.session() as session:
            return [r[0] for r in (await session.execute(text(query))).all()]

    async def sql(statement: str, **params: Any) -> None:
        async with database.transaction() as session:
            await session.execute(text(statement), params)

    async def run(program: Program) -> None:
        parents, learners, ops = program
        await reset(database)
        site.tokens.clear()
        admin = await site.user("Admin", kind="STAFF", roles="ADMIN")
        site.tokens[0] = await site.token(admin)
        groups: list[str] = []
        for n, parent in enumerate(parents):  # under an earlier group, or (1 in 8) a root
            under = groups[parent % n] if n and parent % 8 else None
            made = await gql(CREATE_GROUP, i={"name": f"G{n}", "parentId": under})
            groups.append(made["data"]["createGroup"]["id"])
        maths, maths_steps = await course(site, "Maths", 2)
        art, art_steps = await course(site, "Art", 1)
        catalogue = ((maths, maths_steps), (art, art_steps))
        # a first state written through the API: each learner in 0-2 groups, enrolled with some steps done
        placed: dict[int, list[str]] = {}
        enrolled: dict[int, list[str]] = {}
        events = []
        for n, (places, enrollments) in enumerate(learners):
            learner = gid("User", await site.user(f"L{n}"))
            for k in places:
                placed.setdefault(k % len(groups), []).append(learner)
            for c, done in enrollments:
                course_row, steps = catalogue[c]
                enrolled.setdefault(course_row.id, []).append(learner)  # type: ignore[arg-type]
                events += [{"userId": learner, "kind": "COMPLETED", "stepId": gid("Step", st)} for st in steps[:done]]
        for k, users in placed.items():
            await gql(ADD, g=groups[k], u=users, r="MEMBER")
        for course_id, users in enrolled.items():
            await gql(ENROLL, u=users, c=gid("Course", course_id))
        if events:
            await gql(RECORD, e=events)
        learner_ids = await ids("SELECT id FROM \"user\" WHERE kind = 'LEARNER' ORDER BY id")
        async with database.session() as session:
            subject = await session.get(User, learner_ids[0])
        consent = await granted(site, admin, subject)  # consent-based memberships point at it (op "consent")
        await sql(  # and some from the start, so that re-nesting and deleting groups move them
            "UPDATE membership SET access_request_id = :r WHERE id % 2 = 1", r=consent
        )
        await check_every_group(database, "the first state")
        for step, (op, a, b, c) in enumerate(ops):
            group_ids = await ids("SELECT id FROM \"group\" ORDER BY id")
            users = await ids("SELECT id FROM \"user\" WHERE kind = 'LEARNER' ORDER BY id")
            memberships = await ids("SELECT id FROM membership ORDER BY id")
            steps = await ids("SELECT id FROM step ORDER BY id")
            courses = await ids("SELECT id FROM course ORDER BY id")

            def pick(items: list[int], k: int) -> int | None:
                return items[k % len(items)] if items else None

            g, u, m, s = pick(group_ids, a), pick(users, b), pick(memberships, b), pick(steps, c)
            if u is not None:  # mostly a step of a course the learner is enrolled in
                theirs = await ids(
                    f"SELECT s.id FROM step s JOIN enrollment e ON e.course_id = s.course_id WHERE e.user_id = {u} ORDER BY s.id"
                )
                s = pick(theirs, c) if theirs and c % 5 else s
            if op == "add" and g and u:
                await gql(ADD, g=gid("Group", g), u=[gid("User", u)], r=ROLES[c % len(ROLES)])
            elif op == "remove" and m:
                await gql(REMOVE, m=[gid("Membership", m)], a=c % 2 == 0)
            elif op == "role" and m:
                await gql(ROLE, m=gid("Membership", m), r=ROLES[c % len(ROLES)])
            elif op == "move" and g:
                target = pick(group_ids, a + 1 + c % max(1, len(group_ids) - 1))  # another group
                change = {"makeRoot": True} if c % 4 == 0 or target is None else {"parentId": gid("Group", target)}
                await gql(UPDATE_GROUP, id=gid("Group", g), i=change)
            elif op == "delete_group" and g and c % 2 == 0:
                await gql(DELETE_GROUP, id=gid("Group", g))
            elif op == "add_group":
                parent = gid("Group", g) if g and c % 3 else None
                await gql(CREATE_GROUP, i={"name": f"N{step}", "parentId": parent})
            elif op == "enroll" and u:
                await gql(ENROLL, u=[gid("User", u)], c=gid("Course", pick(courses, c) or maths.id))
            elif op in ("complete", "view") and u and s:
                kind = "COMPLETED" if op == "complete" else "VIEWED"
                await gql(RECORD, e=[{"userId": gid("User", u), "kind": kind, "stepId": gid("Step", s)}])
            elif op == "delete_user" and u and c % 3 == 0:
                await gql(DELETE_USERS, u=[gid("User", u)])
            elif op == "delete_step" and s and c % 3 == 0:  # the platform's own writes, straight in the tables
                await sql("DELETE FROM step WHERE id = :s", s=s)
            elif op == "unenroll" and u:
                await sql("DELETE FROM enrollment WHERE user_id = :u AND course_id = :c", u=u, c=pick(courses, c))
            elif op == "undo_step" and u:
                await sql("UPDATE step_progress SET completed_at = NULL WHERE user_id = :u AND step_id = :s", u=u, s=s)
            elif op == "consent" and m:  # given, or taken back (it goes with its subject too: delete_user)
                await sql(
                    "UPDATE membership SET access_request_id = CASE WHEN access_request_id IS NULL THEN "
                    "(SELECT id FROM access_request WHERE id = :r) END WHERE id = :m", r=consent, m=m,
                )
            else:
                continue
            await check_every_group(database, f"{op} {(a, b, c)} (write {step})")
        await check_rebuild(database)

    @settings(
        max_examples=EXAMPLES_PER_ENGINE, deadline=None, database=None, derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure prints its whole program, quickly
    )
    @given(programs())
    @example(program=(  # a consent-based membership in a group re-nested to the top, back under another, deleted
        [1, 1, 1], [([2], []), ([1], [])],
        [("consent", 0, 0, 0), ("move", 2, 0, 4), ("move", 2, 0, 1), ("delete_group", 1, 0, 0)],
    ))
    def holds(program: Program) -> None:
        loop.run_until_complete(run(program))
        seen["examples"] += 1

    try:
        holds()
    finally:
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(database.dispose())
        loop.close()
    print(f"\nrollup on {engine.split(':')[0]}: {seen['examples']} examples, {seen['writes']} writes, {seen['refused']} refused")
    assert seen["examples"] >= EXAMPLES_PER_ENGINE
    assert seen["refused"] < seen["writes"] / 2


# --- statements and the denial side -----------------------------------------------------------------------


async def tree(site: Site, levels: int, fanout: int) -> tuple[Group, list[Group]]:
    root = await site.group("Root")
    frontier, everything = [root], [root]
    for _ in range(levels):
        frontier = [await site.group("G", parent) for parent in frontier for _ in range(fanout)]
        everything.extend(frontier)
    return root, everything


async def test_root_summary_costs_constant_statements(site: Site) -> None:
    """The root's nested summary is one statement (the rollup) for a site admin and for a LEADER of the root,
    whether the tree holds 3 groups or 40, 2 learners or 60."""
    admin = await site.user("Adm", kind="STAFF", roles="ADMIN")
    leader = await site.user("Lea", kind="STAFF")
    maths, steps = await course(site, "Maths", 4)
    counts: dict[tuple[str, int], int] = {}
    for levels, fanout, per_leaf in ((1, 2, 1), (3, 3, 2)):
        root, groups = await tree(site, levels, fanout)
        await site.member(leader, root, "LEADER")
        for group in groups[-fanout**levels:]:
            for _ in range(per_leaf):
                learner = await site.user()
                await site.member(learner, group)
                await enroll(site, learner, maths)
                await progress(site, learner, steps, viewed=2, completed=1)
        for who in (admin, leader):
            await site.token(who)
            for _ in range(2):  # the second time the query document is cached: count only SQL
                with site.statements() as counted:
                    body = await site.gql(SUMMARY, {"id": gid("Group", root)}, as_user=who)
            assert body["data"]["group"]["progressSummary"]["learnerCount"] == fanout**levels * per_leaf
            counts[(who.first_name, len(groups))] = counted.count
            read = [s for s in counted.statements if "course_rollup" in s or "step_progress" in s]
            assert len(read) == 1 and "course_rollup" in read[0], read  # the rollup, not the direct aggregate
    small = {k: v for k, v in counts.items() if k[1] == 3}
    large = {k: v for k, v in counts.items() if k[1] > 3}
    assert sorted(small.values()) == sorted(large.values()), counts


async def test_mentor_with_consent_based_members_gets_the_filtered_summary(site: Site) -> None:
    """A consent-based member counts for whom the consent was given, not for a MENTOR of the group: the
    mentor's summary leaves that learner out (the rollup, which counts everyone, is not used), a site admin's
    counts them; after the membership is ended both read the rollup and agree."""
    from tests.test_aggregates import granted

    admin = await site.user("Adm", kind="STAFF", roles="ADMIN")
    leader = await site.user("Lea", kind="STAFF")
    mentor = await site.user("Men", kind="STAFF")
    root = await site.group("School")
    klass = await site.group("Class", root)
    await site.member(leader, root, "LEADER")
    await site.member(mentor, root, "MENTOR")
    own, consenting = await site.user("Own"), await site.user("Con")
    await site.member(own, klass)
    membership = await site.member(consenting, klass, access_request_id=await granted(site, leader, consenting))
    maths, steps = await course(site, "Maths", 2)
    for learner, done in ((own, 1), (consenting, 2)):
        await enroll(site, learner, maths)
        await progress(site, learner, steps, viewed=done, completed=done)

    async def summary(who: Any) -> dict[str, Any]:
        body = await site.gql(SUMMARY, {"id": gid("Group", root)}, as_user=who)
        return body["data"]["group"]["progressSummary"]

    everyone = {"learnerCount": 2, "courses": [
        {"course": {"name": "Maths"}, "enrolledCount": 2, "completedCount": 0, "averagePercentCompleted": 75.0}]}
    assert await summary(admin) == everyone
    assert await summary(leader) == everyone  # the consent was given to the leader
    assert await summary(mentor) == {"learnerCount": 1, "courses": [
        {"course": {"name": "Maths"}, "enrolledCount": 1, "completedCount": 0, "averagePercentCompleted": 50.0}]}
    async with site.database.transaction() as session:
        await session.execute(text("UPDATE membership SET ended_at = CURRENT_TIMESTAMP WHERE id = :m"), {"m": membership.id})
    alone = {"learnerCount": 1, "courses": [
        {"course": {"name": "Maths"}, "enrolledCount": 1, "completedCount": 0, "averagePercentCompleted": 50.0}]}
    for who in (admin, leader, mentor):
        assert await summary(who) == alone
    assert await site.count(Enrollment) == 2


async def test_every_trigger_is_installed(engine: str) -> None:
    """SQLite's batch migrations copy a table and drop its triggers: after every migration, all are there."""
    database = Database(Settings(database_url=engine))
    try:
        async with database.engine.connect() as conn:
            assert await rollup.installed(conn) == set(rollup.TRIGGER_NAMES)
    finally:
        await database.dispose()


async def rollup_exact(site: Site) -> None:
    async with site.database.engine.connect() as conn:
        trans = await conn.begin()
        assert await rollup.installed(conn) == set(rollup.TRIGGER_NAMES)
        assert await rollup.rebuild_and_compare(conn) == {t: 0 for t in rollup.TABLES}
        await trans.rollback()
    await check_every_group(site.database, "a sync")


async def test_rostering_keeps_the_rollup_exact(site: Site, monkeypatch: Any) -> None:
    """A sync writes through the triggers, or (from ROLLUP_REBUILD_FROM memberships) with them paused and one
    rebuild at the end: either way the rollup is exact after it, and the triggers are back."""
    from app.services import rostering
    from app.store.models import User
    from tests.oneroster import bundle, school_district
    from tests.test_rostering import run

    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    monkeypatch.setattr(rostering, "ROLLUP_REBUILD_FROM", 10**9)
    district = school_district()
    await run(site, bundle(district), admin)
    maths, steps = await course(site, "Maths", 3)
    async with site.database.session() as session:
        learners = list(await session.scalars(select(User).where(User.kind == "LEARNER")))
    for n, learner in enumerate(learners):
        await enroll(site, learner, maths)
        await progress(site, learner, steps, viewed=n % 4, completed=n % 3)
    await rollup_exact(site)
    monkeypatch.setattr(rostering, "ROLLUP_REBUILD_FROM", 0)  # the bulk path: s1 and s5 leave their classes
    fewer = school_district()
    fewer.enrollments = [e for e in fewer.enrollments if e[3] not in ("s1", "s5")]
    await run(site, bundle(fewer), admin)
    await rollup_exact(site)
    monkeypatch.setattr(rostering, "ROLLUP_REBUILD_FROM", 10**9)  # and back, through the triggers
    await run(site, bundle(district), admin)
    await rollup_exact(site)


MEMBER_COUNT = """query($id: ID!) { group(id: $id) { memberCount(includeNested: true)
  members(includeNested: true, roles: [MEMBER], first: 5) { totalCount } children { memberCount(includeNested: true) } } }"""


async def test_member_counts_read_the_rollup_only_where_every_membership_is_admitted(site: Site) -> None:
    """memberCount(includeNested) and the members' totalCount: a site admin's come from member_rollup (no count
    over the memberships); a MENTOR's, in a subtree with a consent-based member the mentor may not see, are
    counted over the rows the mentor sees; once that membership is ended every caller reads the rollup."""
    from tests.test_aggregates import granted

    admin = await site.user("Adm", kind="STAFF", roles="ADMIN")
    leader = await site.user("Lea", kind="STAFF")
    mentor = await site.user("Men", kind="STAFF")
    root = await site.group("School")
    klass = await site.group("Class", root)
    await site.group("Empty", root)  # no member: no row of the rollup, a count of 0
    await site.member(leader, root, "LEADER")
    await site.member(mentor, root, "MENTOR")
    own, consenting = await site.user("Own"), await site.user("Con")
    await site.member(own, klass)
    membership = await site.member(consenting, klass, access_request_id=await granted(site, leader, consenting))

    async def counts(who: Any) -> tuple[Any, list[str]]:
        await site.token(who)
        with site.statements() as counted:
            body = await site.gql(MEMBER_COUNT, {"id": gid("Group", root)}, as_user=who)
        group = body["data"]["group"]
        answer = (group["memberCount"], group["members"]["totalCount"], [c["memberCount"] for c in group["children"]])
        return answer, [s for s in counted.statements if "count(" in s or "member_rollup" in s]

    def rolled_up(statements: list[str]) -> bool:
        return len(statements) == 1 and "member_rollup" in statements[0]

    for who, expected, from_rollup in ((admin, (4, 2, [2, 0]), True), (leader, (4, 2, [2, 0]), False),
                                       (mentor, (3, 1, [1, 0]), False)):
        answer, statements = await counts(who)
        assert answer == expected and rolled_up(statements) == from_rollup, (who.first_name, answer, statements)
    async with site.database.transaction() as session:
        await session.execute(text("UPDATE membership SET ended_at = CURRENT_TIMESTAMP WHERE id = :m"), {"m": membership.id})
    for who in (admin, leader, mentor):
        answer, statements = await counts(who)
        assert answer == (3, 1, [1, 0]) and rolled_up(statements), (who.first_name, answer, statements)
