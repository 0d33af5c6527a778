"""sender names: requests, the operator's decisions, and each account's policy

Revision ID: 0008_sender_names
Revises: 0006
Create Date: 2026-11-28 09:00:00

Accounts that exist when this runs keep sending from any valid name (``open``); accounts
created afterwards start ``registered``, as in the original API (docs/senders.md).
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_sender_names"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "accounts",
        sa.Column(
            "sender_policy",
            sa.String(length=10),
            nullable=False,
            server_default=sa.text("'registered'"),
        ),
    )
    op.execute("UPDATE accounts SET sender_policy = 'open'")
    op.create_table(
        "sender_names",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("requested_at", sa.Double(), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("decided_at", sa.Double(), nullable=True),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "name", name="uq_sender_names_account_name"),
    )
    op.create_index(
        "ix_sender_names_state", "sender_names", ["state", "requested_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_sender_names_state", table_name="sender_names")
    op.drop_table("sender_names")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("sender_policy")
