"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26 13:19:55.416655
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("priority_enabled", sa.Boolean(), nullable=False),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column("webhook_url_secondary", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("app_key_hash", sa.String(length=64), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("app_key_hash"),
    )
    op.create_index(op.f("ix_api_keys_account_id"), "api_keys", ["account_id"], unique=False)
    op.create_table(
        "dispatch_batches",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("lane", sa.String(length=8), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("enqueued_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_dispatch_batches_pending",
        "dispatch_batches",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("enqueued_at IS NULL"),
        sqlite_where=sa.text("enqueued_at IS NULL"),
    )
    op.create_table(
        "message_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_message_events_message_id"), "message_events", ["message_id"], unique=False
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.String(length=36), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("phone", sa.String(length=16), nullable=False),
        sa.Column("sender", sa.String(length=16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("parts", sa.SmallInteger(), nullable=False),
        sa.Column("encoding", sa.String(length=4), nullable=False),
        sa.Column("flash", sa.Boolean(), nullable=False),
        sa.Column("lane", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("status_at", sa.Double(), nullable=False),
        sa.Column("scheduled_at", sa.Double(), nullable=True),
        sa.Column("next_attempt_at", sa.Double(), nullable=True),
        sa.Column("valid_until", sa.Double(), nullable=False),
        sa.Column("queued_at", sa.Double(), nullable=True),
        sa.Column("sent_at", sa.Double(), nullable=True),
        sa.Column("final_at", sa.Double(), nullable=True),
        sa.Column("batch_id", sa.String(length=36), nullable=True),
        sa.Column("attempts", sa.SmallInteger(), nullable=False),
        sa.Column("connection", sa.String(length=64), nullable=True),
        sa.Column("carrier_message_id", sa.String(length=64), nullable=True),
        sa.Column("http_status", sa.SmallInteger(), nullable=True),
        sa.Column("latency_ms", sa.Double(), nullable=True),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("error_description", sa.String(length=255), nullable=True),
        sa.Column("error_permanent", sa.Boolean(), nullable=True),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_messages_account_created", "messages", ["account_id", "created_at"], unique=False
    )
    op.create_index(
        "ix_messages_account_external", "messages", ["account_id", "external_id"], unique=False
    )
    op.create_index("ix_messages_account_phone", "messages", ["account_id", "phone"], unique=False)
    op.create_index("ix_messages_batch", "messages", ["batch_id"], unique=False)
    op.create_index(
        "ix_messages_held_due",
        "messages",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('scheduled', 'retrying')"),
        sqlite_where=sa.text("status IN ('scheduled', 'retrying')"),
    )
    op.create_index(
        "ix_messages_queued",
        "messages",
        ["queued_at"],
        unique=False,
        postgresql_where=sa.text("status = 'queued'"),
        sqlite_where=sa.text("status = 'queued'"),
    )
    op.create_index(
        "ix_messages_sending",
        "messages",
        ["status_at"],
        unique=False,
        postgresql_where=sa.text("status = 'sending'"),
        sqlite_where=sa.text("status = 'sending'"),
    )
    op.create_index("ix_messages_submission", "messages", ["submission_id"], unique=False)
    op.create_table(
        "submissions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("body_hash", sa.String(length=64), nullable=False),
        sa.Column("lane", sa.String(length=8), nullable=False),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "external_id", name="uq_submissions_external_id"),
        sa.UniqueConstraint("account_id", "idempotency_key", name="uq_submissions_idempotency_key"),
    )
    op.create_index(
        "ix_submissions_account_created", "submissions", ["account_id", "created_at"], unique=False
    )


def downgrade() -> None:

    op.drop_index("ix_submissions_account_created", table_name="submissions")
    op.drop_table("submissions")
    op.drop_index("ix_messages_submission", table_name="messages")
    op.drop_index(
        "ix_messages_sending",
        table_name="messages",
        postgresql_where=sa.text("status = 'sending'"),
        sqlite_where=sa.text("status = 'sending'"),
    )
    op.drop_index(
        "ix_messages_queued",
        table_name="messages",
        postgresql_where=sa.text("status = 'queued'"),
        sqlite_where=sa.text("status = 'queued'"),
    )
    op.drop_index(
        "ix_messages_held_due",
        table_name="messages",
        postgresql_where=sa.text("status IN ('scheduled', 'retrying')"),
        sqlite_where=sa.text("status IN ('scheduled', 'retrying')"),
    )
    op.drop_index("ix_messages_batch", table_name="messages")
    op.drop_index("ix_messages_account_phone", table_name="messages")
    op.drop_index("ix_messages_account_external", table_name="messages")
    op.drop_index("ix_messages_account_created", table_name="messages")
    op.drop_table("messages")
    op.drop_index(op.f("ix_message_events_message_id"), table_name="message_events")
    op.drop_table("message_events")
    op.drop_index(
        "ix_dispatch_batches_pending",
        table_name="dispatch_batches",
        postgresql_where=sa.text("enqueued_at IS NULL"),
        sqlite_where=sa.text("enqueued_at IS NULL"),
    )
    op.drop_table("dispatch_batches")
    op.drop_index(op.f("ix_api_keys_account_id"), table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("accounts")
