"""support panel users

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 16:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "panel_users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("disabled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    op.create_index(op.f("ix_panel_users_account_id"), "panel_users", ["account_id"], unique=False)
    with op.batch_alter_table("submissions") as batch:
        batch.add_column(sa.Column("campaign", sa.String(length=64), nullable=True))
    op.create_index(
        "ix_messages_account_sender_created",
        "messages",
        ["account_id", "sender", "created_at"],
        unique=False,
    )
    op.create_index(
        "ix_submissions_account_campaign",
        "submissions",
        ["account_id", "campaign"],
        unique=False,
        postgresql_where=sa.text("campaign IS NOT NULL"),
        sqlite_where=sa.text("campaign IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_account_sender_created", table_name="messages")
    op.drop_index("ix_submissions_account_campaign", table_name="submissions")
    with op.batch_alter_table("submissions") as batch:
        batch.drop_column("campaign")
    op.drop_index(op.f("ix_panel_users_account_id"), table_name="panel_users")
    op.drop_table("panel_users")
