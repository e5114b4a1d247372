"""Invitations requestAccess sent or held back (access_request_email: daily caps, the re-request wait) and
requesters a user blocked (access_request_block).

Revision ID: 0007_access_request_limits
Revises: 0006_ids_never_reused
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007_access_request_limits"
down_revision = "0006_ids_never_reused"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_request_email",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("requester_id", sa.Integer(), nullable=False),
        sa.Column("address_normalized", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column("sent_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("delivered", sa.Boolean(), nullable=False),
        sa.Column("cancelled_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["requester_id"], ["user.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_access_request_email_requester", "access_request_email", ["requester_id", "sent_at"])
    op.create_index("ix_access_request_email_address", "access_request_email", ["address_normalized", "sent_at"])
    op.create_table(
        "access_request_block",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("blocker_id", sa.Integer(), nullable=False),
        sa.Column("requester_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["blocker_id"], ["user.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["requester_id"], ["user.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("blocker_id", "requester_id", name="uq_access_request_block"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_access_request_block_requester_id", "access_request_block", ["requester_id"])


def downgrade() -> None:
    op.drop_index("ix_access_request_block_requester_id", table_name="access_request_block")
    op.drop_table("access_request_block")
    op.drop_index("ix_access_request_email_address", table_name="access_request_email")
    op.drop_index("ix_access_request_email_requester", table_name="access_request_email")
    op.drop_table("access_request_email")
