"""The one door to the message log: engines for SQLite (default) and PostgreSQL
(``DATABASE_URL``), and the helpers every other package opens connections with.

Outside ``dispatcher/store/`` nothing issues SQL or sees a driver's error
(rule 8 of ``tests/unit/test_boundaries.py``): writes go through :func:`transaction`, reads
through :func:`reading` (or :func:`run`, which picks one), and any database error leaves as
:class:`StoreUnavailable`, translated here once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# ``?pooler=`` in DATABASE_URL: what sits between the processes and PostgreSQL. ``pgbouncer``:
# PgBouncer in transaction mode (docs/topology.md#postgresql-behind-pgbouncer).
POOLERS = ("pgbouncer",)

T = TypeVar("T")

# Errors of the infrastructure, not of a statement or its data: retrying later can succeed.
_OUTAGE = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,  # the connection pool's
    ConnectionError,
    TimeoutError,
)


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is trouble of the database or the network rather
    than of the statement or the data being written."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, _OUTAGE):
            return True
        if isinstance(seen, sa_exc.DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    return False


class StoreError(Exception):
    """Root of the message log's errors."""


class StoreUnavailable(StoreError):
    """The database could not be reached or refused the operation; the message is the
    driver's error class (never its text, which may quote the data)."""

    @property
    def outage(self) -> bool:
        """The database is unreachable (retry later), rather than a statement being wrong
        (a bug: retrying will not help)."""
        return transient(self)


@contextmanager
def translated() -> Iterator[None]:
    """Database errors raised inside leave as :class:`StoreUnavailable` (named after the
    driver's error class), the one error callers of the log handle."""
    try:
        yield
    except sa_exc.SQLAlchemyError as exc:
        raise StoreUnavailable(type(exc).__name__) from exc


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction on the log, committed when the block ends; database errors, at any
    point of it, leave as :class:`StoreUnavailable`. The one door callers go through."""
    with translated(), engine.begin() as conn:
        yield conn


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for reads (no transaction is committed); database errors leave as
    :class:`StoreUnavailable`, as in :func:`transaction`."""
    with translated(), engine.connect() as conn:
        yield conn


def run(engine: Engine, work: Callable[[Connection], T], write: bool = False) -> T:
    """``work(conn)`` in a :func:`transaction` when ``write``, else on a :func:`reading`
    connection: for callers that pass the work to a thread (the API and the panel)."""
    with transaction(engine) if write else reading(engine) as conn:
        return work(conn)


def ping(engine: Engine) -> None:
    """Return when the database answers a query; :class:`StoreUnavailable` otherwise."""
    with reading(engine) as conn:
        conn.execute(text("SELECT 1"))


def ping_url(url: str) -> None:
    """:func:`ping` over a connection of its own, closed at once (a probe in a process that
    holds no engine: a worker's health server)."""
    # A pool of one, disposed at once: a fresh connection each time (make_engine, so that
    # the URL's pooler options apply as in the process's own engine).
    with translated():
        engine = make_engine(url, pool_size=1)
    try:
        ping(engine)
    finally:
        engine.dispose()


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
