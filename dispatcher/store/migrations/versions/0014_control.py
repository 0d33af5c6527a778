"""campaign control (pause, resume, cancel) and quiet hours (docs/campaigns.md)

Revision ID: 0014_control
Revises: 0013_fairness
Create Date: 2026-12-07 14:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_control"
down_revision = "0013_fairness"
branch_labels = None
depends_on = None

# The refund sweep's partial index gains ``cancelled`` (dispatcher/store/schema.py REFUNDABLE).
OLD_REFUNDABLE = (
    "charged AND refunded_at IS NULL AND sent_at IS NULL "
    "AND status IN ('rejected', 'expired', 'failed') "
    "AND (error_code IS NULL OR error_code <> 'send_state_unknown')"
)
NEW_REFUNDABLE = (
    "charged AND refunded_at IS NULL AND sent_at IS NULL "
    "AND status IN ('rejected', 'expired', 'failed', 'cancelled') "
    "AND (error_code IS NULL OR error_code <> 'send_state_unknown')"
)


def _refundable(where: str) -> None:
    op.drop_index("ix_messages_refundable", table_name="messages")
    op.create_index(
        "ix_messages_refundable",
        "messages",
        ["status_at"],
        unique=False,
        postgresql_where=sa.text(where),
        sqlite_where=sa.text(where),
    )


def upgrade() -> None:
    op.add_column("accounts", sa.Column("send_window", sa.String(length=11), nullable=True))
    op.add_column("messages", sa.Column("window_start", sa.SmallInteger(), nullable=True))
    op.add_column("messages", sa.Column("window_end", sa.SmallInteger(), nullable=True))
    op.create_index(
        "ix_messages_paused_valid",
        "messages",
        ["valid_until"],
        unique=False,
        postgresql_where=sa.text("status = 'paused'"),
        sqlite_where=sa.text("status = 'paused'"),
    )
    op.create_index(
        "ix_messages_cancel_pending",
        "messages",
        ["status_at"],
        unique=False,
        postgresql_where=sa.text("status = 'cancelled' AND final_at IS NULL"),
        sqlite_where=sa.text("status = 'cancelled' AND final_at IS NULL"),
    )
    _refundable(NEW_REFUNDABLE)
    op.create_table(
        "campaign_controls",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("campaign", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("changed_at", sa.Double(), nullable=False),
        sa.Column("changed_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "campaign", name="uq_campaign_controls"),
    )
    op.create_index(
        "ix_campaign_controls_state", "campaign_controls", ["state", "changed_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_campaign_controls_state", table_name="campaign_controls")
    op.drop_table("campaign_controls")
    _refundable(OLD_REFUNDABLE)
    op.drop_index("ix_messages_cancel_pending", table_name="messages")
    op.drop_index("ix_messages_paused_valid", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("window_end")
        batch.drop_column("window_start")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("send_window")
