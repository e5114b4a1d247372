"""membership (group_id, role, user_id): the progress report's keyset order

Revision ID: 0002_i6
Revises: 0001
"""

from alembic import op

revision = "0002_i6"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_membership_group_role_user", "membership", ["group_id", "role", "user_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_membership_group_role_user", table_name="membership")
