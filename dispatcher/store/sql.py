"""Small SQL helpers shared by the message-log modules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ARRAY, Connection, String, Table, any_, bindparam, false, update


def id_in(conn: Connection, column: Any, ids: Sequence[str]) -> Any:
    """``column IN ids``: one array parameter on PostgreSQL (one cached plan and statement for
    any list length), an expanded list elsewhere."""
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, list(ids), type_=ARRAY(String)))
    return column.in_(list(ids))


def dialect_insert(conn: Connection, table: Any) -> Any:
    """``INSERT`` with the dialect's ``on_conflict_do_nothing()`` (PostgreSQL or SQLite)."""
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert(table) if conn.dialect.name == "postgresql" else sqlite.insert(table)


def sqlite_write_lock(conn: Connection, table: Table) -> None:
    """On SQLite, take the database's write lock now, held until the transaction ends.

    SQLite has no row locks, and the driver runs reads outside any transaction until the first
    write: a read-then-write that must not interleave with another writer (what ``SELECT … FOR
    UPDATE`` gives on PostgreSQL) starts with a write that changes nothing. A no-op elsewhere.
    """
    if conn.dialect.name == "sqlite":
        first = next(iter(table.c))
        conn.execute(update(table).where(false()).values({first.name: first}))
