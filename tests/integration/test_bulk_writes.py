"""The bulk row writers (dispatcher/store/bulk.py: ``executemany`` of driver SQL, and ``COPY``)
on the real database.

Many rows, NULLs in every row of a column: the rows arrive whole, in order, as the writer gave
them. A bad row fails the whole batch as the one error the log's callers handle,
``StoreUnavailable`` (``COPY``'s errors are the driver's own until translated). (A multi-row
``INSERT`` per table, and arrays through ``unnest``, were tried for the accept path on
PostgreSQL and not kept: no gain at its group sizes; docs/benchmarks.md.)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import Connection, func, select

from dispatcher.store.bulk import copy_rows, insert_many
from dispatcher.store.db import StoreUnavailable, make_engine, transaction
from dispatcher.store.messages import MESSAGE_COLUMNS
from dispatcher.store.schema import messages
from tests.support.services import fresh_database

Writer = Callable[[Connection, str, tuple[str, ...], list[tuple[object, ...]]], None]

pytestmark = pytest.mark.integration


def _row(i: int) -> tuple[object, ...]:
    now = time.time()
    values = {
        "id": f"{i:08d}-{uuid.uuid4()}"[:36],
        "account_id": 1,
        "submission_id": "s",
        "external_id": "",
        "phone": f"+48500{i:06d}",
        "sender": "S",
        "body": f"text {i}",
        "parts": 1,
        "encoding": "gsm",
        "flash": i % 2 == 0,
        "lane": "bulk",
        "status": "queued",
        "created_at": now,
        "status_at": now,
        "scheduled_at": None,  # NULL in every row: still a double precision column
        "next_attempt_at": None,
        "valid_until": now + 3600,
        "queued_at": None,
        "batch_id": None,
        "attempts": 0,
        "webhook_url": None,
        "original_body": f"text {i} (as written)" if i % 3 == 0 else None,
        "price": 7 * (i % 4),
        "currency": 985 if i % 4 else 0,
        "charged": i % 4 != 0,
        "window_start": 480 if i % 5 == 0 else None,  # quiet hours (docs/campaigns.md)
        "window_end": 1260 if i % 5 == 0 else None,
    }
    return tuple(values[c] for c in MESSAGE_COLUMNS)


@pytest.mark.parametrize("write", [insert_many, copy_rows])
@pytest.mark.parametrize("count", [1, 7, 3300])
def test_rows_arrive_whole(count: int, write: Writer) -> None:
    rows = [_row(i) for i in range(count)]
    with fresh_database() as url:
        engine = make_engine(url, pool_size=1)
        try:
            with engine.begin() as conn:
                write(conn, "messages", MESSAGE_COLUMNS, rows)
            with engine.connect() as conn:
                stored = conn.exec_driver_sql(
                    "SELECT id, phone, flash, scheduled_at FROM messages ORDER BY id"
                ).fetchall()
        finally:
            engine.dispose()
    assert [(r[0], r[4], bool(r[9]), None) for r in rows] == [tuple(s) for s in stored]


@pytest.mark.parametrize("write", [insert_many, copy_rows])
def test_a_bad_row_fails_the_whole_batch_as_store_unavailable(write: Writer) -> None:
    rows = [_row(i) for i in range(3)]
    rows.append((None, *rows[0][1:]))  # id NOT NULL
    with fresh_database() as url:
        engine = make_engine(url, pool_size=1)
        try:
            with pytest.raises(StoreUnavailable), transaction(engine) as conn:
                write(conn, "messages", MESSAGE_COLUMNS, rows)
            with engine.connect() as conn:
                assert conn.execute(select(func.count()).select_from(messages)).scalar() == 0
        finally:
            engine.dispose()
