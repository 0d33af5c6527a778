"""Writing submissions to the message log and reading messages back (producer side).

A message is committed before it is enqueued: :func:`write_submissions` inserts the messages and
their dispatch batches (the outbox) in the caller's transaction; the caller publishes the batches
after the commit and then marks them enqueued. A crash in between leaves batches with
``enqueued_at IS NULL``, which the scheduler re-publishes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, and_, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from dispatcher.billing.pricebook import PriceBook
from dispatcher.contract import Lane, Status
from dispatcher.ids import new_message_id
from dispatcher.store.balances import Charge, charge, record_charges
from dispatcher.store.bulk import copy_rows, insert_many
from dispatcher.store.control_sweeps import cancel_stored, hold_controlled
from dispatcher.store.links import LINK_COLUMNS, link_rows, settle_codes
from dispatcher.store.records import Batch, NewMessage, NewSubmission, StoredSubmission
from dispatcher.store.schema import dispatch_batches, messages, short_links, submissions
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
    "original_body",
    "price",
    "currency",
    "charged",
    "window_start",
    "window_end",
)
_BATCH_COLUMNS = ("id", "lane", "size", "created_at", "enqueued_at", "account_id")
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
        "campaign": sub.campaign,
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
        m.original_body,
        m.price,
        m.currency,
        m.charged,
        m.window_start,
        m.window_end,
    )


def insert_message_rows(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert message rows (tuples in :data:`MESSAGE_COLUMNS` order); ``COPY`` from
    :data:`COPY_THRESHOLD` rows (on PostgreSQL: :func:`~dispatcher.store.bulk.copy_rows`)."""
    if len(rows) >= COPY_THRESHOLD:
        copy_rows(conn, messages.name, MESSAGE_COLUMNS, rows)
    else:
        insert_many(conn, messages.name, MESSAGE_COLUMNS, rows)


@contextmanager
def pipelined(conn: Connection, messages: int) -> Iterator[None]:
    """Batch the statements run inside into as few round trips as their results allow.

    On PostgreSQL the psycopg connection is put in pipeline mode: statements inside travel
    together and are answered at the end, so they must not read results (SQLAlchemy would see
    none). A group commit thus costs three round trips (opt-out lookup, writes, ``COMMIT``)
    instead of six; each is also a GIL hand-off between the writer thread and the event loop.
    Errors reported at the end are raised as SQLAlchemy's, like any other statement's. Not on
    SQLite, and not when ``messages`` is large enough for ``COPY`` (not allowed in pipeline
    mode).
    """
    if conn.dialect.name != "postgresql" or messages >= COPY_THRESHOLD:
        yield
        return
    raw: Any = conn.connection.dbapi_connection
    dbapi: Any = conn.dialect.dbapi
    try:
        with raw.pipeline():
            yield
    except dbapi.Error as exc:
        raise DBAPIError.instance(None, None, exc, dbapi.Error) from exc


def write_submissions(
    conn: Connection,
    subs: Sequence[NewSubmission],
    chunk_sizes: dict[str, int],
    enqueued: tuple[Sequence[str], float] = ((), 0.0),
    book: PriceBook | None = None,
    fair: bool = False,
    optimistic: bool = False,
) -> tuple[list[StoredSubmission], list[Batch]]:
    """Insert ``subs`` (skipping repeats) and their dispatch batches; the caller commits.

    ``enqueued`` (batch ids, time): batches published earlier, marked enqueued with the same
    round trip as the inserts. ``book``: billing is on (docs/prices.md): new messages are
    priced and charged in this transaction, those the balance cannot pay for are refused.
    ``fair``: the bulk lane admits accounts fairly (docs/campaigns.md): its batches hold one
    account's messages each and carry that account (:func:`batch_messages`). ``optimistic``:
    :mod:`dispatcher.store.balances`. Returns a :class:`StoredSubmission` per input, in order,
    and the batches to publish."""
    results: dict[str, StoredSubmission] = {}
    fresh: list[NewSubmission] = []
    keyed: list[NewSubmission] = []
    opted_out = _drop_opted_out(conn, subs)
    for sub in subs:
        if sub.id in opted_out and not sub.messages:
            results[sub.id] = StoredSubmission(
                sub.id, False, [], opted_out=opted_out[sub.id], refused=True
            )
            continue
        if sub.external_id is None and sub.idempotency_key is None:
            fresh.append(sub)
            results[sub.id] = StoredSubmission(
                sub.id, False, [], opted_out=opted_out.get(sub.id, [])
            )
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
            keyed.append(sub)
            results[sub.id] = StoredSubmission(
                sub.id, False, [], opted_out=opted_out.get(sub.id, [])
            )
            continue
        existing = _find_existing(conn, sub)
        if existing is None:  # conflict on a key we did not look up: treat as in flight
            existing = StoredSubmission(sub.id, True, [], "in_flight")
        results[sub.id] = existing
    charges: dict[str, Charge] = {}
    rows_locked: dict[int, Any] = {}
    if book is not None and fresh:
        charges, rows_locked = charge(conn, fresh, book, time.time(), lock=not optimistic)
        fresh = _settle(conn, fresh, keyed, charges, results)
    plain_rows = [
        _submission_row(s) for s in fresh if s.external_id is None and s.idempotency_key is None
    ]
    # Short-link codes are checked against the stored ones before the texts go into payloads.
    # Messages sent into a paused or cancelled campaign (docs/campaigns.md) are not queued.
    cancel = hold_controlled(conn, fresh)
    linked = [m for sub in fresh for m in sub.messages if m.links]
    if linked:
        settle_codes(conn, linked)
    rows: list[tuple[Any, ...]] = []
    queued: list[NewMessage] = []
    for sub in fresh:
        for m in sub.messages:
            if m.status == Status.QUEUED:
                queued.append(m)
            else:
                rows.append(_message_row(m, None))
    batches: list[Batch] = []
    for batch, chunk in batch_messages(queued, chunk_sizes, fair):
        batches.append(batch)
        rows.extend(_message_row(m, batch.id) for m in chunk)
    # Nothing below reads a result (the optimistic charge's, after): one round trip on PostgreSQL.
    check = None
    with pipelined(conn, len(rows)):
        mark_enqueued(conn, enqueued[0], enqueued[1])
        if plain_rows:
            columns = tuple(plain_rows[0])
            insert_many(conn, submissions.name, columns, [tuple(r.values()) for r in plain_rows])
        insert_message_rows(conn, rows)
        insert_many(conn, short_links.name, LINK_COLUMNS, link_rows(linked))
        insert_batches(conn, batches)
        if charges:  # last: an optimistic charge holds its row lock from here to COMMIT
            check = record_charges(conn, fresh, charges, rows_locked, time.time(), not optimistic)
    if check is not None:
        check()
    if cancel:
        cancel_stored(conn, cancel, time.time())
    return [results[s.id] for s in subs], batches


def batch_messages(
    msgs: Sequence[Any], chunk_sizes: dict[str, int], fair: bool, attempt: Any = None
) -> Iterator[tuple[Batch, list[Any]]]:
    """Cut ``msgs`` (rows with ``id``, ``lane``, ``account_id``) into dispatch batches.

    Per lane, in order, ``chunk_sizes[lane]`` messages a batch; with ``fair``, bulk batches
    hold one account's messages and carry its id, so the admitter can choose between accounts.
    ``attempt``: how to build a row's payload (default: ``row.payload()``).
    """
    groups: dict[tuple[str, int | None], list[Any]] = {}
    for m in msgs:
        account = m.account_id if fair and m.lane == Lane.BULK else None
        groups.setdefault((m.lane, account), []).append(m)
    for (lane, account), group in groups.items():
        size = max(1, chunk_sizes.get(lane, 500))
        for i in range(0, len(group), size):
            chunk = group[i : i + size]
            payloads = [m.payload() if attempt is None else attempt(m) for m in chunk]
            yield Batch(new_message_id(), lane, payloads, account), chunk


def _settle(
    conn: Connection,
    fresh: list[NewSubmission],
    keyed: list[NewSubmission],
    charges: dict[str, Charge],
    results: dict[str, StoredSubmission],
) -> list[NewSubmission]:
    """Report what billing refused; a submission left with no message is not stored (a keyed
    one's row, inserted above, is removed, so the same key can be sent again after a
    top-up). Returns the submissions that still have messages."""
    kept: list[NewSubmission] = []
    keyed_ids = {s.id for s in keyed}
    for sub in fresh:
        c = charges[sub.id]
        r = results[sub.id]
        r.unpaid, r.balance, r.balance_currency = c.refused, c.balance, c.currency
        if sub.messages:
            kept.append(sub)
            if c.refused and sub.id in keyed_ids:
                conn.execute(
                    update(submissions)
                    .where(submissions.c.id == sub.id)
                    .values(recipients=len(sub.messages))
                )
            continue
        r.refused = True
        if sub.id in keyed_ids:
            conn.execute(delete(submissions).where(submissions.c.id == sub.id))
    return kept


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
    at = now if now is not None else time.time()
    rows = [(b.id, b.lane, len(b.payloads), at, None, b.account) for b in batches]
    insert_many(conn, dispatch_batches.name, _BATCH_COLUMNS, rows)


def mark_enqueued(conn: Connection, batch_ids: Sequence[str], now: float) -> None:
    """Mark batches as handed to the broker, so the outbox sweep leaves them alone."""
    if not batch_ids:
        return
    if conn.dialect.name == "postgresql":  # one array parameter: one prepared statement
        conn.exec_driver_sql(
            "UPDATE dispatch_batches SET enqueued_at = %s WHERE id = ANY(%s)",
            (now, list(batch_ids)),
        )
        return
    for i in range(0, len(batch_ids), 500):
        chunk = list(batch_ids[i : i + 500])
        marks = ", ".join("?" * len(chunk))
        conn.exec_driver_sql(
            f"UPDATE dispatch_batches SET enqueued_at = ? WHERE id IN ({marks})", (now, *chunk)
        )


def submission_messages(conn: Connection, submission_id: str) -> list[dict[str, Any]]:
    """Every message of a submission, in insertion (id) order."""
    rows = conn.execute(
        select(messages).where(messages.c.submission_id == submission_id).order_by(messages.c.id)
    )
    return [dict(r._mapping) for r in rows]
