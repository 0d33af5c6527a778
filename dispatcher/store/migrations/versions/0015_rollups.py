"""the dashboard's rollups: counts per account and hour, kept by the scheduler (issue 23)

Revision ID: 0015_rollups
Revises: 0014_control
Create Date: 2026-12-07 17:30:00

New tables only (nothing on ``messages``): the scheduler fills them from its next run on,
starting 8 days back (dispatcher/store/rollups.py); until then the dashboard reads the
messages as before.
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_rollups"
down_revision = "0014_control"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dashboard_counts",
        sa.Column("account_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("hour", sa.Double(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("lane", sa.String(length=8), nullable=False),
        sa.Column("connection", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "hour", "status", "lane", "connection", "reason"),
    )
    op.create_table(
        "dashboard_delivery",
        sa.Column("account_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("hour", sa.Double(), nullable=False),
        sa.Column("bucket", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "hour", "bucket"),
    )
    op.create_table(
        "dashboard_pending",
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("hour", sa.Double(), nullable=False),
        sa.Column("counted_status", sa.String(length=12), nullable=True),
        sa.Column("counted_lane", sa.String(length=8), nullable=True),
        sa.Column("counted_connection", sa.String(length=64), nullable=True),
        sa.Column("counted_reason", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("message_id"),
    )
    op.create_index(
        "ix_dashboard_pending_account_hour",
        "dashboard_pending",
        ["account_id", "hour"],
        unique=False,
    )
    op.create_table(
        "dashboard_rollup",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("rolled_from", sa.Double(), nullable=False),
        sa.Column("rolled_until", sa.Double(), nullable=False),
        sa.Column("checked_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("dashboard_rollup")
    op.drop_index("ix_dashboard_pending_account_hour", table_name="dashboard_pending")
    op.drop_table("dashboard_pending")
    op.drop_table("dashboard_delivery")
    op.drop_table("dashboard_counts")
