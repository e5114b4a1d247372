"""The rolled-up progress summary: per (group, course) counts over the distinct learners of the group's subtree,
kept exact by database triggers in the transaction of every write that changes them.

Three tables (no foreign keys: the triggers alone write them, and a deleted group, user or course brings its
rows to zero, which deletes them; a row of zeros never stays, so the maintained tables equal a rebuild row
for row):

- `learner_rollup(group_id, user_id, memberships)`: for each group and each user holding at least one
  MEMBER membership, not ended, in the group or below it, how many such memberships. A learner counts once in
  a subtree however many of its groups they belong to: adding or ending one of several memberships moves the
  multiplicity, and only its 0 -> 1 and 1 -> 0 transitions (the row's insert and delete) add or take away the
  learner's enrollments and completed steps.
- `group_rollup(group_id, learners)`: the number of such learners (rows of learner_rollup) of each group.
- `course_rollup(group_id, course_id, enrolled, completed, steps_completed)`: over those learners, the
  enrollments in the course, the completed ones, and the step_progress rows of the course that are completed
  (by any of them, enrolled or not, as the direct aggregate counts them). The number of steps of a course is
  not rolled up: adding or removing a step changes it for every group, so the read divides by it.

Why triggers rather than calls in the writers: the rollup depends on membership, group_closure, enrollment
and step_progress rows, which more than twenty code paths write (mutations, the CSV importer, rostering,
progress ingestion, reviews, consent decisions, seeds) and foreign keys delete by cascade (a user, a group, a
course, a step, an access request). A trigger sees all of them, in the same transaction, including the ones
added later. Each trigger applies the change of one row as a count (learner_rollup is the join of memberships
and closure rows, counted), reading only other tables than the one whose row changed, so the result does not
depend on the order in which rows, statements or cascades arrive (PostgreSQL fires row triggers at the end
of each statement, SQLite after each row). On PostgreSQL the triggers that read a learner's rows
(enrollment, step_progress, and a learner entering or leaving a subtree) first take a transaction lock on
that learner, so two transactions changing one learner's memberships and progress at once cannot each miss
the other's uncommitted rows.

Write cost: a completed step updates one course_rollup row per group above the learner (the depth of the
tree; the root's rows are shared by every writer and held until commit). A membership added updates one
learner_rollup row per group above it and, for each group where the learner is new, one row per course of
theirs. Re-nesting or deleting a group does that for each learner of the subtree and each group above it.

A fourth table, `member_rollup(group_id, role, memberships, on_consent)`, counts the memberships (not ended)
of each role in a group's subtree, and how many of them are consent-based: `memberCount(includeNested)` and
`members(includeNested).totalCount` read it (dataloaders.memberships) where the caller's row filter admits
every membership of the subtree. It is the join of membership and group_closure rows, counted, so its
triggers are those of learner_rollup without the learners: a membership added, ended, given another role or
moved adds to or takes from the groups above it, a closure row added or deleted (re-nesting, a group created
or deleted) adds or takes the memberships of its descendant group. On PostgreSQL both lock the membership's
group first (`pg_advisory_xact_lock(GROUP_LOCK, group)`), so that a membership added while its group is
re-nested is counted exactly once.

Last, the course cards' counters on `enrollment` (steps viewed and completed, points earned and available;
CARD_TRIGGERS below): a dashboard reads a learner's cards from their enrollments alone instead of aggregating
their step_progress rows (~11 per enrollment at the bench) at every read.

`rebuild` recomputes all four tables and the counters from scratch (the migration, `groupgraph rollup --rebuild`, and the bulk
seeders, which write with the triggers paused). SQLite's batch migrations rebuild a table by copying it,
which drops its triggers: a migration that alters membership, group_closure, enrollment or step_progress on
SQLite must call `install` again (tests/test_migrations.py checks they are all there).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import text

LEARNER_OF = "{r}.role = 'MEMBER' AND {r}.ended_at IS NULL"
# the tables a rebuild recomputes (enrollment: its cards' counters, CARD_COUNTS)
TABLES = ("learner_rollup", "group_rollup", "course_rollup", "member_rollup", "enrollment")
WATCHED = ("membership", "group_closure", "learner_rollup", "enrollment", "step_progress")
# PostgreSQL: pg_advisory_xact_lock(ROLLUP_LOCK, user id) serializes the rollup's reads of one learner's rows
ROLLUP_LOCK = 5
# PostgreSQL: pg_advisory_xact_lock(GROUP_LOCK, group id) serializes member_rollup's reads of one group's
# memberships (a closure row added) with writes of them
GROUP_LOCK = 7
PAUSE_SETTING = "groupgraph.rollup"


def _learner_add(r: str) -> str:
    return (
        "INSERT INTO learner_rollup (group_id, user_id, memberships) "
        f"SELECT ancestor_id, {r}.user_id, 1 FROM group_closure WHERE descendant_id = {r}.group_id "
        f"AND {LEARNER_OF.format(r=r)} "
        "ON CONFLICT (group_id, user_id) DO UPDATE SET memberships = learner_rollup.memberships + 1"
    )


def _learner_sub(r: str) -> list[str]:
    return [
        "UPDATE learner_rollup SET memberships = memberships - 1 "
        f"WHERE user_id = {r}.user_id AND {LEARNER_OF.format(r=r)} "
        f"AND group_id IN (SELECT ancestor_id FROM group_closure WHERE descendant_id = {r}.group_id)",
        f"DELETE FROM learner_rollup WHERE user_id = {r}.user_id AND memberships <= 0",
    ]


_GROUP_LEARNERS = "SELECT user_id FROM membership WHERE group_id = {r}.descendant_id AND role = 'MEMBER' AND ended_at IS NULL"


def _closure_add(r: str) -> str:
    return (
        "INSERT INTO learner_rollup (group_id, user_id, memberships) "
        f"SELECT {r}.ancestor_id, user_id, 1 FROM membership WHERE group_id = {r}.descendant_id "
        "AND role = 'MEMBER' AND ended_at IS NULL "
        "ON CONFLICT (group_id, user_id) DO UPDATE SET memberships = learner_rollup.memberships + 1"
    )


def _closure_sub(r: str) -> list[str]:
    learners = _GROUP_LEARNERS.format(r=r)
    return [
        f"UPDATE learner_rollup SET memberships = memberships - 1 WHERE group_id = {r}.ancestor_id AND user_id IN ({learners})",
        f"DELETE FROM learner_rollup WHERE group_id = {r}.ancestor_id AND memberships <= 0 AND user_id IN ({learners})",
    ]


def _contribution(user: str) -> str:
    """A learner's rows per course: each enrollment (and whether completed), each completed step."""
    return (
        "SELECT course_id, 1 AS enrolled, CASE WHEN completed_at IS NULL THEN 0 ELSE 1 END AS completed, "
        f"0 AS steps_completed FROM enrollment WHERE user_id = {user} "
        "UNION ALL "
        f"SELECT course_id, 0, 0, 1 FROM step_progress WHERE user_id = {user} AND completed_at IS NOT NULL"
    )


_ADD_COUNTS = (
    "ON CONFLICT (group_id, course_id) DO UPDATE SET enrolled = course_rollup.enrolled + excluded.enrolled, "
    "completed = course_rollup.completed + excluded.completed, "
    "steps_completed = course_rollup.steps_completed + excluded.steps_completed"
)
_ZERO = "enrolled = 0 AND completed = 0 AND steps_completed = 0"


def _learner_enters(r: str) -> list[str]:
    return [
        f"INSERT INTO group_rollup (group_id, learners) VALUES ({r}.group_id, 1) "
        "ON CONFLICT (group_id) DO UPDATE SET learners = group_rollup.learners + 1",
        "INSERT INTO course_rollup (group_id, course_id, enrolled, completed, steps_completed) "
        f"SELECT {r}.group_id, course_id, sum(enrolled), sum(completed), sum(steps_completed) "
        f"FROM ({_contribution(f'{r}.user_id')}) AS contribution WHERE true GROUP BY course_id {_ADD_COUNTS}",
    ]


def _learner_leaves(r: str) -> list[str]:
    u = f"{r}.user_id"
    courses = (
        f"SELECT course_id FROM enrollment WHERE user_id = {u} "
        f"UNION SELECT course_id FROM step_progress WHERE user_id = {u} AND completed_at IS NOT NULL"
    )
    return [
        f"UPDATE group_rollup SET learners = learners - 1 WHERE group_id = {r}.group_id",
        f"DELETE FROM group_rollup WHERE group_id = {r}.group_id AND learners <= 0",
        "UPDATE course_rollup SET "
        f"enrolled = enrolled - (SELECT count(*) FROM enrollment e WHERE e.user_id = {u} "
        "AND e.course_id = course_rollup.course_id), "
        f"completed = completed - (SELECT count(e.completed_at) FROM enrollment e WHERE e.user_id = {u} "
        "AND e.course_id = course_rollup.course_id), "
        f"steps_completed = steps_completed - (SELECT count(*) FROM step_progress sp WHERE sp.user_id = {u} "
        "AND sp.course_id = course_rollup.course_id AND sp.completed_at IS NOT NULL) "
        f"WHERE group_id = {r}.group_id AND course_id IN ({courses})",
        f"DELETE FROM course_rollup WHERE group_id = {r}.group_id AND {_ZERO} AND course_id IN ({courses})",
    ]


def _counts_add(r: str, enrolled: str, completed: str, steps: str, guard: str = "") -> str:
    return (
        "INSERT INTO course_rollup (group_id, course_id, enrolled, completed, steps_completed) "
        f"SELECT group_id, {r}.course_id, {enrolled}, {completed}, {steps} FROM learner_rollup "
        f"WHERE user_id = {r}.user_id{guard} {_ADD_COUNTS}"
    )


def _counts_sub(r: str, sets: str, guard: str = "") -> list[str]:
    above = f"group_id IN (SELECT group_id FROM learner_rollup WHERE user_id = {r}.user_id)"
    return [
        f"UPDATE course_rollup SET {sets} WHERE course_id = {r}.course_id{guard} AND {above}",
        f"DELETE FROM course_rollup WHERE course_id = {r}.course_id AND {_ZERO} AND {above}",
    ]


def _done(r: str) -> str:
    return f"CASE WHEN {r}.completed_at IS NULL THEN 0 ELSE 1 END"


def _enrollment_add(r: str) -> list[str]:
    return [_counts_add(r, "1", _done(r), "0")]


def _enrollment_sub(r: str) -> list[str]:
    return _counts_sub(r, f"enrolled = enrolled - 1, completed = completed - {_done(r)}")


def _step_add(r: str) -> list[str]:
    return [_counts_add(r, "0", "0", "1", f" AND {r}.completed_at IS NOT NULL")]


def _step_sub(r: str) -> list[str]:
    return _counts_sub(r, "steps_completed = steps_completed - 1", f" AND {r}.completed_at IS NOT NULL")


def _create_trigger(name: str, timing: str, event: str, columns: tuple[str, ...], table: str, when: str) -> str:
    """The head of a row trigger's CREATE TRIGGER (its body or EXECUTE FUNCTION follows)."""
    of = f" OF {', '.join(columns)}" if columns else ""
    condition = f" WHEN ({when})" if when else ""
    return f"CREATE TRIGGER {name} {timing} {event}{of} ON {table} FOR EACH ROW{condition}"


class Trigger:
    """One AFTER ... FOR EACH ROW trigger: its statements, the columns an UPDATE must touch, a WHEN condition,
    and (PostgreSQL) the learners to lock first."""

    def __init__(
        self, table: str, event: str, statements: list[str], columns: tuple[str, ...] = (), when: str = "",
        lock: tuple[str, ...] = (), prefix: str = "rollup", lock_key: int = ROLLUP_LOCK,
    ) -> None:
        self.table, self.event, self.statements = table, event, statements
        self.columns, self.when, self.lock = columns, when, lock
        self.prefix, self.lock_key = prefix, lock_key

    @property
    def name(self) -> str:
        return f"{self.prefix}_{self.table}_{self.event.lower()}"

    @property
    def before_on_postgres(self) -> bool:
        """PostgreSQL queues the row triggers of cascaded deletes (a user's memberships, enrollments and steps go
        with it) until the whole cascade has run, so an AFTER trigger of one would read the others already gone:
        deletes of watched rows are counted BEFORE, row by row as they happen (as SQLite fires AFTER)."""
        return self.event == "DELETE" and self.table != "learner_rollup"

    def _head(self, timing: str = "AFTER") -> str:
        return _create_trigger(self.name, timing, self.event, self.columns, self.table, self.when)

    def sqlite(self) -> list[str]:
        body = "".join(f"  {s};\n" for s in self.statements)
        return [f"{self._head()}\nBEGIN\n{body}END"]

    def postgres(self) -> list[str]:
        locks = "".join(f"  PERFORM pg_advisory_xact_lock({self.lock_key}, {u});\n" for u in self.lock)
        body = "".join(f"  {s};\n" for s in self.statements)
        before = self.before_on_postgres
        result = "OLD" if before else "NULL"  # a BEFORE DELETE trigger returning NULL would cancel the delete
        function = (
            f"CREATE OR REPLACE FUNCTION {self.name}() RETURNS trigger LANGUAGE plpgsql AS $rollup$\n"
            f"BEGIN\n  IF current_setting('{PAUSE_SETTING}', true) = 'paused' THEN RETURN {result}; END IF;\n"
            f"{locks}{body}  RETURN {result};\nEND\n$rollup$"
        )
        return [function, f"{self._head('BEFORE' if before else 'AFTER')} EXECUTE FUNCTION {self.name}()"]


_MEMBER_CHANGED = (
    f"({LEARNER_OF.format(r='OLD')}) <> ({LEARNER_OF.format(r='NEW')}) "
    "OR OLD.user_id <> NEW.user_id OR OLD.group_id <> NEW.group_id"
)
_PROGRESS_CHANGED = (
    "(OLD.completed_at IS NULL) <> (NEW.completed_at IS NULL) OR OLD.user_id <> NEW.user_id OR OLD.course_id <> NEW.course_id"
)

def _consent(r: str) -> str:
    return f"CASE WHEN {r}.access_request_id IS NULL THEN 0 ELSE 1 END"


_ADD_MEMBERS = (
    "ON CONFLICT (group_id, role) DO UPDATE SET memberships = member_rollup.memberships + excluded.memberships, "
    "on_consent = member_rollup.on_consent + excluded.on_consent"
)


def _member_add(r: str) -> str:
    return (
        "INSERT INTO member_rollup (group_id, role, memberships, on_consent) "
        f"SELECT ancestor_id, {r}.role, 1, {_consent(r)} FROM group_closure WHERE descendant_id = {r}.group_id "
        f"AND {r}.ended_at IS NULL {_ADD_MEMBERS}"
    )


def _member_sub(r: str) -> list[str]:
    above = f"group_id IN (SELECT ancestor_id FROM group_closure WHERE descendant_id = {r}.group_id)"
    return [
        f"UPDATE member_rollup SET memberships = memberships - 1, on_consent = on_consent - {_consent(r)} "
        f"WHERE role = {r}.role AND {r}.ended_at IS NULL AND {above}",
        f"DELETE FROM member_rollup WHERE role = {r}.role AND memberships <= 0 AND {above}",
    ]


def _member_closure_add(r: str) -> str:
    return (
        "INSERT INTO member_rollup (group_id, role, memberships, on_consent) "
        f"SELECT {r}.ancestor_id, role, count(*), count(access_request_id) FROM membership "
        f"WHERE group_id = {r}.descendant_id AND ended_at IS NULL GROUP BY role {_ADD_MEMBERS}"
    )


def _member_closure_sub(r: str) -> list[str]:
    of_role = f"FROM membership m WHERE m.group_id = {r}.descendant_id AND m.role = member_rollup.role AND m.ended_at IS NULL"
    return [
        f"UPDATE member_rollup SET memberships = memberships - (SELECT count(*) {of_role}), "
        f"on_consent = on_consent - (SELECT count(m.access_request_id) {of_role}) WHERE group_id = {r}.ancestor_id",
        f"DELETE FROM member_rollup WHERE group_id = {r}.ancestor_id AND memberships <= 0",
    ]


_MEMBERSHIP_COUNTED = (
    "(OLD.ended_at IS NULL) <> (NEW.ended_at IS NULL) OR OLD.role <> NEW.role OR OLD.group_id <> NEW.group_id "
    "OR (OLD.access_request_id IS NULL) <> (NEW.access_request_id IS NULL)"
)
_CLOSURE_MOVED = "OLD.ancestor_id <> NEW.ancestor_id OR OLD.descendant_id <> NEW.descendant_id"


def _members(table: str, event: str, statements: list[str], lock: tuple[str, ...], **more: Any) -> Trigger:
    return Trigger(table, event, statements, lock=lock, prefix="members", lock_key=GROUP_LOCK, **more)


MEMBER_TRIGGERS = (
    _members("membership", "INSERT", [_member_add("NEW")], ("NEW.group_id",)),
    _members("membership", "DELETE", _member_sub("OLD"), ("OLD.group_id",)),
    _members("membership", "UPDATE", [_member_add("NEW"), *_member_sub("OLD")], ("NEW.group_id", "OLD.group_id"),
             columns=("group_id", "role", "ended_at", "access_request_id"), when=_MEMBERSHIP_COUNTED),
    _members("group_closure", "INSERT", [_member_closure_add("NEW")], ("NEW.descendant_id",)),
    _members("group_closure", "DELETE", _member_closure_sub("OLD"), ("OLD.descendant_id",)),
    _members("group_closure", "UPDATE", [_member_closure_add("NEW"), *_member_closure_sub("OLD")],
             ("NEW.descendant_id", "OLD.descendant_id"), columns=("ancestor_id", "descendant_id"), when=_CLOSURE_MOVED),
)

PROGRESS_TRIGGERS = (
    Trigger("membership", "INSERT", [_learner_add("NEW")]),
    Trigger("membership", "DELETE", _learner_sub("OLD")),
    Trigger("membership", "UPDATE", [_learner_add("NEW"), *_learner_sub("OLD")],
            ("user_id", "group_id", "role", "ended_at"), _MEMBER_CHANGED),
    Trigger("group_closure", "INSERT", [_closure_add("NEW")]),
    Trigger("group_closure", "DELETE", _closure_sub("OLD")),
    Trigger("group_closure", "UPDATE", [_closure_add("NEW"), *_closure_sub("OLD")], ("ancestor_id", "descendant_id"),
            "OLD.ancestor_id <> NEW.ancestor_id OR OLD.descendant_id <> NEW.descendant_id"),
    Trigger("learner_rollup", "INSERT", _learner_enters("NEW"), lock=("NEW.user_id",)),
    Trigger("learner_rollup", "DELETE", _learner_leaves("OLD"), lock=("OLD.user_id",)),
    Trigger("enrollment", "INSERT", _enrollment_add("NEW"), lock=("NEW.user_id",)),
    Trigger("enrollment", "DELETE", _enrollment_sub("OLD"), lock=("OLD.user_id",)),
    Trigger("enrollment", "UPDATE", [*_enrollment_add("NEW"), *_enrollment_sub("OLD")],
            ("user_id", "course_id", "completed_at"), _PROGRESS_CHANGED, lock=("NEW.user_id", "OLD.user_id")),
    Trigger("step_progress", "INSERT", _step_add("NEW"), lock=("NEW.user_id",)),
    Trigger("step_progress", "DELETE", _step_sub("OLD"), lock=("OLD.user_id",)),
    Trigger("step_progress", "UPDATE", [*_step_add("NEW"), *_step_sub("OLD")],
            ("user_id", "course_id", "completed_at"), _PROGRESS_CHANGED, lock=("NEW.user_id", "OLD.user_id")),
)

# The course cards' counters on enrollment (steps_viewed, steps_completed, points_earned, points_available):
# over the step_progress rows of the enrollment's (user, course), the rows viewed, the rows completed, the sum of
# their points, and the max points of the steps of the rows given points (0 where a step has none). A progress
# row written adds or takes its share from its enrollment (none yet: nothing to do); an enrollment inserted or
# moved to another user or course counts the rows already there (a re-enrollment finds the old progress); a
# step whose max points change moves the enrollments that have points on it; a step deleted first deletes its
# progress rows itself, so that their triggers still find its max points (a cascade would run after the step
# is gone, on SQLite and PostgreSQL alike). PostgreSQL: the learner is locked as the rollup locks it, and a
# progress row given points reads its step's max points under a shared lock of the step
# (pg_advisory_xact_lock_shared(STEP_LOCK, step)) that a change of the max points takes exclusively before it
# moves the enrollments: the change waits for progress written with the old value to commit (and then moves
# it too), or the progress waits for the change to commit (and reads the new value). A lock in memory rather
# than the step row read FOR SHARE, which writes the row (and a multixact for concurrent learners).
STEP_LOCK = 11
CARD_COUNTS = ("steps_viewed", "steps_completed", "points_earned", "points_available")


def _card_shares(r: str, available: str) -> tuple[str, ...]:
    """What the progress row `r` adds to its enrollment's counters; `available`: its step's max points (0 when
    the row has no points)."""
    return (f"CASE WHEN {r}.viewed_at IS NULL THEN 0 ELSE 1 END", f"CASE WHEN {r}.completed_at IS NULL THEN 0 ELSE 1 END",
            f"coalesce({r}.points, 0)", available)


def _card_available_sqlite(r: str) -> str:
    return f"CASE WHEN {r}.points IS NULL THEN 0 ELSE coalesce((SELECT max_points FROM step WHERE id = {r}.step_id), 0) END"


def _of_enrollment(r: str) -> str:
    return f"user_id = {r}.user_id AND course_id = {r}.course_id"


def _card_update(new_available: str | None, old_available: str | None) -> str:
    """One UPDATE of the enrollment(s) of NEW (added) and OLD (taken away); None: that side is absent."""
    sets = []
    for i, column in enumerate(CARD_COUNTS):
        term = column
        if new_available is not None:
            add = _card_shares("NEW", new_available)[i]
            term += f" + {add}" if old_available is None else f" + CASE WHEN {_of_enrollment('NEW')} THEN {add} ELSE 0 END"
        if old_available is not None:
            sub = _card_shares("OLD", old_available)[i]
            term += f" - ({sub})" if new_available is None else f" - CASE WHEN {_of_enrollment('OLD')} THEN {sub} ELSE 0 END"
        sets.append(f"{column} = {term}")
    where = " OR ".join(f"({_of_enrollment(r)})" for r, a in (("NEW", new_available), ("OLD", old_available)) if a is not None)
    return f"UPDATE enrollment SET {', '.join(sets)} WHERE {where}"


def _card_counts_of(r: str) -> str:
    """PostgreSQL: the counters of the enrollment `r` from its progress rows, the steps given points locked
    first (see above)."""
    of = f"FROM step_progress sp WHERE sp.user_id = {r}.user_id AND sp.course_id = {r}.course_id"
    return (
        f"  PERFORM pg_advisory_xact_lock_shared({STEP_LOCK}, sp.step_id) {of} AND sp.points IS NOT NULL;\n"
        "  SELECT count(sp.viewed_at), count(sp.completed_at), coalesce(sum(sp.points), 0), "
        "coalesce(sum(CASE WHEN sp.points IS NOT NULL THEN (SELECT max_points FROM step WHERE step.id = sp.step_id) END), 0)"
        f"\n    INTO NEW.{', NEW.'.join(CARD_COUNTS)} {of};"
    )


_CARD_COUNTS_SQLITE = (
    "SELECT count(sp.viewed_at), count(sp.completed_at), coalesce(sum(sp.points), 0), "
    "coalesce(sum(CASE WHEN sp.points IS NOT NULL THEN s.max_points END), 0) "
    "FROM step_progress sp LEFT JOIN step s ON s.id = sp.step_id "
    "WHERE sp.user_id = enrollment.user_id AND sp.course_id = enrollment.course_id"
)
_CARD_PROGRESS_CHANGED = (
    "(OLD.viewed_at IS NULL) <> (NEW.viewed_at IS NULL) OR (OLD.completed_at IS NULL) <> (NEW.completed_at IS NULL) "
    "OR (OLD.points IS NULL) <> (NEW.points IS NULL) OR OLD.points <> NEW.points OR OLD.user_id <> NEW.user_id "
    "OR OLD.course_id <> NEW.course_id OR OLD.step_id <> NEW.step_id"
)
_CARD_ENROLLMENT_MOVED = "OLD.user_id <> NEW.user_id OR OLD.course_id <> NEW.course_id"
_MAX_POINTS_CHANGED = "(OLD.max_points IS NULL) <> (NEW.max_points IS NULL) OR OLD.max_points <> NEW.max_points"


class CardTrigger:
    """A trigger keeping the cards' counters: its own text per engine (PostgreSQL: a plpgsql function that does
    nothing while the rollup is paused; SQLite: the trigger's statements)."""

    def __init__(self, table: str, event: str, timing: str, sqlite: str, postgres: str, declare: str = "",
                 when: str = "", columns: tuple[str, ...] = (), postgres_timing: str = "") -> None:
        self.table, self.event, self.timing, self.when, self.columns = table, event, timing, when, columns
        self.sqlite_body, self.postgres_body, self.declare = sqlite, postgres, declare
        self.postgres_timing = postgres_timing or timing

    @property
    def name(self) -> str:
        return f"cards_{self.table}_{self.event.lower()}"

    def _head(self, timing: str) -> str:
        return _create_trigger(self.name, timing, self.event, self.columns, self.table, self.when)

    def sqlite(self) -> list[str]:
        return [f"{self._head(self.timing)}\nBEGIN\n  {self.sqlite_body};\nEND"]

    def postgres(self) -> list[str]:
        timing = self.postgres_timing
        result = "NULL" if timing == "AFTER" else "OLD" if self.event == "DELETE" else "NEW"
        declare = f"DECLARE\n{self.declare}" if self.declare else ""
        function = (
            f"CREATE OR REPLACE FUNCTION {self.name}() RETURNS trigger LANGUAGE plpgsql AS $cards$\n{declare}"
            f"BEGIN\n  IF current_setting('{PAUSE_SETTING}', true) = 'paused' THEN RETURN {result}; END IF;\n"
            f"{self.postgres_body}\n  RETURN {result};\nEND\n$cards$"
        )
        return [function, f"{self._head(timing)} EXECUTE FUNCTION {self.name}()"]


def _read_available(r: str, reuse: bool = False) -> str:
    """PostgreSQL: the max points of the step of the progress row `r` into {r}_available, when it has points;
    `reuse`: OLD's from NEW's when both have points on the same step."""
    read = (f"    PERFORM pg_advisory_xact_lock_shared({STEP_LOCK}, {r}.step_id);\n"
            f"    {r.lower()}_available := coalesce((SELECT max_points FROM step WHERE id = {r}.step_id), 0);\n")
    if reuse:
        read = (f"    IF OLD.step_id = NEW.step_id AND NEW.points IS NOT NULL THEN\n      old_available := new_available;\n"
                f"    ELSE\n  {read.replace(chr(10) + '    ', chr(10) + '      ')}    END IF;\n")
    return f"  IF {r}.points IS NOT NULL THEN\n{read}  END IF;\n"


def _lock(*users: str) -> str:
    return "".join(f"  PERFORM pg_advisory_xact_lock({ROLLUP_LOCK}, {u});\n" for u in users)


_AVAILABLE = "  {r}_available integer := 0;\n"
_ENROLLMENT_COUNTED = f"{_lock('NEW.user_id')}{_card_counts_of('NEW')}"
_ENROLLMENT_SQLITE = f"UPDATE enrollment SET ({', '.join(CARD_COUNTS)}) = ({_CARD_COUNTS_SQLITE}) WHERE id = NEW.id"

_MAX_POINTS_MOVED = (
    "UPDATE enrollment SET points_available = points_available + coalesce(NEW.max_points, 0) - coalesce(OLD.max_points, 0) "
    "WHERE (user_id, course_id) IN (SELECT user_id, course_id FROM step_progress WHERE step_id = NEW.id AND points IS NOT NULL)"
)
_STEP_PROGRESS_GOES = "DELETE FROM step_progress WHERE step_id = OLD.id"

CARD_TRIGGERS = (
    CardTrigger(
        "step_progress", "INSERT", "AFTER", _card_update(_card_available_sqlite("NEW"), None),
        f"{_lock('NEW.user_id')}{_read_available('NEW')}  {_card_update('new_available', None)};",
        declare=_AVAILABLE.format(r="new"),
    ),
    CardTrigger(
        "step_progress", "DELETE", "AFTER", _card_update(None, _card_available_sqlite("OLD")),
        f"{_lock('OLD.user_id')}{_read_available('OLD')}  {_card_update(None, 'old_available')};",
        declare=_AVAILABLE.format(r="old"), postgres_timing="BEFORE",  # as the rollup's: before a cascade's others
    ),
    CardTrigger(
        "step_progress", "UPDATE", "AFTER",
        _card_update(_card_available_sqlite("NEW"), _card_available_sqlite("OLD")),
        f"{_lock('NEW.user_id', 'OLD.user_id')}{_read_available('NEW')}{_read_available('OLD', reuse=True)}"
        f"  {_card_update('new_available', 'old_available')};",
        declare=_AVAILABLE.format(r="new") + _AVAILABLE.format(r="old"), when=_CARD_PROGRESS_CHANGED,
        columns=("user_id", "course_id", "step_id", "viewed_at", "completed_at", "points"),
    ),
    CardTrigger("enrollment", "INSERT", "AFTER", _ENROLLMENT_SQLITE, _ENROLLMENT_COUNTED, postgres_timing="BEFORE"),
    CardTrigger("enrollment", "UPDATE", "AFTER", _ENROLLMENT_SQLITE, _ENROLLMENT_COUNTED, postgres_timing="BEFORE",
                when=_CARD_ENROLLMENT_MOVED, columns=("user_id", "course_id")),
    CardTrigger("step", "UPDATE", "AFTER", _MAX_POINTS_MOVED,
                f"  PERFORM pg_advisory_xact_lock({STEP_LOCK}, NEW.id);\n  {_MAX_POINTS_MOVED};",
                when=_MAX_POINTS_CHANGED, columns=("max_points",)),
    CardTrigger("step", "DELETE", "BEFORE", _STEP_PROGRESS_GOES, f"  {_STEP_PROGRESS_GOES};"),
)

TRIGGERS = PROGRESS_TRIGGERS + MEMBER_TRIGGERS + CARD_TRIGGERS
TRIGGER_NAMES = tuple(t.name for t in TRIGGERS)


def install_statements(dialect: str, triggers: tuple[Trigger | CardTrigger, ...] = TRIGGERS) -> list[str]:
    """DDL creating every trigger (dropping any older version first). `triggers`: a migration's own set."""
    out = drop_statements(dialect, triggers)
    for trigger in triggers:
        out.extend(trigger.postgres() if dialect == "postgresql" else trigger.sqlite())
    return out


def drop_statements(dialect: str, triggers: tuple[Trigger | CardTrigger, ...] = TRIGGERS) -> list[str]:
    if dialect == "postgresql":
        return [f"DROP TRIGGER IF EXISTS {t.name} ON {t.table}" for t in triggers]
    return [f"DROP TRIGGER IF EXISTS {t.name}" for t in triggers]


def drop_functions_statements(triggers: tuple[Trigger | CardTrigger, ...] = TRIGGERS) -> list[str]:
    return [f"DROP FUNCTION IF EXISTS {t.name}()" for t in triggers]


def pause_statements(dialect: str, triggers: tuple[Trigger | CardTrigger, ...] = TRIGGERS) -> list[str]:
    """Stop maintaining the rollup until this transaction ends (PostgreSQL) or `install` runs again (SQLite:
    the triggers are dropped, inside the transaction). Follow with `rebuild_statements` before committing."""
    if dialect == "postgresql":
        return [f"SELECT set_config('{PAUSE_SETTING}', 'paused', true)"]
    return drop_statements(dialect, triggers)


def resume_statements(dialect: str, triggers: tuple[Trigger | CardTrigger, ...] = TRIGGERS) -> list[str]:
    if dialect == "postgresql":
        return [f"SELECT set_config('{PAUSE_SETTING}', '', true)"]
    return install_statements(dialect, triggers)


MEMBER_REBUILD = (
    "DELETE FROM member_rollup",
    "INSERT INTO member_rollup (group_id, role, memberships, on_consent) "
    "SELECT c.ancestor_id, m.role, count(*), count(m.access_request_id) FROM membership m "
    "JOIN group_closure c ON c.descendant_id = m.group_id WHERE m.ended_at IS NULL GROUP BY c.ancestor_id, m.role",
)
PROGRESS_REBUILD = (
    "DELETE FROM course_rollup",
    "DELETE FROM group_rollup",
    "DELETE FROM learner_rollup",
    "INSERT INTO learner_rollup (group_id, user_id, memberships) "
    "SELECT c.ancestor_id, m.user_id, count(*) FROM membership m JOIN group_closure c ON c.descendant_id = m.group_id "
    "WHERE m.role = 'MEMBER' AND m.ended_at IS NULL GROUP BY c.ancestor_id, m.user_id",
    "INSERT INTO group_rollup (group_id, learners) SELECT group_id, count(*) FROM learner_rollup GROUP BY group_id",
    "INSERT INTO course_rollup (group_id, course_id, enrolled, completed, steps_completed) "
    "SELECT lr.group_id, x.course_id, sum(x.enrolled), sum(x.completed), sum(x.steps_completed) "
    "FROM learner_rollup lr JOIN ("
    "SELECT user_id, course_id, sum(enrolled) AS enrolled, sum(completed) AS completed, "
    "sum(steps_completed) AS steps_completed FROM ("
    "SELECT user_id, course_id, 1 AS enrolled, CASE WHEN completed_at IS NULL THEN 0 ELSE 1 END AS completed, "
    "0 AS steps_completed FROM enrollment "
    "UNION ALL SELECT user_id, course_id, 0, 0, 1 FROM step_progress WHERE completed_at IS NOT NULL"
    ") AS rows_of_users GROUP BY user_id, course_id"
    ") AS x ON x.user_id = lr.user_id GROUP BY lr.group_id, x.course_id",
)
# (enrollment id, its counters) of every enrollment, from its progress rows
CARD_COUNTED = (
    "SELECT e.id, count(sp.viewed_at) AS viewed, count(sp.completed_at) AS completed, coalesce(sum(sp.points), 0) AS points, "
    "coalesce(sum(CASE WHEN sp.points IS NOT NULL THEN s.max_points END), 0) AS available FROM enrollment e "
    "LEFT JOIN step_progress sp ON sp.user_id = e.user_id AND sp.course_id = e.course_id "
    "LEFT JOIN step s ON s.id = sp.step_id GROUP BY e.id"
)
# only the enrollments whose counters differ are written (a rebuild after a roster sync rewrites none)
CARD_REBUILD = (
    "UPDATE enrollment SET steps_viewed = c.viewed, steps_completed = c.completed, points_earned = c.points, "
    f"points_available = c.available FROM ({CARD_COUNTED}) AS c WHERE c.id = enrollment.id AND "
    "(enrollment.steps_viewed <> c.viewed OR enrollment.steps_completed <> c.completed "
    "OR enrollment.points_earned <> c.points OR enrollment.points_available <> c.available)",
)
REBUILD = PROGRESS_REBUILD + MEMBER_REBUILD + CARD_REBUILD


def rebuild_statements(
    dialect: str, triggers: tuple[Trigger | CardTrigger, ...] = TRIGGERS, rebuild: tuple[str, ...] = REBUILD
) -> list[str]:
    """Recompute the tables from membership, group_closure, enrollment and step_progress, with the triggers
    paused meanwhile (resumed at the end). `triggers` and `rebuild`: a migration's own sets."""
    return [*pause_statements(dialect, triggers), *rebuild, *resume_statements(dialect, triggers)]


def run_sync(connection: Any, statements: Iterable[str]) -> None:
    """On a synchronous SQLAlchemy connection (migrations)."""
    for statement in statements:
        connection.exec_driver_sql(statement)


async def run(connection: Any, statements: Iterable[str]) -> None:
    """On an AsyncConnection or AsyncSession."""
    for statement in statements:
        await connection.execute(text(statement))


async def rebuild(connection: Any) -> None:
    """Full recompute in the caller's transaction (AsyncConnection or AsyncSession)."""
    await run(connection, rebuild_statements(dialect_of(connection)))


def dialect_of(connection: Any) -> str:
    dialect = getattr(connection, "dialect", None)
    return str((dialect or connection.bind.dialect).name)


async def installed(connection: Any, names: Iterable[str] = TRIGGER_NAMES) -> set[str]:
    """Which of the triggers `names` (the rollup's by default) are present in the database."""
    if dialect_of(connection) == "postgresql":
        query = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
    else:
        query = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
    present = {row[0] for row in (await connection.execute(text(query))).all()}
    return present & set(names)


async def rebuild_and_compare(connection: Any) -> dict[str, int]:
    """Rebuild in the caller's transaction and return, per table, how many rows the maintained table had that
    the rebuild has not, plus the other way round (0 everywhere: the triggers had kept it exact). The caller
    commits to keep the rebuild or rolls back to only check."""
    for table in TABLES:
        await connection.execute(text(f"CREATE TEMPORARY TABLE kept_{table} AS SELECT * FROM {table}"))
    await rebuild(connection)
    differences = {}
    for table in TABLES:
        query = (
            f"SELECT (SELECT count(*) FROM (SELECT * FROM kept_{table} EXCEPT SELECT * FROM {table}) AS a) "
            f"+ (SELECT count(*) FROM (SELECT * FROM {table} EXCEPT SELECT * FROM kept_{table}) AS b)"
        )
        differences[table] = int((await connection.execute(text(query))).scalar_one())
        await connection.execute(text(f"DROP TABLE kept_{table}"))
    return differences
