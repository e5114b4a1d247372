"""enrollment's course card counters (steps viewed and completed, points earned and available), kept by triggers
on step_progress, enrollment and step (app.store.rollup, CARD_TRIGGERS), and their first fill

Revision ID: 0014_card_counters
Revises: 0013_member_sort_name
"""

import sqlalchemy as sa
from alembic import op

from app.store import rollup

revision = "0014_card_counters"
down_revision = "0013_member_sort_name"
branch_labels = None
depends_on = None


# PostgreSQL: the counters computed once into a temporary table, then written by rewriting enrollment (ALTER ...
# USING a lookup of it) rather than by an UPDATE, which would leave a dead version of every enrollment behind
# until a vacuum, stepped over by the cards' reads meanwhile (as migration 0013 fills membership.sort_name)
_REWRITE = (
    "CREATE TEMPORARY TABLE card_backfill (id integer PRIMARY KEY, viewed integer, completed integer, points integer, "
    "available integer) ON COMMIT DROP",
    f"INSERT INTO card_backfill {rollup.CARD_COUNTED}",
    "CREATE FUNCTION pg_temp.card_backfill(integer, integer) RETURNS integer LANGUAGE sql STABLE AS "
    "$$ SELECT (ARRAY[viewed, completed, points, available])[$2] FROM card_backfill WHERE id = $1 $$",
    "ALTER TABLE enrollment "
    + ", ".join(f"ALTER COLUMN {c} TYPE integer USING coalesce(pg_temp.card_backfill(id, {n}), 0)"
                for n, c in enumerate(rollup.CARD_COUNTS, 1)),
    "DROP FUNCTION pg_temp.card_backfill(integer, integer)",
)


def upgrade() -> None:
    # plain ADD COLUMNs on both engines (no batch copy on SQLite: the rollup's triggers on enrollment stay)
    for column in rollup.CARD_COUNTS:
        op.add_column("enrollment", sa.Column(column, sa.Integer(), server_default="0", nullable=False))
    connection = op.get_bind()
    dialect = connection.dialect.name
    rollup.run_sync(connection, _REWRITE if dialect == "postgresql" else rollup.CARD_REBUILD)
    rollup.run_sync(connection, rollup.install_statements(dialect, rollup.CARD_TRIGGERS))


def downgrade() -> None:
    connection = op.get_bind()
    rollup.run_sync(connection, rollup.drop_statements(connection.dialect.name, rollup.CARD_TRIGGERS))
    if connection.dialect.name == "postgresql":
        rollup.run_sync(connection, rollup.drop_functions_statements(rollup.CARD_TRIGGERS))
    for column in reversed(rollup.CARD_COUNTS):
        if connection.dialect.name == "sqlite":
            # SQLite drops a column in place since 3.35 (no table copy, so enrollment keeps the rollup's triggers)
            connection.exec_driver_sql(f"ALTER TABLE enrollment DROP COLUMN {column}")
        else:
            op.drop_column("enrollment", column)
