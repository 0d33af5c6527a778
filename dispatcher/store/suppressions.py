"""Opt-outs: numbers that asked an account to stop sending them marketing (bulk) messages.

Rows are added by an opt-out keyword (``source = "keyword"``) or by an operator
(``source = "api"``), and removed by an opt-in keyword or ``DELETE /v2.1/suppressions/{phone}``.
Phones are E.164; every query is scoped to one account.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from dispatcher.store.schema import suppressions
from dispatcher.store.sql import id_in

_CHUNK = 1000
SOURCE_KEYWORD = "keyword"
SOURCE_API = "api"


def suppressed(conn: Connection, account_id: int, phones: Sequence[str]) -> set[str]:
    """Which of ``phones`` (E.164) are on the account's suppression list."""
    out: set[str] = set()
    if conn.dialect.name == "postgresql":
        # Runs once per group commit on the accept path: plain driver SQL with one array
        # parameter costs a fraction of building the statement with SQLAlchemy each time.
        rows = conn.exec_driver_sql(
            "SELECT phone FROM suppressions WHERE account_id = %(a)s AND phone = ANY(%(p)s)",
            {"a": account_id, "p": list(phones)},
        )
        return {r[0] for r in rows}
    for i in range(0, len(phones), _CHUNK):
        chunk = list(phones[i : i + _CHUNK])
        rows = conn.execute(
            select(suppressions.c.phone).where(
                and_(
                    suppressions.c.account_id == account_id,
                    id_in(conn, suppressions.c.phone, chunk),
                )
            )
        )
        out.update(r[0] for r in rows)
    return out


def add_suppression(
    conn: Connection,
    account_id: int,
    phone: str,
    now: float,
    source: str = SOURCE_API,
    keyword: str | None = None,
) -> bool:
    """Put ``phone`` on the account's list; ``False`` when it already was (row unchanged)."""
    ins = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = (
        ins(suppressions)
        .values(account_id=account_id, phone=phone, created_at=now, source=source, keyword=keyword)
        .on_conflict_do_nothing()
        .returning(suppressions.c.id)
    )
    return conn.execute(stmt).first() is not None


def remove_suppression(conn: Connection, account_id: int, phone: str) -> dict[str, Any] | None:
    """Take ``phone`` off the account's list; the removed row, or ``None`` if absent."""
    where = and_(suppressions.c.account_id == account_id, suppressions.c.phone == phone)
    row = conn.execute(delete(suppressions).where(where).returning(*suppressions.c)).first()
    return dict(row._mapping) if row is not None else None


def list_suppressions(
    conn: Connection,
    account_id: int,
    offset: int = 0,
    limit: int = 100,
    phones: Sequence[str] = (),
) -> tuple[list[dict[str, Any]], int]:
    """A page of the account's list, newest first, and how many rows match."""
    conds = [suppressions.c.account_id == account_id]
    if phones:
        conds.append(suppressions.c.phone.in_(list(phones)))
    where = and_(*conds)
    total = conn.execute(select(func.count()).select_from(suppressions).where(where)).scalar_one()
    rows = conn.execute(
        select(suppressions)
        .where(where)
        .order_by(suppressions.c.created_at.desc(), suppressions.c.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return [dict(r._mapping) for r in rows], int(total)
