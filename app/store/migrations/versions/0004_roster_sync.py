"""roster_sync (runs of the OneRoster import) and the rostering columns of group (org type or class,
class code, term title and dates)

Revision ID: 0004_roster_sync
Revises: 0003_home_group
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004_roster_sync"
down_revision = "0003_home_group"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("group", schema=None) as batch_op:
        batch_op.add_column(sa.Column("roster_kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
        batch_op.add_column(sa.Column("class_code", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch_op.add_column(sa.Column("term_title", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch_op.add_column(sa.Column("term_starts_on", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("term_ends_on", sa.Date(), nullable=True))
    op.create_table(
        "roster_sync",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("started_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("finished_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("held_reason", sa.Text(), nullable=True),
        sa.Column("groups_created", sa.Integer(), nullable=False),
        sa.Column("groups_updated", sa.Integer(), nullable=False),
        sa.Column("users_created", sa.Integer(), nullable=False),
        sa.Column("users_updated", sa.Integer(), nullable=False),
        sa.Column("users_denied", sa.Integer(), nullable=False),
        sa.Column("memberships_created", sa.Integer(), nullable=False),
        sa.Column("memberships_updated", sa.Integer(), nullable=False),
        sa.Column("memberships_ended", sa.Integer(), nullable=False),
        sa.Column("guardian_links_created", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Text(), nullable=True),
        sa.Column("plan_digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("bundle", sa.LargeBinary(), nullable=True),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.Column("decided_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["actor_id"], ["user.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["decided_by_id"], ["user.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_roster_sync_actor_id", "roster_sync", ["actor_id"], unique=False)
    op.create_index("ix_roster_sync_decided_by_id", "roster_sync", ["decided_by_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_roster_sync_decided_by_id", table_name="roster_sync")
    op.drop_index("ix_roster_sync_actor_id", table_name="roster_sync")
    op.drop_table("roster_sync")
    with op.batch_alter_table("group", schema=None) as batch_op:
        batch_op.drop_column("term_ends_on")
        batch_op.drop_column("term_starts_on")
        batch_op.drop_column("term_title")
        batch_op.drop_column("class_code")
        batch_op.drop_column("roster_kind")
