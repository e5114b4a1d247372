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


def upgrade() -> None:
    # plain ADD COLUMNs on both engines (no batch copy on SQLite: the rollup's triggers on enrollment stay)
    for column in rollup.CARD_COUNTS:
        op.add_column("enrollment", sa.Column(column, sa.Integer(), server_default="0", nullable=False))
    connection = op.get_bind()
    rollup.run_sync(connection, rollup.install_statements(connection.dialect.name, rollup.CARD_TRIGGERS))
    rollup.run_sync(connection, rollup.CARD_REBUILD)


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
