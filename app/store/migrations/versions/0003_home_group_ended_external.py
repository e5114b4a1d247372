"""user.home_group_id (the group that owns an account), membership.ended_at (archived memberships),
group.external_id (the rostering system's id of an org or class)

Revision ID: 0003_home_group
Revises: 0002_i6
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003_home_group"
down_revision = "0002_i6"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("home_group_id", sa.Integer(), nullable=True))
        batch_op.create_index("ix_user_home_group_id", ["home_group_id"], unique=False)
        batch_op.create_foreign_key("fk_user_home_group_id", "group", ["home_group_id"], ["id"], ondelete="SET NULL")
    with op.batch_alter_table("membership", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ended_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    with op.batch_alter_table("group", schema=None) as batch_op:
        batch_op.add_column(sa.Column("external_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch_op.create_unique_constraint("uq_group_external_id", ["external_id"])


def downgrade() -> None:
    with op.batch_alter_table("group", schema=None) as batch_op:
        batch_op.drop_constraint("uq_group_external_id", type_="unique")
        batch_op.drop_column("external_id")
    with op.batch_alter_table("membership", schema=None) as batch_op:
        batch_op.drop_column("ended_at")
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_constraint("fk_user_home_group_id", type_="foreignkey")
        batch_op.drop_index("ix_user_home_group_id")
        batch_op.drop_column("home_group_id")
