"""`membership.sort_name`: the member's `user.last_name_normalized`, kept equal by database triggers.

Member pages are ordered by (the member's last name, membership id). With the last name on the user only,
PostgreSQL could not walk a big subtree's memberships in that order: it read the whole first last name
(~740 learners at the bench root) and sorted them to return 100. With the name on the membership, the index
`ix_membership_role_sort_name_id` (role, sort_name, id) WHERE ended_at IS NULL gives the page in order and
the walk stops after `first` rows; a small subtree keeps the closure-first plan.

Triggers rather than the writers, as for the rollup (app.store.rollup): memberships are written by mutations,
the CSV importer, rostering, consent decisions and the bulk seeders, and last names by the profile mutations,
rostering and imports. A membership inserted (or moved to another user) copies its user's name; a user whose
`last_name_normalized` changes rewrites the names of all their memberships. They are never paused (the bulk
seeders leave them on: one primary-key lookup per membership).

Concurrency (PostgreSQL): a rename must not miss a membership inserted by a transaction that read the old
name. The membership trigger reads the name `FOR SHARE`, which conflicts with any update of the user row:
whichever of the two comes second waits for the other to commit, then reads the new name (the insert) or
rewrites the committed memberships (the rename's trigger runs its UPDATE with a new snapshot). `FOR KEY
SHARE`, the foreign key check's lock, would not do: it does not wait for an update of other columns, and the
insert read the old name (tests/test_member_order.py has both orders). The price: an update of that user (a
sign-in's `last_login_at`) waits for a transaction that added one of their memberships to end, and two
transactions that would each add a membership of a user and then update that user could deadlock (no writer
does: rostering and imports write the users first).
"""

from __future__ import annotations

from typing import Any

from app.store import rollup

MEMBERSHIP_TRIGGER = "member_order_membership"
USER_TRIGGER = "member_order_user"
TRIGGER_NAMES = (MEMBERSHIP_TRIGGER, USER_TRIGGER)
# SQLite fires a second trigger for a membership moved to another user
SQLITE_TRIGGER_NAMES = (*TRIGGER_NAMES, f"{MEMBERSHIP_TRIGGER}_moved")

BACKFILL = (
    'UPDATE membership SET sort_name = (SELECT u.last_name_normalized FROM "user" u WHERE u.id = membership.user_id)'
)

_POSTGRES = (
    f"CREATE OR REPLACE FUNCTION {MEMBERSHIP_TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $order$\n"
    "BEGIN\n"
    '  NEW.sort_name := coalesce((SELECT last_name_normalized FROM "user" WHERE id = NEW.user_id FOR SHARE), \'\');\n'
    "  RETURN NEW;\n"
    "END\n$order$",
    f"CREATE TRIGGER {MEMBERSHIP_TRIGGER} BEFORE INSERT OR UPDATE OF user_id, sort_name ON membership "
    f"FOR EACH ROW EXECUTE FUNCTION {MEMBERSHIP_TRIGGER}()",
    f"CREATE OR REPLACE FUNCTION {USER_TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $order$\n"
    "BEGIN\n"
    "  UPDATE membership SET sort_name = NEW.last_name_normalized\n"
    "    WHERE user_id = NEW.id AND sort_name IS DISTINCT FROM NEW.last_name_normalized;\n"
    "  RETURN NULL;\n"
    "END\n$order$",
    f'CREATE TRIGGER {USER_TRIGGER} AFTER UPDATE OF last_name_normalized ON "user" FOR EACH ROW '
    f"WHEN (OLD.last_name_normalized IS DISTINCT FROM NEW.last_name_normalized) EXECUTE FUNCTION {USER_TRIGGER}()",
)

_NAME_OF_NEW = '(SELECT last_name_normalized FROM "user" WHERE id = NEW.user_id)'
_SQLITE = (
    f"CREATE TRIGGER {MEMBERSHIP_TRIGGER} AFTER INSERT ON membership FOR EACH ROW\n"
    f"BEGIN\n  UPDATE membership SET sort_name = coalesce({_NAME_OF_NEW}, '') WHERE id = NEW.id;\nEND",
    f"CREATE TRIGGER {MEMBERSHIP_TRIGGER}_moved AFTER UPDATE OF user_id, sort_name ON membership FOR EACH ROW "
    f"WHEN NEW.sort_name IS NOT coalesce({_NAME_OF_NEW}, '')\n"
    f"BEGIN\n  UPDATE membership SET sort_name = coalesce({_NAME_OF_NEW}, '') WHERE id = NEW.id;\nEND",
    f'CREATE TRIGGER {USER_TRIGGER} AFTER UPDATE OF last_name_normalized ON "user" FOR EACH ROW '
    "WHEN OLD.last_name_normalized IS NOT NEW.last_name_normalized\n"
    "BEGIN\n  UPDATE membership SET sort_name = NEW.last_name_normalized "
    "WHERE user_id = NEW.id AND sort_name IS NOT NEW.last_name_normalized;\nEND",
)


def drop_statements(dialect: str) -> list[str]:
    if dialect == "postgresql":
        return [
            f"DROP TRIGGER IF EXISTS {MEMBERSHIP_TRIGGER} ON membership",
            f'DROP TRIGGER IF EXISTS {USER_TRIGGER} ON "user"',
            f"DROP FUNCTION IF EXISTS {MEMBERSHIP_TRIGGER}()",
            f"DROP FUNCTION IF EXISTS {USER_TRIGGER}()",
        ]
    return [f"DROP TRIGGER IF EXISTS {name}" for name in SQLITE_TRIGGER_NAMES]


def install_statements(dialect: str) -> list[str]:
    """DDL creating the triggers (dropping older versions first). SQLite's batch migrations copy a table and drop
    its triggers: a migration that alters membership or user on SQLite runs these again."""
    return [*drop_statements(dialect), *(_POSTGRES if dialect == "postgresql" else _SQLITE)]


def names(dialect: str) -> set[str]:
    return set(TRIGGER_NAMES if dialect == "postgresql" else SQLITE_TRIGGER_NAMES)


async def installed(connection: Any) -> set[str]:
    """Names of these triggers present in the database (AsyncConnection)."""
    return await rollup.installed(connection, names(connection.dialect.name))
