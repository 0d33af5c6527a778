"""Engine creation for SQLite (default) and PostgreSQL (``DATABASE_URL``)."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, create_engine, event


class StoreError(Exception):
    """Root of the message log's errors."""


class StoreUnavailable(StoreError):
    """The database could not be reached or refused the operation."""


def normalize_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever spelling the operator chose."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite(url: str) -> bool:
    """Whether the URL names a SQLite database."""
    return url.startswith("sqlite")


def make_engine(url: str, pool_size: int = 5) -> Engine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout so processes can share it."""
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
    )
