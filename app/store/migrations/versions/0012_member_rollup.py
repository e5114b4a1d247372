"""member_rollup: the memberships (not ended) per (group, role) over each group's subtree, and how many are
consent-based, kept by triggers on membership and group_closure, and a first fill from the existing rows

Revision ID: 0012_member_rollup
Revises: 0011_catalogue_version
"""

import sqlalchemy as sa
from alembic import op

from app.store import rollup

revision = "0012_member_rollup"
down_revision = "0011_catalogue_version"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "member_rollup",
        sa.Column("group_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("memberships", sa.Integer(), server_default="0", nullable=False),
        sa.Column("on_consent", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("group_id", "role"),
    )
    connection = op.get_bind()
    rollup.run_sync(connection, rollup.install_statements(connection.dialect.name, rollup.MEMBER_TRIGGERS))
    rollup.run_sync(connection, rollup.MEMBER_REBUILD)  # member_rollup has no triggers of its own: no pause
    if connection.dialect.name == "postgresql":
        op.execute("ANALYZE member_rollup")  # read by key at once: plans need its size


def downgrade() -> None:
    connection = op.get_bind()
    rollup.run_sync(connection, rollup.drop_statements(connection.dialect.name, rollup.MEMBER_TRIGGERS))
    if connection.dialect.name == "postgresql":
        rollup.run_sync(connection, rollup.drop_functions_statements(rollup.MEMBER_TRIGGERS))
    op.drop_table("member_rollup")
