"""Engine creation for SQLite (default) and PostgreSQL (``DATABASE_URL``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

# ``?pooler=`` in DATABASE_URL: what sits between the processes and PostgreSQL. ``pgbouncer``:
# PgBouncer in transaction mode (docs/topology.md#postgresql-behind-pgbouncer).
POOLERS = ("pgbouncer",)


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


def split_pooler(url: str) -> tuple[str, str]:
    """``url`` without its ``pooler`` parameter, and the pooler it names ("" when none).

    The parameter is ours, not libpq's (which would refuse it), so it never reaches the driver;
    an unknown pooler, or one on a non-PostgreSQL URL, stops the caller with an error naming
    ``DATABASE_URL`` (never repeating the URL: it may carry a password).
    """
    query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    if "pooler" not in query:
        return url, ""
    pooler = query["pooler"]
    if pooler not in POOLERS:
        raise ValueError(f"DATABASE_URL: pooler must be one of {', '.join(POOLERS)}")
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValueError("DATABASE_URL: not a database URL") from exc
    if parsed.get_backend_name() != "postgresql":
        raise ValueError("DATABASE_URL: pooler is for PostgreSQL URLs only")
    return parsed.difference_update_query(["pooler"]).render_as_string(hide_password=False), pooler


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

    Behind PgBouncer in transaction mode (``?pooler=pgbouncer``) each transaction may run on
    another server connection: a startup ``options`` is refused, a session ``SET`` would land
    on some other client's connection, and psycopg's prepared statements would be missing on,
    or already exist on, the connection a transaction gets. So psycopg prepares nothing
    (``prepare_threshold=None``), and that alone keeps ``plan_each_run``'s guarantee for every
    engine: a statement that is never prepared is planned at each execution with its own
    values, so no generic plan is ever cached (``tests/integration/test_pgbouncer.py``).
    """
    url, pooler = split_pooler(normalize_url(url))
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
        connect_args=_connect_args(pooler, plan_each_run),
    )


def _connect_args(pooler: str, plan_each_run: bool) -> dict[str, Any]:
    if pooler == "pgbouncer":
        return {"prepare_threshold": None}
    return {"options": "-c plan_cache_mode=force_custom_plan"} if plan_each_run else {}
