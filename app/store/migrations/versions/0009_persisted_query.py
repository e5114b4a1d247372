"""persisted_query (automatic persisted queries, shared by every worker); user (created_at, id) and
(last_login_at, id) for users(orderBy:) keyset pages

Revision ID: 0009_persisted_query
Revises: 0008_fidelity
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0009_persisted_query"
down_revision = "0008_fidelity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "persisted_query",
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("sha256"),
    )
    op.create_index("ix_user_created_at_id", "user", ["created_at", "id"], unique=False)
    op.create_index("ix_user_last_login_at_id", "user", ["last_login_at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_user_last_login_at_id", table_name="user")
    op.drop_index("ix_user_created_at_id", table_name="user")
    op.drop_table("persisted_query")
