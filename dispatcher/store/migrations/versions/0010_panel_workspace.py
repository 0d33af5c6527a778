"""panel workspace: named API keys with their last use and revocation, the audit log, the
rejected rows of panel campaigns, and an index for an account's recent webhook deliveries

Revision ID: 0010_panel
Revises: 0009_prices
Create Date: 2026-12-07 06:00:00

Keys that exist when this runs get no name (the panel shows "unnamed") and no last use.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_panel"
down_revision = "0009_prices"
branch_labels = None
depends_on = None

_bigint_pk = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("name", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("created_by", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("last_used_at", sa.Double(), nullable=True))
        batch.add_column(sa.Column("revoked_at", sa.Double(), nullable=True))
    op.create_table(
        "audit_log",
        sa.Column("id", _bigint_pk, autoincrement=True, nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=128), nullable=True),
        sa.Column("detail", sa.String(length=512), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_log_account_id", "audit_log", ["account_id", "id"], unique=False)
    op.create_table(
        "campaign_rejections",
        sa.Column("id", _bigint_pk, autoincrement=True, nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("campaign", sa.String(length=64), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_campaign_rejections_campaign",
        "campaign_rejections",
        ["account_id", "campaign", "line"],
        unique=False,
    )
    op.create_index(
        "ix_webhook_deliveries_account_created",
        "webhook_deliveries",
        ["account_id", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_campaign_rejections_campaign", table_name="campaign_rejections")
    op.drop_table("campaign_rejections")
    op.drop_index("ix_webhook_deliveries_account_created", table_name="webhook_deliveries")
    op.drop_index("ix_audit_log_account_id", table_name="audit_log")
    op.drop_table("audit_log")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("revoked_at")
        batch.drop_column("last_used_at")
        batch.drop_column("created_by")
        batch.drop_column("name")
