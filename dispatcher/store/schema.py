"""The message log's tables (SQLAlchemy Core). Migrations in ``migrations/`` create them.

Times are unix seconds as double precision: exact, fast to compare and to COPY, and the same on
SQLite and PostgreSQL. Hot tables have no foreign keys on purpose: they would add a lookup per
row on the bulk insert path, and every writer goes through :mod:`dispatcher.store` anyway.

Longer than 400 lines on purpose: every table of the log in one file, as the migrations and
the reader see the schema whole.
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

# A charged message that no carrier took and that will not be tried again is refunded
# (docs/prices.md, "Refunds"): rejected before or at submit, expired in the queue, given up, or
# cancelled by the customer before a worker claimed it.
# ``send_state_unknown`` (a worker lost during the carrier call, the carrier could not be
# asked) may have been taken and is not. The refund sweep's query and index share this text.
REFUNDABLE = (
    "charged AND refunded_at IS NULL AND sent_at IS NULL "
    "AND status IN ('rejected', 'expired', 'failed', 'cancelled') "
    "AND (error_code IS NULL OR error_code <> 'send_state_unknown')"
)

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
    # Delivery-report and inbound webhooks (Standard Webhooks signatures, see docs/webhooks.md).
    Column("webhook_secret", String(128)),
    Column("webhook_secret_previous", String(128)),  # still signed with during rotation
    Column("webhook_secret_previous_until", Double),
    Column("webhook_on_sent", Boolean, nullable=False, server_default=text("false")),
    Column("inbound_webhook_url", Text),
    Column("inbound_webhook_url_secondary", Text),
    # Per-account API limits (docs/security.md); NULL = the settings' default, 0 = unlimited.
    Column("api_rate_per_s", Double),
    Column("daily_cap", Integer),
    # Which sender names may send (docs/senders.md): registered (only approved names, as in
    # the original; new accounts) | open (any valid name; accounts older than the policy).
    Column("sender_policy", String(10), nullable=False, server_default=text("'registered'")),
    # Short links (docs/short-links.md): how long a new link redirects (NULL = the settings'
    # default) and which clicks send a ``message.click`` webhook: first | all | none.
    Column("link_lifetime_s", Double),
    Column("click_webhooks", String(5), nullable=False, server_default=text("'first'")),
    # Quiet hours (docs/campaigns.md): the default send window in the recipient's local time,
    # "HH:MM-HH:MM"; NULL: none (send at any hour).
    Column("send_window", String(11)),
    # Its share of the bulk lane against other accounts with work waiting (docs/campaigns.md).
    Column("bulk_weight", Integer, nullable=False, server_default=text("1")),
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
    # Named in the panel (docs/panel.md); NULL for keys issued before names existed.
    Column("name", String(64)),
    Column("created_by", String(64)),  # cli | panel:<username>
    # Refreshed at most once per auth-cache period per API process: "last used" is that exact.
    Column("last_used_at", Double),
    Column("revoked_at", Double),  # revoked in the panel (expires_at is set to the same time)
)

# Rows of a campaign made in the panel that were not sent, and why: downloadable as CSV from
# the campaign's page (docs/panel.md).
campaign_rejections = Table(
    "campaign_rejections",
    metadata,
    Column("id", _bigint_pk, primary_key=True, autoincrement=True),
    Column("account_id", Integer, nullable=False),
    Column("campaign", String(64), nullable=False),
    Column("line", Integer, nullable=False),  # the row's line in the uploaded file
    Column("phone", String(64), nullable=False),  # as written in the file
    Column("reason", String(255), nullable=False),
    Column("created_at", Double, nullable=False),
    Index("ix_campaign_rejections_campaign", "account_id", "campaign", "line"),
)

# Who did what in an account's settings (keys, webhooks, sender names, campaigns): the panel's
# audit log. ``account_id`` NULL: a platform action (an operator creating an account).
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", _bigint_pk, primary_key=True, autoincrement=True),
    Column("account_id", Integer),
    Column("at", Double, nullable=False),
    Column("actor", String(64), nullable=False),  # panel:<username> | cli:<user>
    Column("action", String(32), nullable=False),  # e.g. key.create, webhook.test
    Column("target", String(128)),  # what it acted on: a key's name, a URL's host …
    Column("detail", String(512)),  # never a secret
    Index("ix_audit_log_account_id", "account_id", "id"),
)

# Sender names an account asked for and the operator's decision (docs/senders.md).
sender_names = Table(
    "sender_names",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer, nullable=False),
    Column("name", String(16), nullable=False),  # as validate_sender returns it
    Column("state", String(8), nullable=False),  # pending | approved | rejected
    Column("requested_at", Double, nullable=False),
    Column("requested_by", String(64), nullable=False),  # api | cli:<user> | panel:<user>
    Column("decided_at", Double),
    Column("decided_by", String(64)),
    Column("reason", String(255)),  # why it was rejected, shown to the customer
    UniqueConstraint("account_id", "name", name="uq_sender_names_account_name"),
    Index("ix_sender_names_state", "state", "requested_at"),
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
    # Groups the API calls of one CSV upload into one campaign (``Smsdispatch-Campaign`` header).
    Column("campaign", String(64)),
    UniqueConstraint("account_id", "external_id", name="uq_submissions_external_id"),
    UniqueConstraint("account_id", "idempotency_key", name="uq_submissions_idempotency_key"),
    Index("ix_submissions_account_created", "account_id", "created_at"),
    Index(
        "ix_submissions_account_campaign",
        "account_id",
        "campaign",
        postgresql_where=text("campaign IS NOT NULL"),
        sqlite_where=text("campaign IS NOT NULL"),
    ),
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
    # The handset report as the carrier gave it (our mapped status is ``status``).
    Column("report_stat", String(16)),
    Column("report_error", String(32)),
    Column("report_at", Double),
    # The text as the customer wrote it, when ``body`` (what was sent) has shortened links.
    Column("original_body", Text),
    # What the message costs (docs/prices.md): ``price`` in the minor unit of ``currency`` (ISO
    # 4217 numeric), 0 and 0 when billing is off; ``charged`` when it was taken from the
    # account's balance, ``refunded_at`` when it was given back (it never reached a carrier).
    Column("price", Integer, nullable=False, server_default=text("0")),
    Column("currency", SmallInteger, nullable=False, server_default=text("0")),
    Column("charged", Boolean, nullable=False, server_default=text("false")),
    Column("refunded_at", Double),
    # Quiet hours (docs/campaigns.md): sent only between these minutes of the day in the
    # recipient's local time (zone from the number); NULL when it has no window or ignores it.
    Column("window_start", SmallInteger),
    Column("window_end", SmallInteger),
    Index("ix_messages_account_created", "account_id", "created_at"),
    # Partial, like ix_messages_batch below: an update that is not HOT (every status change:
    # the partial indexes below name ``status``) adds an entry to every index whose predicate
    # the new row version meets. Delivery reports look messages up by carrier id, which only
    # a sent message has; the outbox looks batches up only for their queued messages (in the
    # scheduler, whose engine plans each run, so ``status = :param`` proves the predicate). So
    # the insert and the claim skip this index, and the claim and the record skip the batch
    # one (docs/benchmarks.md, "The database's cost per message").
    Index(
        "ix_messages_carrier_id",
        "connection",
        "carrier_message_id",
        postgresql_where=text("carrier_message_id IS NOT NULL"),
        sqlite_where=text("carrier_message_id IS NOT NULL"),
    ),
    # The report-timeout sweep scans sent messages by validity.
    Index(
        "ix_messages_sent_valid",
        "valid_until",
        postgresql_where=text("status = 'sent'"),
        sqlite_where=text("status = 'sent'"),
    ),
    Index("ix_messages_account_phone", "account_id", "phone"),
    Index("ix_messages_account_external", "account_id", "external_id"),
    # The panel's sender filter: without it a sender with no messages scans the whole account
    # (docs/panel.md, "Speed on 1,000,000 messages").
    Index("ix_messages_account_sender_created", "account_id", "sender", "created_at"),
    Index("ix_messages_submission", "submission_id"),
    Index(
        "ix_messages_batch",
        "batch_id",
        postgresql_where=text("status = 'queued'"),
        sqlite_where=text("status = 'queued'"),
    ),
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
    # Paused messages whose validity ends while their campaign is paused end ``expired``.
    Index(
        "ix_messages_paused_valid",
        "valid_until",
        postgresql_where=text("status = 'paused'"),
        sqlite_where=text("status = 'paused'"),
    ),
    # Cancelled messages whose webhook the scheduler has yet to create (store/control.py).
    Index(
        "ix_messages_cancel_pending",
        "status_at",
        postgresql_where=text("status = 'cancelled' AND final_at IS NULL"),
        sqlite_where=text("status = 'cancelled' AND final_at IS NULL"),
    ),
    # The refund sweep's candidates: charged, never taken by a carrier, ended, not refunded.
    Index(
        "ix_messages_refundable",
        "status_at",
        postgresql_where=text(REFUNDABLE),
        sqlite_where=text(REFUNDABLE),
    ),
)

# Campaigns paused or cancelled by their account (docs/campaigns.md); no row: running. Read by
# the writer (messages sent into a paused campaign wait, into a cancelled one are cancelled)
# and by the scheduler's sweep, which catches messages that came back to waiting after the
# pause or cancel (a failed attempt's retry).
campaign_controls = Table(
    "campaign_controls",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer, nullable=False),
    Column("campaign", String(64), nullable=False),
    Column("state", String(10), nullable=False),  # running | paused | cancelled
    Column("changed_at", Double, nullable=False),
    Column("changed_by", String(64), nullable=False),  # api | cli:<user> | panel:<user>
    UniqueConstraint("account_id", "campaign", name="uq_campaign_controls"),
    Index("ix_campaign_controls_state", "state", "changed_at"),
)

# The dashboard's rollups (dispatcher/store/rollups.py, docs/panel.md "Dashboard"): counts of
# the messages created in each closed hour, kept by the scheduler, so a 7-day chart reads a few
# thousand rows instead of every message of the week. Messages past the carrier are counted
# (final or ``sent``); those still on their way are listed in ``dashboard_pending`` and read
# live. Written by the scheduler, and by a report that changes a message at least 30 minutes
# old (rare: reports come within seconds); the send path writes nothing more.
dashboard_counts = Table(
    "dashboard_counts",
    metadata,
    Column("account_id", Integer, primary_key=True, autoincrement=False),
    Column("hour", Double, primary_key=True),  # start of the hour the messages were created in
    Column("status", String(12), primary_key=True),
    Column("lane", String(8), primary_key=True),
    Column("connection", String(64), primary_key=True),  # "" when none
    # Failed statuses: the error code, else the carrier's report status, else the status
    # (as the dashboard's failures by reason); "" for every other status.
    Column("reason", String(32), primary_key=True),
    Column("n", Integer, nullable=False),
)

# Delivered messages per hour of creation and time-to-delivery bucket (logarithmic, 50 per
# decade from 0.1 s: dispatcher/store/rollups.py), for the dashboard's percentiles.
dashboard_delivery = Table(
    "dashboard_delivery",
    metadata,
    Column("account_id", Integer, primary_key=True, autoincrement=False),
    Column("hour", Double, primary_key=True),
    Column("bucket", SmallInteger, primary_key=True, autoincrement=False),
    Column("n", Integer, nullable=False),
)

# Messages the dashboard reads live (by primary key) until the scheduler counts them again:
# those of a rolled hour still on their way when it was rolled (``counted_*`` NULL), and
# counted ones whose status a late report or our expiry changed since (``counted_*``: what they
# were counted as, taken off the counts until the scheduler moves them).
dashboard_pending = Table(
    "dashboard_pending",
    metadata,
    Column("message_id", String(36), primary_key=True),
    Column("account_id", Integer, nullable=False),
    Column("hour", Double, nullable=False),
    Column("counted_status", String(12)),
    Column("counted_lane", String(8)),
    Column("counted_connection", String(64)),
    Column("counted_reason", String(32)),
    Index("ix_dashboard_pending_account_hour", "account_id", "hour"),
)

# One row (id 1): the hours ``[rolled_from, rolled_until)`` are rolled up for every account;
# ``checked_at`` is when pending messages were last re-checked.
dashboard_rollup = Table(
    "dashboard_rollup",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("rolled_from", Double, nullable=False),
    Column("rolled_until", Double, nullable=False),
    Column("checked_at", Double, nullable=False),
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
    # Set on bulk batches that wait for fair admission (dispatcher/scheduler/admission.py);
    # NULL on batches published at once (priority, or fairness off).
    Column("account_id", Integer),
    Index("ix_dispatch_batches_lane_enqueued", "lane", "enqueued_at", "id"),
    Index(
        "ix_dispatch_batches_admission",
        "account_id",
        "created_at",
        "id",
        postgresql_where=text("enqueued_at IS NULL AND account_id IS NOT NULL"),
        sqlite_where=text("enqueued_at IS NULL AND account_id IS NOT NULL"),
    ),
    Index(
        "ix_dispatch_batches_pending",
        "created_at",
        postgresql_where=text("enqueued_at IS NULL"),
        sqlite_where=text("enqueued_at IS NULL"),
    ),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(36), primary_key=True),  # also the ``webhook-id`` header
    Column("account_id", Integer, nullable=False),
    Column("message_id", String(36)),  # outgoing message, or inbound message id
    Column("event", String(32), nullable=False),  # message.status | message.inbound
    Column("status_key", String(16)),  # which status this reports: one webhook per final status
    Column("url", Text, nullable=False),
    Column("url_secondary", Text),
    Column("payload", Text, nullable=False),  # the exact JSON body that is signed
    # pending | queued | sending | delivered | failed | disabled | dead
    Column("state", String(12), nullable=False),
    Column("attempts", SmallInteger, nullable=False, default=0),
    Column("created_at", Double, nullable=False),
    Column("next_attempt_at", Double),
    Column("delivered_at", Double),
    Column("last_status_code", SmallInteger),
    # Claims that ended without a recorded result (a worker died, recording failed); at
    # webhook_max_failures the delivery is set aside as ``dead`` with its last error.
    Column("failures", SmallInteger, nullable=False, default=0, server_default=text("0")),
    Column("last_error", String(255)),
    UniqueConstraint("message_id", "event", "status_key", name="uq_webhook_once"),
    Index("ix_webhook_deliveries_message", "message_id"),
    # The panel's "recent deliveries" of an account (migration 0010_panel).
    Index("ix_webhook_deliveries_account_created", "account_id", "created_at"),
    Index(
        "ix_webhook_deliveries_leased",
        "next_attempt_at",
        postgresql_where=text("state IN ('queued', 'sending')"),
        sqlite_where=text("state IN ('queued', 'sending')"),
    ),
    Index(
        "ix_webhook_deliveries_due",
        "next_attempt_at",
        postgresql_where=text("state = 'pending'"),
        sqlite_where=text("state = 'pending'"),
    ),
    # Dead letters, counted by the exporter on every scrape.
    Index(
        "ix_webhook_deliveries_dead",
        "created_at",
        postgresql_where=text("state = 'dead'"),
        sqlite_where=text("state = 'dead'"),
    ),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", _bigint_pk, primary_key=True, autoincrement=True),
    Column("delivery_id", String(36), nullable=False, index=True),
    Column("at", Double, nullable=False),
    Column("url", Text, nullable=False),
    Column("status_code", SmallInteger),  # null: no HTTP answer (timeout, refused)
    Column("latency_ms", Double),
    Column("error", String(64)),
    Column("body", String(512)),  # the receiver's answer, truncated
)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer, nullable=False),
    Column("url", Text, nullable=False),
    Column("state", String(12), nullable=False),  # active | suspended | disabled
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("failing_since", Double),
    Column("changed_at", Double, nullable=False),
    Column("reason", String(255)),
    UniqueConstraint("account_id", "url", name="uq_webhook_endpoint"),
)

numbers = Table(
    "numbers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("number", String(16), nullable=False, unique=True),  # E.164 or a short code
    Column("account_id", Integer, nullable=False, index=True),
    Column("kind", String(12), nullable=False),  # short_code | long_number
    Column("created_at", Double, nullable=False),
)

inbound_messages = Table(
    "inbound_messages",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("account_id", Integer, nullable=False),
    Column("connection", String(64), nullable=False),
    Column("number", String(16), nullable=False),  # our dedicated number it was sent to
    Column("phone", String(16), nullable=False),  # the sender (E.164)
    Column("body", Text, nullable=False),
    Column("parts", SmallInteger, nullable=False),
    Column("carrier_message_id", String(64), nullable=False),
    Column("received_at", Double, nullable=False),
    Column("keyword", String(16)),  # opt-out / opt-in keyword it matched, if any
    UniqueConstraint("connection", "carrier_message_id", name="uq_inbound_carrier_id"),
    Index("ix_inbound_account_received", "account_id", "received_at"),
)

inbound_parts = Table(
    "inbound_parts",
    metadata,
    Column("id", _bigint_pk, primary_key=True, autoincrement=True),
    Column("connection", String(64), nullable=False),
    Column("carrier_message_id", String(64), nullable=False),
    Column("phone", String(16), nullable=False),
    Column("number", String(16), nullable=False),
    Column("ref", String(32), nullable=False),  # concatenation reference (UDH)
    Column("seq", SmallInteger, nullable=False),
    Column("total", SmallInteger, nullable=False),
    Column("body", Text, nullable=False),
    Column("received_at", Double, nullable=False),
    UniqueConstraint("connection", "carrier_message_id", name="uq_inbound_part_carrier_id"),
    Index("ix_inbound_parts_group", "connection", "phone", "number", "ref"),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer, nullable=False),
    Column("phone", String(16), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("source", String(16), nullable=False),  # keyword | api
    Column("keyword", String(16)),
    UniqueConstraint("account_id", "phone", name="uq_suppression"),
)

panel_users = Table(
    "panel_users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer, nullable=False, index=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),  # argon2id, PHC string
    Column("role", String(8), nullable=False),  # support | admin
    Column("created_at", Double, nullable=False),
    Column("disabled", Boolean, nullable=False, server_default=text("false")),
)

# Carrier callbacks (delivery reports, inbound messages) between the API's 200 and their
# application: committed here before the carrier gets its answer, so they survive a lost task
# or a Redis crash (dispatcher/store/callback_inbox.py).
carrier_callbacks = Table(
    "carrier_callbacks",
    metadata,
    Column("id", _bigint_pk, primary_key=True, autoincrement=True),
    Column("kind", String(8), nullable=False),  # report | inbound
    Column("connection", String(64), nullable=False),
    Column("items", Text, nullable=False),  # the JSON array of items as the carrier sent them
    Column("received_at", Double, nullable=False),
    # When a worker should (next) take the row: the end of a lease while a task is on its way,
    # or the next try of reports that came before their submit was recorded.
    Column("due_at", Double, nullable=False),
    Column("attempt", SmallInteger, nullable=False, default=0),
    # Tries that failed with an error (not early reports); at callback_max_failures the row
    # moves to carrier_callbacks_dead with its last error (dispatcher/store/dead_letters.py).
    Column("failures", SmallInteger, nullable=False, default=0, server_default=text("0")),
    Column("last_error", String(255)),
    Index("ix_carrier_callbacks_due", "due_at"),
    # Rows never tried, for a dlr task to take along (callback_inbox.lock_fresh) without
    # walking past a backlog of early reports waiting for their next try.
    Index(
        "ix_carrier_callbacks_fresh",
        "kind",
        "id",
        postgresql_where=text("attempt = 0"),
        sqlite_where=text("attempt = 0"),
    ),
)

# Callbacks that failed to apply callback_max_failures times, set aside so they block nothing:
# listed, retried and dropped with `smsdispatch callbacks`, counted by the exporter.
carrier_callbacks_dead = Table(
    "carrier_callbacks_dead",
    metadata,
    Column("id", _bigint_pk, primary_key=True, autoincrement=False),  # the inbox row's id
    Column("kind", String(8), nullable=False),
    Column("connection", String(64), nullable=False),
    Column("items", Text, nullable=False),
    Column("received_at", Double, nullable=False),
    Column("failures", SmallInteger, nullable=False),
    Column("error", String(255), nullable=False),
    Column("dead_at", Double, nullable=False),
    Index("ix_carrier_callbacks_dead_at", "dead_at"),
)

# Short links (docs/short-links.md): one row per URL per message. Rows never change after the
# insert, so the redirect service caches them without invalidation.
short_links = Table(
    "short_links",
    metadata,
    Column("code", String(16), primary_key=True),
    Column("message_id", String(36), nullable=False),
    Column("account_id", Integer, nullable=False),
    Column("position", SmallInteger, nullable=False),  # which URL of the text, from 0
    Column("url", Text, nullable=False),  # the original URL: the only place we redirect to
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Index("ix_short_links_message", "message_id"),
)

# Clicks on short links: time and a coarse client class, never a raw address (``ip_hash`` is a
# salted hash, and only when SMSDISPATCH_LINK_IP_SALT is set). Previews (HEAD, link-preview
# fetchers, prefetches) are recorded with ``bot`` set and are not counted.
link_clicks = Table(
    "link_clicks",
    metadata,
    Column("id", _bigint_pk, primary_key=True, autoincrement=True),
    Column("code", String(16), nullable=False),
    Column("message_id", String(36), nullable=False),
    Column("account_id", Integer, nullable=False),
    Column("at", Double, nullable=False),
    Column("client", String(8), nullable=False),  # mobile | desktop | bot | other
    Column("bot", Boolean, nullable=False),
    Column("ip_hash", String(32)),
    # One index only: every extra one is paid on each click written.
    Index("ix_link_clicks_message", "message_id", "at"),
)

# Price lists (docs/prices.md): per account, or the platform default (account_id NULL).
price_entries = Table(
    "price_entries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer),  # NULL: the platform default list
    Column("prefix", String(15), nullable=False),  # digits without "+"; "" is "*"
    Column("price", Integer, nullable=False),  # per part, minor units
    Column("currency", SmallInteger, nullable=False),  # ISO 4217 numeric
    Column("valid_from", Double, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("created_by", String(64), nullable=False),
    Index("ix_price_entries_scope", "account_id", "prefix", "valid_from"),
)

# One row per billed account: the balance, kept equal to the sum of its ledger rows (the
# charge and the ledger row are written in one transaction, under this row's lock).
balances = Table(
    "balances",
    metadata,
    Column("account_id", Integer, primary_key=True, autoincrement=False),
    Column("currency", SmallInteger, nullable=False),
    Column("balance", BigInteger, nullable=False),  # minor units; below 0 only on credit
    Column("credit_limit", BigInteger),  # may go this far below 0; NULL: no limit (postpaid)
    Column("low_balance", BigInteger),  # alert when the balance falls below this
    Column("low_notified_at", Double),  # the low-balance webhook for the current dip
    Column("updated_at", Double, nullable=False),
)

# Every change of a balance is a row: charge (negative), refund, top-up, adjustment.
ledger = Table(
    "ledger",
    metadata,
    Column("id", _bigint_pk, primary_key=True, autoincrement=True),
    Column("account_id", Integer, nullable=False),
    Column("at", Double, nullable=False),
    Column("kind", String(10), nullable=False),  # charge | refund | topup | adjustment
    Column("amount", BigInteger, nullable=False),  # signed, minor units of the balance's currency
    Column("currency", SmallInteger, nullable=False),
    Column("submission_id", String(36)),  # charges and refunds: whose messages
    Column("messages", Integer, nullable=False, server_default=text("0")),
    Column("parts", Integer, nullable=False, server_default=text("0")),
    Column("actor", String(64), nullable=False),  # api | library | scheduler | cli:<user> …
    Column("note", String(255)),
    Index("ix_ledger_account_at", "account_id", "at"),
    Index("ix_ledger_submission", "submission_id"),
)
