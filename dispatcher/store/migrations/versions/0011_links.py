"""short links and click tracking (shortLink, docs/short-links.md)

Revision ID: 0011_links
Revises: 0010_panel
Create Date: 2026-12-07 06:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_links"
down_revision = "0010_panel"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("link_lifetime_s", sa.Double(), nullable=True))
    op.add_column(
        "accounts",
        sa.Column(
            "click_webhooks", sa.String(length=5), nullable=False, server_default=sa.text("'first'")
        ),
    )
    op.add_column("messages", sa.Column("original_body", sa.Text(), nullable=True))
    op.create_table(
        "short_links",
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_index("ix_short_links_message", "short_links", ["message_id"], unique=False)
    op.create_table(
        "link_clicks",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("client", sa.String(length=8), nullable=False),
        sa.Column("bot", sa.Boolean(), nullable=False),
        sa.Column("ip_hash", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_link_clicks_message", "link_clicks", ["message_id", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_link_clicks_message", table_name="link_clicks")
    op.drop_table("link_clicks")
    op.drop_index("ix_short_links_message", table_name="short_links")
    op.drop_table("short_links")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("original_body")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("click_webhooks")
        batch.drop_column("link_lifetime_s")
