"""Webhook deliveries in the message log: an outbox, created in the same transaction as the
status change they report, and handed to the webhooks lane by the scheduler.

A delivery moves ``pending`` (waiting for ``next_attempt_at``) → ``queued`` (published; the
scheduler's lease in ``next_attempt_at``) → ``sending`` (claimed by a worker; the claim's lease
in ``next_attempt_at``) → ``delivered`` | ``pending`` (retry later) | ``failed`` | ``disabled``.
Only ``pending`` is covered by the due index; a ``queued`` or ``sending`` row whose lease ran out
(a lost task, a crashed worker) goes back to ``pending`` through
:func:`recover_stale_deliveries`, which the scheduler runs on its slow path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, and_, case, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from dispatcher.contract import EVENT_MESSAGE_INBOUND, EVENT_MESSAGE_STATUS, FINAL_STATUSES, Status
from dispatcher.ids import new_message_id
from dispatcher.store.schema import accounts, messages, webhook_deliveries
from dispatcher.webhooks.payloads import dumps, inbound_payload, status_payload
from dispatcher.webhooks.secrets import generate_secret

INBOUND_KEY = "inbound"  # status_key of inbound deliveries (the unique key needs a value)
_CHUNK = 500


class DeliveryState(StrEnum):
    """States of a ``webhook_deliveries`` row."""

    PENDING = "pending"
    QUEUED = "queued"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"
    DISABLED = "disabled"  # its endpoint answered 410 Gone or was disabled
    DEAD = "dead"  # its claims kept ending without a recorded result: set aside


class EndpointState(StrEnum):
    """States of a ``webhook_endpoints`` row."""

    ACTIVE = "active"
    SUSPENDED = "suspended"  # failing for webhook_suspend_after_h: resume with the CLI
    DISABLED = "disabled"  # answered 410 Gone


def _insert(conn: Connection) -> Any:
    table = webhook_deliveries
    return postgresql.insert(table) if conn.dialect.name == "postgresql" else sqlite.insert(table)


# On PostgreSQL a chunk of deliveries is one statement over arrays: the same text for any
# number of rows (prepared once), where a multi-row VALUES is compiled anew for each chunk
# (a campaign cancel of 100,000 messages spent minutes compiling; docs/campaigns.md).
_COLUMNS = (
    ("id", "text"),
    ("account_id", "int"),
    ("message_id", "text"),
    ("event", "text"),
    ("status_key", "text"),
    ("url", "text"),
    ("url_secondary", "text"),
    ("payload", "text"),
    ("state", "text"),
    ("attempts", "smallint"),
    ("created_at", "float8"),
    ("next_attempt_at", "float8"),
)
_PG_INSERT = (
    f"INSERT INTO webhook_deliveries ({', '.join(c for c, _ in _COLUMNS)}) "
    f"SELECT * FROM unnest({', '.join(f'%b::{t}[]' for _, t in _COLUMNS)}) "
    "ON CONFLICT DO NOTHING RETURNING id"
)


def insert_new(conn: Connection, rows: list[dict[str, Any]]) -> list[str]:
    """Insert deliveries, skipping repeats (unique message_id, event, status_key)."""
    if not rows:
        return []
    if conn.dialect.name == "postgresql":
        arrays = tuple([r[c] for r in rows] for c, _ in _COLUMNS)
        raw: Any = conn.connection.dbapi_connection  # a psycopg 3 connection
        dbapi: Any = conn.dialect.dbapi
        try:
            # Binary: text arrays in text format escape every quote of every payload in
            # Python (a regex per element), binary ones are copied as they are.
            with raw.cursor() as cur:
                cur.execute(_PG_INSERT, arrays)
                return [r[0] for r in cur.fetchall()]
        except dbapi.Error as exc:
            raise DBAPIError.instance(_PG_INSERT, None, exc, dbapi.Error) from exc
    stmt = _insert(conn).values(rows).on_conflict_do_nothing().returning(webhook_deliveries.c.id)
    return [r[0] for r in conn.execute(stmt)]


def delivery_row(
    account_id: int,
    message_id: str,
    event: str,
    status_key: str,
    url: str,
    secondary: str | None,
    payload: str,
    now: float,
) -> dict[str, Any]:
    return {
        "id": new_message_id(),
        "account_id": account_id,
        "message_id": message_id,
        "event": event,
        "status_key": status_key,
        "url": url,
        "url_secondary": secondary if secondary and secondary != url else None,
        "payload": payload,
        "state": DeliveryState.PENDING,
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
    }


def targets(
    own: str | None, main: str | None, secondary: str | None
) -> tuple[str, str | None] | None:
    """(URL, fallback URL) for a message: its own URL, else the account's; ``None``: no URL."""
    first = own or main or secondary
    if not first:
        return None
    return first, secondary if secondary != first else None


def create_status_webhooks(conn: Connection, message_ids: Sequence[str], now: float) -> int:
    """Create one delivery per message that reached a final status and has a webhook URL.

    Call it in the transaction that changed the status. Messages in ``sent`` get one only when
    their account has ``webhook_on_sent``; other non-final states, and messages with neither a
    ``webhookUrl`` nor an account URL, get none. A repeat for the same message and status is a
    no-op. Returns how many deliveries were created.
    """
    m, a = messages.c, accounts.c
    created = 0
    ids = list(dict.fromkeys(message_ids))
    for i in range(0, len(ids), _CHUNK):
        rows = conn.execute(
            select(
                m.id,
                m.account_id,
                m.external_id,
                m.phone,
                m.sender,
                m.parts,
                m.status,
                m.status_at,
                m.error_code,
                m.error_description,
                m.error_permanent,
                m.webhook_url,
                a.webhook_url.label("account_url"),
                a.webhook_url_secondary.label("account_url_secondary"),
                a.webhook_on_sent,
            )
            .join(accounts, a.id == m.account_id)
            .where(
                and_(
                    m.id.in_(ids[i : i + _CHUNK]),
                    or_(
                        m.status.in_(sorted(FINAL_STATUSES)),
                        and_(m.status == Status.SENT, a.webhook_on_sent.is_(True)),
                    ),
                    or_(
                        m.webhook_url.is_not(None),
                        a.webhook_url.is_not(None),
                        a.webhook_url_secondary.is_not(None),
                    ),
                )
            )
        ).all()
        new: list[dict[str, Any]] = []
        for r in rows:
            wanted = r.status in FINAL_STATUSES or (r.status == Status.SENT and r.webhook_on_sent)
            target = targets(r.webhook_url, r.account_url, r.account_url_secondary)
            if not wanted or target is None:
                continue
            body = dumps(status_payload(dict(r._mapping)))
            new.append(
                delivery_row(r.account_id, r.id, EVENT_MESSAGE_STATUS, r.status, *target, body, now)
            )
        created += len(insert_new(conn, new))
    return created


def create_account_webhook(
    conn: Connection, account_id: int, event: str, key: str, payload: Mapping[str, Any], now: float
) -> str | None:
    """An account event's delivery (e.g. ``account.balance_low``) to its default webhook URL;
    ``key`` makes it once-only. Its id, or ``None`` when the account has no URL or it exists."""
    a = accounts.c
    acc = conn.execute(
        select(a.webhook_url, a.webhook_url_secondary).where(a.id == account_id)
    ).first()
    target = None if acc is None else targets(None, acc.webhook_url, acc.webhook_url_secondary)
    if target is None:
        return None
    row = delivery_row(account_id, key, event, event[:16], *target, dumps(payload), now)
    created = insert_new(conn, [row])
    return created[0] if created else None


def create_inbound_webhook(conn: Connection, inbound: Mapping[str, Any], now: float) -> str | None:
    """Create the ``message.inbound`` delivery of a received message; its id, or ``None``.

    ``inbound`` has the ``inbound_messages`` columns: ``id``, ``account_id``, ``phone`` (the
    sender), ``number`` (ours), ``body``, ``parts``, ``received_at`` and optionally ``keyword``.
    The URL is the account's inbound URL, else its default webhook URL (with the matching
    secondary). ``None`` when the account has no URL or this message already has its delivery.
    Call it in the transaction that stores the inbound message.
    """
    a = accounts.c
    acc = conn.execute(
        select(
            a.webhook_url,
            a.webhook_url_secondary,
            a.inbound_webhook_url,
            a.inbound_webhook_url_secondary,
        ).where(a.id == inbound["account_id"])
    ).first()
    if acc is None:
        return None
    if acc.inbound_webhook_url or acc.inbound_webhook_url_secondary:
        target = targets(None, acc.inbound_webhook_url, acc.inbound_webhook_url_secondary)
    else:
        target = targets(None, acc.webhook_url, acc.webhook_url_secondary)
    if target is None:
        return None
    row = delivery_row(
        int(inbound["account_id"]),
        str(inbound["id"]),
        EVENT_MESSAGE_INBOUND,
        INBOUND_KEY,
        *target,
        dumps(inbound_payload(inbound)),
        now,
    )
    created = insert_new(conn, [row])
    return created[0] if created else None


def due_deliveries(
    conn: Connection, now: float, lease_s: float = 30.0, limit: int = 500
) -> list[str]:
    """Ids of pending deliveries due at ``now``, marked ``queued`` with a lease of ``lease_s``.

    One statement: the rows leave the due index, so the next tick does not publish them again
    while they wait in the queue. Publish the ids as ``TASK_DELIVER_WEBHOOKS`` tasks; if the task
    is lost, :func:`recover_stale_deliveries` makes them pending again after the lease.
    """
    d = webhook_deliveries.c
    pick = (
        select(d.id)
        .where(and_(d.state == DeliveryState.PENDING, d.next_attempt_at <= now))
        .order_by(d.next_attempt_at)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    picked = pick.cte("picked")  # evaluated once (a locking CTE is never inlined)
    rows = conn.execute(
        update(webhook_deliveries)
        .where(and_(d.id.in_(select(picked.c.id)), d.state == DeliveryState.PENDING))
        .values(state=DeliveryState.QUEUED, next_attempt_at=now + lease_s)
        .returning(d.id)
    )
    return [r[0] for r in rows]


def recover_stale_deliveries(
    conn: Connection, now: float, limit: int = 1000, max_failures: int = 5
) -> int:
    """Queued or claimed deliveries whose lease ran out (lost task, crashed worker) → pending.

    Run it every few seconds (the scheduler's slow path); returns how many were recovered. A
    recovered claim may have reached the receiver before the crash: receivers de-duplicate on
    ``webhook-id``, as the docs ask. A claim that ran out counts as a failure of the delivery
    (a lost task does not): a delivery that kills its worker, or that cannot be recorded,
    every time is set aside as ``dead`` at ``max_failures`` instead of being taken again.
    """
    d = webhook_deliveries.c
    stale = and_(
        d.state.in_([DeliveryState.QUEUED, DeliveryState.SENDING]), d.next_attempt_at <= now
    )
    pick = select(d.id).where(stale).limit(limit)
    if conn.dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    picked = pick.cte("stale")
    claimed = d.state == DeliveryState.SENDING
    rows = conn.execute(
        update(webhook_deliveries)
        .where(and_(d.id.in_(select(picked.c.id)), stale))
        .values(
            state=case(
                (and_(claimed, d.failures + 1 >= max_failures), DeliveryState.DEAD),
                else_=DeliveryState.PENDING,
            ),
            failures=d.failures + case((claimed, 1), else_=0),
            last_error=case((claimed, CLAIM_LOST), else_=d.last_error),
            next_attempt_at=now,
        )
        .returning(d.id)
    )
    return len(rows.all())


CLAIM_LOST = "claim expired without a recorded result (worker lost or recording failed)"


def set_aside(
    conn: Connection, delivery_id: str, error: str, now: float, max_failures: int
) -> bool:
    """Count a failure to record a delivery's result: pending again after a back-off, or
    ``dead`` at ``max_failures``. Whether it became dead."""
    d = webhook_deliveries.c
    row = conn.execute(select(d.failures).where(d.id == delivery_id)).first()
    if row is None:
        return False
    failures = int(row.failures) + 1
    dead = failures >= max_failures
    conn.execute(
        update(webhook_deliveries)
        .where(d.id == delivery_id)
        .values(
            state=DeliveryState.DEAD if dead else DeliveryState.PENDING,
            failures=failures,
            last_error=error[:255],
            next_attempt_at=now + min(60.0, 2.0**failures),
        )
    )
    return dead


def signing_secrets(
    conn: Connection, account_ids: Iterable[int], now: float
) -> dict[int, list[str]]:
    """The secrets to sign with, per account: the current one, plus the previous one while a
    rotation lasts. Accounts without a secret get one here (first use)."""
    a = accounts.c
    wanted = sorted(set(account_ids))
    if not wanted:
        return {}

    def load() -> list[Any]:
        return list(
            conn.execute(
                select(
                    a.id,
                    a.webhook_secret,
                    a.webhook_secret_previous,
                    a.webhook_secret_previous_until,
                ).where(a.id.in_(wanted))
            )
        )

    rows = load()
    missing = [r.id for r in rows if not r.webhook_secret]
    for account_id in missing:
        conn.execute(
            update(accounts)
            .where(
                and_(a.id == account_id, or_(a.webhook_secret.is_(None), a.webhook_secret == ""))
            )
            .values(webhook_secret=generate_secret())
        )
    if missing:
        rows = load()  # another worker may have won the race: use what is stored
    out: dict[int, list[str]] = {}
    for r in rows:
        keys = [r.webhook_secret]
        until = r.webhook_secret_previous_until
        if r.webhook_secret_previous and until is not None and until > now:
            keys.append(r.webhook_secret_previous)
        out[r.id] = keys
    return out
