"""Engine creation for SQLite (default) and PostgreSQL (``DATABASE_URL``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError


class StoreError(Exception):
    """Root of the message log's errors."""


class StoreUnavailable(StoreError):
    """The database could not be reached or refused the operation."""


@contextmanager
def translated() -> Iterator[None]:
    """Database errors raised inside leave as :class:`StoreUnavailable` (named after the
    driver's error class), the one error callers of the log handle."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise StoreUnavailable(type(exc).__name__) from exc


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction on the log, committed when the block ends; database errors, at any
    point of it, leave as :class:`StoreUnavailable`. The one door callers go through."""
    with translated(), engine.begin() as conn:
        yield conn


def normalize_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever spelling the operator chose."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite(url: str) -> bool:
    """Whether the URL names a SQLite database."""
    return url.startswith("sqlite")


def make_engine(url: str, pool_size: int = 5, plan_each_run: bool = False) -> Engine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout so processes can share it.

    ``plan_each_run`` (PostgreSQL): plan every execution for the tables as they are now,
    never from a cached generic plan. For the workers and the scheduler, whose statements pick
    rows out of ``messages`` by id or by state while the table grows or drains by the hundred
    thousand: psycopg prepares a statement after five runs, and PostgreSQL then keeps a generic
    plan made for the table's size at that moment. A priority worker that started on a nearly
    empty log kept claiming each OTP with a sequential scan of the grown table until autovacuum
    re-analysed it (``tests/integration/test_plan_each_run.py``; the effect on scenario C is in
    docs/benchmarks.md). Not for the API: its group commit would re-plan every INSERT of an
    ``executemany``, costing PostgreSQL CPU per request, and its statements do not choose
    between plans.
    """
    url = normalize_url(url)
    if is_sqlite(url):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No ping per checkout (a round trip on every transaction); a connection broken by a
        # database restart fails once, is invalidated with its pool, and callers retry
        # (tasks retry, the API answers 503 with Retry-After).
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args={"options": "-c plan_cache_mode=force_custom_plan"} if plan_each_run else {},
    )
