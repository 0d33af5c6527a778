"""Writing many rows of one table at once, as driver SQL.

The hot writers (the API's group commit, the redirect service's click writer) skip
SQLAlchemy's per-execution statement and parameter processing. Two ways, by size:

- :func:`insert_many`: one ``INSERT`` text run over all rows (psycopg's ``executemany``,
  pipelined; prepared after a few uses). Cheap to start, but psycopg dumps each row's
  parameters in Python: tens of µs of client CPU per row.
- :func:`copy_rows`: ``COPY … FROM STDIN`` on PostgreSQL, a few µs per row, but a round trip
  of its own and not allowed inside psycopg's pipeline mode. On SQLite, :func:`insert_many`.

Errors from either leave as SQLAlchemy's, so :func:`dispatcher.store.db.translated` turns
them into :class:`~dispatcher.store.db.StoreUnavailable` like any other statement's.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError


@lru_cache(maxsize=64)
def _insert_sql(dialect: str, table: str, columns: tuple[str, ...]) -> str:
    mark = "%s" if dialect == "postgresql" else "?"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"


def insert_many(
    conn: Connection, table: str, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert ``rows`` (tuples in ``columns`` order) with one statement text."""
    if rows:
        conn.exec_driver_sql(_insert_sql(conn.dialect.name, table, columns), list(rows))


def copy_rows(
    conn: Connection, table: str, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert ``rows`` (tuples in ``columns`` order) with ``COPY`` on PostgreSQL."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        insert_many(conn, table, columns, rows)
        return
    raw: Any = conn.connection.dbapi_connection  # a psycopg 3 connection
    dbapi: Any = conn.dialect.dbapi
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    try:
        with raw.cursor() as cur, cur.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    except dbapi.Error as exc:
        raise DBAPIError.instance(statement, None, exc, dbapi.Error) from exc
