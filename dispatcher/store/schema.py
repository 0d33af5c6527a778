"""The message log's tables (SQLAlchemy Core). Migrations in ``migrations/`` create them.

Times are unix seconds as double precision: exact, fast to compare and to COPY, and the same on
SQLite and PostgreSQL. Hot tables have no foreign keys on purpose: they would add a lookup per
row on the bulk insert path, and every writer goes through :mod:`dispatcher.store` anyway.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

_bigint_pk = BigInteger().with_variant(Integer, "sqlite")

accounts = Table(
    "accounts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("priority_enabled", Boolean, nullable=False, default=False),
    Column("webhook_url", Text),
    Column("webhook_url_secondary", Text),
    Column("created_at", Double, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer, nullable=False, index=True),
    # SHA-256 hex of the Application-Key: random 256-bit tokens need no slow hash.
    Column("app_key_hash", String(64), nullable=False, unique=True),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double),  # set when rotated: the old pair works until then
)

submissions = Table(
    "submissions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("account_id", Integer, nullable=False),
    Column("external_id", String(128)),
    Column("idempotency_key", String(255)),
    Column("body_hash", String(64), nullable=False),
    Column("lane", String(8), nullable=False),
    Column("recipients", Integer, nullable=False),
    Column("source", String(16), nullable=False, default="api"),
    Column("created_at", Double, nullable=False),
    UniqueConstraint("account_id", "external_id", name="uq_submissions_external_id"),
    UniqueConstraint("account_id", "idempotency_key", name="uq_submissions_idempotency_key"),
    Index("ix_submissions_account_created", "account_id", "created_at"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("account_id", Integer, nullable=False),
    Column("submission_id", String(36), nullable=False),
    Column("external_id", String(128), nullable=False),
    Column("phone", String(16), nullable=False),
    Column("sender", String(16), nullable=False),
    Column("body", Text, nullable=False),
    Column("parts", SmallInteger, nullable=False),
    Column("encoding", String(4), nullable=False),
    Column("flash", Boolean, nullable=False, default=False),
    Column("lane", String(8), nullable=False),
    Column("status", String(12), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("status_at", Double, nullable=False),
    Column("scheduled_at", Double),
    Column("next_attempt_at", Double),
    Column("valid_until", Double, nullable=False),
    Column("queued_at", Double),
    Column("sent_at", Double),
    Column("final_at", Double),
    Column("batch_id", String(36)),
    Column("attempts", SmallInteger, nullable=False, default=0),
    Column("connection", String(64)),
    Column("carrier_message_id", String(64)),
    Column("http_status", SmallInteger),
    Column("latency_ms", Double),
    Column("error_code", String(32)),
    Column("error_description", String(255)),
    Column("error_permanent", Boolean),
    Column("webhook_url", Text),
    Index("ix_messages_account_created", "account_id", "created_at"),
    Index("ix_messages_account_phone", "account_id", "phone"),
    Index("ix_messages_account_external", "account_id", "external_id"),
    Index("ix_messages_submission", "submission_id"),
    Index("ix_messages_batch", "batch_id"),
    # Partial indexes: the scheduler and the reconciler scan only the few rows they care about.
    Index(
        "ix_messages_held_due",
        "next_attempt_at",
        postgresql_where=text("status IN ('scheduled', 'retrying')"),
        sqlite_where=text("status IN ('scheduled', 'retrying')"),
    ),
    Index(
        "ix_messages_sending",
        "status_at",
        postgresql_where=text("status = 'sending'"),
        sqlite_where=text("status = 'sending'"),
    ),
    Index(
        "ix_messages_queued",
        "queued_at",
        postgresql_where=text("status = 'queued'"),
        sqlite_where=text("status = 'queued'"),
    ),
)

message_events = Table(
    "message_events",
    metadata,
    Column("id", _bigint_pk, primary_key=True, autoincrement=True),
    Column("message_id", String(36), nullable=False, index=True),
    Column("at", Double, nullable=False),
    Column("kind", String(24), nullable=False),
    Column("status", String(12)),
    Column("detail", JSON),
)

dispatch_batches = Table(
    "dispatch_batches",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("lane", String(8), nullable=False),
    Column("size", Integer, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("enqueued_at", Double),
    Index(
        "ix_dispatch_batches_pending",
        "created_at",
        postgresql_where=text("enqueued_at IS NULL"),
        sqlite_where=text("enqueued_at IS NULL"),
    ),
)
