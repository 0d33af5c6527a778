"""The bulk row writers on a real database (dispatcher/store/bulk.py): both ways store the
same rows, and a bad row fails the transaction as the one error the log's callers handle,
``StoreUnavailable``, with nothing of the batch kept (``COPY``'s errors are the driver's own
until translated)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, func, select

from dispatcher.accounts.account import create_account
from dispatcher.store.bulk import copy_rows, insert_many
from dispatcher.store.db import StoreUnavailable, transaction
from dispatcher.store.links import CLICK_COLUMNS
from dispatcher.store.schema import link_clicks

pytestmark = pytest.mark.integration


def _rows(account_id: int, n: int, ip_hash: str | None = None) -> list[tuple[object, ...]]:
    now = time.time()
    return [
        (f"c{i:07d}", f"m{i}", account_id, now + i, "mobile", i % 2 == 0, ip_hash) for i in range(n)
    ]


@pytest.mark.parametrize("write", [copy_rows, insert_many])
def test_rows_are_stored_as_given(engine: Engine, write: Callable[..., None]) -> None:
    account, _ = create_account(engine, "bulk", sender_policy="open")
    rows = _rows(account.id, 5, "ab" * 16)
    with transaction(engine) as conn:
        write(conn, link_clicks.name, CLICK_COLUMNS, rows)
    with engine.connect() as conn:
        stored = conn.execute(
            select(*(link_clicks.c[c] for c in CLICK_COLUMNS)).order_by(link_clicks.c.code)
        ).all()
    assert [tuple(r) for r in stored] == rows


@pytest.mark.parametrize("write", [copy_rows, insert_many])
def test_a_bad_row_fails_the_whole_batch_as_store_unavailable(
    engine: Engine, write: Callable[..., None]
) -> None:
    account, _ = create_account(engine, "bulk", sender_policy="open")
    rows = _rows(account.id, 3)
    rows.append((None, "m9", account.id, time.time(), "mobile", False, None))  # code NOT NULL
    with pytest.raises(StoreUnavailable), transaction(engine) as conn:
        write(conn, link_clicks.name, CLICK_COLUMNS, rows)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(link_clicks)).scalar() == 0
