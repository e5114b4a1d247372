"""Ids are never reused: on SQLite every table keyed by an integer id is rebuilt AUTOINCREMENT (app.store.models
creates tables so); audit_event.actor_id becomes null when its account is deleted; progress idempotency keys
(ingested_event) belong to their user and go with them.

Revision ID: 0006_ids_never_reused
Revises: 0005_export_jobs
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_ids_never_reused"
down_revision = "0005_export_jobs"
branch_labels = None
depends_on = None

# every table with an integer `id` key at this revision (tables made later are created AUTOINCREMENT)
ID_TABLES = (
    "user", "session", "api_token", "group", "access_request", "membership", "guardian_link", "course", "step",
    "enrollment", "step_progress", "submission", "activity_event", "login_event", "audit_event", "outbox_email",
)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.execute(
        'UPDATE audit_event SET actor_id = NULL WHERE actor_id IS NOT NULL AND actor_id NOT IN (SELECT id FROM "user")'
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index("ix_audit_event_actor_id", ["actor_id"], unique=False)
        batch_op.create_foreign_key("fk_audit_event_actor_id", "user", ["actor_id"], ["id"], ondelete="SET NULL")
    with op.batch_alter_table("ingested_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch_op.create_index("ix_ingested_event_user_id", ["user_id"], unique=False)
        batch_op.create_foreign_key("fk_ingested_event_user_id", "user", ["user_id"], ["id"], ondelete="CASCADE")
    # keys read "KIND|user id|target|time[|hash]"
    if sqlite:
        user_part = "substr(key, instr(key, '|') + 1, instr(substr(key, instr(key, '|') + 1), '|') - 1)"
        op.execute(
            f"UPDATE ingested_event SET user_id = CAST({user_part} AS INTEGER) "
            f"WHERE {user_part} GLOB '[0-9]*' AND CAST({user_part} AS INTEGER) IN (SELECT id FROM \"user\")"
        )
    else:
        op.execute(
            "UPDATE ingested_event SET user_id = CAST(split_part(key, '|', 2) AS INTEGER) "
            "WHERE split_part(key, '|', 2) ~ '^[0-9]{1,9}$' "
            "AND CAST(split_part(key, '|', 2) AS INTEGER) IN (SELECT id FROM \"user\")"
        )
    if sqlite:
        for table in ID_TABLES:
            if table == "audit_event":
                continue  # rebuilt above
            with op.batch_alter_table(table, recreate="always"):
                pass


def downgrade() -> None:
    with op.batch_alter_table("ingested_event", schema=None) as batch_op:
        batch_op.drop_constraint("fk_ingested_event_user_id", type_="foreignkey")
        batch_op.drop_index("ix_ingested_event_user_id")
        batch_op.drop_column("user_id")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_constraint("fk_audit_event_actor_id", type_="foreignkey")
        batch_op.drop_index("ix_audit_event_actor_id")
