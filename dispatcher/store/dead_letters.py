"""Dead letters of the carrier callback inbox (and of the webhook outbox: deliveries in state
``dead``): rows that failed to apply, set aside so they never block anyone else's
(docs/security.md, "poison callbacks"; docs/operations.md).

A worker applies inbox rows in batches. When a batch fails with an error of its data (not a
database outage: :func:`dispatcher.store.db.transient` tells them apart), the worker applies
the rows one at a time, and a row that fails alone one item at a time (:func:`split`), so the
failing item is found and everything else is applied. The failing item's row counts the failure
(:func:`record_failure`) and is tried again later; at ``max_failures`` it moves to
``carrier_callbacks_dead`` with its last error. There it is counted by the exporter (an alert
fires), listed, retried (after a fix) or dropped with ``smsdispatch callbacks``.

Errors are described by their kind only (exception classes and SQLSTATE): their messages may
quote the data, and the data may be a message text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, and_, delete, func, insert, select, update
from sqlalchemy import exc as sa_exc

from dispatcher.contract import CallbackKind
from dispatcher.store.schema import carrier_callbacks, carrier_callbacks_dead, webhook_deliveries
from dispatcher.store.webhooks import DeliveryState


def describe(exc: BaseException) -> str:
    """The kind of ``exc`` for operators: exception classes and SQLSTATE, never the message."""
    names: list[str] = []
    seen: BaseException | None = exc
    sqlstate = None
    while seen is not None and len(names) < 4:
        names.append(type(seen).__name__)
        if isinstance(seen, sa_exc.DBAPIError):
            sqlstate = getattr(seen.orig, "sqlstate", None) or sqlstate
            names.append(f"{type(seen.orig).__module__}.{type(seen.orig).__name__}")
            break
        seen = seen.__cause__
    text = " <- ".join(dict.fromkeys(names))
    return (f"{text} (SQLSTATE {sqlstate})" if sqlstate else text)[:255]


def failure_delay(failures: int) -> float:
    """Seconds before a failed row is tried again: 2, 4, 8 … capped at 60."""
    return float(min(60, 2 ** max(1, failures)))


def _locked_row(conn: Connection, row_id: int) -> Any:
    """The row, locked for this transaction; ``None`` when gone or held by another worker
    (which is applying it)."""
    query = select(carrier_callbacks).where(carrier_callbacks.c.id == row_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return conn.execute(query).first()


def _moved(row: Any) -> dict[str, Any]:
    """The columns a row keeps between the inbox and the dead letters (the id included)."""
    return {
        "id": row.id,
        "kind": row.kind,
        "connection": row.connection,
        "items": row.items,
        "received_at": row.received_at,
    }


def split(conn: Connection, row_id: int) -> list[int]:
    """Replace a row of several items by one row per item (same kind, connection, arrival,
    tries), so each is applied or fails on its own; the new ids, or ``[row_id]`` when it holds
    one item, ``[]`` when it is gone or another worker holds it."""
    c = carrier_callbacks.c
    row = _locked_row(conn, row_id)
    if row is None:
        return []
    items = orjson.loads(row.items)
    if len(items) <= 1:
        return [row_id]
    ids = []
    for item in items:
        ids.append(
            int(
                conn.execute(
                    insert(carrier_callbacks)
                    .values(
                        kind=row.kind,
                        connection=row.connection,
                        items=orjson.dumps([item]).decode(),
                        received_at=row.received_at,
                        due_at=row.due_at,
                        attempt=max(1, row.attempt),  # not "fresh": its tries are under way
                        failures=row.failures,
                        last_error=row.last_error,
                    )
                    .returning(c.id)
                ).scalar_one()
            )
        )
    conn.execute(delete(carrier_callbacks).where(c.id == row_id))
    return ids


def record_failure(
    conn: Connection, row_id: int, error: str, now: float, max_failures: int
) -> bool:
    """Count a failed try of the row: tried again after :func:`failure_delay`, or, at
    ``max_failures``, moved to the dead letters. Whether it was moved."""
    c = carrier_callbacks.c
    row = _locked_row(conn, row_id)
    if row is None:
        return False
    failures = int(row.failures) + 1
    if failures >= max_failures:
        conn.execute(
            insert(carrier_callbacks_dead).values(
                **_moved(row),
                failures=failures,
                error=error[:255],
                dead_at=now,
            )
        )
        conn.execute(delete(carrier_callbacks).where(c.id == row_id))
        return True
    conn.execute(
        update(carrier_callbacks)
        .where(c.id == row_id)
        .values(
            failures=failures,
            attempt=int(row.attempt) + 1,  # leaves the never-tried index: not taken along
            last_error=error[:255],
            due_at=now + failure_delay(failures),
        )
    )
    return False


@dataclass(frozen=True)
class DeadCallback:
    """One dead letter, as the CLI shows it (the items only on request: they may hold texts)."""

    id: int
    kind: str
    connection: str
    items: list[dict[str, Any]]
    received_at: float
    failures: int
    error: str
    dead_at: float


def listing(conn: Connection, kind: str | None = None, limit: int = 100) -> list[DeadCallback]:
    """Dead letters, oldest first."""
    d = carrier_callbacks_dead.c
    query = select(carrier_callbacks_dead).order_by(d.dead_at, d.id).limit(limit)
    if kind is not None:
        query = query.where(d.kind == CallbackKind(kind))
    return [
        DeadCallback(
            int(r.id),
            r.kind,
            r.connection,
            orjson.loads(r.items),
            r.received_at,
            int(r.failures),
            r.error,
            r.dead_at,
        )
        for r in conn.execute(query)
    ]


def _chosen(kind: str, ids: Sequence[int] | None) -> Any:
    d = carrier_callbacks_dead.c
    of_kind = d.kind == CallbackKind(kind)
    return and_(of_kind, d.id.in_(list(ids))) if ids is not None else of_kind


def retry(conn: Connection, kind: str, ids: Sequence[int] | None, now: float) -> int:
    """Put dead letters of ``kind`` (``ids``; ``None``: all) back in the inbox, due now with
    their failures forgotten (after the cause was fixed); how many."""
    d = carrier_callbacks_dead.c
    rows = conn.execute(select(carrier_callbacks_dead).where(_chosen(kind, ids))).all()
    for r in rows:
        conn.execute(
            insert(carrier_callbacks).values(
                **_moved(r),
                due_at=now,
                attempt=1,
                failures=0,
                last_error=f"retried after: {r.error}"[:255],
            )
        )
    conn.execute(delete(carrier_callbacks_dead).where(d.id.in_([r.id for r in rows])))
    return len(rows)


def drop(conn: Connection, kind: str, ids: Sequence[int] | None) -> int:
    """Delete dead letters of ``kind`` for good (``ids``; ``None``: all); how many."""
    return int(conn.execute(delete(carrier_callbacks_dead).where(_chosen(kind, ids))).rowcount)


def counts(conn: Connection) -> dict[str, tuple[int, float | None]]:
    """Dead letters per kind and the oldest one's time (the exporter's gauges)."""
    d = carrier_callbacks_dead.c
    found = {
        str(kind): (int(n), oldest)
        for kind, n, oldest in conn.execute(
            select(d.kind, func.count(), func.min(d.dead_at)).group_by(d.kind)
        )
    }
    return {str(k): found.get(str(k), (0, None)) for k in CallbackKind}


def fresh_ids(conn: Connection, kind: str, exclude: Sequence[int], limit: int) -> list[int]:
    """Ids of rows of ``kind`` never tried (what a batch takes along), unlocked: for a worker
    that has to apply them one at a time after its batch failed."""
    c = carrier_callbacks.c
    return [
        int(r[0])
        for r in conn.execute(
            select(c.id)
            .where(and_(c.kind == kind, c.attempt == 0, c.id.not_in(list(exclude))))
            .order_by(c.id)
            .limit(limit)
        )
    ]


# -- the webhook outbox: deliveries in state ``dead`` ---------------------------------------------


def dead_deliveries(conn: Connection, limit: int = 100) -> list[dict[str, Any]]:
    """Webhook deliveries set aside, oldest first (no payloads: they hold message data)."""
    d = webhook_deliveries.c
    rows = conn.execute(
        select(d.id, d.account_id, d.event, d.url, d.failures, d.last_error, d.created_at)
        .where(d.state == DeliveryState.DEAD)
        .order_by(d.created_at, d.id)
        .limit(limit)
    )
    return [dict(r._mapping) for r in rows]


def _dead(ids: Sequence[str] | None) -> Any:
    d = webhook_deliveries.c
    chosen = d.state == DeliveryState.DEAD
    return and_(chosen, d.id.in_(list(ids))) if ids is not None else chosen


def retry_deliveries(conn: Connection, ids: Sequence[str] | None, now: float) -> int:
    """Dead deliveries (``None``: all) → pending, due now, failures forgotten; how many."""
    return int(
        conn.execute(
            update(webhook_deliveries)
            .where(_dead(ids))
            .values(state=DeliveryState.PENDING, failures=0, next_attempt_at=now)
        ).rowcount
    )


def drop_deliveries(conn: Connection, ids: Sequence[str] | None) -> int:
    """Dead deliveries (``None``: all) → failed for good; how many."""
    return int(
        conn.execute(
            update(webhook_deliveries).where(_dead(ids)).values(state=DeliveryState.FAILED)
        ).rowcount
    )
