"""dead letters for the callback inbox and the webhook outbox

Failure counts and the last error on carrier_callbacks and webhook_deliveries, the table of
callbacks set aside, and an index on dead deliveries.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 12:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("carrier_callbacks", "webhook_deliveries"):
        op.add_column(
            table,
            sa.Column("failures", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
        )
        op.add_column(table, sa.Column("last_error", sa.String(length=255), nullable=True))
    op.create_index(
        "ix_webhook_deliveries_dead",
        "webhook_deliveries",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("state = 'dead'"),
        sqlite_where=sa.text("state = 'dead'"),
    )
    op.create_table(
        "carrier_callbacks_dead",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("connection", sa.String(length=64), nullable=False),
        sa.Column("items", sa.Text(), nullable=False),
        sa.Column("received_at", sa.Double(), nullable=False),
        sa.Column("failures", sa.SmallInteger(), nullable=False),
        sa.Column("error", sa.String(length=255), nullable=False),
        sa.Column("dead_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_carrier_callbacks_dead_at", "carrier_callbacks_dead", ["dead_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_carrier_callbacks_dead_at", table_name="carrier_callbacks_dead")
    op.drop_table("carrier_callbacks_dead")
    op.drop_index("ix_webhook_deliveries_dead", table_name="webhook_deliveries")
    for table in ("webhook_deliveries", "carrier_callbacks"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("last_error")
            batch.drop_column("failures")
