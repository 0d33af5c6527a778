"""prices, balances and the ledger (issue 24)

Revision ID: 0009_prices
Revises: 0008_sender_names
Create Date: 2026-12-07 06:00:00

Messages get their price, currency, whether they were charged and when they were refunded;
the new columns have defaults, so PostgreSQL adds them without rewriting the table.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_prices"
down_revision = "0008_sender_names"
branch_labels = None
depends_on = None

REFUNDABLE = (
    "charged AND refunded_at IS NULL AND sent_at IS NULL "
    "AND status IN ('rejected', 'expired', 'failed') "
    "AND (error_code IS NULL OR error_code <> 'send_state_unknown')"
)
_bigint = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column(
        "messages", sa.Column("price", sa.Integer(), server_default=sa.text("0"), nullable=False)
    )
    op.add_column(
        "messages",
        sa.Column("currency", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "messages",
        sa.Column("charged", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column("messages", sa.Column("refunded_at", sa.Double(), nullable=True))
    op.create_index(
        "ix_messages_refundable",
        "messages",
        ["status_at"],
        unique=False,
        postgresql_where=sa.text(REFUNDABLE),
        sqlite_where=sa.text(REFUNDABLE),
    )
    op.create_table(
        "price_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("prefix", sa.String(length=15), nullable=False),
        sa.Column("price", sa.Integer(), nullable=False),
        sa.Column("currency", sa.SmallInteger(), nullable=False),
        sa.Column("valid_from", sa.Double(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_price_entries_scope", "price_entries", ["account_id", "prefix", "valid_from"]
    )
    op.create_table(
        "balances",
        sa.Column("account_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("currency", sa.SmallInteger(), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("credit_limit", sa.BigInteger(), nullable=True),
        sa.Column("low_balance", sa.BigInteger(), nullable=True),
        sa.Column("low_notified_at", sa.Double(), nullable=True),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("account_id"),
    )
    op.create_table(
        "ledger",
        sa.Column("id", _bigint, autoincrement=True, nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.SmallInteger(), nullable=False),
        sa.Column("submission_id", sa.String(length=36), nullable=True),
        sa.Column("messages", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("parts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("note", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ledger_account_at", "ledger", ["account_id", "at"])
    op.create_index("ix_ledger_submission", "ledger", ["submission_id"])


def downgrade() -> None:
    op.drop_index("ix_ledger_submission", table_name="ledger")
    op.drop_index("ix_ledger_account_at", table_name="ledger")
    op.drop_table("ledger")
    op.drop_table("balances")
    op.drop_index("ix_price_entries_scope", table_name="price_entries")
    op.drop_table("price_entries")
    op.drop_index("ix_messages_refundable", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("refunded_at")
        batch.drop_column("charged")
        batch.drop_column("currency")
        batch.drop_column("price")
