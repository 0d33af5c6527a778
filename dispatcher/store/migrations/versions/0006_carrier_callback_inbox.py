"""carrier callback inbox (delivery reports and inbound messages kept until applied)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 04:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "carrier_callbacks",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("connection", sa.String(length=64), nullable=False),
        sa.Column("items", sa.Text(), nullable=False),
        sa.Column("received_at", sa.Double(), nullable=False),
        sa.Column("due_at", sa.Double(), nullable=False),
        sa.Column("attempt", sa.SmallInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_carrier_callbacks_due", "carrier_callbacks", ["due_at"], unique=False)
    op.create_index(
        "ix_carrier_callbacks_fresh",
        "carrier_callbacks",
        ["kind", "id"],
        unique=False,
        postgresql_where=sa.text("attempt = 0"),
        sqlite_where=sa.text("attempt = 0"),
    )


def downgrade() -> None:
    op.drop_index("ix_carrier_callbacks_fresh", table_name="carrier_callbacks")
    op.drop_index("ix_carrier_callbacks_due", table_name="carrier_callbacks")
    op.drop_table("carrier_callbacks")
