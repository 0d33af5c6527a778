"""delivery reports webhooks two-way

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 13:57:35.977431
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "inbound_messages",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("connection", sa.String(length=64), nullable=False),
        sa.Column("number", sa.String(length=16), nullable=False),
        sa.Column("phone", sa.String(length=16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("parts", sa.SmallInteger(), nullable=False),
        sa.Column("carrier_message_id", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.Double(), nullable=False),
        sa.Column("keyword", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("connection", "carrier_message_id", name="uq_inbound_carrier_id"),
    )
    op.create_index(
        "ix_inbound_account_received",
        "inbound_messages",
        ["account_id", "received_at"],
        unique=False,
    )
    op.create_table(
        "inbound_parts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("connection", sa.String(length=64), nullable=False),
        sa.Column("carrier_message_id", sa.String(length=64), nullable=False),
        sa.Column("phone", sa.String(length=16), nullable=False),
        sa.Column("number", sa.String(length=16), nullable=False),
        sa.Column("ref", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.SmallInteger(), nullable=False),
        sa.Column("total", sa.SmallInteger(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("received_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("connection", "carrier_message_id", name="uq_inbound_part_carrier_id"),
    )
    op.create_index(
        "ix_inbound_parts_group",
        "inbound_parts",
        ["connection", "phone", "number", "ref"],
        unique=False,
    )
    op.create_table(
        "numbers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("number", sa.String(length=16), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("number"),
    )
    op.create_index(op.f("ix_numbers_account_id"), "numbers", ["account_id"], unique=False)
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("keyword", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "phone", name="uq_suppression"),
    )
    op.create_table(
        "webhook_attempts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("delivery_id", sa.String(length=36), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("status_code", sa.SmallInteger(), nullable=True),
        sa.Column("latency_ms", sa.Double(), nullable=True),
        sa.Column("error", sa.String(length=64), nullable=True),
        sa.Column("body", sa.String(length=512), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_webhook_attempts_delivery_id"), "webhook_attempts", ["delivery_id"], unique=False
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=True),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("status_key", sa.String(length=16), nullable=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("url_secondary", sa.Text(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.SmallInteger(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("next_attempt_at", sa.Double(), nullable=True),
        sa.Column("delivered_at", sa.Double(), nullable=True),
        sa.Column("last_status_code", sa.SmallInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id", "event", "status_key", name="uq_webhook_once"),
    )
    op.create_index(
        "ix_webhook_deliveries_leased",
        "webhook_deliveries",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("state IN ('queued', 'sending')"),
        sqlite_where=sa.text("state IN ('queued', 'sending')"),
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("state = 'pending'"),
        sqlite_where=sa.text("state = 'pending'"),
    )
    op.create_index(
        "ix_webhook_deliveries_message", "webhook_deliveries", ["message_id"], unique=False
    )
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("failing_since", sa.Double(), nullable=True),
        sa.Column("changed_at", sa.Double(), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "url", name="uq_webhook_endpoint"),
    )
    op.add_column("accounts", sa.Column("webhook_secret", sa.String(length=128), nullable=True))
    op.add_column(
        "accounts", sa.Column("webhook_secret_previous", sa.String(length=128), nullable=True)
    )
    op.add_column(
        "accounts", sa.Column("webhook_secret_previous_until", sa.Double(), nullable=True)
    )
    op.add_column(
        "accounts",
        sa.Column("webhook_on_sent", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column("accounts", sa.Column("inbound_webhook_url", sa.Text(), nullable=True))
    op.add_column("accounts", sa.Column("inbound_webhook_url_secondary", sa.Text(), nullable=True))
    op.add_column("messages", sa.Column("report_stat", sa.String(length=16), nullable=True))
    op.add_column("messages", sa.Column("report_error", sa.String(length=32), nullable=True))
    op.add_column("messages", sa.Column("report_at", sa.Double(), nullable=True))
    op.create_index(
        "ix_messages_carrier_id", "messages", ["connection", "carrier_message_id"], unique=False
    )
    op.create_index(
        "ix_messages_sent_valid",
        "messages",
        ["valid_until"],
        unique=False,
        postgresql_where=sa.text("status = 'sent'"),
        sqlite_where=sa.text("status = 'sent'"),
    )


def downgrade() -> None:

    op.drop_index("ix_messages_sent_valid", table_name="messages")
    op.drop_index("ix_messages_carrier_id", table_name="messages")
    op.drop_column("messages", "report_at")
    op.drop_column("messages", "report_error")
    op.drop_column("messages", "report_stat")
    op.drop_column("accounts", "inbound_webhook_url_secondary")
    op.drop_column("accounts", "inbound_webhook_url")
    op.drop_column("accounts", "webhook_on_sent")
    op.drop_column("accounts", "webhook_secret_previous_until")
    op.drop_column("accounts", "webhook_secret_previous")
    op.drop_column("accounts", "webhook_secret")
    op.drop_table("webhook_endpoints")
    op.drop_index("ix_webhook_deliveries_message", table_name="webhook_deliveries")
    op.drop_index(
        "ix_webhook_deliveries_due",
        table_name="webhook_deliveries",
        postgresql_where=sa.text("state = 'pending'"),
        sqlite_where=sa.text("state = 'pending'"),
    )
    op.drop_index("ix_webhook_deliveries_leased", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index(op.f("ix_webhook_attempts_delivery_id"), table_name="webhook_attempts")
    op.drop_table("webhook_attempts")
    op.drop_table("suppressions")
    op.drop_index(op.f("ix_numbers_account_id"), table_name="numbers")
    op.drop_table("numbers")
    op.drop_index("ix_inbound_parts_group", table_name="inbound_parts")
    op.drop_table("inbound_parts")
    op.drop_index("ix_inbound_account_received", table_name="inbound_messages")
    op.drop_table("inbound_messages")
