"""api security (key rotation, per-account limits)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 16:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL means "the settings' default"; 0 means unlimited (docs/security.md).
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("api_rate_per_s", sa.Double(), nullable=True))
        batch.add_column(sa.Column("daily_cap", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("daily_cap")
        batch.drop_column("api_rate_per_s")
