"""partial indexes on messages: fewer index entries per status change (issue 19)

Revision ID: 0012_perf
Revises: 0011_links
Create Date: 2026-12-07 14:30:00

``ix_messages_carrier_id`` keeps only messages with a carrier id (sent ones: what delivery
reports look up), ``ix_messages_batch`` only queued messages (what the outbox re-publishes).
Built without CONCURRENTLY, inside the migration's transaction: on a large log, run it in a
quiet hour (docs/benchmarks.md, "The database's cost per message").
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_perf"
down_revision = "0011_links"
branch_labels = None
depends_on = None

_INDEXES = (
    (
        "ix_messages_carrier_id",
        ["connection", "carrier_message_id"],
        "carrier_message_id IS NOT NULL",
    ),
    ("ix_messages_batch", ["batch_id"], "status = 'queued'"),
)


def upgrade() -> None:
    for name, columns, where in _INDEXES:
        op.drop_index(name, table_name="messages")
        op.create_index(
            name,
            "messages",
            columns,
            unique=False,
            postgresql_where=sa.text(where),
            sqlite_where=sa.text(where),
        )


def downgrade() -> None:
    for name, columns, _where in _INDEXES:
        op.drop_index(name, table_name="messages")
        op.create_index(name, "messages", columns, unique=False)
