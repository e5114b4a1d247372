"""membership.sort_name: the member's last_name_normalized, kept by triggers (app.store.member_order), filled
from the users, and the index member pages walk in order: (role, sort_name, id) WHERE ended_at IS NULL

Revision ID: 0013_member_sort_name
Revises: 0012_member_rollup
"""

import sqlalchemy as sa
from alembic import op

from app.store import member_order, rollup

revision = "0013_member_sort_name"
down_revision = "0012_member_rollup"
branch_labels = None
depends_on = None


_REWRITE = (
    "CREATE FUNCTION member_order_backfill(integer) RETURNS varchar LANGUAGE sql STABLE AS "
    '$$ SELECT last_name_normalized FROM "user" WHERE id = $1 $$',
    "ALTER TABLE membership ALTER COLUMN sort_name TYPE varchar(200) USING coalesce(member_order_backfill(user_id), '')",
    "DROP FUNCTION member_order_backfill(integer)",
)


def upgrade() -> None:
    # a plain ADD COLUMN on both engines (no batch copy on SQLite: the rollup's triggers on membership stay)
    op.add_column("membership", sa.Column("sort_name", sa.String(length=200), server_default="", nullable=False))
    connection = op.get_bind()
    dialect = connection.dialect.name
    if dialect == "postgresql":
        # filled by rewriting the table (ALTER ... USING) rather than by an UPDATE, which would leave a dead
        # version of every membership until a vacuum, walked by the new index's scans meanwhile (the root's page
        # 0.8 -> 1.15 ms on a server without autovacuum)
        rollup.run_sync(connection, _REWRITE)
    rollup.run_sync(connection, member_order.install_statements(dialect))
    if dialect != "postgresql":
        connection.exec_driver_sql(member_order.BACKFILL)
    op.create_index(
        "ix_membership_role_sort_name_id", "membership", ["role", "sort_name", "id"],
        postgresql_where=sa.text("ended_at IS NULL"), sqlite_where=sa.text("ended_at IS NULL"),
    )
    if dialect == "postgresql":
        op.execute("ANALYZE membership")  # the pages' plans weigh the new index against the closure-first one


def downgrade() -> None:
    connection = op.get_bind()
    rollup.run_sync(connection, member_order.drop_statements(connection.dialect.name))
    op.drop_index("ix_membership_role_sort_name_id", table_name="membership")
    if connection.dialect.name == "sqlite":
        # SQLite drops a column in place since 3.35 (no table copy, so membership keeps the rollup's triggers)
        connection.exec_driver_sql("ALTER TABLE membership DROP COLUMN sort_name")
    else:
        op.drop_column("membership", "sort_name")
