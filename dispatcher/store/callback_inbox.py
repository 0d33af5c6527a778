"""The carrier callback inbox: delivery reports and inbound messages between the API's 200 and
their application.

A carrier that got a 2xx never posts again, so what it posted must survive anything after the
answer. The API commits each group of callbacks here first, answers, then publishes a task
carrying only the row ids: a wake-up. A lost task (a Redis crash between kombu's ``BRPOP`` and
its ``unacked`` entry, a killed worker, an ETA dropped with a connection) loses nothing: every
row has a ``due_at`` (the end of its lease), and the scheduler publishes the rows that are due
again (:func:`take_due`). The worker applies a row and deletes it in one transaction
(reports), or keeps the reports that came before their submit was recorded with a later
``due_at`` (:func:`postpone`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, Select, and_, delete, func, select, update

from dispatcher.contract import CallbackKind
from dispatcher.store.schema import carrier_callbacks

REPORT = CallbackKind.REPORT
INBOUND = CallbackKind.INBOUND
_INSERT = (
    "INSERT INTO carrier_callbacks (kind, connection, items, received_at, due_at, attempt) "
    "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id"
)


def _dumps(items: Sequence[Mapping[str, Any]]) -> str:
    return orjson.dumps(list(items)).decode()


@dataclass(frozen=True)
class StoredCallback:
    """One row: a group of items one connection posted, as the carrier sent them."""

    id: int
    kind: str
    connection: str
    items: list[dict[str, Any]]
    received_at: float
    attempt: int


def add(
    conn: Connection,
    kind: str,
    connection: str,
    groups: Sequence[Sequence[dict[str, Any]]],
    now: float,
    lease_s: float,
) -> list[int]:
    """Store ``groups`` of items (one row each), leased for ``lease_s``; their ids, in order."""
    kind = CallbackKind(kind)  # ValueError on anything else
    sql = _INSERT.replace("%s", "?") if conn.dialect.name == "sqlite" else _INSERT
    ids: list[int] = []
    for items in groups:
        # One row at a time: RETURNING with executemany is not portable to SQLite; a group of
        # concurrent callbacks is one row anyway (dispatcher/api/callbacks.py). Driver SQL: the
        # API runs this for every callback group, and building the statement with SQLAlchemy
        # cost more than executing it.
        params = (str(kind), connection, _dumps(items), now, now + lease_s, 0)
        ids.append(int(conn.exec_driver_sql(sql, params).scalar_one()))
    return ids


def take_due(
    conn: Connection, now: float, lease_s: float, limit: int = 500
) -> list[tuple[int, str]]:
    """``(id, kind)`` of rows due at ``now``, leased again for ``lease_s`` in the same statement
    so the next tick does not publish them twice while their task is on its way."""
    c = carrier_callbacks.c
    pick = select(c.id).where(c.due_at <= now).order_by(c.due_at).limit(limit)
    if conn.dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)  # a worker holds it: not due for us
    picked = pick.cte("picked")
    rows = conn.execute(
        update(carrier_callbacks)
        .where(and_(c.id.in_(select(picked.c.id)), c.due_at <= now))
        .values(due_at=now + lease_s)
        .returning(c.id, c.kind)
    )
    return sorted((int(r[0]), str(r[1])) for r in rows)


def lock(conn: Connection, ids: Sequence[int], kind: str) -> list[StoredCallback]:
    """The rows of ``ids`` still waiting, locked until the caller's transaction ends.

    On PostgreSQL rows another worker holds are skipped (``SKIP LOCKED``): it applies them.
    Rows already applied and deleted are simply not returned.
    """
    if not ids:
        return []
    c = carrier_callbacks.c
    query = _select_rows().where(and_(c.id.in_(list(ids)), c.kind == kind)).order_by(c.id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [_stored(r) for r in conn.execute(query)]


def _select_rows() -> Select[Any]:
    c = carrier_callbacks.c
    return select(c.id, c.kind, c.connection, c["items"], c.received_at, c.attempt)


def _stored(r: Any) -> StoredCallback:
    return StoredCallback(
        int(r.id), r.kind, r.connection, orjson.loads(r.items), r.received_at, r.attempt
    )


def lock_fresh(
    conn: Connection,
    kind: str,
    exclude: Sequence[int],
    limit: int,
    received_before: float | None = None,
) -> list[StoredCallback]:
    """Up to ``limit`` more rows of ``kind`` never tried yet (``attempt = 0``: their wake-up
    task is on its way), locked like :func:`lock`. A worker takes them with its own rows so a
    burst of one-report callbacks costs one transaction per batch, not per row; their tasks
    then find nothing to do. Early reports (tried, waiting for their next try) are not taken,
    nor rows received after ``received_before`` (when given: rows whose wake-up is held back
    on purpose, see :mod:`workers.smpp.process`).
    PostgreSQL only: elsewhere there is one worker process and nothing to share."""
    if conn.dialect.name != "postgresql" or limit <= 0:
        return []
    c = carrier_callbacks.c
    cond = and_(c.kind == kind, c.attempt == 0, c.id.not_in(list(exclude)))
    if received_before is not None:
        cond = and_(cond, c.received_at <= received_before)
    query = _select_rows().where(cond).order_by(c.id).limit(limit).with_for_update(skip_locked=True)
    return [_stored(r) for r in conn.execute(query)]


def finish(conn: Connection, ids: Sequence[int]) -> None:
    """Delete applied rows."""
    if ids:
        conn.execute(delete(carrier_callbacks).where(carrier_callbacks.c.id.in_(list(ids))))


def postpone(
    conn: Connection, row_id: int, items: Sequence[Mapping[str, Any]], due_at: float, attempt: int
) -> None:
    """Keep only ``items`` of the row, to be taken again at ``due_at``."""
    conn.execute(
        update(carrier_callbacks)
        .where(carrier_callbacks.c.id == row_id)
        .values(items=_dumps(items), due_at=due_at, attempt=attempt)
    )


def waiting(conn: Connection) -> dict[str, tuple[int, float | None]]:
    """Rows waiting per kind and the oldest one's arrival (the exporter's gauges: a growing
    age means the dlr lane is not applying them)."""
    c = carrier_callbacks.c
    found = {
        str(kind): (int(n), oldest)
        for kind, n, oldest in conn.execute(
            select(c.kind, func.count(), func.min(c.received_at)).group_by(c.kind)
        )
    }
    return {str(k): found.get(str(k), (0, None)) for k in CallbackKind}
