"""learner_rollup, group_rollup and course_rollup: the progress summary rolled up per (group, course), their
triggers on membership, group_closure, enrollment and step_progress, and a first fill from the existing rows

Revision ID: 0010_progress_rollup
Revises: 0009_persisted_query
"""

import sqlalchemy as sa
from alembic import op

from app.store import rollup

revision = "0010_progress_rollup"
down_revision = "0009_persisted_query"
branch_labels = None
depends_on = None


def _counter(name: str) -> sa.Column:
    return sa.Column(name, sa.Integer(), server_default="0", nullable=False)


def upgrade() -> None:
    op.create_table(
        "learner_rollup",
        sa.Column("group_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("user_id", sa.Integer(), autoincrement=False, nullable=False),
        _counter("memberships"),
        sa.PrimaryKeyConstraint("group_id", "user_id"),
    )
    op.create_index("ix_learner_rollup_user", "learner_rollup", ["user_id", "group_id"], unique=False)
    op.create_table(
        "group_rollup",
        sa.Column("group_id", sa.Integer(), autoincrement=False, nullable=False),
        _counter("learners"),
        sa.PrimaryKeyConstraint("group_id"),
    )
    op.create_table(
        "course_rollup",
        sa.Column("group_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("course_id", sa.Integer(), autoincrement=False, nullable=False),
        _counter("enrolled"),
        _counter("completed"),
        _counter("steps_completed"),
        sa.PrimaryKeyConstraint("group_id", "course_id"),
    )
    connection = op.get_bind()
    dialect = connection.dialect.name
    rollup.run_sync(connection, rollup.install_statements(dialect, rollup.PROGRESS_TRIGGERS))
    rollup.run_sync(connection, rollup.rebuild_statements(dialect, rollup.PROGRESS_TRIGGERS, rollup.PROGRESS_REBUILD))


def downgrade() -> None:
    connection = op.get_bind()
    rollup.run_sync(connection, rollup.drop_statements(connection.dialect.name, rollup.PROGRESS_TRIGGERS))
    if connection.dialect.name == "postgresql":
        rollup.run_sync(connection, rollup.drop_functions_statements(rollup.PROGRESS_TRIGGERS))
    op.drop_table("course_rollup")
    op.drop_table("group_rollup")
    op.drop_index("ix_learner_rollup_user", table_name="learner_rollup")
    op.drop_table("learner_rollup")
