"""user.name_search (folded "first last" for search; last_name_normalized folded too), group.members_see_groups
(per root group), course.reviewed_work_completes, and review (every review of a submission)

Revision ID: 0008_fidelity
Revises: 0007_access_request_limits
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

from app.store.models import fold, full_name_key

revision = "0008_fidelity"
down_revision = "0007_access_request_limits"
branch_labels = None
depends_on = None

BATCH = 5000


def upgrade() -> None:
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name_search", sa.String(length=401), nullable=False, server_default=""))
        batch_op.create_index("ix_user_name_search", ["name_search"], unique=False)
    with op.batch_alter_table("group", schema=None) as batch_op:
        batch_op.add_column(sa.Column("members_see_groups", sa.Boolean(), nullable=True))
    with op.batch_alter_table("course", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reviewed_work_completes", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.create_table(
        "review",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=True),
        sa.Column("points", sa.Integer(), nullable=True),
        sa.Column("feedback", sa.Text(), nullable=True),
        sa.Column("reviewed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["submission_id"], ["submission.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["reviewer_id"], ["user.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("review", schema=None) as batch_op:
        batch_op.create_index("ix_review_submission_id", ["submission_id"], unique=False)
    # the search keys of existing users, and their reviews so far (the submission held the latest one)
    bind = op.get_bind()
    user = sa.table("user", sa.column("id", sa.Integer), sa.column("first_name", sa.String),
                    sa.column("last_name", sa.String), sa.column("name_search", sa.String),
                    sa.column("last_name_normalized", sa.String))
    after = 0
    while True:
        rows = bind.execute(
            sa.select(user.c.id, user.c.first_name, user.c.last_name).where(user.c.id > after).order_by(user.c.id).limit(BATCH)
        ).all()
        if not rows:
            break
        bind.execute(
            sa.update(user).where(user.c.id == sa.bindparam("uid")).values(
                name_search=sa.bindparam("ns"), last_name_normalized=sa.bindparam("ln")
            ),
            [{"uid": i, "ns": full_name_key(f, ln), "ln": fold(ln)[:200]} for i, f, ln in rows],
        )
        after = rows[-1][0]
    op.execute(
        "INSERT INTO review (submission_id, reviewer_id, points, feedback, reviewed_at) "
        "SELECT id, reviewer_id, points, feedback, reviewed_at FROM submission WHERE reviewed_at IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("review", schema=None) as batch_op:
        batch_op.drop_index("ix_review_submission_id")
    op.drop_table("review")
    with op.batch_alter_table("course", schema=None) as batch_op:
        batch_op.drop_column("reviewed_work_completes")
    with op.batch_alter_table("group", schema=None) as batch_op:
        batch_op.drop_column("members_see_groups")
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_index("ix_user_name_search")
        batch_op.drop_column("name_search")
