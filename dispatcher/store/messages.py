"""Writing submissions to the message log and reading messages back (producer side).

A message is committed before it is enqueued: :func:`write_submissions` inserts the messages and
their dispatch batches (the outbox) in the caller's transaction; the caller publishes the batches
after the commit and then marks them enqueued. A crash in between leaves batches with
``enqueued_at IS NULL``, which the scheduler re-publishes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, and_, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from dispatcher.contract import Lane, Status
from dispatcher.ids import new_message_id
from dispatcher.store.records import Batch, NewMessage, NewSubmission, StoredSubmission
from dispatcher.store.schema import dispatch_batches, messages, submissions
from dispatcher.store.suppressions import suppressed

MESSAGE_COLUMNS = (
    "id",
    "account_id",
    "submission_id",
    "external_id",
    "phone",
    "sender",
    "body",
    "parts",
    "encoding",
    "flash",
    "lane",
    "status",
    "created_at",
    "status_at",
    "scheduled_at",
    "next_attempt_at",
    "valid_until",
    "queued_at",
    "batch_id",
    "attempts",
    "webhook_url",
)
# Below this many rows a multi-row INSERT beats setting up COPY.
COPY_THRESHOLD = 200


def _dialect_insert(conn: Connection, table: Any) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _submission_row(sub: NewSubmission) -> dict[str, Any]:
    return {
        "id": sub.id,
        "account_id": sub.account_id,
        "external_id": sub.external_id,
        "idempotency_key": sub.idempotency_key,
        "body_hash": sub.body_hash,
        "lane": sub.lane,
        "recipients": len(sub.messages),
        "source": sub.source,
        "created_at": sub.created_at,
    }


def _find_existing(conn: Connection, sub: NewSubmission) -> StoredSubmission | None:
    """The original submission that ``sub`` repeats, if any."""
    c = submissions.c
    if sub.idempotency_key is not None:
        row = conn.execute(
            select(c.id, c.body_hash).where(
                and_(c.account_id == sub.account_id, c.idempotency_key == sub.idempotency_key)
            )
        ).first()
        if row is not None:
            conflict = None if row.body_hash == sub.body_hash else "body_mismatch"
            return StoredSubmission(row.id, True, submission_messages(conn, row.id), conflict)
    if sub.external_id is not None:
        row = conn.execute(
            select(c.id).where(
                and_(c.account_id == sub.account_id, c.external_id == sub.external_id)
            )
        ).first()
        if row is not None:
            return StoredSubmission(row.id, True, submission_messages(conn, row.id))
    return None


def _message_row(m: NewMessage, batch_id: str | None) -> tuple[Any, ...]:
    queued = m.status == Status.QUEUED
    return (
        m.id,
        m.account_id,
        m.submission_id,
        m.external_id,
        m.phone,
        m.sender,
        m.body,
        m.parts,
        m.encoding,
        m.flash,
        m.lane,
        m.status,
        m.created_at,
        m.created_at,
        m.scheduled_at,
        m.next_attempt_at,
        m.valid_until,
        m.created_at if queued else None,
        batch_id,
        0,
        m.webhook_url,
    )


def insert_message_rows(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert message rows (tuples in :data:`MESSAGE_COLUMNS` order); COPY on PostgreSQL."""
    if not rows:
        return
    if conn.dialect.name == "postgresql" and len(rows) >= COPY_THRESHOLD:
        raw: Any = conn.connection.dbapi_connection  # a psycopg 3 connection
        cols = ", ".join(MESSAGE_COLUMNS)
        with raw.cursor() as cur, cur.copy(f"COPY messages ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    conn.execute(insert(messages), [dict(zip(MESSAGE_COLUMNS, r, strict=True)) for r in rows])


def write_submissions(
    conn: Connection, subs: Sequence[NewSubmission], chunk_sizes: dict[str, int]
) -> tuple[list[StoredSubmission], list[Batch]]:
    """Insert ``subs`` (skipping repeats) and their dispatch batches; the caller commits.

    Returns one :class:`StoredSubmission` per input, in order, and the batches to publish.
    """
    results: list[StoredSubmission] = []
    fresh: list[NewSubmission] = []
    plain_rows: list[dict[str, Any]] = []
    opted_out = _drop_opted_out(conn, subs)
    for sub in subs:
        if sub.id in opted_out and not sub.messages:
            results.append(
                StoredSubmission(sub.id, False, [], opted_out=opted_out[sub.id], refused=True)
            )
            continue
        if sub.external_id is None and sub.idempotency_key is None:
            plain_rows.append(_submission_row(sub))
            fresh.append(sub)
            results.append(StoredSubmission(sub.id, False, [], opted_out=opted_out.get(sub.id, [])))
            continue
        # A client-chosen key may repeat: insert-or-nothing, then read the original.
        stmt = (
            _dialect_insert(conn, submissions)
            .values(**_submission_row(sub))
            .on_conflict_do_nothing()
            .returning(submissions.c.id)
        )
        if conn.execute(stmt).first() is not None:
            fresh.append(sub)
            results.append(StoredSubmission(sub.id, False, [], opted_out=opted_out.get(sub.id, [])))
            continue
        existing = _find_existing(conn, sub)
        if existing is None:  # conflict on a key we did not look up: treat as in flight
            existing = StoredSubmission(sub.id, True, [], "in_flight")
        results.append(existing)
    if plain_rows:
        conn.execute(insert(submissions), plain_rows)

    batches: list[Batch] = []
    rows: list[tuple[Any, ...]] = []
    queued: dict[str, list[NewMessage]] = {}
    for sub in fresh:
        for m in sub.messages:
            if m.status == Status.QUEUED:
                queued.setdefault(m.lane, []).append(m)
            else:
                rows.append(_message_row(m, None))
    for lane, msgs in queued.items():
        size = max(1, chunk_sizes.get(lane, 500))
        for i in range(0, len(msgs), size):
            chunk = msgs[i : i + size]
            batch = Batch(new_message_id(), lane, [m.payload() for m in chunk])
            batches.append(batch)
            rows.extend(_message_row(m, batch.id) for m in chunk)
    insert_message_rows(conn, rows)
    insert_batches(conn, batches)
    return results, batches


def _drop_opted_out(conn: Connection, subs: Sequence[NewSubmission]) -> dict[str, list[str]]:
    """Remove bulk messages to numbers on their account's suppression list, in place.

    One query per account per group commit. Priority (transactional) messages are never
    dropped: an OTP the user asked for must arrive even after they left marketing lists.
    Returns the phones dropped per submission id.
    """
    by_account: dict[int, list[NewSubmission]] = {}
    for sub in subs:
        if sub.lane == Lane.BULK and sub.messages:
            by_account.setdefault(sub.account_id, []).append(sub)
    dropped: dict[str, list[str]] = {}
    for account_id, account_subs in by_account.items():
        phones = list({m.phone for s in account_subs for m in s.messages})
        blocked = suppressed(conn, account_id, phones)
        if not blocked:
            continue
        for s in account_subs:
            gone = [m.phone for m in s.messages if m.phone in blocked]
            if gone:
                s.messages = [m for m in s.messages if m.phone not in blocked]
                dropped[s.id] = gone
    return dropped


def insert_batches(conn: Connection, batches: Iterable[Batch], now: float | None = None) -> None:
    """Record outbox rows for ``batches`` (not yet enqueued)."""
    rows = [
        {
            "id": b.id,
            "lane": b.lane,
            "size": len(b.payloads),
            "created_at": now if now is not None else time.time(),
            "enqueued_at": None,
        }
        for b in batches
    ]
    if rows:
        conn.execute(insert(dispatch_batches), rows)


def mark_enqueued(conn: Connection, batch_ids: Sequence[str], now: float) -> None:
    """Mark batches as handed to the broker, so the outbox sweep leaves them alone."""
    if batch_ids:
        conn.execute(
            update(dispatch_batches)
            .where(dispatch_batches.c.id.in_(list(batch_ids)))
            .values(enqueued_at=now)
        )


def submission_messages(conn: Connection, submission_id: str) -> list[dict[str, Any]]:
    """Every message of a submission, in insertion (id) order."""
    rows = conn.execute(
        select(messages).where(messages.c.submission_id == submission_id).order_by(messages.c.id)
    )
    return [dict(r._mapping) for r in rows]
