"""The scheduler's queries: release held messages, find unpublished batches, stale claims."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, and_, or_, select, update

from dispatcher.contract import HELD_STATUSES, MessagePayload, Status
from dispatcher.store.control_sweeps import divert
from dispatcher.store.messages import batch_messages, insert_batches
from dispatcher.store.progress import expire_overdue
from dispatcher.store.records import Batch
from dispatcher.store.schema import dispatch_batches, messages

_PAYLOAD_COLS = (
    messages.c.id,
    messages.c.account_id,
    messages.c.phone,
    messages.c.sender,
    messages.c.body,
    messages.c.parts,
    messages.c.flash,
    messages.c.valid_until,
    messages.c.attempts,
    messages.c.lane,
    messages.c.created_at,
    messages.c.scheduled_at,
)


def _payload(r: Any) -> MessagePayload:
    return {
        "id": r.id,
        "account": r.account_id,
        "to": r.phone,
        "sender": r.sender,
        "text": r.body,
        "parts": r.parts,
        "flash": bool(r.flash),
        "valid_until": r.valid_until,
        "attempt": r.attempts,
        "due_at": max(r.created_at, r.scheduled_at or 0.0),
    }


def _rebatch(
    conn: Connection,
    rows: Sequence[Any],
    from_statuses: Sequence[str],
    now: float,
    chunk_sizes: dict[str, int],
    fair: bool,
) -> list[Batch]:
    """Give ``rows`` new dispatch batches and mark them queued (compare-and-set).

    ``fair``: bulk batches are one account's and wait for the admitter (docs/campaigns.md)."""
    batches: list[Batch] = []
    m = messages.c
    for batch, chunk in batch_messages(rows, chunk_sizes, fair, attempt=_payload):
        won = conn.execute(
            update(messages)
            .where(and_(m.id.in_([r.id for r in chunk]), m.status.in_(list(from_statuses))))
            .values(status=Status.QUEUED, status_at=now, queued_at=now, batch_id=batch.id)
            .returning(m.id)
        )
        won_ids = {r[0] for r in won}
        batch.payloads = [p for p in batch.payloads if p["id"] in won_ids]
        if batch.payloads:
            batches.append(batch)
    insert_batches(conn, batches, now)
    return batches


def release_due(
    conn: Connection,
    now: float,
    chunk_sizes: dict[str, int],
    fair: bool = False,
    limit: int = 5000,
    controlled: Mapping[str, str] | None = None,
) -> tuple[list[Batch], int]:
    """Held messages whose time has come → queued batches; past validity → expired.

    ``controlled`` (submission id → ``paused`` | ``cancelled``, docs/campaigns.md): due
    messages of such campaigns (a retry of an attempt under way when the campaign was paused
    or cancelled) are paused or cancelled instead of released, unless their last attempt may
    have reached the carrier: those are released, and their claim asks the carrier first."""
    m = messages.c
    stmt = (
        select(*_PAYLOAD_COLS, m.submission_id)
        .where(and_(m.status.in_(list(HELD_STATUSES)), m.next_attempt_at <= now))
        .order_by(m.next_attempt_at)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = conn.execute(stmt).all()
    overdue = [r.id for r in rows if r.valid_until <= now]
    expired = expire_overdue(conn, overdue, now, waiting=list(HELD_STATUSES))
    live = [r for r in rows if r.valid_until > now]
    if controlled:
        held_back: dict[str, list[str]] = {}
        for r in live:
            if r.submission_id in controlled:
                held_back.setdefault(controlled[r.submission_id], []).append(r.id)
        if held_back:
            diverted = divert(conn, held_back, now)
            live = [r for r in live if r.id not in diverted]
    return _rebatch(conn, live, list(HELD_STATUSES), now, chunk_sizes, fair), len(expired)


def unpublished_batches(
    conn: Connection, older_than: float, fair: bool = False, limit: int = 200
) -> list[Batch]:
    """Batches committed but never marked enqueued (a crash or a Redis outage in between).

    ``fair``: batches waiting for fair admission are the admitter's, not this sweep's (with
    fairness off they are swept here too, so turning it off never strands them)."""
    b = dispatch_batches.c
    cond = and_(b.enqueued_at.is_(None), b.created_at < older_than)
    if fair:
        cond = and_(cond, b.account_id.is_(None))
    ids = [r[0] for r in conn.execute(select(b.id).where(cond).order_by(b.created_at).limit(limit))]
    return load_batches(conn, ids)


def load_batches(conn: Connection, ids: Sequence[str]) -> list[Batch]:
    """The batches ``ids`` with their messages still ``queued`` (the others were claimed)."""
    lanes = (
        dict(
            conn.execute(
                select(dispatch_batches.c.id, dispatch_batches.c.lane).where(
                    dispatch_batches.c.id.in_(list(ids))
                )
            ).all()
        )
        if ids
        else {}
    )
    by_batch: dict[str, list[MessagePayload]] = {i: [] for i in ids}
    for i in range(0, len(ids), 500):
        rows = conn.execute(
            select(messages.c.batch_id, *_PAYLOAD_COLS).where(
                and_(
                    messages.c.batch_id.in_(list(ids[i : i + 500])),
                    messages.c.status == Status.QUEUED,
                )
            )
        ).all()
        for r in rows:
            by_batch[r.batch_id].append(_payload(r))
    return [Batch(i, str(lanes.get(i, "")), by_batch[i]) for i in ids]


def stale_claims(conn: Connection, older_than: float, limit: int = 1000) -> list[str]:
    """Messages claimed ("sending") longer ago than a carrier call can last."""
    m = messages.c
    rows = conn.execute(
        select(m.id)
        .where(and_(m.status == Status.SENDING, m.status_at < older_than))
        .order_by(m.status_at)
        .limit(limit)
    )
    return [r[0] for r in rows]


def audit_batches(
    conn: Connection,
    lane: str,
    cursor: tuple[float, str],
    until: float,
    now: float,
    chunk_sizes: dict[str, int],
    fair: bool = False,
    limit: int = 2000,
) -> tuple[list[Batch], tuple[float, str]]:
    """Messages still queued in batches enqueued after ``cursor`` and before ``until``.

    Called only while the lane's queue is empty, so such messages lost their task (e.g. Redis
    restarted without its append-only file); they are re-batched. Each batch is audited once
    (keyset on ``(enqueued_at, id)``), so the work is proportional to what was sent, and no
    index over queued messages is needed: such an index, with stale planner statistics right
    after a large insert, used to be picked for the workers' claims and made them slow.
    """
    b = dispatch_batches.c
    after, after_id = cursor
    found = conn.execute(
        select(b.id, b.enqueued_at)
        .where(
            and_(
                b.lane == lane,
                b.enqueued_at < until,
                or_(b.enqueued_at > after, and_(b.enqueued_at == after, b.id > after_id)),
            )
        )
        .order_by(b.enqueued_at, b.id)
        .limit(limit)
    ).all()
    if not found:
        return [], cursor
    rows: list[Any] = []
    ids = [r.id for r in found]
    for i in range(0, len(ids), 500):
        rows.extend(
            conn.execute(
                select(*_PAYLOAD_COLS).where(
                    and_(
                        messages.c.batch_id.in_(ids[i : i + 500]),
                        messages.c.status == Status.QUEUED,
                    )
                )
            ).all()
        )
    last = found[-1]
    return _rebatch(conn, rows, [Status.QUEUED], now, chunk_sizes, fair), (
        last.enqueued_at,
        last.id,
    )
