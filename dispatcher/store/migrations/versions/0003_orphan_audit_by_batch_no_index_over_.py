"""orphan audit by batch, no index over queued messages

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 15:00:14.216744
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_index(
        "ix_dispatch_batches_lane_enqueued",
        "dispatch_batches",
        ["lane", "enqueued_at", "id"],
        unique=False,
    )
    op.drop_index("ix_messages_queued", table_name="messages")


def downgrade() -> None:

    op.create_index(
        "ix_messages_queued",
        "messages",
        ["queued_at"],
        unique=False,
        postgresql_where=sa.text("status = 'queued'"),
        sqlite_where=sa.text("status = 'queued'"),
    )
    op.drop_index("ix_dispatch_batches_lane_enqueued", table_name="dispatch_batches")
