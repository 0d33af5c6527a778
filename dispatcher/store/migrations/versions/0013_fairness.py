"""fair bulk lane: per-account weights, batches waiting for admission (docs/campaigns.md)

Revision ID: 0013_fairness
Revises: 0012_perf
Create Date: 2026-12-07 14:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_fairness"
down_revision = "0012_perf"
branch_labels = None
depends_on = None

_WAITING = "enqueued_at IS NULL AND account_id IS NOT NULL"


def upgrade() -> None:
    op.add_column(
        "accounts",
        sa.Column("bulk_weight", sa.Integer(), nullable=False, server_default=sa.text("1")),
    )
    op.add_column("dispatch_batches", sa.Column("account_id", sa.Integer(), nullable=True))
    op.create_index(
        "ix_dispatch_batches_admission",
        "dispatch_batches",
        ["account_id", "created_at", "id"],
        unique=False,
        postgresql_where=sa.text(_WAITING),
        sqlite_where=sa.text(_WAITING),
    )


def downgrade() -> None:
    op.drop_index("ix_dispatch_batches_admission", table_name="dispatch_batches")
    with op.batch_alter_table("dispatch_batches") as batch:
        batch.drop_column("account_id")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("bulk_weight")
